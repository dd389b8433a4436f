"""Cold start: wall time of `llmauto --help` and `llmauto chain status` as fresh processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, summary_ms, temp_home, write_chain


def _time(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    spans = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        spans.append(time.perf_counter() - started)
    return summary_ms(spans)


def measure(runs: int = 20) -> dict[str, Any]:
    home = temp_home()
    for i in range(5):
        write_chain(home, f"c{i}", {"links": [{"name": "a", "command": ["true"]}]})
    env = {**os.environ, "LLMAUTO_HOME": str(home), "PYTHONPATH": str(ROOT)}
    exe = [sys.executable, "-m", "engine"]
    subprocess.run([*exe, "chain", "list"], env=env, stdout=subprocess.DEVNULL, check=True)  # create the db
    out = {"help": _time([*exe, "--help"], env, runs), "status": _time([*exe, "chain", "status"], env, runs),
           "python": _time([sys.executable, "-c", "pass"], env, runs)}
    shutil.rmtree(home, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(measure())
