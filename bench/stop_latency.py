"""Stop latency: a graceful stop acknowledged (the request recorded and the run told), and
`stop --now` until the agent's whole process group is gone (a hanging fake claude with a child)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from typing import Any

from bench.common import ROOT, settings_for, summary_ms, temp_home, write_chain
from engine import events as ev
from engine.engine import Engine
from engine.processes import live_group_members
from engine.store import Store


async def measure(samples: int = 10) -> dict[str, Any]:
    home = temp_home()
    scenario = home / "scenario.json"
    scenario.write_text('{"default": {"hang": true, "spawn_child": true}}')
    write_chain(home, "hang", {"links": [{"name": "w", "model": "claude-sonnet-4-6", "prompt": "p"}]})
    settings = settings_for(home, environ={"FAKE_CLAUDE_SCENARIO": str(scenario), "FAKE_CLAUDE_PYTHON": sys.executable,
                                           "CLAUDE_CONFIG_DIR": str(home / "cfg"), "PYTHONPATH": str(ROOT)})
    graceful, now = [], []
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        queue = engine.bus.subscribe()
        for i in range(samples):
            await engine.start_chain("hang", origin="bench")
            pid = None
            while pid is None:
                event = await queue.get()
                if event.kind == ev.LINK_STARTED:
                    while not (rows := await store.running_links("hang")) or rows[-1].pid is None:
                        await asyncio.sleep(0.005)
                    pid = rows[-1].pid
            started = time.perf_counter()
            await engine.stop_chain("hang", "bench", now=False)
            graceful.append(time.perf_counter() - started)
            started = time.perf_counter()
            await engine.stop_chain("hang", "bench", now=True)
            await engine.wait("hang")
            while live_group_members(pid):
                await asyncio.sleep(0.001)
            now.append(time.perf_counter() - started)
    shutil.rmtree(home, ignore_errors=True)
    return {"graceful_ack": summary_ms(graceful), "now_until_gone": summary_ms(now)}


if __name__ == "__main__":
    print(asyncio.run(measure()))
