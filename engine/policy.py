"""Pure decisions of the marble run: when to stop, when to wind down, what is left.

Everything here takes values (the chain, the run's counters, the time now) and returns a decision;
nothing reads a clock or a file, so the whole table of stop conditions is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.chains import ChainDef

MAX_FAILED_ROUNDS = 3  # rounds in a row in which every link failed: the chain cannot make progress
OVERRUN_GRACE_S = 600.0  # a link may run this long past the runtime limit or deadline, then is killed


@dataclass(frozen=True, kw_only=True)
class RunCounters:
    rounds_counted: int  # rounds that count toward max_rounds (not all-failed ones)
    at_round_start: bool  # the next link is the first of a round
    run_started: datetime  # this run's start (runtime_hours is measured from it)
    cost_usd: float  # spent in this run
    consecutive_blocks: int
    failed_rounds: int  # consecutive rounds in which every link failed
    passes: int  # rounds completed in this run (for once/deadend)


@dataclass(frozen=True)
class Stop:
    status: str  # the final status word: ALL_DONE, COMPLETED, STOPPED, BLOCKED, FAILED
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
    if agent_status == "ALL_DONE":
        return Stop("ALL_DONE", "an agent declared ALL_DONE")
    if agent_status == "STOPPED":
        return Stop("STOPPED", "an agent wrote STOPPED")
    if chain.deadline is not None and now >= chain.deadline:
        return Stop("COMPLETED", f"deadline {chain.deadline.isoformat(timespec='minutes')} reached")
    if chain.runtime_hours > 0 and now >= c.run_started + timedelta(hours=chain.runtime_hours):
        return Stop("COMPLETED", f"runtime limit of {chain.runtime_hours:g} h reached")
    if chain.max_cost_usd is not None and c.cost_usd >= chain.max_cost_usd:
        return Stop("COMPLETED", f"budget of ${chain.max_cost_usd:.2f} used (${c.cost_usd:.2f})")
    if chain.max_consecutive_blocks > 0 and c.consecutive_blocks >= chain.max_consecutive_blocks:
        return Stop("BLOCKED", f"{c.consecutive_blocks} BLOCKED rounds in a row")
    if c.failed_rounds >= MAX_FAILED_ROUNDS:
        return Stop("FAILED", f"every link failed in {c.failed_rounds} rounds in a row")
    if c.at_round_start:
        if chain.mode != "loop" and c.passes >= 1:
            return Stop("COMPLETED", f"{chain.mode} pass finished")
        if chain.mode == "loop" and chain.max_rounds > 0 and c.rounds_counted >= chain.max_rounds:
            return Stop("COMPLETED", f"max_rounds ({chain.max_rounds}) reached")
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
