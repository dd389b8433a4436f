"""The run's stop, wind-down and timeout decisions (engine/policy.py), by table.

The run loop (tests/test_marble.py) exercises these through real runs, but too slowly to run for
every mutant of scripts/mutation.sh; these tables pin each condition, its boundary (`>=` against
`>`) and its exact wording (the reason is what the chat and the status card show), in
milliseconds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.chains import ChainDef
from engine.policy import (
    MAX_FAILED_ROUNDS,
    OVERRUN_GRACE_S,
    RunCounters,
    Stop,
    link_timeout_s,
    rounds_left,
    runtime_end,
    should_skip,
    stop_before_link,
    time_left_s,
    wind_down_reason,
)

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
C0 = RunCounters(rounds_counted=0, at_round_start=True, run_started=START, cost_usd=0.0,
                 consecutive_blocks=0, failed_rounds=0, passes=0)


def chain(**kw: object) -> ChainDef:
    return ChainDef(name="c", path=Path("c.yaml"), **kw)  # type: ignore[arg-type]


def counters(**kw: object) -> RunCounters:
    return replace(C0, **kw)  # type: ignore[arg-type]


def test_runtime_end_is_the_earlier_of_runtime_and_deadline() -> None:
    """Red with `min(ends)` -> `max(ends)` or `runtime_hours > 0` -> `>= 0` (an unlimited chain
    would end at its start)."""
    assert runtime_end(chain(), START) is None
    assert runtime_end(chain(runtime_hours=2), START) == START + timedelta(hours=2)
    early, late = START + timedelta(hours=1), START + timedelta(hours=5)
    assert runtime_end(chain(deadline=late), START) == late
    assert runtime_end(chain(runtime_hours=2, deadline=late), START) == START + timedelta(hours=2)
    assert runtime_end(chain(runtime_hours=2, deadline=early), START) == early


def test_time_left_counts_from_the_run_start() -> None:
    """Red with the subtraction reversed (`now - end`)."""
    now = START + timedelta(minutes=30)
    assert time_left_s(chain(), C0, now) is None
    assert time_left_s(chain(runtime_hours=1), C0, now) == 1800.0
    assert time_left_s(chain(runtime_hours=1), C0, START + timedelta(hours=2)) == -3600.0


@pytest.mark.parametrize(("kw", "c", "left"), [
    ({"mode": "once"}, {"passes": 0}, 1),
    ({"mode": "once"}, {"passes": 1}, 0),
    ({"mode": "deadend"}, {"passes": 3}, 0),  # never negative
    ({"mode": "loop"}, {"rounds_counted": 7}, None),  # max_rounds 0: unlimited
    ({"mode": "loop", "max_rounds": 3}, {"rounds_counted": 0}, 3),
    ({"mode": "loop", "max_rounds": 3}, {"rounds_counted": 2}, 1),
    ({"mode": "loop", "max_rounds": 3}, {"rounds_counted": 5}, 0),
    ({"mode": "loop", "max_rounds": 1}, {"rounds_counted": 0}, 1),
])
def test_rounds_left(kw: dict[str, object], c: dict[str, object], left: int | None) -> None:
    """Red with `max(0, ...)` -> `max(1, ...)`, `1 - passes` -> `2 - passes`, or
    `max_rounds <= 0` -> `< 0` / `<= 1`."""
    assert rounds_left(chain(**kw), counters(**c)) == left


NOW = START + timedelta(hours=1)
DEADLINE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("kw", "c", "now", "status", "stop"), [
    # the agent's word comes first, before every limit
    ({"max_rounds": 1}, {"rounds_counted": 1}, NOW, "ALL_DONE", Stop("ALL_DONE", "an agent declared ALL_DONE")),
    ({"max_rounds": 1}, {"rounds_counted": 1}, NOW, "STOPPED", Stop("STOPPED", "an agent wrote STOPPED")),
    ({}, {}, NOW, "BLOCKED", None),
    # deadline: reached at the instant itself, not a second before
    ({"deadline": DEADLINE}, {}, DEADLINE, None, Stop("COMPLETED", "deadline 2026-12-01T09:00+00:00 reached")),
    ({"deadline": DEADLINE}, {}, DEADLINE - timedelta(seconds=1), None, None),
    # runtime: measured from the run's start
    ({"runtime_hours": 1.0}, {}, NOW, None, Stop("COMPLETED", "runtime limit of 1 h reached")),
    ({"runtime_hours": 1.5}, {}, NOW, None, None),
    ({"runtime_hours": 0.0}, {}, NOW + timedelta(days=9), None, None),
    # budget: used when reached exactly
    ({"max_cost_usd": 2.0}, {"cost_usd": 2.0}, NOW, None, Stop("COMPLETED", "budget of $2.00 used ($2.00)")),
    ({"max_cost_usd": 2.0}, {"cost_usd": 1.99}, NOW, None, None),
    ({"max_cost_usd": 0.0}, {"cost_usd": 0.0}, NOW, None, Stop("COMPLETED", "budget of $0.00 used ($0.00)")),
    # BLOCKED rounds in a row; 0 means never
    ({"max_consecutive_blocks": 2}, {"consecutive_blocks": 2}, NOW, None, Stop("BLOCKED", "2 BLOCKED rounds in a row")),
    ({"max_consecutive_blocks": 2}, {"consecutive_blocks": 1}, NOW, None, None),
    ({"max_consecutive_blocks": 0}, {"consecutive_blocks": 9}, NOW, None, None),
    ({"max_consecutive_blocks": 1}, {"consecutive_blocks": 1}, NOW, None, Stop("BLOCKED", "1 BLOCKED rounds in a row")),
    # rounds in which every link failed
    ({}, {"failed_rounds": MAX_FAILED_ROUNDS}, NOW, None, Stop("FAILED", "every link failed in 3 rounds in a row")),
    ({}, {"failed_rounds": MAX_FAILED_ROUNDS - 1}, NOW, None, None),
    # once/deadend: one pass, checked at a round's start only
    ({"mode": "once"}, {"passes": 1}, NOW, None, Stop("COMPLETED", "once pass finished")),
    ({"mode": "deadend"}, {"passes": 1}, NOW, None, Stop("COMPLETED", "deadend pass finished")),
    ({"mode": "once"}, {"passes": 0}, NOW, None, None),
    ({"mode": "once"}, {"passes": 1, "at_round_start": False}, NOW, None, None),
    # loop: max_rounds reached at a round's start; 0 = unlimited
    ({"max_rounds": 2}, {"rounds_counted": 2}, NOW, None, Stop("COMPLETED", "max_rounds (2) reached")),
    ({"max_rounds": 2}, {"rounds_counted": 1}, NOW, None, None),
    ({"max_rounds": 1}, {"rounds_counted": 1}, NOW, None, Stop("COMPLETED", "max_rounds (1) reached")),
    ({"max_rounds": 2}, {"rounds_counted": 2, "at_round_start": False}, NOW, None, None),
    ({"max_rounds": 0}, {"rounds_counted": 50, "passes": 50}, NOW, None, None),
])
def test_stop_before_link(kw: dict[str, object], c: dict[str, object], now: datetime, status: str | None,
                          stop: Stop | None) -> None:
    """Red with any limit's `>=` made `>` (the rows at the exact limit), its guard `> 0` made
    `>= 0` (the rows with 0 = unlimited), `MAX_FAILED_ROUNDS` changed, or a reason reworded."""
    assert stop_before_link(chain(**kw), counters(**c), now, agent_status=status) == stop


def test_the_limits_are_checked_in_order() -> None:
    """Several limits at once: the deadline is named before the budget, the budget before
    BLOCKED rounds. Red with the checks reordered."""
    c = counters(cost_usd=5.0, consecutive_blocks=9, failed_rounds=9, rounds_counted=9)
    ch = chain(deadline=DEADLINE, runtime_hours=0.5, max_cost_usd=1.0, max_rounds=2)
    assert stop_before_link(ch, c, DEADLINE, agent_status=None) == Stop("COMPLETED", "deadline 2026-12-01T09:00+00:00 reached")
    ch = chain(runtime_hours=0.5, max_cost_usd=1.0, max_rounds=2)
    assert stop_before_link(ch, c, NOW, agent_status=None) == Stop("COMPLETED", "runtime limit of 0.5 h reached")
    ch = chain(max_cost_usd=1.0, max_rounds=2)
    assert stop_before_link(ch, c, NOW, agent_status=None) == Stop("COMPLETED", "budget of $1.00 used ($5.00)")
    assert stop_before_link(chain(max_rounds=2), c, NOW, agent_status=None) == Stop("BLOCKED", "9 BLOCKED rounds in a row")
    c = replace(c, consecutive_blocks=0)
    assert stop_before_link(chain(max_rounds=2), c, NOW, agent_status=None) == Stop("FAILED", "every link failed in 9 rounds in a row")


@pytest.mark.parametrize(("kw", "c", "now", "last", "typical", "reason"), [
    # the last link of the last round of a loop
    ({"max_rounds": 3}, {"rounds_counted": 2}, NOW, True, None, "this is the last link of the last round"),
    ({"max_rounds": 3}, {"rounds_counted": 2}, NOW, False, None, None),
    ({"max_rounds": 3}, {"rounds_counted": 1}, NOW, True, None, None),
    ({"mode": "once"}, {}, NOW, True, None, None),  # a single pass has no "last round" to warn of
    # less than 1.5 typical links of run time left (20 min left, links take 14 min: 21 > 20)
    ({"runtime_hours": 1.0}, {}, START + timedelta(minutes=40), False, 14 * 60.0,
     "about 20 min of run time left, less than a link usually takes"),
    ({"runtime_hours": 1.0}, {}, START + timedelta(minutes=40), False, 800.0, None),  # exactly 1.5 x: not yet
    ({"runtime_hours": 1.0}, {}, START + timedelta(minutes=40), False, 801.0,
     "about 20 min of run time left, less than a link usually takes"),
    ({"runtime_hours": 1.0}, {}, START + timedelta(minutes=40, seconds=59), False, 3600.0,
     "about 19 min of run time left, less than a link usually takes"),
    ({"runtime_hours": 1.0}, {}, START, False, None, None),  # no typical link yet
    ({}, {}, START, False, 9e9, None),  # no time limit
    # 80% of the budget used
    ({"max_cost_usd": 10.0}, {"cost_usd": 8.0}, NOW, False, None, "$2.00 of the budget left"),
    ({"max_cost_usd": 10.0}, {"cost_usd": 7.99}, NOW, False, None, None),
    ({"max_cost_usd": 10.0}, {"cost_usd": 9.5}, NOW, False, None, "$0.50 of the budget left"),
    ({}, {"cost_usd": 1e6}, NOW, False, None, None),
])
def test_wind_down_reason(kw: dict[str, object], c: dict[str, object], now: datetime, last: bool,
                          typical: float | None, reason: str | None) -> None:
    """Red with `left == 1` -> `left == 2`, `< typical * 1.5` -> `<=` or `* 2.5`, `t_left // 60`
    -> `t_left / 60` (the minutes shown), `0.8 *` -> `0.9 *`, or the budget `>=` made `>`."""
    got = wind_down_reason(chain(**kw), counters(**c), now, is_last_link=last, typical_link_s=typical)
    assert got == reason


def test_wind_down_names_the_last_round_before_time_and_budget() -> None:
    """All three reasons at once: the round wins, then time. Red with the checks reordered."""
    ch = chain(max_rounds=1, runtime_hours=1.0, max_cost_usd=1.0)
    c = counters(cost_usd=0.95)
    late = START + timedelta(minutes=59)
    assert wind_down_reason(ch, c, late, is_last_link=True, typical_link_s=600.0) == "this is the last link of the last round"
    assert wind_down_reason(ch, c, late, is_last_link=False, typical_link_s=600.0) == (
        "about 1 min of run time left, less than a link usually takes")


@pytest.mark.parametrize(("kw", "now", "timeout", "expected"), [
    ({}, NOW, 7200.0, 7200.0),  # no time limit: the link's own timeout
    ({"runtime_hours": 2.0}, NOW, 7200.0, 3600.0 + OVERRUN_GRACE_S),  # cut to the time left + grace
    ({"runtime_hours": 2.0}, NOW, 60.0, 60.0),  # a shorter own timeout stands
    ({"runtime_hours": 1.0}, NOW + timedelta(seconds=OVERRUN_GRACE_S - 10), 7200.0, 10.0),
    ({"runtime_hours": 1.0}, NOW + timedelta(hours=5), 7200.0, 1.0),  # long past: one second, never <= 0
])
def test_link_timeout(kw: dict[str, object], now: datetime, timeout: float, expected: float) -> None:
    """Red with `max(1.0, ...)` -> `max(2.0, ...)`, `min` -> `max`, the grace `+` -> `-`, or
    OVERRUN_GRACE_S changed (600 s is part of the contract: a link may overrun by ten minutes)."""
    assert link_timeout_s(timeout, chain(**kw), C0, now) == expected
    assert OVERRUN_GRACE_S == 600.0


@pytest.mark.parametrize(("role", "name", "model", "assignee", "controller", "skip"), [
    ("worker", "w1", "sonnet", "w2", True, True),
    ("worker", "w1", "sonnet", "w1", True, False),
    ("worker", "w1", "claude-sonnet-4-6", "sonnet", True, False),
    ("worker", "w1", "sonnet", None, True, False),  # nobody assigned: everyone runs
    ("worker", "w1", "sonnet", "w2", False, False),  # no controller: no assignment applies
    ("controller", "c", "opus", "w2", True, False),  # only workers are skipped
])
def test_should_skip(role: str, name: str, model: str, assignee: str | None, controller: bool, skip: bool) -> None:
    """Red with any of the three guards dropped or the final `not` removed."""
    assert should_skip(role, name, model, assignee, controller) is skip
