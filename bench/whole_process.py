"""Whole-process cost, as a user pays it (#14): wall time and peak memory of `llmauto chain start`
of a 6-link and a 12-link chain with an instant agent (a shell script that prints claude's result
line at once), so the difference is the cost of each extra link; and `chain reset` and `chain
status` as fresh processes. Median of RUNS runs, with the spread (min-max), and the machine's noise
(the spread of a bare `python -c pass`).

    python -m bench.whole_process [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, temp_home, write_chain

INSTANT_CLAUDE = """#!/bin/sh
cat > /dev/null
printf '%s\\n' '{"type":"system","subtype":"init","session_id":"s","model":"m"}'
printf '%s\\n' '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s","total_cost_usd":0,"num_turns":1,"usage":{"input_tokens":1,"output_tokens":1}}'
"""


def _spans(argv: list[str], env: dict[str, str], runs: int, before: list[str] | None = None) -> dict[str, float]:
    walls: list[float] = []
    rss: list[float] = []
    for _ in range(runs):
        if before:
            subprocess.run(before, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - started)
        rss.append(usage.ru_maxrss / 1024)
        assert os.waitstatus_to_exitcode(status) == 0, argv
    return {"median_ms": statistics.median(walls) * 1000, "min_ms": min(walls) * 1000, "max_ms": max(walls) * 1000,
            "rss_mb": statistics.median(rss)}


def measure(runs: int = 7) -> dict[str, Any]:
    home = temp_home()
    claude = Path(home) / "instant-claude"
    claude.write_text(INSTANT_CLAUDE)
    claude.chmod(0o755)
    for n in (6, 12):
        write_chain(home, f"links{n}", {"mode": "once", "links": [
            {"name": f"l{i}", "model": "m", "prompt": "go"} for i in range(n)]})
    env = {**os.environ, "LLMAUTO_HOME": str(home), "PYTHONPATH": str(ROOT), "CLAUDE_BIN": str(claude)}
    for key in [k for k in env if k.startswith("TELEGRAM_")]:
        del env[key]
    exe = [sys.executable, "-m", "engine"]
    subprocess.run([*exe, "chain", "list"], env=env, stdout=subprocess.DEVNULL, check=True)  # create the db
    out = {
        "start6": _spans([*exe, "chain", "start", "links6"], env, runs, before=[*exe, "chain", "reset", "links6"]),
        "start12": _spans([*exe, "chain", "start", "links12"], env, runs, before=[*exe, "chain", "reset", "links12"]),
        "reset": _spans([*exe, "chain", "reset", "links6"], env, runs),
        "status": _spans([*exe, "chain", "status", "links6"], env, runs),
        "python": _spans([sys.executable, "-c", "pass"], env, runs),
    }
    out["per_link_ms"] = (out["start12"]["median_ms"] - out["start6"]["median_ms"]) / 6
    shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    r = measure(runs)
    print(f"| measure ({runs} runs) | median | spread | peak RSS | target |")
    print("|---|---|---|---|---|")
    for key, label, target in (("start6", "`chain start`, 6 links", "< 350 ms"), ("start12", "`chain start`, 12 links", ""),
                               ("reset", "`chain reset`", "< 150 ms"), ("status", "`chain status NAME`", "< 150 ms"),
                               ("python", "bare `python -c pass` (noise floor)", "")):
        m = r[key]
        print(f"| {label} | {m['median_ms']:.0f} ms | {m['min_ms']:.0f}-{m['max_ms']:.0f} ms | {m['rss_mb']:.0f} MB | {target} |")
    print(f"| each extra link | {r['per_link_ms']:.1f} ms | | | < 5 ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
