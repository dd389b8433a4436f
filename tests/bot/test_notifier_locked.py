"""The notifier meets a database another process holds locked (issue #16: Notifier.run's retry
path): it says so in the log, waits, tries again, and the event's message reaches the outbox once
the lock is gone; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest

from bot.notify import Notifier
from bot.outbox_store import OutboxStore
from engine import events as ev
from engine.events import EventBus
from engine.settings import Settings
from engine.store import NewEvent, Store
from tests.bot.conftest import CHAT
from tests.faults.serve_rig import until


async def test_the_notifier_retries_while_the_database_is_locked(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Checked: with Notifier.run's `except Exception` retry branch removed (the error escapes),
    this fails: the notifier task dies and the note never reaches the outbox."""
    reporting = dataclasses.replace(settings, chat_id=CHAT)
    async with Store.open(settings.db_path, busy_timeout_ms=50) as store:
        outbox = OutboxStore(store)
        notifier = Notifier(reporting, store, EventBus(), outbox, asyncio.Event())
        task = asyncio.create_task(notifier.run())
        try:
            await asyncio.wait_for(notifier.caught_up.wait(), 10)
            await store.add_events("alpha", None, [NewEvent(ev.WARNING, {"message": "disk almost full"})])
            blocker = sqlite3.connect(settings.db_path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                await until("the notifier to meet the lock",
                            lambda: any("notifier: cannot read events" in r.getMessage() for r in caplog.records))
                assert not task.done()
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

            async def queued() -> list[str]:
                return [r.text for r in await outbox.pending()]

            texts = await until("the note to reach the outbox", queued)
            assert texts == ["⚠️ <b>alpha</b>: disk almost full"]
        finally:
            notifier.halt.set()
            await asyncio.wait_for(task, 10)
