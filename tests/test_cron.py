"""Schedule expressions and fire times: forms, errors, time zones, DST days, catch-up windows, the
APScheduler trigger, and a property test against a reference reading of cron."""

from __future__ import annotations

import copy
import itertools
import pickle
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.cron import (
    ScheduleSpec,
    describe,
    fires_between,
    most_recent_fire,
    next_fire_times,
    parse_schedule,
)
from engine.errors import ScheduleError
from engine.zones import local_timezone_name

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def spec_of(text: str, tz: str = "UTC") -> ScheduleSpec:
    return parse_schedule(text, default_tz=tz)


def walls(times: list[datetime]) -> list[str]:
    """Local wall times with their zone abbreviation, as a person reads them."""
    return [t.strftime("%a %m-%d %H:%M %Z") for t in times]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def in_utc(times: list[datetime]) -> list[datetime]:
    """Python compares datetimes of one zone by wall time (a repeated 02:30 equals itself): use UTC."""
    return [t.astimezone(UTC) for t in times]


def increasing(times: list[datetime]) -> bool:
    return all(b > a for a, b in itertools.pairwise(in_utc(times)))


# ---- forms --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expression", [
    ("0 2 * * *", "0 2 * * *"),
    ("  30  7 * *  1-5 ", "30 7 * * 1-5"),
    ("*/15 9-17 * * MON-FRI", "*/15 9-17 * * 1-5"),
    ("0 9 * jan-mar mon", "0 9 * 1-3 1"),
    ("0 0 1 JAN,jul *", "0 0 1 1,7 *"),
    ("0 0 * * sun,sat", "0 0 * * 0,6"),
    ("0 0 * * 7", "0 0 * * 7"),
    ("0 0 1-31/2 * *", "0 0 1-31/2 * *"),
    ("5/10 * * * *", "5/10 * * * *"),
    ("0 12 29 2 *", "0 12 29 2 *"),
    ("daily 02:00", "0 2 * * *"),
    ("daily", "0 0 * * *"),
    ("Daily 2:05", "5 2 * * *"),
    ("daily at 23:59", "59 23 * * *"),
    ("DAILY AT 7:30", "30 7 * * *"),
    ("weekdays 07:30", "30 7 * * 1-5"),
    ("weekends 10:00", "0 10 * * 0,6"),
    ("hourly", "0 * * * *"),
    ("hourly :15", "15 * * * *"),
    ("hourly 5", "5 * * * *"),
    ("every 30m", "*/30 * * * *"),
    ("every 5 min", "*/5 * * * *"),
    ("every 20 minutes", "*/20 * * * *"),
    ("every 1m", "* * * * *"),
    ("every minute", "* * * * *"),
    ("every 60m", "0 * * * *"),
    ("every 2h", "0 */2 * * *"),
    ("every 8 hours", "0 */8 * * *"),
    ("every hour", "0 * * * *"),
    ("every 24h", "0 0 * * *"),
    ("mon,wed 18:00", "0 18 * * 1,3"),
    ("monday 09:00", "0 9 * * 1"),
    ("Saturday at 10:15", "15 10 * * 6"),
    ("mon-fri 9:00", "0 9 * * 1-5"),
    ("mon,tue,wed,fri 9:00", "0 9 * * 1-3,5"),
    ("fri-mon 9:00", "0 9 * * 0,1,5,6"),
    ("sunday", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@HOURLY", "0 * * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@midnight", "0 0 * * *"),
    ("@yearly", "0 0 1 1 *"),
])
def test_forms(text: str, expression: str) -> None:
    spec = spec_of(text)
    assert (spec.expression, spec.original, spec.tz) == (expression, text.strip(), "UTC")
    assert spec_of(spec.expression).expression == expression  # normalizing twice changes nothing


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, fragment", [
    ("", "empty schedule"),
    ("   ", "empty schedule"),
    ("0 2 * *", "expected 5 fields (minute hour day month weekday), got 4: '0 2 * *'. "
                "Example: 0 2 * * * (every day at 02:00)"),
    ("0 0 2 * * *", "got 6 (seconds are not supported)"),
    ("banana", "expected 5 fields"),
    ("hello big wide world now", "minute: 'hello' is not a number"),
    ("0 25 * * *", "hour: 25 is out of range 0-23"),
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("0 0 0 * *", "day of month: 0 is out of range 1-31"),
    ("0 0 32 * *", "day of month: 32 is out of range 1-31"),
    ("0 0 * 13 *", "month: 13 is out of range 1-12"),
    ("0 0 * * 8", "weekday: 8 is out of range 0-7"),
    ("0 0-24 * * *", "hour: 24 is out of range 0-23"),
    ("*/0 * * * *", "minute: bad step '0'"),
    ("*/x * * * *", "minute: bad step 'x'"),
    ("*/ * * * *", "minute: bad step ''"),
    ("*/90 * * * *", "minute: bad step 90 in '*/90': larger than the range 0-59"),
    ("0 */25 * * *", "hour: bad step 25"),
    ("5-1 * * * *", "minute: range '5-1' runs backwards"),
    ("0 0 * * fri-mon", "weekday: range 'fri-mon' runs backwards"),
    ("1,,2 * * * *", "minute: empty list item"),
    ("banana * * * *", "minute: 'banana' is not a number"),
    ("0 0 * foo *", "month: 'foo' is not a number or a name"),
    ("0 0 * * monday", "weekday: 'monday' is not a number or a name"),
    ("0 0 ? * *", "day of month: '?' is not a number"),
    ("0 0 L * *", "day of month: 'l' is not a number"),
    ("0 0 * * 1#2", "weekday: '1#2' is not a number"),
    ("² * * * *", "minute: '²' is not a number"),
    ("٣ * * * *", "minute: '٣' is not a number"),
    ("-1 * * * *", "minute: '' is not a number"),
    ("0 0 31 2 *", "'0 0 31 2 *' never fires"),
    ("0 0 30,31 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
    ("every 7m", "every 7m: the minutes must divide 60"),
    ("every 0m", "every 0m: the minutes must divide 60"),
    ("every 90 minutes", "every 90m: the minutes must divide 60"),
    ("every 5h", "every 5h: the hours must divide 24"),
    ("every 48h", "every 48h: the hours must divide 24"),
    ("every soon", "expected 'every N m' or 'every N h', got 'every soon'"),
    ("every", "expected 'every N m' or 'every N h'"),
    ("every 2d", "expected 'every N m' or 'every N h'"),
    ("daily 25:00", "expected a time like 07:30 after 'daily', got '25:00'"),
    ("daily 7", "expected a time like 07:30 after 'daily', got '7'"),
    ("daily 07:60", "expected a time like 07:30"),
    ("daily at", "expected a time like 07:30 after 'daily'"),
    ("weekdays 07:30 09:00", "expected one time like 07:30 after 'weekdays'"),
    ("monday noon", "expected a time like 07:30 after 'monday', got 'noon'"),
    ("hourly :60", "expected a minute like :15 after 'hourly', got ':60'"),
    ("hourly 5 10", "expected a minute like :15 after 'hourly'"),
    ("@daily 02:00", "@daily takes nothing more, got '02:00'"),
    ("@reboot", "expected 5 fields"),
    ("0 2 * * * tz=Mars/Olympus", "unknown time zone 'Mars/Olympus'. Example: tz=Europe/Berlin"),
    ("0 2 * * * tz=", "unknown time zone ''"),
    ("0 2 * * * tz=Europe", "unknown time zone 'Europe'"),
    ("0 2 * * * tz=../../etc/passwd", "unknown time zone '../../etc/passwd'"),
    ("0 2 * * * tz=/usr/share/zoneinfo/UTC", "unknown time zone"),
    ("0 2 * * * tz=localtime", "unknown time zone 'localtime'"),
    ("0 2 * * * tz=UTC TZ=Europe/Berlin", "two different time zones given (tz=UTC and TZ=Europe/Berlin): give one"),
    ("0 2 * * * --tz UTC tz=Europe/Berlin", "two different time zones given (--tz UTC and tz=Europe/Berlin)"),
    ("0 2 * * * --tz", "--tz needs a zone name"),
    ("0 2 * * * --tz=Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("tz=UTC", "no schedule given, only a time zone"),
    ("x" * 201, "schedule too long (201 characters, at most 200)"),
    ("0 2 * * *" + " " * 150 + "tz=" + "A" * 50, "schedule too long"),
])
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as info:
        spec_of(text)
    assert fragment in str(info.value)
    assert "Example" in str(info.value)


