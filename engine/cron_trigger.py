"""cron.py's fire times as an APScheduler 3 trigger, for the timer (engine/timer.py).

Apart from cron.py so that only `serve` imports APScheduler: `chain status` reads the next fire
time from cron.py alone, and importing the `apscheduler` package costs a scan of the installed
distributions for its own version (#14, whole-process cost).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from engine.cron import ScheduleSpec, _checked_zone, _fires_utc, _parse_fields, _utc


class CronSpecTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler 3 trigger firing at cron.py's fire times (DST-safe). Like CronTrigger it
    continues after `previous_fire_time` even when that is long past, so the scheduler sees every
    slot it missed (it coalesces them), and never repeats one (not even when the clock was set
    back); without a previous fire it starts at `now` (a fire at `now` counts)."""

    def __init__(self, spec: ScheduleSpec) -> None:
        _parse_fields(spec.expression)  # refuse a bad row now, not when it is due
        _checked_zone(spec.tz)
        self.spec = spec
        self._lock = threading.Lock()
        self._cursor: tuple[datetime, Iterator[datetime]] | None = None  # the last fire, and on

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is None:
            after = _utc(now, "now") - timedelta(microseconds=1)
        else:
            after = _utc(previous_fire_time, "previous_fire_time")
        with self._lock:  # asked from the last answer on (each slot after a sleep): continue the walk
            fires = self._cursor[1] if self._cursor and self._cursor[0] == after else _fires_utc(self.spec, after)
            fire = next(fires, None)
            self._cursor = None if fire is None else (fire, fires)
        return None if fire is None else fire.astimezone(self.spec.zone)

    def __str__(self) -> str:
        return f"cron[{self.spec.expression} {self.spec.tz}]"

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "expression": self.spec.expression, "original": self.spec.original, "tz": self.spec.tz}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(ScheduleSpec(state["expression"], state["original"], state["tz"]))  # type: ignore[misc]
