"""The schedule book (the schedules table) and next-fire text. Time is passed in; nothing here waits.
The `llmauto schedule ...` commands are in tests/test_schedule_cli.py."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.errors import InvalidChain, ScheduleError, UnknownChain
from engine.schedule_book import ScheduleBook, next_fire_for_chain
from engine.settings import Settings
from engine.store import Store
from tests.conftest import make_settings, write_chain

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ONCE = {"mode": "once", "links": [{"name": "step", "command": ["python3", "-c", "print('hi')"]}]}


@pytest.fixture
def chains(home: Path) -> Path:
    for name in ("nightly", "build", "deploy", "tests"):
        write_chain(home, name, ONCE)
    return home


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Store]:
    """The book's store on both backends (issue #15): the schedules' SQL runs on PostgreSQL too."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    async with Store.open(settings.db_path, url=url) as s:
        yield s


@pytest.fixture
def book(store: Store, settings: Settings, chains: Path) -> ScheduleBook:
    return ScheduleBook(store, settings)


# ---- adding ----------------------------------------------------------------------------------
async def test_add_cron_stores_the_row_and_returns_the_next_three_fires(book: ScheduleBook) -> None:
    schedule, times = await book.add_cron("nightly", "0 2 * * *", tz="Europe/Berlin", created_by="cli:me",
                                          chat_id=42, now=NOW)
    assert (schedule.chain, schedule.kind, schedule.expression, schedule.tz) == ("nightly", "cron", "0 2 * * *", "Europe/Berlin")
    assert (schedule.original, schedule.overlap, schedule.enabled) == ("0 2 * * *", "skip", True)
    assert (schedule.created_by, schedule.chat_id, schedule.last_fire) == ("cli:me", 42, None)
    assert schedule.armed_at == schedule.created_at and schedule.created_at.startswith("2026-11-24T12:00")
    assert [t.astimezone(BERLIN).strftime("%m-%d %H:%M") for t in times] == ["11-25 02:00", "11-26 02:00", "11-27 02:00"]
    assert await book.get(schedule.id) == schedule
    assert [s.id for s in await book.list()] == [schedule.id]


async def test_add_cron_uses_the_settings_zone_when_none_is_given(store: Store, home: Path, chains: Path) -> None:
    book = ScheduleBook(store, make_settings(home, timezone="America/New_York"))
    schedule, times = await book.add_cron("nightly", "30 6 * * 1-5", now=NOW)
    assert schedule.tz == "America/New_York"
    assert times[0] == datetime(2026, 11, 24, 6, 30, tzinfo=ZoneInfo("America/New_York")) + timedelta(days=1)


async def test_readable_forms_are_accepted_and_normalized(book: ScheduleBook) -> None:
    schedule, times = await book.add_cron("nightly", "daily 02:00", tz="UTC", now=NOW)
    assert schedule.expression == "0 2 * * *"
    assert schedule.original == "daily 02:00"
    assert times[0] == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


async def test_zones_in_any_case_and_duplicates_are_refused(book: ScheduleBook) -> None:
    schedule, times = await book.add_cron("nightly", "0 2 * * * tz=america/NEW_YORK", tz="America/New_York", now=NOW)
    assert (schedule.expression, schedule.tz, schedule.original) == ("0 2 * * *", "America/New_York", "0 2 * * * tz=america/NEW_YORK")
    assert times[0].utcoffset() == timedelta(hours=-5)
    with pytest.raises(ScheduleError, match=f"already has this schedule: #{schedule.id}"):
        await book.add_cron("nightly", "0  2 * * *", tz="america/new_york", now=NOW)
    with pytest.raises(ScheduleError, match=r"two different time zones given \(--tz Europe/Berlin and tz=America/New_York\)"):
        await book.add_cron("nightly", "0 3 * * * tz=America/New_York", tz="Europe/Berlin", now=NOW)
    berlin, _ = await book.add_cron("nightly", "0 2 * * *", tz="europe/berlin", now=NOW)  # another zone: another time
    assert berlin.tz == "Europe/Berlin"
    await book.add_after("tests", "build")
    with pytest.raises(ScheduleError, match="already has this schedule"):
        await book.add_after("tests", "build", only_all_done=True)


async def test_a_row_broken_by_hand_does_not_break_the_listing(book: ScheduleBook, store: Store, settings: Settings) -> None:
    schedule, _ = await book.add_cron("nightly", "0 2 * * *", now=NOW)
    await store.execute("UPDATE schedules SET expression = '0 99 * * *' WHERE id = ?", (schedule.id,))
    broken = await book.get(schedule.id)
    assert "unusable" in broken.description()
    assert book.next_fires(broken, NOW, 3) == []
    assert await next_fire_for_chain(store, "nightly", settings, now=NOW) is None


