"""Evaluate a finished link, pure: what the agents left behind in, the run's next step out.

After each link `MarbleRun._after_link` reads the agents' files back (the handoff, status.txt;
the last good handoff when the new one is unreadable), asks `evaluate` what that means, and writes
the answer: the files put right, one store transaction (the link's outcome, the chain's counters,
the handoff version, the events), then a wait for a person if the chain waits on BLOCKED. The
decision itself, the part worth testing with a table, is here: which handoff version to keep, the
status-word repair, BLOCKED detection (the status word, the handoff, a route, the bounce guard),
the judgement of claude's refusals (a link refused everything it tried and changed nothing ends
`denied`), the route the marble takes, the round's end and its task outcome, and the events that
tell all of it. Nothing here reads a file, the store or the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from engine import event_types as et
from engine import handoff as hp
from engine import hops, policy, routing
from engine.chains import ChainDef, LinkDef
from engine.permissions import summary as refusal_summary
from engine.records import Record
from engine.statefiles import STATUS_WORDS
from engine.states import AGENT_STOPS, ChainStatus
from engine.store import ChainState, NewEvent
from engine.stream import ErrorClass, LinkResult

MAX_REFUSAL_EVENTS = 20  # refusals stored one by one per link; the rest are counted


@dataclass(frozen=True, eq=False, repr=False)
class ReadBack(Record):
    """What a link left on disk, as read right after it."""

    handoff: str | None  # the new handoff; None when it is missing or unreadable
    problem: str | None = None  # why it could not be read
    last_good: str | None = None  # the text to put back then (the handoff before the link, or the last version kept)
    status_word: str | None = None  # status.txt, as the agents left it


@dataclass(frozen=True, eq=False, repr=False)
class Ran(Record):
    """A link that ran to its end (not cut off by a person or a shutdown)."""

    result: LinkResult
    attempts: int
    link_run_id: int | None
    read: ReadBack


@dataclass(frozen=True, eq=False, repr=False)
class Skipped(Record):
    """A link that did not run: `why` is the assignee it was not (or the max_runs reason)."""

    why: str | None


@dataclass(frozen=True, eq=False, repr=False)
class RunFacts(Record):
    """What the decision needs from the run around the link."""

    chain: ChainDef
    run_cost_usd: float  # the run's cost so far, this link included
    links_run: int  # links that ran in this run before this one
    denied_alerted: frozenset[str]  # links already alerted as `denied` in this run (told once)
    redact: Callable[[str], str]


@dataclass(frozen=True, eq=False, repr=False)
class Evaluation(Record):
    """What to do after a link, in the order `_after_link` does it."""

    state: ChainState  # the chain's counters and position to commit
    events: tuple[NewEvent, ...]
    stop: policy.Stop | None
    blocked: bool
    failed: bool
    result: LinkResult | None  # as judged: a link refused everything it tried ends DENIED
    put_back: str | None = None  # the handoff text to write back (the new one was unreadable)
    reset_status: bool = False  # status.txt back to RUNNING (an unknown word, or a BLOCKED seen and alerted)
    handoff_version: tuple[int | None, int, str, str] | None = None  # (link run, round, link, text) to keep
    round_ended: bool = False
    denied_alert: str | None = None  # the link just alerted as `denied`
    wait_for_answer: bool = False  # on_blocked = wait: hold the chain for a person

    @property
    def ran(self) -> bool:
        return self.result is not None

    @property
    def judged_outcome(self) -> tuple[str, str] | None:
        """The link run's outcome to rewrite in the store, when claude's refusals changed it."""
        if self.result is None or not self.result.refusals:
            return None
        return self.result.error_class.value, self.result.error_message

    @property
    def refusals(self) -> str | None:
        if self.result is None or not self.result.refusals:
            return None
        return refusal_summary(self.result.refusals)


def evaluate(state: ChainState, link: LinkDef, before: str | None, outcome: Ran | Skipped, run: RunFacts) -> Evaluation:
    """The run's next step after `link` (chain.links[state.next_link]) ran or was skipped."""
    chain = run.chain
    events: list[NewEvent] = []
    if isinstance(outcome, Skipped):
        events.append(et.LinkSkipped(link=link.name, round=state.round, assigned=outcome.why).new())
        state = replace(state, status=ChainStatus.RUNNING)
        state, stop, ended = _advance(chain, state, link, None, before, blocked=False, failed=False, out=events)
        return Evaluation(state=state, events=tuple(events), stop=stop, blocked=False, failed=False, result=None,
                          round_ended=ended)

    read, result = outcome.read, outcome.result
    put_back = None
    handoff_version = None
    if read.handoff is None:
        put_back = before or read.last_good
        events.append(et.HandoffProblem(link=link.name, problem=read.problem or "", restored=put_back is not None).new())
        after = put_back
    else:
        after = read.handoff
        if after != before:
            handoff_version = (outcome.link_run_id, state.round, link.name, after)
    word = read.status_word
    reset_status = False
    if word is not None and word not in STATUS_WORDS:
        events.append(et.HandoffProblem(
            link=link.name, problem=f"status.txt has an unknown word {word[:40]!r}", restored=True).new())
        reset_status, word = True, ChainStatus.RUNNING
    changed = after != before
    denied_alert = None
    if result.refusals:
        result, denied_alert = judge_refusals(chain, state, link, result, changed=changed or word in AGENT_STOPS,
                                              alerted=run.denied_alerted, out=events)
    failed = not result.ok
    blocked = word == ChainStatus.BLOCKED or (changed and after is not None and hp.is_blocked(after))
    reset_status = reset_status or word == ChainStatus.BLOCKED  # seen and alerted; the next round starts clear
    hop: routing.Hop | None = None
    if blocked:
        events.append(et.Blocked(
            link=link.name, round=state.round, kind="agent",
            question=hp.question(after or "") or hp.headline(after or "", 4, 500, redact=run.redact),
            policy=chain.on_blocked,
        ).new())
    elif link.routes and not failed:
        hop = hops.hop_after(chain, state.next_link, link, state, before, after)
        if hop.routed:
            events.append(hops.routed_event(hop, link.name, state.round).new())
        if hop.kind is routing.HopKind.BLOCKED:
            blocked = True
            events.append(et.Blocked(
                link=link.name, round=state.round, kind="bounces" if hop.guard else "routed",
                question=hop.reason, policy=chain.on_blocked,
            ).new())
    events.append(link_finished(link, state, result, after, outcome.attempts, run, blocked=blocked, hop=hop).new())
    stop = None
    if chain.mode == "deadend" and (failed or blocked):
        stop = policy.Stop(ChainStatus.FAILED if failed else ChainStatus.BLOCKED,
                           f"dead end at {link.name}: {result.error_message or 'BLOCKED'}")
    state = replace(
        state, status=ChainStatus.RUNNING, round_ran=state.round_ran + 1, round_failed=state.round_failed + (1 if failed else 0),
        round_blocked=state.round_blocked or (1 if blocked else 0), round_path=hops.path_after(state.round_path, link.name),
    )
    state, hop_stop, ended = _advance(chain, state, link, hop, after, blocked=blocked, failed=failed, out=events)
    stop = stop or hop_stop
    return Evaluation(
        state=state, events=tuple(events), stop=stop, blocked=blocked, failed=failed, result=result, put_back=put_back,
        reset_status=reset_status, handoff_version=handoff_version, round_ended=ended, denied_alert=denied_alert,
        wait_for_answer=blocked and chain.on_blocked == "wait" and stop is None,
    )


