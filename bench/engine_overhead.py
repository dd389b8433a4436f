"""Engine overhead per link: from one link's process exit to the next link's process start, plus
the bookkeeping after the last link, with a no-op agent (`true`). Median and p99 over 500 links.

The runner is the real SubprocessRunner, wrapped to timestamp the moment it is asked to spawn and
the moment it returns: what lies between one return and the next spawn is the engine's own work
(stop checks, reading the handoff, the SQLite commit of the link, prompt rendering, events).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

from bench.common import settings_for, summary_ms, temp_home, write_chain
from engine.engine import Engine
from engine.runner import Invocation, SubprocessRunner
from engine.store import Store
from engine.stream import LinkResult


class TimedRunner:
    def __init__(self) -> None:
        self.inner = SubprocessRunner()
        self.spans: list[tuple[float, float]] = []

    async def run(self, inv: Invocation, **kw: Any) -> LinkResult:
        started = time.perf_counter()
        result = await self.inner.run(inv, **kw)
        self.spans.append((started, time.perf_counter()))
        return result


async def measure(links: int = 500, per_round: int = 5) -> dict[str, Any]:
    home = temp_home()
    true = shutil.which("true") or "/bin/true"
    write_chain(home, "noop", {
        "max_rounds": links // per_round,
        "links": [{"name": f"l{i}", "command": [true]} for i in range(per_round)],
    })
    settings = settings_for(home)
    runner = TimedRunner()
    async with Store.open(settings.db_path) as store, Engine(settings, store, runner=runner) as engine:
        await engine.start_chain("noop", origin="bench")
        await engine.wait("noop")
        finished = time.perf_counter()
    gaps = [runner.spans[i + 1][0] - runner.spans[i][1] for i in range(len(runner.spans) - 1)]
    gaps.append(finished - runner.spans[-1][1])
    spawn = [end - start for start, end in runner.spans]
    shutil.rmtree(home, ignore_errors=True)
    return {"overhead": summary_ms(gaps), "agent": summary_ms(spawn), "links": len(runner.spans)}


if __name__ == "__main__":
    print(asyncio.run(measure()))
