"""Schedule expressions and their fire times. Pure: time is always passed in.

Accepted: standard 5-field cron (`0 2 * * *`, `30 7 * * 1-5`, lists, ranges, steps, names, 0 or 7
for Sunday; when both day-of-month and day-of-week are restricted either may match, as in vixie
cron) and readable forms (`daily 02:00`, `weekdays 07:30`, `weekends 10:00`, `hourly`, `hourly :15`,
`every 30m`, `every 2h`, `mon,wed 18:00`, `@daily`, `@hourly`, `@weekly`, `@monthly`,
`@midnight`), each optionally with `tz=Europe/Berlin`.

Fire times are computed in local wall time of the schedule's zone, then placed on the timeline:
- a wall time that happens twice (autumn fall-back) fires once, at its first occurrence;
- a wall time that does not exist (spring-forward gap) fires once, shifted forward by the gap
  (02:30 on the day clocks jump from 02:00 to 03:00 fires at 03:30).
So a daily schedule fires exactly once on every calendar day, DST or not. APScheduler runs the
schedules through `CronSpecTrigger`, which asks this module, so both agree.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from engine.errors import ScheduleError

MAX_TEXT = 200
SEARCH_DAYS = 366 * 8  # a valid expression fires within 8 years (Feb 29 on a Monday, say)
EXAMPLE = "Example: 0 2 * * * (every day at 02:00), or: daily 02:00, weekdays 07:30, every 30m"

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("weekday", 0, 7))
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DAY_WORDS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
_AT = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
       "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class ScheduleSpec:
    expression: str  # normalized 5-field cron
    original: str  # what the user typed
    tz: str  # IANA zone name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def trigger(self) -> CronSpecTrigger:
        return CronSpecTrigger(self)


@dataclass(frozen=True)
class _Fields:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.dom_star and self.dow_star:
            return True
        if self.dom_star:
            return dow
        if self.dow_star:
            return dom
        return dom or dow


def local_timezone_name() -> str:
    """The machine's IANA zone: $TZ, /etc/timezone, the /etc/localtime link, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _valid_zone(tz):
        return tz
    try:
        name = Path("/etc/timezone").read_text(encoding="utf-8").strip()
        if _valid_zone(name):
            return name
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            name = target.split("zoneinfo/", 1)[1]
            if _valid_zone(name):
                return name
    except OSError:
        pass
    return "UTC"


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_schedule(text: str, *, default_tz: str | None = None, tz: str | None = None) -> ScheduleSpec:
    """Parse a schedule; ScheduleError says what is wrong and gives an example. The zone is the
    text's `tz=...`, else `tz`/`default_tz` (the same thing), else the machine's zone."""
    default_tz = tz or default_tz or local_timezone_name()
    if not _valid_zone(default_tz):
        raise ScheduleError(f"unknown time zone {default_tz!r}. Example: tz=Europe/Berlin")
    original = (text or "").strip()
    if not original:
        raise ScheduleError(f"empty schedule. {EXAMPLE}")
    if len(original) > MAX_TEXT:
        raise ScheduleError(f"schedule too long ({len(original)} characters, at most {MAX_TEXT}). {EXAMPLE}")
    zone = default_tz
    words = []
    for word in original.split():
        if word.lower().startswith("tz="):
            zone = word[3:]
            if not _valid_zone(zone):
                raise ScheduleError(f"unknown time zone {zone!r}. Example: tz=Europe/Berlin")
        else:
            words.append(word)
    expression = _readable(words) or " ".join(words)
    fields = _parse_fields(expression)
    spec = ScheduleSpec(expression=_normalize(expression), original=original, tz=zone)
    if not next_fire_times(spec, datetime(2026, 1, 1, tzinfo=UTC), 1, fields=fields):
        raise ScheduleError(f"{expression!r} never fires (no such date). {EXAMPLE}")
    return spec


