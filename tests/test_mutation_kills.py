"""Tests written to kill mutants that survived `scripts/mutation.sh` (see tests/MUTATION.md): each
pins a boundary or a branch the other tests left free."""

from __future__ import annotations

import pytest

from engine.policy import RetryDecision, Stop, Then, Tries, after_attempt
from engine.prompts import format_duration
from engine.stream import ErrorClass


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0.0s"), (9.94, "9.9s"), (10, "10s"), (59.9, "59s"),  # below a minute: tenths under 10 s
    (60, "1m"), (119, "1m"), (3599, "59m"), (3600, "1h00m"), (3661, "1h01m"),
    (-5, "0s"),  # a clock step backwards shows as nothing elapsed, not a negative time
])
def test_format_duration_boundaries(seconds: float, shown: str) -> None:
    """Kills the 8 survivors of format_duration (checked one by one, each applied by hand):
    `0 <= seconds < 60` -> `1 <=` / `0 <` / `<= 60` / `< 61`, `seconds < 10` -> `<= 10` / `< 11`,
    `max(0, ...)` -> `max(1, ...)`, and `if minutes` -> `if minutes or True`."""
    assert format_duration(seconds) == shown


# ---- policy.after_attempt: the whole decision, not only its `then` ------------------------------
# tests/test_pure.py's table checks `then` and `alert`; mutants that dropped the tries carried on,
# the Stop's reason or the warning survived it. Here every field of the decision is pinned.

_BASE: dict[str, object] = dict(link_name="w", model="m1", fallback_model="m2", is_command=False,
                                continue_session=False, stopping=False, stall_s=5.0, budget=10.0, cost=9.995)
_T = Tries(limit_waits=2)


@pytest.mark.parametrize(("cls", "text", "tries", "kw", "decision"), [
    (ErrorClass.OK, "", _T, {}, RetryDecision(Then.RETURN, _T)),
    (ErrorClass.KILLED, "", _T, {}, RetryDecision(Then.RETURN, _T)),
    (ErrorClass.BUDGET, "", _T, {}, RetryDecision(Then.STOP, _T, Stop("COMPLETED", "budget of $10.00 used ($9.99)"))),
    (ErrorClass.BUDGET, "", _T, {"budget": None, "cost": 0.5}, RetryDecision(Then.STOP, _T, Stop("COMPLETED", "budget of $0.00 used ($0.50)"))),
    (ErrorClass.OVERLOADED, "", _T, {"stopping": True}, RetryDecision(Then.RETURN, _T)),
    (ErrorClass.CRASHED, "No conversation found with session ID: x", _T, {"continue_session": True},
     RetryDecision(Then.RESUME_FRESH, Tries(limit_waits=2, resumed_fresh=True))),
    (ErrorClass.CRASHED, "no conversation found", _T, {"continue_session": False, "fallback_model": None},
     RetryDecision(Then.RETURN, _T)),
    (ErrorClass.RATE_LIMITED, "", _T, {}, RetryDecision(Then.WAIT_LIMIT, Tries(limit_waits=3))),
    (ErrorClass.RATE_LIMITED, "", Tries(limit_waits=47), {}, RetryDecision(Then.WAIT_LIMIT, Tries(limit_waits=48))),
    (ErrorClass.RATE_LIMITED, "", Tries(limit_waits=48), {},
     RetryDecision(Then.STOP, Tries(limit_waits=48), Stop("BLOCKED", "usage limit still reached after 48 waits"))),
    (ErrorClass.AUTH, "x" * 300, _T, {},
     RetryDecision(Then.STOP, _T, Stop("BLOCKED", "authentication failed: " + "x" * 200), alert="auth")),
    (ErrorClass.STALLED, "", _T, {"stall_s": 2.5},
     RetryDecision(Then.RETRY, Tries(limit_waits=2, stalled_once=True), warning="w stalled (no output for 2.5 s); retrying once")),
    (ErrorClass.OVERLOADED, "", _T, {},
     RetryDecision(Then.FALLBACK, _T, warning="w failed on m1 (overloaded); retrying on m2")),
    (ErrorClass.STALLED, "", Tries(stalled_once=True), {"is_command": True},
     RetryDecision(Then.RETURN, Tries(stalled_once=True), alert="stalled")),
    (ErrorClass.CRASHED, "", _T, {"is_command": True}, RetryDecision(Then.RETURN, _T)),
])
def test_after_attempt_whole_decision(cls: ErrorClass, text: str, tries: Tries, kw: dict[str, object],
                                      decision: RetryDecision) -> None:
    """Kills the after_attempt survivors (tries replaced by None, the Stop or warning dropped or
    reworded, `waits > MAX` made `>=`, `text[:200]` made `[:201]`): checked by hand with the
    tries of the OK row replaced by None (red) and `waits > MAX_LIMIT_WAITS` made `>=` (red)."""
    args = {**_BASE, **kw}
    assert after_attempt(cls, text, tries=tries, **args) == decision  # type: ignore[arg-type]
