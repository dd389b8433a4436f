"""Store growth: the database size and the time of a chain's status view after 100,000 recorded
link runs (with their events and handoff versions), against an empty store."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from typing import Any

from bench.common import settings_for, summary_ms, temp_home, write_chain
from engine.engine import Engine
from engine.store import Store


def _fill(db: str, link_runs: int, chains: int = 20) -> None:
    conn = sqlite3.connect(db)
    now = "2026-11-24T00:00:00.000+00:00"
    with conn:
        for c in range(chains):
            conn.execute("INSERT OR REPLACE INTO chain_state (chain, status, updated_at) VALUES (?, 'COMPLETED', ?)", (f"c{c}", now))
            conn.execute("INSERT INTO runs (chain, status, origin, started_at, ended_at) VALUES (?, 'COMPLETED', 'bench', ?, ?)",
                         (f"c{c}", now, now))
        conn.executemany(
            "INSERT INTO link_runs (run_id, chain, round, link_index, link, role, model, status, error_class, started_at, "
            "ended_at, duration_s, cost_usd) VALUES (?, ?, ?, 0, 'a', 'worker', 'm', 'done', 'ok', ?, ?, 1.0, 0.01)",
            ((i % chains + 1, f"c{i % chains}", i // chains + 1, now, now) for i in range(link_runs)))
        conn.executemany(
            "INSERT INTO events (run_id, chain, kind, ts, data) VALUES (?, ?, ?, ?, ?)",
            ((i % chains + 1, f"c{i % chains}", kind, now, json.dumps({"link": "a", "round": i}))
             for i in range(link_runs) for kind in ("link_started", "link_finished")))
        conn.executemany(
            "INSERT INTO handoffs (chain, run_id, round, link, ts, content) VALUES (?, ?, ?, 'a', ?, ?)",
            ((f"c{i % chains}", i % chains + 1, i, now, "# handoff\n" + "work line\n" * 40) for i in range(link_runs)))
    conn.close()


async def _status_times(settings: Any, samples: int) -> dict[str, float]:
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        spans = []
        for _ in range(samples):
            started = time.perf_counter()
            await engine.view("c0")
            await engine.views()
            spans.append(time.perf_counter() - started)
    return summary_ms(spans)


async def measure(link_runs: int = 100_000, samples: int = 50) -> dict[str, Any]:
    home = temp_home()
    for c in range(20):
        write_chain(home, f"c{c}", {"max_rounds": 1, "links": [{"name": "a", "command": ["true"]}]})
    settings = settings_for(home)
    async with Store.open(settings.db_path):
        pass
    empty = await _status_times(settings, samples)
    _fill(str(settings.db_path), link_runs)
    full = await _status_times(settings, samples)
    size_mb = settings.db_path.stat().st_size / 1e6
    shutil.rmtree(home, ignore_errors=True)
    return {"empty": empty, "full": full, "db_mb": size_mb, "link_runs": link_runs}


if __name__ == "__main__":
    print(asyncio.run(measure()))
