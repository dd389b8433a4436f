"""The morning summary: at LLMAUTO_SUMMARY_AT (e.g. 07:30, in LLMAUTO_TIMEZONE) the chat gets what
ran since the previous summary (outcome, links, cost), so overnight results are waiting in the
morning. Time comes from an injectable clock and sleeper."""

from __future__ import annotations

import asyncio
import html
from datetime import datetime, timedelta

from engine.clock import Clock, Sleeper
from engine.cron import next_fire_times, parse_schedule
from engine.outbox_store import NewMessage, OutboxStore
from engine.schedules import overnight_summary
from engine.settings import Settings
from engine.store import Store


async def summary_loop(settings: Settings, store: Store, outbox: OutboxStore, wake: asyncio.Event,
                       clock: Clock, sleeper: Sleeper, stop: asyncio.Event) -> None:
    if not settings.summary_at or settings.chat_id is None:
        return
    spec = parse_schedule(f"daily {settings.summary_at}", default_tz=settings.timezone)
    since = clock.now() - timedelta(days=1)
    while not stop.is_set():
        due = next_fire_times(spec, clock.now(), 1)[0]
        if await sleeper.sleep((due - clock.now()).total_seconds(), stop):
            return
        await send_summary(settings, store, outbox, wake, since=since, tz=spec.tz)
        since = due


async def send_summary(settings: Settings, store: Store, outbox: OutboxStore, wake: asyncio.Event, *,
                       since: datetime, tz: str) -> None:
    assert settings.chat_id is not None
    text = await overnight_summary(store, since, tz=tz)
    await outbox.enqueue_now([NewMessage(chat_id=settings.chat_id, kind="note",
                                         text=f"🌅 <b>Summary</b>\n{html.escape(text)}")])
    wake.set()