def test_the_field_count_message_in_full() -> None:
    with pytest.raises(ScheduleError, match=r"^expected 5 fields \(minute hour day month weekday\), got 4: "
                                            r"'0 2 \* \*'\. Example: 0 2 \* \* \* \(every day at 02:00\)"):
        spec_of("0 2 * *")


def test_two_hundred_characters_are_still_fine() -> None:
    text = "0 2 * * *" + " " * 191
    assert len(text) == 200
    assert spec_of(text).expression == "0 2 * * *"


# ---- time zones ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, default, zone", [
    ("daily 02:00 tz=Europe/Berlin", "UTC", "Europe/Berlin"),
    ("tz=Europe/Berlin daily 02:00", "UTC", "Europe/Berlin"),
    ("daily tz=America/New_York 02:00", "UTC", "America/New_York"),
    ("0 2 * * * TZ=Asia/Tokyo", "Europe/Berlin", "Asia/Tokyo"),
    ("0 2 * * * tz=europe/berlin", "UTC", "Europe/Berlin"),  # the proper spelling is kept
    ("0 2 * * * tz=utc", "Europe/Berlin", "UTC"),
    ("0 2 * * * --tz europe/BERLIN", "UTC", "Europe/Berlin"),
    ("--tz=AMERICA/NEW_YORK 0 2 * * *", "UTC", "America/New_York"),
    ("0 2 * * * tz=Europe/Berlin TZ=europe/berlin", "UTC", "Europe/Berlin"),  # the same zone twice
    ("0 2 * * *", "Europe/Berlin", "Europe/Berlin"),
    ("0 2 * * *", "america/new_york", "America/New_York"),
    ("every 30m", "Etc/UTC", "Etc/UTC"),
])
def test_tz_option_and_default(text: str, default: str, zone: str) -> None:
    """A zone in the text wins over the default; its name is accepted in any case."""
    spec = parse_schedule(text, default_tz=default)
    assert spec.tz == zone
    assert spec.original == text
    assert spec.zone == ZoneInfo(zone)


