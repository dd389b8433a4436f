"""`llmauto chain start NAME --bg`: run the chain in a detached process that outlives the terminal.

The child is `python -m engine chain start NAME` in a new session, its output appended to
`state/<chain>/run.log`. The parent returns once the child holds the chain's lease (the run is
really under way) or reports the child's own error if it exits first.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from engine.errors import LlmautoError
from engine.settings import Settings
from engine.store import Store

STARTUP_TIMEOUT_S = 30.0


def _spawn(settings: Settings, name: str, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "--home", str(settings.home), "chain", "start", name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(settings.home), env=dict(os.environ),
        )


async def start_detached(settings: Settings, name: str) -> int:
    from engine.chains import load_chain

    load_chain(settings.home, name, settings=settings)  # a bad name or definition fails here, with exit code 2
    log_path = settings.state_dir / name / "run.log"
    child = _spawn(settings, name, log_path)
    async with Store.open_settings(settings) as store:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT_S
        while loop.time() < deadline:
            lease = await store.lease(name)
            if lease is not None and lease.pid == child.pid:
                print(f"{name}: running in the background (pid {child.pid}); log: {log_path}")
                return 0
            code = child.poll()
            if code is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
                raise LlmautoError(f"{name} did not start (exit {code}): " + " / ".join(tail))
            await asyncio.sleep(0.05)
    raise LlmautoError(f"{name}: the background process (pid {child.pid}) did not start within {STARTUP_TIMEOUT_S:g} s")
