"""Throughput and scale: 50 chains at once, 3 command links each (agents sleeping 0.1-2 s), on this
machine. Links per second, the engine's own CPU time and peak RSS (agents excluded: they are child
processes), and whether every event that should exist was stored."""

from __future__ import annotations

import asyncio
import random
import resource
import shutil
import time
from typing import Any

from bench.common import settings_for, temp_home, write_chain
from engine import events as ev
from engine.engine import Engine
from engine.store import Store


async def measure(chains: int = 50, links: int = 3, rounds: int = 2, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    home = temp_home()
    sleep = shutil.which("sleep") or "/bin/sleep"
    for i in range(chains):
        write_chain(home, f"c{i:02d}", {
            "max_rounds": rounds,
            "links": [{"name": f"l{j}", "command": [sleep, f"{rng.uniform(0.1, 2.0):.2f}"]} for j in range(links)],
        })
    settings = settings_for(home, max_parallel_links=64)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        queue = engine.bus.subscribe()
        for i in range(chains):
            await engine.start_chain(f"c{i:02d}", origin="bench")
        outcomes = await asyncio.gather(*(engine.wait(f"c{i:02d}") for i in range(chains)))
        wall = time.perf_counter() - started
        stored = await store.events_after(0, 1_000_000)
        published = 0
        while not queue.empty():
            if queue.get_nowait().kind != ev.PROGRESS:
                published += 1
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    total_links = chains * links * rounds
    finished = [e for e in stored if e.kind == ev.LINK_FINISHED]
    shutil.rmtree(home, ignore_errors=True)
    return {
        "chains": chains, "links": total_links, "wall_s": wall, "links_per_s": total_links / wall,
        "engine_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "peak_rss_mb": cpu1.ru_maxrss / 1024,
        "all_completed": all(o.status == "COMPLETED" for o in outcomes),
        "events_ok": len(finished) == total_links and published == len(stored),
    }


if __name__ == "__main__":
    print(asyncio.run(measure()))