def test_tz_option_is_not_part_of_the_expression() -> None:
    spec = parse_schedule("daily 02:00 tz=Europe/Berlin", default_tz="UTC")
    assert (spec.expression, describe(spec)) == ("0 2 * * *", "every day at 02:00 (Europe/Berlin)")


def test_an_unknown_default_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"unknown time zone 'Nowhere/Town'\. Example: tz=Europe/Berlin"):
        parse_schedule("0 2 * * *", default_tz="Nowhere/Town")


def test_without_a_default_the_machines_zone_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    assert parse_schedule("0 2 * * *").tz == "Asia/Kolkata"


@pytest.mark.parametrize("tz_env, expected", [
    ("Europe/Berlin", "Europe/Berlin"),
    (":America/New_York", "America/New_York"),
    ("/usr/share/zoneinfo/Asia/Tokyo", "Asia/Tokyo"),
    ("/usr/share/zoneinfo/posix/Australia/Sydney", "Australia/Sydney"),
])
def test_local_timezone_name_from_tz(monkeypatch: pytest.MonkeyPatch, tz_env: str, expected: str) -> None:
    monkeypatch.setenv("TZ", tz_env)
    assert local_timezone_name() == expected


@pytest.mark.parametrize("tz_env", ["", "CET-1CEST,M3.5.0,M10.5.0/3", "Not/AZone", "localtime"])
def test_local_timezone_name_falls_back_to_the_system(monkeypatch: pytest.MonkeyPatch, tz_env: str) -> None:
    monkeypatch.setenv("TZ", tz_env)
    name = local_timezone_name()
    assert name not in ("", tz_env)
    assert spec_of("0 2 * * *", name).tz == name  # a real IANA name