def notify_due(chain: ChainDef, link: LinkDef, links_run: int) -> bool:
    """Is a note due after this link (the `links_run`-th of the run)? Every N links with the
    original's telegram.update_every_n_links, else per the link's telegram_update (or notify: every_link)."""
    if chain.notify_every_n_links:
        return links_run % chain.notify_every_n_links == 0
    return link.telegram_update or chain.notify_every_link


def link_finished(
    link: LinkDef, state: ChainState, result: LinkResult, after: str | None, attempts: int, run: RunFacts,
    *, blocked: bool, hop: routing.Hop | None,
) -> et.LinkFinished:
    return et.LinkFinished(
        link=link.name, role=link.role, model=result.model or link.model, round=state.round,
        error_class=result.error_class.value, error=run.redact(result.error_message)[:500],
        duration_s=round(result.duration_s, 3), cost_usd=round(result.cost_usd, 6),
        input_tokens=result.input_tokens, output_tokens=result.output_tokens, turns=result.turns, attempts=attempts,
        headline=hp.headline(after, redact=run.redact) if after else "",
        notify=notify_due(run.chain, link, run.links_run + 1),
        permission_denials=tuple(result.permission_denials)[:10], run_cost_usd=round(run.run_cost_usd, 6),
        refused=len(result.refusals), refusals=refusal_summary(result.refusals) if result.refusals else "",
        tool_calls=result.tool_calls, blocked=blocked, command=link.is_command,
        hop=hop.note if hop is not None and hop.routed else "", verdict=hop.verdict if hop else None,
    )


