"""Schedule drift: how late scheduled runs start, measured while 50 chains keep the engine busy.
Ten schedules get one-shot APScheduler triggers spread over a few seconds; drift is the time from
the slot to the SCHEDULE_FIRED event (the chain already started)."""

from __future__ import annotations

import asyncio
import random
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.date import DateTrigger

from bench.common import settings_for, summary_ms, temp_home, write_chain
from engine import events as ev
from engine.engine import Engine
from engine.schedule_book import ScheduleBook
from engine.store import Store
from engine.timer import Scheduler


async def measure(busy: int = 50, scheduled: int = 10, seed: int = 5) -> dict[str, Any]:
    rng = random.Random(seed)
    home = temp_home()
    sleep = shutil.which("sleep") or "/bin/sleep"
    for i in range(busy):
        write_chain(home, f"busy{i:02d}", {"max_rounds": 2, "links": [
            {"name": f"l{j}", "command": [sleep, f"{rng.uniform(0.1, 1.0):.2f}"]} for j in range(3)]})
    for i in range(scheduled):
        write_chain(home, f"s{i:02d}", {"max_rounds": 1, "links": [{"name": "a", "command": ["true"]}]})
    settings = settings_for(home, max_parallel_links=64)
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine, Scheduler(settings, engine) as scheduler:
        book = ScheduleBook(store, settings)
        queue = engine.bus.subscribe()
        ids = [(await book.add_cron(f"s{i:02d}", "daily 02:00"))[0].id for i in range(scheduled)]
        for i in range(busy):
            await engine.start_chain(f"busy{i:02d}", origin="bench")
        start = datetime.now(UTC) + timedelta(seconds=1)
        for n, schedule_id in enumerate(ids):
            scheduler._register(schedule_id, DateTrigger(start + timedelta(seconds=0.4 * n)), job_id=f"bench-{schedule_id}")
        drifts: list[float] = []
        while len(drifts) < scheduled:
            event = await asyncio.wait_for(queue.get(), 60)
            if event.kind == ev.SCHEDULE_FIRED:
                fired = datetime.fromisoformat(event.ts)
                drifts.append((fired - datetime.fromisoformat(str(event.data["scheduled_for"]))).total_seconds())
        await asyncio.gather(*(engine.wait(f"busy{i:02d}") for i in range(busy)))
    shutil.rmtree(home, ignore_errors=True)
    return {"drift": summary_ms(drifts)}


if __name__ == "__main__":
    print(asyncio.run(measure()))