# ---- next fire times ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, tz, after, expected", [
    ("0 2 * * *", "UTC", utc(2026, 11, 24, 12), ["Wed 11-25 02:00 UTC", "Thu 11-26 02:00 UTC", "Fri 11-27 02:00 UTC"]),
    ("0 2 * * *", "UTC", utc(2026, 11, 24, 2), ["Wed 11-25 02:00 UTC", "Thu 11-26 02:00 UTC", "Fri 11-27 02:00 UTC"]),
    ("0 2 * * *", "UTC", utc(2026, 11, 24, 1, 59, 59), ["Tue 11-24 02:00 UTC", "Wed 11-25 02:00 UTC", "Thu 11-26 02:00 UTC"]),
    ("30 7 * * 1-5", "UTC", utc(2026, 11, 27, 8), ["Mon 11-30 07:30 UTC", "Tue 12-01 07:30 UTC", "Wed 12-02 07:30 UTC"]),
    ("weekdays 07:30", "UTC", utc(2026, 11, 28, 8), ["Mon 11-30 07:30 UTC", "Tue 12-01 07:30 UTC", "Wed 12-02 07:30 UTC"]),
    ("weekends 10:00", "UTC", utc(2026, 11, 24), ["Sat 11-28 10:00 UTC", "Sun 11-29 10:00 UTC", "Sat 12-05 10:00 UTC"]),
    ("0 9 * * 7", "UTC", utc(2026, 11, 24), ["Sun 11-29 09:00 UTC", "Sun 12-06 09:00 UTC", "Sun 12-13 09:00 UTC"]),
    ("0 9 * * 0", "UTC", utc(2026, 11, 24), ["Sun 11-29 09:00 UTC", "Sun 12-06 09:00 UTC", "Sun 12-13 09:00 UTC"]),
    ("mon,wed 18:00", "UTC", utc(2026, 11, 24), ["Wed 11-25 18:00 UTC", "Mon 11-30 18:00 UTC", "Wed 12-02 18:00 UTC"]),
    ("*/30 * * * *", "UTC", utc(2026, 11, 24, 12), ["Tue 11-24 12:30 UTC", "Tue 11-24 13:00 UTC", "Tue 11-24 13:30 UTC"]),
    ("*/30 * * * *", "UTC", utc(2026, 11, 24, 12, 0, 0, 1), ["Tue 11-24 12:30 UTC", "Tue 11-24 13:00 UTC", "Tue 11-24 13:30 UTC"]),
    ("* * * * *", "UTC", utc(2026, 12, 31, 23, 58, 30), ["Thu 12-31 23:59 UTC", "Fri 01-01 00:00 UTC", "Fri 01-01 00:01 UTC"]),
    ("hourly :15", "UTC", utc(2026, 11, 24, 23, 15), ["Wed 11-25 00:15 UTC", "Wed 11-25 01:15 UTC", "Wed 11-25 02:15 UTC"]),
    ("every 6h", "UTC", utc(2026, 11, 24, 13), ["Tue 11-24 18:00 UTC", "Wed 11-25 00:00 UTC", "Wed 11-25 06:00 UTC"]),
    ("0 0 1,15 * 0", "UTC", utc(2026, 11, 24), ["Sun 11-29 00:00 UTC", "Tue 12-01 00:00 UTC", "Sun 12-06 00:00 UTC"]),  # either
    ("0 0 */2 * 1", "UTC", utc(2026, 11, 24), ["Mon 12-07 00:00 UTC", "Mon 12-21 00:00 UTC", "Mon 01-11 00:00 UTC"]),  # both
    ("0 0 * * 1", "UTC", utc(2026, 11, 24), ["Mon 11-30 00:00 UTC", "Mon 12-07 00:00 UTC", "Mon 12-14 00:00 UTC"]),
    ("0 0 13 * 5", "UTC", utc(2026, 11, 1), ["Fri 11-06 00:00 UTC", "Fri 11-13 00:00 UTC", "Fri 11-20 00:00 UTC"]),
    ("@monthly", "UTC", utc(2026, 11, 24), ["Tue 12-01 00:00 UTC", "Fri 01-01 00:00 UTC", "Mon 02-01 00:00 UTC"]),
    ("0 0 31 * *", "UTC", utc(2026, 11, 24), ["Thu 12-31 00:00 UTC", "Sun 01-31 00:00 UTC", "Wed 03-31 00:00 UTC"]),
    ("0 12 29 2 *", "UTC", utc(2026, 1, 1), ["Tue 02-29 12:00 UTC", "Sun 02-29 12:00 UTC", "Fri 02-29 12:00 UTC"]),
    ("0 12 29 2 *", "UTC", utc(2096, 3, 1), ["Fri 02-29 12:00 UTC", "Wed 02-29 12:00 UTC", "Mon 02-29 12:00 UTC"]),  # 2104: 2100 is no leap year
    ("0 0 */31 1 1", "UTC", utc(2036, 3, 1), ["Mon 01-01 00:00 UTC", "Mon 01-01 00:00 UTC", "Mon 01-01 00:00 UTC"]),  # 2046, 2052, 2057
    ("0 2 * * *", "Europe/Berlin", utc(2026, 6, 30, 12), ["Wed 07-01 02:00 CEST", "Thu 07-02 02:00 CEST", "Fri 07-03 02:00 CEST"]),
    ("0 2 * * *", "Asia/Kolkata", utc(2026, 6, 30, 12), ["Wed 07-01 02:00 IST", "Thu 07-02 02:00 IST", "Fri 07-03 02:00 IST"]),
    ("0 9 * * 1", "Pacific/Auckland", utc(2026, 7, 5, 20, 59), ["Mon 07-06 09:00 NZST", "Mon 07-13 09:00 NZST", "Mon 07-20 09:00 NZST"]),
])
def test_next_fire_times(text: str, tz: str, after: datetime, expected: list[str]) -> None:
    fires = next_fire_times(spec_of(text, tz), after, 3)
    assert walls(fires) == expected
    assert all(f.tzinfo == ZoneInfo(tz) for f in fires)


def test_next_fire_times_counts_and_years() -> None:
    spec = spec_of("0 12 29 2 *")
    assert [f.year for f in next_fire_times(spec, utc(2026, 1, 1), 3)] == [2028, 2032, 2036]
    assert [f.year for f in next_fire_times(spec, utc(2096, 3, 1), 2)] == [2104, 2108]
    assert [f.year for f in next_fire_times(spec_of("0 0 */31 1 1"), utc(2036, 3, 1), 3)] == [2046, 2052, 2057]
    assert next_fire_times(spec, utc(2026, 1, 1), 0) == []
    assert len(next_fire_times(spec_of("* * * * *"), utc(2026, 1, 1), 1000)) == 1000


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire_times(spec_of("0 2 * * *"), datetime(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="aware"):
        most_recent_fire(spec_of("0 2 * * *"), datetime(2026, 1, 2), utc(2026, 1, 1))


# ---- DST ----------------------------------------------------------------------------------------
TRANSITIONS = [  # 2026: Europe springs forward on Mar 29 and falls back on Oct 25, the US on Mar 8 and Nov 1
    ("Europe/Berlin", date(2026, 3, 29)), ("Europe/Berlin", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)), ("America/New_York", date(2026, 11, 1)),
]


