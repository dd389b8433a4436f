"""Whole-process cost, as a user pays it (#14): wall time, CPU time and peak memory of `llmauto
chain start` of a 6-link and a 12-link chain with an instant agent (a shell script that prints
claude's result line at once), so the difference is the cost of each extra link; and `chain reset`
and `chain status` as fresh processes. Each command runs RUNS times (at least 5); the table gives
the median, the spread (min-max and the interquartile range), the median CPU time (user + system,
which other processes on the machine disturb less than the wall time), and the machine's noise:
the spread of a bare `python -c pass` and the load average before and after.

Bytecode: an installed llmauto has its modules compiled (pip writes the .pyc files), so the children
keep theirs in a temporary PYTHONPYCACHEPREFIX, written by a warm-up run of each command, whatever
PYTHONDONTWRITEBYTECODE says in this environment. One more row shows `chain status` compiling every
module from source (PYTHONDONTWRITEBYTECODE=1 and no cache), what a checkout run that way pays.

    python -m bench.whole_process [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, temp_home, write_chain

INSTANT_CLAUDE = """#!/bin/sh
cat > /dev/null
printf '%s\\n' '{"type":"system","subtype":"init","session_id":"s","model":"m"}'
printf '%s\\n' '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s","total_cost_usd":0,"num_turns":1,"usage":{"input_tokens":1,"output_tokens":1}}'
"""

MIN_RUNS = 5


def _spans(argv: list[str], env: dict[str, str], runs: int, before: list[str] | None = None) -> dict[str, float]:
    walls: list[float] = []
    cpus: list[float] = []
    rss: list[float] = []
    for _ in range(runs):
        if before:
            subprocess.run(before, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
        rss.append(usage.ru_maxrss / 1024)
        assert os.waitstatus_to_exitcode(status) == 0, argv
    q1, _, q3 = statistics.quantiles(walls, n=4)
    return {"median_ms": statistics.median(walls), "min_ms": min(walls), "max_ms": max(walls),
            "q1_ms": q1, "q3_ms": q3, "cpu_ms": statistics.median(cpus), "rss_mb": statistics.median(rss)}


def measure(runs: int = 7) -> dict[str, Any]:
    runs = max(runs, MIN_RUNS)
    home = temp_home()
    pycache = Path(tempfile.mkdtemp(prefix="llmauto-bench-pyc-"))
    claude = Path(home) / "instant-claude"
    claude.write_text(INSTANT_CLAUDE)
    claude.chmod(0o755)
    for n in (6, 12):
        write_chain(home, f"links{n}", {"mode": "once", "links": [
            {"name": f"l{i}", "model": "m", "prompt": "go"} for i in range(n)]})
    env = {**os.environ, "LLMAUTO_HOME": str(home), "PYTHONPATH": str(ROOT), "CLAUDE_BIN": str(claude),
           "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in [k for k in env if k.startswith("TELEGRAM_")]:
        del env[key]
    compiling = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(pycache / "none")}
    exe = [sys.executable, "-m", "engine"]
    reset6, reset12 = [*exe, "chain", "reset", "links6"], [*exe, "chain", "reset", "links12"]
    for warm in ([*exe, "chain", "list"], [*exe, "chain", "start", "links6"], reset6, [*exe, "chain", "status", "links6"]):
        subprocess.run(warm, env=env, stdout=subprocess.DEVNULL, check=True)  # the db, and the .pyc files
    load_before = os.getloadavg()
    out: dict[str, Any] = {
        "start6": _spans([*exe, "chain", "start", "links6"], env, runs, before=reset6),
        "start12": _spans([*exe, "chain", "start", "links12"], env, runs, before=reset12),
        "reset": _spans(reset6, env, runs),
        "status": _spans([*exe, "chain", "status", "links6"], env, runs),
        "status_compiling": _spans([*exe, "chain", "status", "links6"], compiling, runs),
        "python": _spans([sys.executable, "-c", "pass"], env, runs),
    }
    out["load"] = (load_before, os.getloadavg())
    out["per_link_ms"] = (out["start12"]["median_ms"] - out["start6"]["median_ms"]) / 6
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(pycache, ignore_errors=True)
    return out


ROWS = (("start6", "`chain start`, 6 links", "< 350 ms"), ("start12", "`chain start`, 12 links", ""),
        ("reset", "`chain reset`", "< 150 ms"), ("status", "`chain status NAME`", "< 150 ms"),
        ("status_compiling", "`chain status NAME`, no .pyc (compiles every module)", ""),
        ("python", "bare `python -c pass` (noise floor)", ""))


def main() -> int:
    runs = max(int(sys.argv[1]) if len(sys.argv) > 1 else 7, MIN_RUNS)
    r = measure(runs)
    (b1, b5, b15), (a1, a5, a15) = r["load"]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; load average (1/5/15 min) before "
          f"{b1:.2f}/{b5:.2f}/{b15:.2f}, after {a1:.2f}/{a5:.2f}/{a15:.2f}\n")
    print(f"| measure ({runs} runs each) | median | min-max | IQR | CPU (median) | peak RSS | target |")
    print("|---|---|---|---|---|---|---|")
    for key, label, target in ROWS:
        m = r[key]
        print(f"| {label} | {m['median_ms']:.0f} ms | {m['min_ms']:.0f}-{m['max_ms']:.0f} ms "
              f"| {m['q1_ms']:.0f}-{m['q3_ms']:.0f} ms | {m['cpu_ms']:.0f} ms | {m['rss_mb']:.0f} MB | {target} |")
    print(f"| each extra link | {r['per_link_ms']:.1f} ms | | | | | < 5 ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
