"""Schedule expressions and fire times: tables of forms, errors, DST days, catch-up windows."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cron import describe, fires_between, most_recent_fire, next_fire_times, parse_schedule
from engine.errors import ScheduleError

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize("text, expression", [
    ("0 2 * * *", "0 2 * * *"),
    ("30  7 * *  1-5", "30 7 * * 1-5"),
    ("daily 02:00", "0 2 * * *"),
    ("daily", "0 0 * * *"),
    ("Daily 2:05", "5 2 * * *"),
    ("weekdays 07:30", "30 7 * * 1-5"),
    ("weekends 10:00", "0 10 * * 0,6"),
    ("hourly", "0 * * * *"),
    ("hourly :15", "15 * * * *"),
    ("every 30m", "*/30 * * * *"),
    ("every 5 min", "*/5 * * * *"),
    ("every 2h", "0 */2 * * *"),
    ("mon,wed 18:00", "0 18 * * 1,3"),
    ("monday 09:00", "0 9 * * 1"),
    ("@daily", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@midnight", "0 0 * * *"),
    ("0 9 * jan-mar mon", "0 9 * jan-mar mon"),
])
def test_forms(text: str, expression: str) -> None:
    assert parse_schedule(text, default_tz="UTC").expression == expression


@pytest.mark.parametrize("text, fragment", [
    ("", "empty schedule"),
    ("0 2 * *", "expected 5 fields (minute hour day month weekday), got 4: '0 2 * *'. Example: 0 2 * * *"),
    ("0 25 * * *", "hour: 25 is out of range 0-23"),
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("0 0 32 * *", "day of month: 32 is out of range 1-31"),
    ("0 0 * 13 *", "month: 13 is out of range 1-12"),
    ("0 0 * * 8", "weekday: 8 is out of range 0-7"),
    ("*/0 * * * *", "minute: bad step '0'"),
    ("5-1 * * * *", "minute: range '5-1' runs backwards"),
    ("banana * * * *", "minute: 'banana' is not a number"),
    ("0 0 31 2 *", "never fires"),
    ("every 7m", "every 7m: the minutes must divide 60"),
    ("every 5h", "every 5h: the hours must divide 24"),
    ("every soon", "expected 'every N m' or 'every N h'"),
    ("daily 25:00", "expected a time like 07:30 after 'daily', got '25:00'"),
    ("0 2 * * * tz=Mars/Olympus", "unknown time zone 'Mars/Olympus'. Example: tz=Europe/Berlin"),
    ("tz=UTC", "no schedule given"),
    ("x" * 201, "schedule too long"),
])
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, default_tz="UTC")
    assert fragment in str(info.value)
    assert "Example" in str(info.value)


def test_tz_option_overrides_the_default() -> None:
    spec = parse_schedule("daily 02:00 tz=Europe/Berlin", default_tz="UTC")
    assert (spec.tz, spec.expression, spec.original) == ("Europe/Berlin", "0 2 * * *", "daily 02:00 tz=Europe/Berlin")
    assert describe(spec) == "every day at 02:00 (Europe/Berlin)"


@pytest.mark.parametrize("text, after, expected", [
    ("0 2 * * *", datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
     ["2026-11-25T02:00", "2026-11-26T02:00", "2026-11-27T02:00"]),
    ("30 7 * * 1-5", datetime(2026, 11, 27, 8, 0, tzinfo=UTC),  # a Friday after 07:30
     ["2026-11-30T07:30", "2026-12-01T07:30", "2026-12-02T07:30"]),
    ("*/30 * * * *", datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
     ["2026-11-24T12:30", "2026-11-24T13:00", "2026-11-24T13:30"]),
    ("0 0 1,15 * 0", datetime(2026, 11, 24, 0, 0, tzinfo=UTC),  # 1st, 15th or Sundays (vixie OR)
     ["2026-11-29T00:00", "2026-12-01T00:00", "2026-12-06T00:00"]),
    ("0 12 29 2 *", datetime(2026, 1, 1, tzinfo=UTC), ["2028-02-29T12:00", "2032-02-29T12:00"]),  # the search spans 8 years
])
def test_next_fire_times(text: str, after: datetime, expected: list[str]) -> None:
    spec = parse_schedule(text, default_tz="UTC")
    assert [t.strftime("%Y-%m-%dT%H:%M") for t in next_fire_times(spec, after, 3)] == expected


@pytest.mark.parametrize("zone, day", [
    ("Europe/Berlin", date(2026, 3, 29)), ("Europe/Berlin", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)), ("America/New_York", date(2026, 11, 1)),
])
@pytest.mark.parametrize("at", ["02:30", "02:00", "01:30", "03:00"])
def test_daily_fires_exactly_once_on_dst_days(zone: str, day: date, at: str) -> None:
    spec = parse_schedule(f"daily {at} tz={zone}", default_tz="UTC")
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)) - timedelta(days=2)
    fires = next_fire_times(spec, start, 5)
    days = [f.date() for f in fires]
    assert days == [day + timedelta(days=d) for d in (-1, 0, 1, 2, 3)] or days == [day + timedelta(days=d) for d in (-2, -1, 0, 1, 2)]
    assert len(set(days)) == 5


def test_spring_forward_gap_is_shifted_by_the_jump() -> None:
    spec = parse_schedule("daily 02:30 tz=Europe/Berlin", default_tz="UTC")
    fire = next_fire_times(spec, datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN), 1)[0]
    assert fire.strftime("%Y-%m-%d %H:%M %Z") == "2026-03-29 03:30 CEST"


def test_fall_back_fires_at_the_first_occurrence() -> None:
    spec = parse_schedule("daily 02:30 tz=Europe/Berlin", default_tz="UTC")
    fire = next_fire_times(spec, datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN), 2)
    assert fire[0].strftime("%H:%M %Z") == "02:30 CEST"
    assert fire[1].date() == date(2026, 10, 26)


def test_every_30m_across_fall_back_never_repeats() -> None:
    spec = parse_schedule("every 30m tz=America/New_York", default_tz="UTC")
    fires = next_fire_times(spec, datetime(2026, 11, 1, 0, 0, tzinfo=NY), 8)
    assert all(b > a for a, b in itertools.pairwise(fires))


def test_a_year_of_daily_fires_through_the_trigger() -> None:
    spec = parse_schedule("daily 02:30 tz=Europe/Berlin", default_tz="UTC")
    trigger = spec.trigger()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    previous = None
    days = []
    for _ in range(365):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        days.append(fire.astimezone(BERLIN).date())
        previous = now = fire
    assert len(set(days)) == 365
    assert days == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]


def test_most_recent_fire_and_missed_windows() -> None:
    spec = parse_schedule("0 2 * * *", default_tz="UTC")
    down_from = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    back_at = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    assert most_recent_fire(spec, back_at, down_from) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert len(fires_between(spec, down_from, back_at)) == 4
    assert most_recent_fire(spec, datetime(2026, 11, 20, 13, 0, tzinfo=UTC), down_from) is None


@pytest.mark.parametrize("text, description", [
    ("weekdays 07:30", "weekdays at 07:30 (UTC)"),
    ("every 15m", "every 15 minutes (UTC)"),
    ("hourly :05", "every hour at :05 (UTC)"),
    ("every 6h", "every 6 hours (UTC)"),
    ("0 9 1 * *", "cron 0 9 1 * * (UTC)"),
])
def test_describe(text: str, description: str) -> None:
    assert describe(parse_schedule(text, default_tz="UTC")) == description


field = st.one_of(st.just("*"), st.integers(0, 59).map(str), st.integers(1, 30).map(lambda n: f"*/{n}"))
hour = st.one_of(st.just("*"), st.integers(0, 23).map(str), st.sampled_from(["1-5", "*/6", "0,12"]))
dow = st.one_of(st.just("*"), st.sampled_from(["1-5", "0,6", "mon", "3", "7"]))


@settings(max_examples=150, deadline=None)
@given(m=field, h=hour, d=dow, start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)))
def test_fire_times_increase_and_match_the_fields(m: str, h: str, d: str, start: datetime) -> None:
    spec = parse_schedule(f"{m} {h} * * {d} tz=Europe/Berlin", default_tz="UTC")
    after = start.replace(tzinfo=UTC)
    fires = next_fire_times(spec, after, 5)
    assert fires and fires[0] > after
    assert all(b > a for a, b in itertools.pairwise(fires))
    for fire in fires:
        local = fire.astimezone(BERLIN)
        if m.isdigit() and local.dst() == fires[0].astimezone(BERLIN).dst():
            assert local.minute == int(m)