@pytest.mark.parametrize("text", ["bad cron", "61 * * * *", "* * * *", "0 25 * * *", ""])
async def test_invalid_expressions_raise_with_a_reason(book: ScheduleBook, text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        await book.add_cron("nightly", text, now=NOW)
    assert str(info.value)
    assert await book.list() == []


async def test_unknown_zone_unknown_chain_and_bad_overlap_are_refused(book: ScheduleBook, home: Path) -> None:
    with pytest.raises(ScheduleError):
        await book.add_cron("nightly", "0 2 * * *", tz="Mars/Olympus", now=NOW)
    with pytest.raises(UnknownChain):
        await book.add_cron("nope", "0 2 * * *", now=NOW)
    with pytest.raises(ScheduleError, match="overlap"):
        await book.add_cron("nightly", "0 2 * * *", overlap="later", now=NOW)
    with pytest.raises(ScheduleError, match="not a chain name"):
        await book.add_cron("../etc/passwd", "0 2 * * *", now=NOW)
    (home / "chains" / "broken.json").write_text('{"links": "no"}', encoding="utf-8")
    with pytest.raises(InvalidChain):
        await book.add_cron("broken", "0 2 * * *", now=NOW)
    assert await book.list() == []


async def test_add_after_refuses_loops(book: ScheduleBook) -> None:
    first = await book.add_after("tests", "build", only_all_done=True)
    assert (first.kind, first.after_chain, first.only_all_done, first.expression) == ("after", "build", True, None)
    assert first.description() == "after build finishes with ALL_DONE"
    await book.add_after("deploy", "tests")
    with pytest.raises(ScheduleError, match="itself"):
        await book.add_after("build", "build")
    with pytest.raises(ScheduleError, match="loop forever: deploy → build → tests → deploy"):
        await book.add_after("build", "deploy")
    with pytest.raises(UnknownChain):
        await book.add_after("tests", "nope")


# ---- changing --------------------------------------------------------------------------------
async def test_get_remove_and_pause_resume(book: ScheduleBook) -> None:
    schedule, _ = await book.add_cron("nightly", "0 2 * * *", now=NOW)
    with pytest.raises(ScheduleError, match="no schedule #7"):
        await book.get(7)
    paused = await book.set_enabled(schedule.id, False)
    assert not paused.enabled
    later = NOW + timedelta(days=3)
    resumed = await book.set_enabled(schedule.id, True, now=later)
    assert resumed.enabled and resumed.armed_at is not None and resumed.armed_at.startswith("2026-11-27T12:00")
    # Resuming re-arms: slots while paused do not count as missed.
    assert resumed.counts_from() == later
    assert (await book.remove(schedule.id)).id == schedule.id
    with pytest.raises(ScheduleError):
        await book.remove(schedule.id)
    with pytest.raises(ScheduleError):
        await book.set_enabled(schedule.id, True)


async def test_a_slot_is_claimed_once_and_last_fire_only_moves_forward(book: ScheduleBook) -> None:
    schedule, _ = await book.add_cron("nightly", "0 2 * * *", now=NOW)
    slot = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert (await book.claim(schedule.id, slot)) is not None
    assert await book.claim(schedule.id, slot) is None
    assert await book.claim(schedule.id, slot - timedelta(days=1)) is None
    assert await book.claim(schedule.id, slot, strict=False) is not None  # `after` schedules
    await book.record_fire(schedule.id, when=slot, outcome="started run #4", run_id=4)
    await book.record_fire(schedule.id, when=slot - timedelta(days=1), outcome="skipped: busy", run_id=None)
    row = await book.get(schedule.id)
    assert (row.last_fire, row.last_outcome, row.last_run_id) == ("2026-11-25T02:00:00.000+00:00", "skipped: busy", 4)
    assert row.counts_from() == slot
    await book.set_enabled(schedule.id, False)
    assert await book.claim(schedule.id, slot + timedelta(days=1)) is None  # paused


async def test_rows_survive_reopening_the_store(settings: Settings, chains: Path) -> None:
    async with Store.open(settings.db_path) as store:
        schedule, _ = await ScheduleBook(store, settings).add_cron("nightly", "0 2 * * *", now=NOW)
    async with Store.open(settings.db_path) as store:
        assert await ScheduleBook(store, settings).get(schedule.id) == schedule


# ---- fire times, DST -------------------------------------------------------------------------
def _local_days(times: list[datetime]) -> list[str]:
    return [t.astimezone(BERLIN).strftime("%m-%d") for t in times]


async def test_daily_schedule_fires_once_on_the_fall_back_night(book: ScheduleBook) -> None:
    schedule, _ = await book.add_cron("nightly", "30 2 * * *", tz="Europe/Berlin", now=NOW)
    times = book.next_fires(schedule, datetime(2026, 10, 23, 12, tzinfo=UTC), 4)
    assert _local_days(times) == ["10-24", "10-25", "10-26", "10-27"]  # 02:30 happens twice on 10-25
    assert all(b - a >= timedelta(hours=23) for a, b in itertools.pairwise(times))


async def test_daily_schedule_is_not_skipped_on_the_spring_forward_night(book: ScheduleBook) -> None:
    schedule, _ = await book.add_cron("nightly", "30 2 * * *", tz="Europe/Berlin", now=NOW)
    times = book.next_fires(schedule, datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert _local_days(times) == ["03-28", "03-29", "03-30", "03-31"]  # 02:30 does not exist on 03-29
    assert 3 <= times[1].astimezone(BERLIN).hour <= 4


# ---- status text and the morning summary -----------------------------------------------------
async def test_next_fire_for_chain_names_the_earliest_schedule(book: ScheduleBook, store: Store, settings: Settings) -> None:
    assert await next_fire_for_chain(store, "nightly", settings, now=NOW) is None
    await book.add_cron("nightly", "0 5 * * *", tz="Europe/Berlin", now=NOW)
    second, _ = await book.add_cron("nightly", "0 2 * * *", tz="Europe/Berlin", now=NOW)
    third, _ = await book.add_cron("nightly", "0 1 * * *", tz="UTC", now=NOW)
    await book.set_enabled(third.id, False)
    assert await next_fire_for_chain(store, "nightly", settings, now=NOW) == f"2026-11-25 02:00 Europe/Berlin (#{second.id})"
    after = await book.add_after("tests", "build")
    assert await next_fire_for_chain(store, "tests", settings, now=NOW) == f"after build finishes (#{after.id})"