def judge_refusals(
    chain: ChainDef, state: ChainState, link: LinkDef, result: LinkResult, *, changed: bool,
    alerted: frozenset[str], out: list[NewEvent],
) -> tuple[LinkResult, str | None]:
    """claude refused tool calls: each refusal becomes an event, and a link that changed nothing
    (its handoff and status stayed as they were) ends `denied`: the agent could not act. The chat
    gets a BLOCKED-style alert naming the tool and the field to change, once per link and run
    (the second value: the link alerted now)."""
    for refusal in result.refusals[:MAX_REFUSAL_EVENTS]:
        out.append(et.ToolRefused(link=link.name, round=state.round, **refusal.to_json()).new())
    if changed or not result.ok:
        return result, None
    told = refusal_summary(result.refusals)
    field = link.tools_source
    where = (f"{field} in {chain.path.name}" if field != "LLMAUTO_ALLOWED_TOOLS"
             else f"defaults.allowed_tools in {chain.path.name} (or LLMAUTO_ALLOWED_TOOLS in .env)")
    allowed = " ".join(link.allowed_tools or ()) or "none"
    message = f"claude was refused {told}; the handoff did not change"
    alert = None
    if link.name not in alerted:
        alert = link.name
        out.append(et.Blocked(
            link=link.name, round=state.round, kind="denied", policy="continue",
            tools=tuple(sorted({r.tool for r in result.refusals})), field=field,
            question=(f"{link.name} could not act: claude was refused {told}. It may use: {allowed} "
                      f"({link.permission_mode or 'default'} mode). To let it, add the tool to {where}."),
        ).new())
    return replace(result, error_class=ErrorClass.DENIED, error_message=message), alert


def end_round(state: ChainState, handoff_text: str | None) -> tuple[ChainState, NewEvent]:
    """The counters of a new round: the one that ended counts unless every link in it failed; a
    BLOCKED round adds to the consecutive blocks, a failed one to the failed rounds."""
    all_failed = state.round_ran > 0 and state.round_failed == state.round_ran
    blocked = bool(state.round_blocked) or (handoff_text is not None and hp.is_blocked(handoff_text))
    counted = not all_failed
    finished = et.RoundFinished(round=state.round, counted=counted, blocked=blocked, links_run=state.round_ran,
                                links_failed=state.round_failed).new()
    return replace(
        state, round=state.round + 1, next_link=0, round_ran=0, round_failed=0, round_blocked=0,
        round_bounces="", round_path="",
        rounds_counted=state.rounds_counted + (1 if counted else 0),
        consecutive_blocks=state.consecutive_blocks + 1 if blocked else 0,
        failed_rounds=state.failed_rounds + 1 if all_failed else 0,
    ), finished


def _advance(
    chain: ChainDef, state: ChainState, link: LinkDef, hop: routing.Hop | None, handoff_text: str | None,
    *, blocked: bool, failed: bool, out: list[NewEvent],
) -> tuple[ChainState, policy.Stop | None, bool]:
    """The chain's position after a link: the next link, or the hop's target, or a new round
    (with the round's task outcome; the third value says the round ended); a `stop` route ends
    the run, a `blocked` one (or the bounce guard) too unless a task pool has other tasks or a
    person is waited for."""
    stop: policy.Stop | None = None
    if hop is None or hop.kind is routing.HopKind.GO:
        nxt = hop.next_index if hop is not None and hop.next_index is not None else state.next_link + 1
        bounced = hops.dump_bounces(routing.record(hops.bounces(state), hop)) if hop is not None else state.round_bounces
        state = replace(state, next_link=nxt, round_bounces=bounced)
        if nxt < len(chain.links):
            return state, None, False
    elif hop.kind is routing.HopKind.STOP:
        stop = policy.Stop(ChainStatus.STOPPED, hop.note)
    elif hop.kind is routing.HopKind.BLOCKED and chain.task_pool is None and chain.on_blocked != "wait":
        stop = policy.Stop(ChainStatus.BLOCKED, hop.reason)
    if chain.task_pool is not None and state.task_id:
        outcome = hops.task_outcome(chain, link, hop, blocked=bool(state.round_blocked) or blocked, failed=failed)
        state = replace(state, task_outcome=outcome.value if outcome else "")
    state, finished = end_round(state, handoff_text)
    out.append(finished)
    return state, stop, True
