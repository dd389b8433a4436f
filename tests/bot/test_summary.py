"""The morning summary, with time under the test's control."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.outbox_store import OutboxStore
from bot.summary import overnight_summary, summary_loop
from engine import events as ev
from engine.clock import ManualClock
from engine.errors import ConfigError
from engine.settings import Settings
from engine.store import ChainState, NewEvent, Store


class TwoDays:
    """Advances the clock by each requested wait; asks to stop after two summaries."""

    def __init__(self, clock: ManualClock, stop: asyncio.Event) -> None:
        self.clock, self.stop, self.waits = clock, stop, []

    async def sleep(self, seconds: float, wake: asyncio.Event) -> bool:
        self.waits.append(seconds)
        if len(self.waits) > 2:
            self.stop.set()
            return True
        self.clock.advance(seconds)
        return False


async def test_summary_every_morning_lists_the_night(settings: Settings) -> None:
    clock = ManualClock(datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    async with Store.open(settings.db_path, clock=clock) as store:  # the run is recorded on the test's clock
        run_id, _ = await store.begin_run("nightly", origin="schedule", chat_id=None, requested_by="schedule #1",
                                          owner="x", state=ChainState(chain="nightly"), evs=[NewEvent("run_started", {})])
        clock.advance(600)
        await store.finish_run(run_id, ChainState(chain="nightly"), status="ALL_DONE", reason="done", evs=[])
        clock.set(datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
        s = dataclasses.replace(settings, summary_at="07:30", chat_id=42, timezone="UTC")
        outbox, wake, stop = OutboxStore(store), asyncio.Event(), asyncio.Event()
        sleeper = TwoDays(clock, stop)
        await summary_loop(s, store, outbox, wake, clock, sleeper, stop)
        assert sleeper.waits[:2] == [11.5 * 3600, 24 * 3600]
        rows = await outbox.pending()
    assert len(rows) == 2 and all(r.chat_id == 42 for r in rows)
    assert "nightly #1: ALL_DONE (done), 0 links, $0.0000, 20:00–20:10, by schedule #1" in rows[0].text
    assert "Nothing ran since 2026-11-25 07:30 UTC" in rows[1].text


def test_summary_time_is_validated(home: Path) -> None:
    with pytest.raises(ConfigError, match="LLMAUTO_SUMMARY_AT: expected a time like 07:30"):
        Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_SUMMARY_AT": "7am"})
    assert Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_SUMMARY_AT": "07:30"}).summary_at == "07:30"


async def test_overnight_summary_lists_runs_outcomes_and_cost(store: Store) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert (await overnight_summary(store, since)).startswith("Nothing ran since")
    run_id, _ = await store.begin_run("nightly", origin="schedule", chat_id=None, requested_by="schedule #1",
                                      owner="me", state=ChainState(chain="nightly"), evs=[])
    await store.execute("UPDATE runs SET cost_usd = 1.25, links_run = 3 WHERE id = ?", (run_id,))
    await store.finish_run(run_id, ChainState(chain="nightly"), status="ALL_DONE", reason="an agent declared ALL_DONE",
                           evs=[NewEvent(ev.RUN_FINISHED, {"run_status": "ALL_DONE"})])
    text = await overnight_summary(store, since, tz="Europe/Berlin")
    assert "1 run since" in text
    assert f"nightly #{run_id}: ALL_DONE (an agent declared ALL_DONE), 3 links, $1.25" in text
    assert "by schedule #1" in text and "Total cost: $1.25" in text