@pytest.mark.parametrize("zone, day", TRANSITIONS)
@pytest.mark.parametrize("at", ["00:00", "01:00", "01:30", "02:00", "02:30", "02:59", "03:00", "03:30", "23:59"])
def test_daily_fires_exactly_once_a_day_across_transitions(zone: str, day: date, at: str) -> None:
    spec = spec_of(f"daily {at} tz={zone}")
    start = datetime.combine(day - timedelta(days=3), datetime.min.time(), ZoneInfo(zone)) - timedelta(seconds=1)
    fires = next_fire_times(spec, start, 7)
    assert [f.date() for f in fires] == [day + timedelta(days=d) for d in range(-3, 4)]
    trigger, previous, through_trigger = spec.trigger(), None, []
    for _ in range(7):
        previous = trigger.get_next_fire_time(previous, start)
        assert previous is not None
        through_trigger.append(previous)
    assert in_utc(through_trigger) == in_utc(fires)


@pytest.mark.parametrize("text, zone, after, expected", [
    # Spring forward: 02:00-02:59 does not exist; such times fire once, shifted forward by the gap.
    ("daily 02:30", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=BERLIN),
     ["Sun 03-29 03:30 CEST", "Mon 03-30 02:30 CEST"]),
    ("daily 02:00", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=BERLIN),
     ["Sun 03-29 03:00 CEST", "Mon 03-30 02:00 CEST"]),
    ("daily 02:30", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=NY),
     ["Sun 03-08 03:30 EDT", "Mon 03-09 02:30 EDT"]),
    ("*/15 2 * * *", "Europe/Berlin", datetime(2026, 3, 29, tzinfo=BERLIN),
     ["Sun 03-29 03:00 CEST", "Sun 03-29 03:15 CEST", "Sun 03-29 03:30 CEST", "Sun 03-29 03:45 CEST", "Mon 03-30 02:00 CEST"]),
    ("30 2,3 * * *", "Europe/Berlin", datetime(2026, 3, 29, tzinfo=BERLIN),  # 02:30 and 03:30 meet: once
     ["Sun 03-29 03:30 CEST", "Mon 03-30 02:30 CEST"]),
    # Fall back: 02:00-02:59 (Berlin) / 01:00-01:59 (New York) happen twice; fixed times fire at the first.
    ("daily 02:30", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=BERLIN),
     ["Sun 10-25 02:30 CEST", "Mon 10-26 02:30 CET"]),
    ("daily 01:30", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=NY),
     ["Sun 11-01 01:30 EDT", "Mon 11-02 01:30 EST"]),
    ("daily 02:30", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=NY),
     ["Sun 11-01 02:30 EST", "Mon 11-02 02:30 EST"]),
    ("*/20 2 * * *", "Europe/Berlin", datetime(2026, 10, 25, tzinfo=BERLIN),
     ["Sun 10-25 02:00 CEST", "Sun 10-25 02:20 CEST", "Sun 10-25 02:40 CEST", "Mon 10-26 02:00 CET"]),
    ("0 */2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, tzinfo=BERLIN),
     ["Sun 10-25 00:00 CEST", "Sun 10-25 02:00 CEST", "Sun 10-25 04:00 CET"]),
    # Schedules firing every hour keep their real-time rhythm through both transitions.
    ("hourly", "Europe/Berlin", datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN),
     ["Sun 10-25 01:00 CEST", "Sun 10-25 02:00 CEST", "Sun 10-25 02:00 CET", "Sun 10-25 03:00 CET"]),
    ("hourly", "Europe/Berlin", datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN),
     ["Sun 03-29 01:00 CET", "Sun 03-29 03:00 CEST", "Sun 03-29 04:00 CEST"]),
    ("every 30m", "America/New_York", datetime(2026, 11, 1, 0, 15, tzinfo=NY),
     ["Sun 11-01 00:30 EDT", "Sun 11-01 01:00 EDT", "Sun 11-01 01:30 EDT", "Sun 11-01 01:00 EST",
      "Sun 11-01 01:30 EST", "Sun 11-01 02:00 EST"]),
    ("every 30m", "America/New_York", datetime(2026, 3, 8, 0, 45, tzinfo=NY),
     ["Sun 03-08 01:00 EST", "Sun 03-08 01:30 EST", "Sun 03-08 03:00 EDT", "Sun 03-08 03:30 EDT"]),
])
def test_dst_days(text: str, zone: str, after: datetime, expected: list[str]) -> None:
    spec = spec_of(f"{text} tz={zone}")
    fires = next_fire_times(spec, after, len(expected))
    assert walls(fires) == expected
    assert increasing(fires)


@pytest.mark.parametrize("zone, day", TRANSITIONS)
@pytest.mark.parametrize("text, step", [("hourly", timedelta(hours=1)), ("every 30m", timedelta(minutes=30)),
                                        ("every 5m", timedelta(minutes=5))])
def test_frequent_schedules_keep_real_time_spacing(zone: str, day: date, text: str, step: timedelta) -> None:
    spec = spec_of(f"{text} tz={zone}")
    start = datetime.combine(day, datetime.min.time(), ZoneInfo(zone))
    fires = next_fire_times(spec, start, int(timedelta(days=1) / step))
    assert {b - a for a, b in itertools.pairwise(in_utc(fires))} == {step}


