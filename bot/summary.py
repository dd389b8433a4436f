"""The morning summary: at LLMAUTO_SUMMARY_AT (e.g. 07:30, in LLMAUTO_TIMEZONE) the chat gets what
ran since the previous summary (outcome, links, cost), so overnight results are waiting in the
morning. Time comes from an injectable clock and sleeper."""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.outbox_store import NewMessage, OutboxStore
from engine.clock import Clock, Sleeper
from engine.cron import next_fire_times, parse_schedule
from engine.settings import Settings
from engine.states import RunStatus
from engine.store import Store, utc_iso
from engine.viewmodel import money


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


async def overnight_summary(store: Store, since: datetime, *, tz: str | None = None) -> str:
    """Plain text: the runs that started or ended since `since`, their outcome and cost."""
    since_iso = utc_iso(since)
    runs = [r for r in await store.last_runs(None, 500)
            if r.started_at >= since_iso or (r.ended_at is not None and r.ended_at >= since_iso)]
    zone = ZoneInfo(tz) if tz else UTC
    head = f"since {since.astimezone(zone):%Y-%m-%d %H:%M} {tz or 'UTC'}"
    if not runs:
        return f"Nothing ran {head}."
    lines = [f"{len(runs)} run{'s' if len(runs) != 1 else ''} {head}:"]
    for run in reversed(runs):
        start = _parse_iso(run.started_at).astimezone(zone)
        span = f"{start:%H:%M}"
        if run.ended_at:
            span += f"–{_parse_iso(run.ended_at).astimezone(zone):%H:%M}"
        status = run.status.lower() if run.status == RunStatus.RUNNING else run.status
        reason = f" ({run.stop_reason})" if run.stop_reason and run.status != RunStatus.RUNNING else ""
        who = f", by {run.requested_by}" if run.requested_by else ""
        lines.append(f"- {run.chain} #{run.id}: {status}{reason}, {run.links_run} links, "
                     f"{money(run.cost_usd)}, {span}{who}")
    lines.append(f"Total cost: {money(sum(r.cost_usd for r in runs))}")
    return "\n".join(lines)


def _parse_iso(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