def _readable(words: list[str]) -> str | None:
    lowered = [w.lower() for w in words]
    if not lowered:
        raise ScheduleError(f"no schedule given, only a time zone. {EXAMPLE}")
    head, rest = lowered[0], lowered[1:]
    if head in _AT and not rest:
        return _AT[head]
    if head == "hourly" and not rest:
        return "0 * * * *"
    if head == "hourly" and len(rest) == 1 and re.fullmatch(r":?[0-5]?\d", rest[0]):
        return f"{int(rest[0].lstrip(':'))} * * * *"
    if head == "every":
        return _every(" ".join(rest))
    if head in ("daily", "weekdays", "weekends") or _day_list(head) is not None:
        if len(rest) > 1:
            raise ScheduleError(f"expected one time after {words[0]!r}, like 07:30. {EXAMPLE}")
        hour, minute = _clock(rest[0] if rest else "00:00", words[0])
        dow = {"daily": "*", "weekdays": "1-5", "weekends": "0,6"}.get(head) or _day_list(head)
        return f"{minute} {hour} * * {dow}"
    return None


def _day_list(word: str) -> str | None:
    """'mon,wed' or 'monday' as a cron weekday list, or None when it is not a day list."""
    days = []
    for part in word.split(","):
        if part in _DAY_WORDS:
            days.append(_DAY_WORDS[part])
        elif part in _DAYS:
            days.append(_DAYS[part])
        else:
            return None
    return ",".join(str(d) for d in sorted(set(days)))


def _clock(text: str, after: str) -> tuple[int, int]:
    match = _TIME.match(text)
    if not match:
        raise ScheduleError(f"expected a time like 07:30 after {after!r}, got {text!r}. {EXAMPLE}")
    return int(match.group(1)), int(match.group(2))


def _every(text: str) -> str:
    match = re.fullmatch(r"(\d+)\s*(m|min|mins|minute|minutes|h|hr|hour|hours)", text.strip())
    if not match:
        raise ScheduleError(f"expected 'every N m' or 'every N h', got 'every {text}'. {EXAMPLE}")
    n, unit = int(match.group(1)), match.group(2)
    if unit.startswith("m"):
        if n == 0 or 60 % n:
            raise ScheduleError(f"every {n}m: the minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30). Example: every 30m")
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if n == 0 or 24 % n:
        raise ScheduleError(f"every {n}h: the hours must divide 24 (1, 2, 3, 4, 6, 8, 12). Example: every 6h")
    return "0 * * * *" if n == 1 else f"0 */{n} * * *"


def _normalize(expression: str) -> str:
    return " ".join(expression.lower().split())


def _parse_fields(expression: str) -> _Fields:
    parts = expression.lower().split()
    if len(parts) != 5:
        raise ScheduleError(
            f"expected 5 fields (minute hour day month weekday), got {len(parts)}: {expression!r}. {EXAMPLE}")
    sets = [_parse_field(part, name, lo, hi) for part, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return _Fields(
        minutes=tuple(sorted(sets[0])), hours=tuple(sorted(sets[1])), days=frozenset(sets[2]),
        months=frozenset(sets[3]), weekdays=weekdays, dom_star=parts[2] == "*", dow_star=parts[4] == "*",
    )


def _value(token: str, name: str, lo: int, hi: int) -> int:
    names = _MONTHS if name == "month" else _DAYS if name == "weekday" else {}
    if token in names:
        return names[token]
    if not token.isdigit():
        raise ScheduleError(f"{name}: {token!r} is not a number{' or a name' if names else ''}. {EXAMPLE}")
    value = int(token)
    if not lo <= value <= hi:
        raise ScheduleError(f"{name}: {value} is out of range {lo}-{hi}. {EXAMPLE}")
    return value


def _parse_field(text: str, name: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{name}: empty list item in {text!r}. {EXAMPLE}")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{name}: bad step {step_text!r} in {item!r}. {EXAMPLE}")
            step = int(step_text)
        if base == "*":
            start, end = lo, (6 if name == "weekday" else hi)
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, name, lo, hi), _value(b, name, lo, hi)
            if start > end:
                raise ScheduleError(f"{name}: range {base!r} runs backwards. {EXAMPLE}")
        else:
            start = _value(base, name, lo, hi)
            end = hi if step_text else start
        values.update(range(start, end + 1, step))
    return values