def test_a_transition_in_a_zone_with_a_half_hour_shift() -> None:  # Lord Howe: 02:00 -> 02:30, 02:00 <- 01:30
    spec = spec_of("*/15 2 * * * tz=Australia/Lord_Howe")
    spring = next_fire_times(spec, datetime(2026, 10, 4, tzinfo=ZoneInfo("Australia/Lord_Howe")), 5)
    assert [f.strftime("%m-%d %H:%M") for f in spring] == ["10-04 02:30", "10-04 02:45", "10-05 02:00",
                                                          "10-05 02:15", "10-05 02:30"]


# ---- the APScheduler trigger --------------------------------------------------------------------
def test_a_year_of_daily_fires_through_the_trigger() -> None:
    spec = spec_of("daily 02:30 tz=Europe/Berlin")
    trigger, previous, now = spec.trigger(), None, utc(2026, 1, 1)
    fires = []
    for _ in range(365):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire)
        previous = now = fire
    days = [f.astimezone(BERLIN).date() for f in fires]
    assert days == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]  # no duplicates, no gaps
    assert in_utc(fires) == in_utc(next_fire_times(spec, utc(2026, 1, 1), 365))
    assert {f.astimezone(BERLIN).strftime("%H:%M") for f in fires} == {"02:30", "03:30"}
    assert [f.date() for f in fires if f.strftime("%H:%M") == "03:30"] == [date(2026, 3, 29)]


def test_the_trigger_reports_missed_slots_like_crontrigger() -> None:
    trigger = spec_of("0 2 * * *").trigger()
    now = utc(2026, 6, 5, 12)
    assert trigger.get_next_fire_time(None, now) == utc(2026, 6, 6, 2)
    assert trigger.get_next_fire_time(None, utc(2026, 6, 5, 2)) == utc(2026, 6, 5, 2)  # due now counts
    # After a sleep APScheduler asks from the last fire on, to learn every missed slot.
    missed, previous = [], utc(2026, 6, 1, 2)
    while (fire := trigger.get_next_fire_time(previous, now)) is not None and fire <= now:
        missed.append(fire.day)
        previous = fire
    assert missed == [2, 3, 4, 5]
    assert trigger.get_next_fire_time(utc(2026, 6, 5, 2), utc(2026, 6, 5, 2)) == utc(2026, 6, 6, 2)  # never again
    assert trigger.get_next_fire_time(utc(2026, 6, 9, 2), now) == utc(2026, 6, 10, 2)  # clock set back


def test_catching_up_a_week_of_minutely_slots_across_a_transition_is_quick() -> None:
    spec = spec_of("* * * * * tz=Europe/Berlin")
    trigger, now, since = spec.trigger(), utc(2026, 3, 30), utc(2026, 3, 23)
    began = time.perf_counter()
    slots, fire = [], trigger.get_next_fire_time(since, now)
    while fire is not None and fire <= now:  # what APScheduler does when a job comes due late
        slots.append(fire)
        fire = trigger.get_next_fire_time(fire, now)
    assert time.perf_counter() - began < 1.5  # a continued walk, not 10080 fresh searches
    assert len(slots) == 7 * 24 * 60  # every real minute once, the skipped hour's shifted ones too
    assert in_utc(slots) == in_utc(next_fire_times(spec, since, len(slots)))


def test_the_trigger_pickles_copies_and_names_itself() -> None:
    trigger = spec_of("weekdays 07:30 tz=Europe/Berlin").trigger()
    assert trigger.get_next_fire_time(None, utc(2026, 1, 1)) == datetime(2026, 1, 1, 7, 30, tzinfo=BERLIN)
    for clone in (pickle.loads(pickle.dumps(trigger)), copy.deepcopy(trigger)):
        assert clone.spec == trigger.spec
        assert clone.get_next_fire_time(utc(2026, 1, 1, 6, 30), utc(2026, 1, 2)) == datetime(2026, 1, 2, 7, 30, tzinfo=BERLIN)
    assert str(trigger) == "cron[30 7 * * 1-5 Europe/Berlin]"


def test_a_bad_row_is_refused_when_the_trigger_is_built() -> None:
    with pytest.raises(ScheduleError, match="hour: 99"):
        ScheduleSpec("0 99 * * *", "0 99 * * *", "UTC").trigger()
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Base'"):
        ScheduleSpec("0 9 * * *", "0 9 * * *", "Mars/Base").trigger()


