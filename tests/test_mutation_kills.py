"""Tests written to kill mutants that survived `scripts/mutation.sh` (see tests/MUTATION.md): each
pins a boundary or a branch the other tests left free."""

from __future__ import annotations

import pytest

from engine.prompts import format_duration


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
