"""Pure decisions of the marble run: when to stop, when to wind down, what is left.

Everything here takes values (the chain, the run's counters, the time now) and returns a decision;
nothing reads a clock or a file, so the whole table of stop conditions is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from engine.chains import ChainDef
from engine.records import Record
from engine.states import ChainStatus
from engine.stream import FALLBACK_WORTHY, ErrorClass

MAX_FAILED_ROUNDS = 3  # rounds in a row in which every link failed: the chain cannot make progress
OVERRUN_GRACE_S = 600.0  # a link may run this long past the runtime limit or deadline, then is killed


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RunCounters(Record):
    rounds_counted: int  # rounds that count toward max_rounds (not all-failed ones)
    at_round_start: bool  # the next link is the first of a round
    run_started: datetime  # this run's start (runtime_hours is measured from it)
    cost_usd: float  # spent in this run
    consecutive_blocks: int
    failed_rounds: int  # consecutive rounds in which every link failed
    passes: int  # rounds completed in this run (for once/deadend)


@dataclass(frozen=True, eq=False, repr=False)
class Stop(Record):
    status: ChainStatus  # the final status word: ALL_DONE, COMPLETED, STOPPED, BLOCKED, FAILED
    reason: str


def runtime_end(chain: ChainDef, run_started: datetime) -> datetime | None:
    ends = []
    if chain.runtime_hours > 0:
        ends.append(run_started + timedelta(hours=chain.runtime_hours))
    if chain.deadline is not None:
        ends.append(chain.deadline)
    return min(ends) if ends else None


def time_left_s(chain: ChainDef, c: RunCounters, now: datetime) -> float | None:
    end = runtime_end(chain, c.run_started)
    return None if end is None else (end - now).total_seconds()


def rounds_left(chain: ChainDef, c: RunCounters) -> int | None:
    """Rounds still allowed, the current one included."""
    if chain.mode != "loop":
        return max(0, 1 - c.passes)
    if chain.max_rounds <= 0:
        return None
    return max(0, chain.max_rounds - c.rounds_counted)


def stop_before_link(
    chain: ChainDef, c: RunCounters, now: datetime, *, agent_status: str | None
) -> Stop | None:
    """Should the run end before its next link? Checked before every link."""
    if agent_status == ChainStatus.ALL_DONE:
        return Stop(ChainStatus.ALL_DONE, "an agent declared ALL_DONE")
    if agent_status == ChainStatus.STOPPED:
        return Stop(ChainStatus.STOPPED, "an agent wrote STOPPED")
    if chain.deadline is not None and now >= chain.deadline:
        return Stop(ChainStatus.COMPLETED, f"deadline {chain.deadline.isoformat(timespec='minutes')} reached")
    if chain.runtime_hours > 0 and now >= c.run_started + timedelta(hours=chain.runtime_hours):
        return Stop(ChainStatus.COMPLETED, f"runtime limit of {chain.runtime_hours:g} h reached")
    if chain.max_cost_usd is not None and c.cost_usd >= chain.max_cost_usd:
        return Stop(ChainStatus.COMPLETED, f"budget of ${chain.max_cost_usd:.2f} used (${c.cost_usd:.2f})")
    if chain.max_consecutive_blocks > 0 and c.consecutive_blocks >= chain.max_consecutive_blocks:
        return Stop(ChainStatus.BLOCKED, f"{c.consecutive_blocks} BLOCKED rounds in a row")
    if c.failed_rounds >= MAX_FAILED_ROUNDS:
        return Stop(ChainStatus.FAILED, f"every link failed in {c.failed_rounds} rounds in a row")
    if c.at_round_start:
        if chain.mode != "loop" and c.passes >= 1:
            return Stop(ChainStatus.COMPLETED, f"{chain.mode} pass finished")
        if chain.mode == "loop" and chain.max_rounds > 0 and c.rounds_counted >= chain.max_rounds:
            return Stop(ChainStatus.COMPLETED, f"max_rounds ({chain.max_rounds}) reached")
    return None


def wind_down_reason(
    chain: ChainDef, c: RunCounters, now: datetime, *, is_last_link: bool, typical_link_s: float | None
) -> str | None:
    """Why the next link should wrap up instead of starting new work, if it should."""
    left = rounds_left(chain, c)
    if chain.mode == "loop" and left == 1 and is_last_link:
        return "this is the last link of the last round"
    t_left = time_left_s(chain, c, now)
    if t_left is not None and typical_link_s is not None and t_left < typical_link_s * 1.5:
        return f"about {int(t_left // 60)} min of run time left, less than a link usually takes"
    if chain.max_cost_usd is not None and c.cost_usd >= 0.8 * chain.max_cost_usd:
        return f"${chain.max_cost_usd - c.cost_usd:.2f} of the budget left"
    return None


def link_timeout_s(link_timeout: float, chain: ChainDef, c: RunCounters, now: datetime) -> float:
    """A link's timeout, cut to the time the run has left plus a grace period."""
    t_left = time_left_s(chain, c, now)
    if t_left is None:
        return link_timeout
    return max(1.0, min(link_timeout, t_left + OVERRUN_GRACE_S))