# ---- catch-up -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, tz, before, not_before, expected", [
    ("0 2 * * *", "UTC", utc(2026, 11, 24, 2, 30), utc(2026, 11, 20, 12), utc(2026, 11, 24, 2)),
    ("0 2 * * *", "UTC", utc(2026, 11, 24, 2), utc(2026, 11, 20, 12), utc(2026, 11, 24, 2)),  # `before` counts
    ("0 2 * * *", "UTC", utc(2026, 11, 24, 1, 59), utc(2026, 11, 20, 12), utc(2026, 11, 23, 2)),
    ("0 2 * * *", "UTC", utc(2026, 11, 20, 13), utc(2026, 11, 20, 12), None),
    ("0 2 * * *", "UTC", utc(2026, 11, 21, 2), utc(2026, 11, 21, 2), None),  # an empty window
    ("0 2 * * *", "UTC", utc(2026, 11, 21, 3), utc(2026, 11, 21, 2), None),  # `not_before` does not count
    ("0 2 * * *", "UTC", utc(2026, 11, 21, 3), utc(2026, 11, 21, 1, 59), utc(2026, 11, 21, 2)),
    ("0 2 * * *", "UTC", utc(2026, 11, 21, 3), utc(2026, 11, 22), None),  # the window runs backwards
    ("weekdays 07:30", "UTC", utc(2026, 11, 30, 7), utc(2026, 11, 20), utc(2026, 11, 27, 7, 30)),  # Mon: Fri's
    ("* * * * *", "UTC", utc(2026, 11, 24, 12, 0, 30), utc(2025, 11, 24), utc(2026, 11, 24, 12)),
    ("0 12 29 2 *", "UTC", utc(2031, 1, 1), utc(2026, 1, 1), utc(2028, 2, 29, 12)),
    ("0 12 29 2 *", "UTC", utc(2031, 1, 1), None, utc(2028, 2, 29, 12)),
    ("0 12 29 2 *", "UTC", utc(2028, 2, 29, 11), None, utc(2024, 2, 29, 12)),
    ("daily 02:30", "Europe/Berlin", utc(2026, 3, 29, 12), utc(2026, 3, 28, 12), datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)),
    ("daily 02:30", "Europe/Berlin", utc(2026, 10, 25, 12), utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),  # 02:30 CEST
    ("hourly", "Europe/Berlin", utc(2026, 10, 25, 1, 30), utc(2026, 10, 24), utc(2026, 10, 25, 1)),  # 02:00 CET
    ("hourly", "Europe/Berlin", utc(2026, 10, 25, 0, 59), utc(2026, 10, 24), utc(2026, 10, 25, 0)),  # 02:00 CEST
])
def test_most_recent_fire(text: str, tz: str, before: datetime, not_before: datetime | None,
                          expected: datetime | None) -> None:
    spec = spec_of(text, tz)
    found = most_recent_fire(spec, before, not_before)
    assert found is None if expected is None else in_utc([found]) == in_utc([expected])  # type: ignore[list-item]
    if found is not None:
        assert found.tzinfo == ZoneInfo(tz)
        at = found.astimezone(UTC)
        assert in_utc(next_fire_times(spec, at - timedelta(microseconds=1), 1)) == [at]  # it is a fire time
        later = next_fire_times(spec, at, 1)
        assert not later or later[0].astimezone(UTC) > before  # and the latest one


def test_fires_between() -> None:
    spec = spec_of("0 2 * * *")
    down_from, back_at = utc(2026, 11, 20, 12), utc(2026, 11, 24, 2, 30)
    assert [f.day for f in fires_between(spec, down_from, back_at)] == [21, 22, 23, 24]
    assert [f.day for f in fires_between(spec, down_from, back_at, limit=2)] == [23, 24]
    assert fires_between(spec, back_at, down_from) == []
    minutely = fires_between(spec_of("* * * * * tz=Europe/Berlin"), utc(2026, 10, 24, 12), utc(2026, 10, 25, 12), limit=10**6)
    assert len(minutely) == 24 * 60  # 24 real hours, the repeated one included: no pause, no burst


# ---- describe -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, description", [
    ("0 2 * * * tz=Europe/Berlin", "every day at 02:00 (Europe/Berlin)"),
    ("weekdays 07:30", "weekdays at 07:30 (UTC)"),
    ("weekends 10:00", "weekends at 10:00 (UTC)"),
    ("monday 09:05", "Mondays at 09:05 (UTC)"),
    ("0 9 * * 7", "Sundays at 09:00 (UTC)"),
    ("sun,mon,wed 18:00", "every Mon, Wed, Sun at 18:00 (UTC)"),
    ("0 9,17 * * *", "every day at 09:00, 17:00 (UTC)"),
    ("every 15m", "every 15 minutes (UTC)"),
    ("every minute", "every minute (UTC)"),
    ("hourly :05", "every hour at :05 (UTC)"),
    ("every 6h", "every 6 hours (UTC)"),
    ("30 */4 * * *", "every 4 hours at :30 (UTC)"),
    ("@monthly", "monthly on day 1 at 00:00 (UTC)"),
    ("0 9 1,15 * *", "monthly on day 1, 15 at 09:00 (UTC)"),
    ("0 9 * jan mon", "cron 0 9 * 1 1 (UTC)"),
    ("*/10 9-17 * * 1-5", "cron */10 9-17 * * 1-5 (UTC)"),
    ("0 0 1 1 *", "cron 0 0 1 1 * (UTC)"),
])
def test_describe(text: str, description: str) -> None:
    assert describe(spec_of(text)) == description


