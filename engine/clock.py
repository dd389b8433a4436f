"""Time, injectable. Pure code takes `now` as an argument; I/O code takes a Clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio  # imported by the sleepers that use it: a lean command never sleeps


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall-clock time."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock the tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, when: datetime) -> None:
        delta = (when - self._now).total_seconds()
        self.advance(delta)


class Sleeper(Protocol):
    async def sleep(self, seconds: float, wake: asyncio.Event) -> bool:
        """Wait `seconds` or until `wake` is set; True when woken early."""
        ...


class RealSleeper:
    async def sleep(self, seconds: float, wake: asyncio.Event) -> bool:
        import asyncio

        try:
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True


class RecordingSleeper:
    """For tests: returns at once (advancing a ManualClock, if given) and records each wait."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def sleep(self, seconds: float, wake: asyncio.Event) -> bool:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
        import asyncio

        await asyncio.sleep(0)
        return wake.is_set()
