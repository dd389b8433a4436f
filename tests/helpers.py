"""Helpers for tests that run `llmauto` as real processes against one home."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.store import Store
from tests.conftest import FAKE_CLAUDE, ROOT
from tests.fakes.claude_env import write_scenario


class Cli:
    """Runs `python -m engine` against one home, with the fake claude and a scenario."""

    def __init__(self, home: Path, tmp: Path) -> None:
        self.home = home
        self.scenario = tmp / "scenario.json"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "LLMAUTO_", "FAKE_"))},
            "LLMAUTO_HOME": str(home), "CLAUDE_BIN": str(FAKE_CLAUDE), "LLMAUTO_TIMEZONE": "UTC",
            "CLAUDE_CONFIG_DIR": str(tmp / "claude-config"), "FAKE_CLAUDE_SCENARIO": str(self.scenario),
            "FAKE_CLAUDE_PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
        }
        self.procs: list[subprocess.Popen[str]] = []

    def scenario_is(self, doc: dict[str, Any]) -> None:
        write_scenario(self.scenario, doc)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args], env=self.env, cwd=self.home,
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "engine", *args], env=self.env, cwd=self.home,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


async def wait_for_lease(home: Path, chain: str, pid: int | None = None, timeout: float = 30) -> None:
    """Until the chain's lease is held (by `pid`, if given): the run is really under way."""
    async with Store.open(home / "state" / "llmauto.db") as store:
        async def held() -> None:
            while True:
                lease = await store.lease(chain)
                if lease is not None and (pid is None or lease.pid == pid) and await store.running_links(chain):
                    return
                await asyncio.sleep(0.02)
        await asyncio.wait_for(held(), timeout)


def gone(pid: int) -> bool:
    """Dead or a zombie (a container's init may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