def _place(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant of a local wall time: its first occurrence when repeated (fold=0), and shifted
    forward by the gap when skipped (fold=0 keeps the offset from before the jump)."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def iter_fires(spec: ScheduleSpec, after: datetime, *, fields: _Fields | None = None) -> Iterator[datetime]:
    """Fire times strictly after `after`, in order, as aware datetimes in the spec's zone (for up
    to SEARCH_DAYS days)."""
    f = fields or _parse_fields(spec.expression)
    zone = spec.zone
    after_utc = after.astimezone(UTC)
    day = after.astimezone(zone).date() - timedelta(days=1)
    last: datetime | None = None
    for _ in range(SEARCH_DAYS):
        if f.day_matches(day):
            for hour in f.hours:
                for minute in f.minutes:
                    when = _place(datetime(day.year, day.month, day.day, hour, minute), zone)
                    if when <= after_utc or (last is not None and when <= last):
                        continue
                    last = when
                    yield when.astimezone(zone)
        day += timedelta(days=1)


def next_fire_times(
    spec: ScheduleSpec, after: datetime, count: int = 3, *, fields: _Fields | None = None,
) -> list[datetime]:
    """The next `count` fire times strictly after `after`, as aware datetimes in the spec's zone."""
    return list(itertools.islice(iter_fires(spec, after, fields=fields), count))


def most_recent_fire(spec: ScheduleSpec, before: datetime, not_before: datetime | None = None) -> datetime | None:
    """The latest fire time in (not_before, before], for catching up a missed run (without
    `not_before`: the latest one at all, looking back up to 8 years)."""
    windows = [before - not_before] if not_before is not None else [
        timedelta(days=1), timedelta(days=32), timedelta(days=367), timedelta(days=SEARCH_DAYS)]
    for window in windows:
        fires = fires_between(spec, before - window, before, limit=1)
        if fires:
            return fires[-1]
    return None


def fires_between(spec: ScheduleSpec, after: datetime, until: datetime, *, limit: int = 1000) -> list[datetime]:
    """Fire times in (after, until], at most `limit` of them (the latest kept), in one pass."""
    out: deque[datetime] = deque(maxlen=limit)
    for when in iter_fires(spec, after):
        if when > until:
            break
        out.append(when)
    return list(out)


def describe(spec: ScheduleSpec) -> str:
    """A short human description, e.g. 'every day at 02:00 (Europe/Berlin)'."""
    m, h, dom, mon, dow = spec.expression.split()
    tz = f" ({spec.tz})"
    if m.isdigit() and h.isdigit() and dom == "*" and mon == "*":
        at = f"{int(h):02d}:{int(m):02d}"
        days = {"*": "every day", "1-5": "weekdays", "0,6": "weekends", "0": "Sundays", "1": "Mondays",
                "2": "Tuesdays", "3": "Wednesdays", "4": "Thursdays", "5": "Fridays", "6": "Saturdays"}.get(dow)
        if days:
            return f"{days} at {at}{tz}"
    if h == "*" and dom == mon == dow == "*":
        if m.isdigit():
            return f"every hour at :{int(m):02d}{tz}"
        if m.startswith("*/"):
            return f"every {m[2:]} minutes{tz}"
        if m == "*":
            return f"every minute{tz}"
    if m == "0" and h.startswith("*/") and dom == mon == dow == "*":
        return f"every {h[2:]} hours{tz}"
    return f"cron {spec.expression}{tz}"


class CronSpecTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler 3 trigger that fires at this module's fire times (DST-safe)."""

    def __init__(self, spec: ScheduleSpec) -> None:
        self.spec = spec
        self._fields = _parse_fields(spec.expression)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        after = now - timedelta(microseconds=1)
        if previous_fire_time is not None and previous_fire_time > after:
            after = previous_fire_time
        fires = next_fire_times(self.spec, after, 1, fields=self._fields)
        return fires[0] if fires else None

    def __str__(self) -> str:
        return f"cron[{self.spec.expression} {self.spec.tz}]"

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "expression": self.spec.expression, "original": self.spec.original, "tz": self.spec.tz}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec = ScheduleSpec(state["expression"], state["original"], state["tz"])
        self._fields = _parse_fields(self.spec.expression)

