"""`engine/evaluate.py`: a finished link evaluated, pure. Tables of what a link left behind (the
handoff, status.txt, its result) and the decision that follows, with no files, store or clock.

Each case was seen to fail by breaking the line named in its `broke` column once (then undone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.chains import ChainDef, load_chain
from engine.evaluate import Evaluation, Ran, ReadBack, RunFacts, Skipped, evaluate, notify_due
from engine.permissions import Refusal
from engine.states import ChainStatus
from engine.store import ChainState
from engine.stream import ErrorClass, LinkResult
from tests.conftest import write_chain

TWO = {"description": "d", "mode": "loop", "max_rounds": 5, "links": [
    {"name": "controller", "role": "controller", "model": "m", "prompt": "p"},
    {"name": "worker", "model": "m", "prompt": "p"},
]}
ROUTED = {"description": "d", "mode": "conditional", "max_rounds": 5, "links": [
    {"name": "worker", "model": "m", "prompt": "p"},
    {"name": "reviewer", "role": "reviewer", "model": "m", "prompt": "p",
     "routes": {"NEEDS_FIX": "worker", "APPROVED": "next", "REJECTED": "stop"}},
]}
BEFORE = "# chain\n\nASSIGNED: worker\n"


def chain(home: Path, doc: dict[str, Any], **extra: Any) -> ChainDef:
    write_chain(home, "c", {**doc, **extra})
    return load_chain(home, "c")


def ok(**kw: Any) -> LinkResult:
    return LinkResult(error_class=ErrorClass.OK, **kw)


def run_link(c: ChainDef, index: int, after: str | None, *, word: str | None = None, result: LinkResult | None = None,
             before: str | None = BEFORE, last_good: str | None = None, state: ChainState | None = None,
             alerted: frozenset[str] = frozenset()) -> Evaluation:
    st = state or ChainState(chain="c", status=ChainStatus.RUNNING, next_link=index)
    read = ReadBack(handoff=after, problem=None if after is not None else "handoff.md is missing",
                    last_good=last_good, status_word=word)
    return evaluate(st, c.links[index], before, Ran(result or ok(), 1, 7, read),
                    RunFacts(chain=c, run_cost_usd=0.5, links_run=0, denied_alerted=alerted, redact=lambda s: s))


def kinds(done: Evaluation) -> list[str]:
    return [e.kind for e in done.events]


@dataclass(frozen=True)
class Case:
    name: str
    after: str | None
    word: str | None
    blocked: bool
    reset_status: bool
    kept: bool  # a handoff version is saved
    event_kinds: tuple[str, ...]
    broke: str


CASES = [
    Case("a changed handoff is kept", BEFORE + "did it\n", None, False, False, True,
         (ev.LINK_FINISHED, ev.ROUND_FINISHED), "`if after != before` → `if False`"),
    Case("an unchanged handoff is not kept again", BEFORE, None, False, False, False,
         (ev.LINK_FINISHED, ev.ROUND_FINISHED), "`if after != before` → `if True`"),
    Case("BLOCKED in status.txt alerts and clears the word", BEFORE, "BLOCKED", True, True, False,
         (ev.BLOCKED, ev.LINK_FINISHED, ev.ROUND_FINISHED), "`word == ChainStatus.BLOCKED or` removed from `blocked`"),
    Case("BLOCKED written into a changed handoff alerts", BEFORE + "## Status: BLOCKED\nwhich db?\n", None, True, False,
         True, (ev.BLOCKED, ev.LINK_FINISHED, ev.ROUND_FINISHED), "`hp.is_blocked(after)` → `False`"),
    Case("an unknown status word is a problem, put back to RUNNING", BEFORE, "DONE!!", False, True, False,
         (ev.HANDOFF_PROBLEM, ev.LINK_FINISHED, ev.ROUND_FINISHED), "`word not in STATUS_WORDS` → `False`"),
    Case("ALL_DONE is a known word, left for the stop check", BEFORE, "ALL_DONE", False, False, False,
         (ev.LINK_FINISHED, ev.ROUND_FINISHED), "`reset_status or word == BLOCKED` → `or word is not None`"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_read_back_table(home: Path, case: Case) -> None:
    """The worker (last link) ran: what its handoff and status word make of the step."""
    done = run_link(chain(home, TWO), 1, case.after, word=case.word)
    assert (done.blocked, done.reset_status, done.handoff_version is not None) == (case.blocked, case.reset_status, case.kept)
    assert tuple(kinds(done)) == case.event_kinds
    if case.kept:
        assert done.handoff_version == (7, 1, "worker", case.after)
    assert done.state.round == 2 and done.state.next_link == 0 and done.round_ended


def test_an_unreadable_handoff_is_put_back(home: Path) -> None:
    """No handoff after the link: the one before it goes back and a problem is told; with no
    handoff before either, the last version kept. Broke `put_back = before or read.last_good` →
    `= before`: the second half red."""
    c = chain(home, TWO)
    done = run_link(c, 0, None)
    assert done.put_back == BEFORE and kinds(done)[0] == ev.HANDOFF_PROBLEM
    assert done.events[0].data == {"link": "controller", "problem": "handoff.md is missing", "restored": True}
    assert done.handoff_version is None
    done = run_link(c, 0, None, before=None, last_good="kept text")
    assert done.put_back == "kept text" and done.events[0].data["restored"] is True
    done = run_link(c, 0, None, before=None)
    assert done.put_back is None and done.events[0].data["restored"] is False


def test_a_link_in_the_middle_goes_to_the_next(home: Path) -> None:
    """Not the last link: the next one, same round, nothing ended. Broke `if nxt < len(chain.links)`
    → `if False`: red (a round ended after the first link)."""
    done = run_link(chain(home, TWO), 0, BEFORE + "x\n")
    assert (done.state.next_link, done.state.round, done.round_ended) == (1, 1, False)
    assert done.state.round_ran == 1 and done.state.round_path == "controller"
    assert kinds(done) == [ev.LINK_FINISHED]


def test_a_skipped_link_moves_on_without_counting(home: Path) -> None:
    """Skipped: a `link_skipped` with the assignee, nothing ran. Broke `assigned=outcome.why` →
    `assigned=None`: red."""
    c = chain(home, TWO)
    st = ChainState(chain="c", next_link=1, round_ran=1)
    done = evaluate(st, c.links[1], BEFORE, Skipped("other"),
                    RunFacts(chain=c, run_cost_usd=0, links_run=0, denied_alerted=frozenset(), redact=str))
    assert kinds(done) == [ev.LINK_SKIPPED, ev.ROUND_FINISHED]
    assert done.events[0].data == {"link": "worker", "round": 1, "assigned": "other"}
    assert not done.ran and done.state.round_ran == 0 and done.state.rounds_counted == 1


def test_a_round_where_every_link_failed_is_not_counted(home: Path) -> None:
    """Broke `counted = not all_failed` → `counted = True`: red."""
    c = chain(home, TWO)
    st = ChainState(chain="c", next_link=1, round_ran=1, round_failed=1)
    done = run_link(c, 1, BEFORE, result=LinkResult(error_class=ErrorClass.TIMEOUT, error_message="slow"), state=st)
    assert done.failed and done.state.rounds_counted == 0 and done.state.failed_rounds == 1
    assert done.events[-1].data["counted"] is False


def test_deadend_stops_on_a_failure(home: Path) -> None:
    """Broke `if chain.mode == "deadend" and (failed or blocked)` → `and blocked`: red."""
    done = run_link(chain(home, TWO, mode="deadend"), 0, BEFORE, result=LinkResult(error_class=ErrorClass.CRASHED, error_message="boom"))
    assert done.stop is not None and done.stop.status == ChainStatus.FAILED and "dead end at controller: boom" in done.stop.reason


@pytest.mark.parametrize(("verdict", "next_link", "stop", "blocked"), [
    ("APPROVED", 0, None, False),  # next: past the last link, a new round
    ("NEEDS_FIX", 0, None, False),  # back to the worker, same round
    ("REJECTED", 0, ChainStatus.STOPPED, False),
])
def test_routes(home: Path, verdict: str, next_link: int, stop: str | None, blocked: bool) -> None:
    """The reviewer's verdict routes the marble. Broke the `elif link.routes and not failed:` branch
    (→ `elif False:`): NEEDS_FIX and REJECTED red."""
    c = chain(home, ROUTED)
    done = run_link(c, 1, BEFORE + f"\nVERDICT: {verdict}\n")
    assert done.state.next_link == next_link and done.blocked is blocked
    assert (done.stop.status if done.stop else None) == stop
    assert ev.ROUTED in kinds(done)
    assert done.round_ended is (verdict != "NEEDS_FIX")


def test_refusals_that_changed_nothing_end_denied_and_alert_once(home: Path) -> None:
    """A link refused everything and changed nothing: `denied`, one alert per link and run.
    Broke `if link.name not in alerted` → `if True`: the second call red."""
    c = chain(home, TWO)
    refused = ok(refusals=(Refusal("Bash", "rm -rf x"),), tool_calls=1)
    done = run_link(c, 1, BEFORE, result=refused)
    assert done.result is not None and done.result.error_class is ErrorClass.DENIED and done.failed
    assert done.denied_alert == "worker" and kinds(done)[:2] == [ev.TOOL_REFUSED, ev.BLOCKED]
    assert done.judged_outcome == ("denied", "claude was refused Bash (rm -rf x); the handoff did not change")
    again = run_link(c, 1, BEFORE, result=refused, alerted=frozenset({"worker"}))
    assert again.denied_alert is None and ev.BLOCKED not in kinds(again)


def test_refusals_of_a_link_that_changed_the_handoff_are_only_told(home: Path) -> None:
    """Broke `if changed or not result.ok: return` → `if not result.ok`: red (it ended denied)."""
    done = run_link(chain(home, TWO), 1, BEFORE + "x\n", result=ok(refusals=(Refusal("Write", "a.md"),)))
    assert done.result is not None and done.result.ok and not done.failed
    assert kinds(done)[0] == ev.TOOL_REFUSED and ev.BLOCKED not in kinds(done)


def test_blocked_waits_for_a_person_when_the_chain_says_so(home: Path) -> None:
    """Broke `wait_for_answer=blocked and chain.on_blocked == "wait"` → `=False`: red."""
    done = run_link(chain(home, TWO, on_blocked="wait"), 1, BEFORE, word="BLOCKED")
    assert done.wait_for_answer and done.stop is None
    assert not run_link(chain(home, TWO), 1, BEFORE, word="BLOCKED").wait_for_answer


@pytest.mark.parametrize(("every_n", "links_run", "due"), [(0, 0, False), (2, 0, False), (2, 1, True), (3, 2, True)])
def test_notify_due(home: Path, every_n: int, links_run: int, due: bool) -> None:
    """Every N links with telegram.update_every_n_links. Broke `links_run % n == 0` → `!= 0`: red."""
    extra = {"telegram": {"update_every_n_links": every_n}} if every_n else {}
    c = chain(home, TWO, **extra)
    assert notify_due(c, c.links[1], links_run + 1) is due