def should_skip(role: str, link_name: str, model: str | None, assignee: str | None, has_controller: bool) -> bool:
    """Skip a worker the controller did not assign (decided without starting claude)."""
    from engine.handoff import matches_assignment

    if role != "worker" or not has_controller or assignee is None:
        return False
    return not matches_assignment(assignee, link_name=link_name, model=model)


# ---- after a failed attempt: what next ---------------------------------------------------------
class Then(StrEnum):
    RETURN = "return"  # the result stands (success, a kill, or a failure to record as it is)
    STOP = "stop"  # the run ends (`stop` says how)
    RESUME_FRESH = "resume_fresh"  # claude lost the link's session: forget it and start a new one
    WAIT_LIMIT = "wait_limit"  # the usage limit: wait for its reset, then the same link again
    RETRY = "retry"  # stalled once: once more
    FALLBACK = "fallback"  # again on the link's fallback model


@dataclass(frozen=True, eq=False, repr=False)
class Tries(Record):
    """What an attempt loop has been through so far for one link."""

    limit_waits: int = 0
    stalled_once: bool = False
    resumed_fresh: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class RetryDecision(Record):
    then: Then
    tries: Tries
    stop: Stop | None = None
    alert: str | None = None  # a BLOCKED alert goes out: "auth" or "stalled"
    warning: str | None = None  # a warning event goes out (retrying once, switching model)


MAX_LIMIT_WAITS = 48  # usage-limit waits for one link before the chain gives up


def after_attempt(
    cls: ErrorClass, text: str, *, link_name: str, model: str | None, fallback_model: str | None, is_command: bool,
    continue_session: bool, stopping: bool, tries: Tries, stall_s: float, budget: float | None, cost: float,
) -> RetryDecision:
    """The decision after one attempt of a link, from its outcome and what was tried before:
    keep the result, end the run, or try again (on a new session, after the usage limit's reset,
    once more after a stall, on the fallback model). Pure: the loop does what it says."""
    if cls in (ErrorClass.OK, ErrorClass.KILLED):
        return RetryDecision(Then.RETURN, tries)
    if cls is ErrorClass.BUDGET:
        # claude stopped at --max-budget-usd: the budget is used even if its reported cost lands
        # a cent short of it, so no further (tiny-budget) link is started.
        return RetryDecision(Then.STOP, tries, Stop(ChainStatus.COMPLETED, f"budget of ${budget or 0:.2f} used (${cost:.2f})"))
    if stopping:
        return RetryDecision(Then.RETURN, tries)
    if continue_session and not tries.resumed_fresh and "no conversation found" in text.lower():
        return RetryDecision(Then.RESUME_FRESH, replace(tries, resumed_fresh=True))
    if cls is ErrorClass.RATE_LIMITED:
        waits = tries.limit_waits + 1
        if waits > MAX_LIMIT_WAITS:
            return RetryDecision(Then.STOP, tries, Stop(ChainStatus.BLOCKED, f"usage limit still reached after {MAX_LIMIT_WAITS} waits"))
        return RetryDecision(Then.WAIT_LIMIT, replace(tries, limit_waits=waits))
    if cls is ErrorClass.AUTH:
        return RetryDecision(Then.STOP, tries, Stop(ChainStatus.BLOCKED, f"authentication failed: {text[:200]}"), alert="auth")
    if cls is ErrorClass.STALLED and not tries.stalled_once:
        return RetryDecision(Then.RETRY, replace(tries, stalled_once=True),
                             warning=f"{link_name} stalled (no output for {stall_s:g} s); retrying once")
    if cls in FALLBACK_WORTHY and fallback_model and model != fallback_model and not is_command:
        return RetryDecision(Then.FALLBACK, tries, warning=f"{link_name} failed on {model} ({cls}); retrying on {fallback_model}")
    return RetryDecision(Then.RETURN, tries, alert="stalled" if cls is ErrorClass.STALLED else None)
