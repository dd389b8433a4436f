"""The distributed mode's cost (issue #15): links per second and time per link, embedded vs
distributed with 1 and 2 workers, with instant agents (`true` command links).

- per link: one chain of LINKS links run one after another; wall time / links. The distributed
  figure minus the embedded one is the latency the queue adds to each link (enqueue, a worker's
  fetch, the worker's own record, the commit, the NOTIFY that wakes serve).
- links/s: CHAINS chains of LINKS links each at once, with LLMAUTO_MAX_PARALLEL_LINKS = 8.

PostgreSQL comes from the `pgserver` wheel (as in the tests); workers are real `llmauto worker`
processes with homes of their own, 4 links each. Run: `python -m bench.distributed`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench.common import ROOT, settings_for, temp_home, write_chain
from engine.dist_settings import DistSettings
from engine.engine import Engine
from engine.queue_db import QueueDb
from engine.remote import RemoteExecutor
from engine.store import Store
from engine.worker import prepare

LINKS, CHAINS = 40, 4


def chains(home: Path) -> None:
    true = shutil.which("true") or "/bin/true"
    for name in ["solo", *(f"c{i}" for i in range(CHAINS))]:
        write_chain(home, name, {"max_rounds": LINKS // 2, "links": [
            {"name": "a", "command": [true]}, {"name": "b", "command": [true]}]})


async def timed(engine: Engine, names: list[str]) -> float:
    t0 = time.perf_counter()
    for name in names:
        await engine.start_chain(name, origin="bench")
    for name in names:
        await engine.wait(name)
    return time.perf_counter() - t0


async def run_case(url: str | None, workers: int) -> dict[str, float]:
    home = temp_home()
    chains(home)
    settings = settings_for(home)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with AsyncExitStack() as stack:
            execute = None
            if url is not None:
                async with QueueDb.open(url, max_size=1) as db:
                    await prepare(db)
                for w in range(workers):
                    procs.append(start_worker(url, f"w{w}"))
                await wait_workers(url, workers)
                dist = DistSettings(queue_url=url, max_parallel_links=8)
                execute = await stack.enter_async_context(RemoteExecutor.open(dist))
            store = await stack.enter_async_context(Store.open(settings.db_path))
            engine = await stack.enter_async_context(Engine(settings, store, execute=execute))
            one = await timed(engine, ["solo"])
            many = await timed(engine, [f"c{i}" for i in range(CHAINS)])
        return {"per_link_ms": one / LINKS * 1000, "links_per_s": CHAINS * LINKS / many}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def start_worker(url: str, name: str) -> subprocess.Popen[bytes]:
    home = temp_home()
    chains(home)
    env = {**os.environ, "LLMAUTO_QUEUE_URL": url, "LLMAUTO_MAX_PARALLEL_LINKS": "8", "LLMAUTO_ENV_FILE": "none",
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "llmauto", "--home", str(home), "worker", "--name", name,
                             "--max-links", "4"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_workers(url: str, n: int) -> None:
    async with QueueDb.open(url, max_size=1) as db:
        while len([w for w in await db.workers() if not w.stopped]) < n:
            await asyncio.sleep(0.1)


async def measure() -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # type: ignore[import-untyped]

        folder = tempfile.mkdtemp(prefix="llmauto-bench-pg-")
        server = pgserver.get_server(folder, cleanup_mode="stop")
    results: dict[str, Any] = {"embedded": await run_case(None, 0)}
    try:
        for n in (1, 2):
            name = f"bench{n}"
            server.psql(f"CREATE DATABASE {name};")
            base = server.get_uri()
            url = base.replace("/postgres?", f"/{name}?") if "/postgres?" in base else base
            results[f"distributed, {n} worker{'s' if n > 1 else ''}"] = await run_case(url, n)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    return results


if __name__ == "__main__":
    out = asyncio.run(measure())
    base = out["embedded"]["per_link_ms"]
    print(f"{'mode':<24} {'per link (ms)':>14} {'added (ms)':>11} {'links/s':>9}")
    for mode, r in out.items():
        print(f"{mode:<24} {r['per_link_ms']:>14.1f} {r['per_link_ms'] - base:>11.1f} {r['links_per_s']:>9.1f}")