# ---- property: fire times against a reference reading of cron -----------------------------------
@st.composite
def _item(draw: st.DrawFn, lo: int, hi: int, top: int) -> tuple[str, set[int]]:
    kind = draw(st.sampled_from(["v", "v", "a-b", "a-b/s", "v/s"]))
    a = draw(st.integers(lo, hi))
    step = draw(st.integers(1, top - lo + 1))
    if kind == "v":
        return str(a), {a}
    if kind == "v/s":
        return f"{a}/{step}", set(range(a, hi + 1, step))
    b = draw(st.integers(a, hi))
    if kind == "a-b":
        return f"{a}-{b}", set(range(a, b + 1))
    return f"{a}-{b}/{step}", set(range(a, b + 1, step))


@st.composite
def _field(draw: st.DrawFn, lo: int, hi: int, top: int | None = None) -> tuple[str, set[int]]:
    """A cron field and the values it stands for (`top`: where `*` ends; weekdays: 6)."""
    top = hi if top is None else top
    kind = draw(st.sampled_from(["*", "*/s", "list", "list"]))
    if kind == "*":
        return "*", set(range(lo, top + 1))
    if kind == "*/s":
        step = draw(st.integers(1, top - lo + 1))
        return f"*/{step}", set(range(lo, top + 1, step))
    items = draw(st.lists(_item(lo, hi, top), min_size=1, max_size=3))
    return ",".join(text for text, _ in items), set().union(*(values for _, values in items))


CRON = st.tuples(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12), _field(0, 7, 6))


def _matcher(fields: tuple[tuple[str, set[int]], ...]) -> Callable[[datetime], bool]:
    (_, minutes), (_, hours), (dom_text, days), (_, months), (dow_text, weekdays) = fields
    weekdays = {d % 7 for d in weekdays}
    both = dom_text.startswith("*") or dow_text.startswith("*")  # vixie: a `*` field is no restriction

    def matches(wall: datetime) -> bool:
        dom, dow = wall.day in days, wall.isoweekday() % 7 in weekdays
        day_ok = (dom and dow) if both else (dom or dow)
        return wall.minute in minutes and wall.hour in hours and wall.month in months and day_ok

    return matches


def _parse_or_skip(fields: tuple[tuple[str, set[int]], ...], tz: str) -> ScheduleSpec:
    try:
        return spec_of(" ".join(text for text, _ in fields), tz)
    except ScheduleError as exc:
        assert "never fires" in str(exc)
        assume(False)
        raise


@settings(max_examples=120, deadline=None)
@given(fields=CRON, start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31)))
def test_fire_times_match_the_fields_and_none_is_missed(fields: tuple[tuple[str, set[int]], ...], start: datetime) -> None:
    spec, matches = _parse_or_skip(fields, "UTC"), _matcher(fields)
    after = start.replace(tzinfo=UTC)
    fires = next_fire_times(spec, after, 5)
    assert fires and fires[0] > after
    assert all(b > a for a, b in itertools.pairwise(fires))
    assert all(matches(f) and f.second == f.microsecond == 0 for f in fires)
    # Every matching minute up to the last fire (within two days) is one of the fires.
    horizon = min(fires[-1], after + timedelta(days=2))
    minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    expected = []
    while minute <= horizon:
        if matches(minute):
            expected.append(minute)
        minute += timedelta(minutes=1)
    assert [f for f in fires if f <= horizon] == expected


AROUND_TRANSITIONS = st.sampled_from([utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2027, 3, 28, 1)]).flatmap(
    lambda t: st.integers(-26 * 60, 26 * 60).map(lambda m: t + timedelta(minutes=m)))


@settings(max_examples=120, deadline=None)
@given(fields=CRON, after=st.one_of(AROUND_TRANSITIONS, st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC))))
def test_fire_times_in_a_dst_zone(fields: tuple[tuple[str, set[int]], ...], after: datetime) -> None:
    spec, matches = _parse_or_skip(fields, "Europe/Berlin"), _matcher(fields)
    fires = next_fire_times(spec, after, 6)
    assert fires and fires[0] > after
    assert increasing(fires)
    for fire in fires:
        wall = fire.replace(tzinfo=None)
        shifted = wall - timedelta(hours=1)  # a time in the spring gap fires an hour later
        in_gap = shifted.replace(tzinfo=BERLIN).astimezone(UTC).astimezone(BERLIN).replace(tzinfo=None) != shifted
        assert matches(wall) or (in_gap and matches(shifted))
    if len(fields[1][1]) < 24:  # fixed hours: a repeated wall time fires once
        assert len({f.replace(tzinfo=None) for f in fires}) == len(fires)
    trigger, previous = spec.trigger(), after
    for fire in in_utc(fires):  # the scheduler's path agrees
        answer = trigger.get_next_fire_time(previous, after)
        assert answer is not None and answer.astimezone(UTC) == fire
        previous = answer
