"""Whole-process cost, as a user pays it (#14): wall time, CPU time and peak memory of `llmauto
chain start` of a 6-, 12-, 30- and 60-link chain with an instant agent (a shell script that prints
claude's result line at once), and `chain reset` and `chain status` as fresh processes. Each
command runs RUNS times (at least 5); the table gives the median, the spread (min-max and the
interquartile range), the median CPU time (user + system, the agents' included, which other
processes on the machine disturb less than the wall time), and the machine's noise: the spread of a
bare `python -c pass` and the load average before and after.

Each extra link: the four starts run one after the other in each of the RUNS rounds, and each
round gives a slope (least squares over its 6/12/30/60-link wall times, and over their CPU times):
the row shows the median slope with its min-max and interquartile range over the rounds. A slope
over 54 extra links of one round, where the starts share that moment's load, is far steadier than
the difference of two medians over 6 links (which swung from -6.5 ms to +17.9 ms under load): a
whole process's time varies by some 50 ms from run to run on a shared machine, about 1 ms a link
over 54 links.

Bytecode: an installed llmauto has its modules compiled (pip writes the .pyc files), so the children
keep theirs in a temporary PYTHONPYCACHEPREFIX, written by a warm-up run of each command, whatever
PYTHONDONTWRITEBYTECODE says in this environment. One more row shows `chain status` compiling every
module from source (PYTHONDONTWRITEBYTECODE=1 and no cache), what a checkout run that way pays.

Every round runs each measure once, in turn, so that all of them share each moment's load; with
`--instructions` (and valgrind installed) the table is followed by the instructions each command's
process runs, counted by callgrind, which the load does not move.

    python -m bench.whole_process [RUNS] [--instructions]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
SIZES = (6, 12, 30, 60)  # links of the chains whose starts give the cost of each extra link


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall ms, CPU ms of the process and the children it waited for, peak RSS MB) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return wall, (usage.ru_utime + usage.ru_stime) * 1000, usage.ru_maxrss / 1024


def _summary(walls: list[float], cpus: list[float], rss: list[float] | None = None) -> dict[str, float]:
    q1, _, q3 = statistics.quantiles(walls, n=4)
    return {"median_ms": statistics.median(walls), "min_ms": min(walls), "max_ms": max(walls),
            "q1_ms": q1, "q3_ms": q3, "cpu_ms": statistics.median(cpus),
            "rss_mb": statistics.median(rss) if rss else float("nan")}


def _spans(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    samples = [_once(argv, env) for _ in range(runs)]
    return _summary(*(list(column) for column in zip(*samples, strict=True)))


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def _rounds(exe: list[str], env: dict[str, str], singles: dict[str, tuple[list[str], dict[str, str]]],
            runs: int) -> dict[str, Any]:
    """RUNS rounds; each runs `chain start` of each size (after an untimed `chain reset`) and then
    each of `singles` once, so that every measure shares each moment's load (on a shared machine
    the load moves within seconds). Per measure the usual summary, and the per-round slopes (ms per
    extra link) of wall and CPU time."""
    per_size: dict[int, list[tuple[float, float, float]]] = {n: [] for n in SIZES}
    per_single: dict[str, list[tuple[float, float, float]]] = {k: [] for k in singles}
    for _ in range(runs):
        for n in SIZES:
            subprocess.run([*exe, "chain", "reset", f"links{n}"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            per_size[n].append(_once([*exe, "chain", "start", f"links{n}"], env))
        for key, (argv, single_env) in singles.items():
            per_single[key].append(_once(argv, single_env))
    out: dict[str, Any] = {f"start{n}": _summary(*(list(c) for c in zip(*per_size[n], strict=True))) for n in SIZES}
    out.update({k: _summary(*(list(c) for c in zip(*v, strict=True))) for k, v in per_single.items()})
    walls = [slope(SIZES, [per_size[n][r][0] for n in SIZES]) for r in range(runs)]
    cpus = [slope(SIZES, [per_size[n][r][1] for n in SIZES]) for r in range(runs)]
    out["per_link"] = _summary(walls, cpus)
    return out


def _agent_alone(claude: Path, runs: int) -> dict[str, float]:
    """The instant agent by itself, started from here as a link starts it (its prompt on stdin,
    its output read to the end): what each extra link costs whatever runs it. 10 starts a round."""
    walls: list[float] = []
    cpus: list[float] = []
    prompt = b'{"type":"user","message":{"role":"user","content":"go"}}\n'
    for _ in range(runs * 10):
        started = time.perf_counter()
        proc = subprocess.Popen([str(claude)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(prompt)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
        assert os.waitstatus_to_exitcode(status) == 0
    return _summary(walls, cpus)


def _instructions(argv: list[str], env: dict[str, str], before: list[str] | None = None) -> float:
    """Millions of instructions the process runs (callgrind; its children not counted): a figure
    the machine's load does not move."""
    if before:
        subprocess.run(before, env=env, stdout=subprocess.DEVNULL, check=True)
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    counted = [line for line in done.stderr.splitlines() if "Collected :" in line]
    return int(counted[-1].split(":")[-1]) / 1e6


def measure(runs: int = 7, *, instructions: bool = False) -> dict[str, Any]:
    runs = max(runs, MIN_RUNS)
    home = temp_home()
    pycache = Path(tempfile.mkdtemp(prefix="llmauto-bench-pyc-"))
    claude = Path(home) / "instant-claude"
    claude.write_text(INSTANT_CLAUDE)
    claude.chmod(0o755)
    for n in SIZES:
        write_chain(home, f"links{n}", {"mode": "once", "links": [
            {"name": f"l{i}", "model": "m", "prompt": "go"} for i in range(n)]})
    env = {**os.environ, "LLMAUTO_HOME": str(home), "PYTHONPATH": str(ROOT), "CLAUDE_BIN": str(claude),
           "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in [k for k in env if k.startswith("TELEGRAM_")]:
        del env[key]
    compiling = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(pycache / "none")}
    exe = [sys.executable, "-m", "engine"]
    reset6 = [*exe, "chain", "reset", "links6"]
    for warm in ([*exe, "chain", "list"], [*exe, "chain", "start", "links6"], reset6, [*exe, "chain", "status", "links6"]):
        subprocess.run(warm, env=env, stdout=subprocess.DEVNULL, check=True)  # the db, and the .pyc files
    load_before = os.getloadavg()
    out: dict[str, Any] = {
        **_rounds(exe, env, {
            "reset": (reset6, env),
            "status": ([*exe, "chain", "status", "links6"], env),
            "status_compiling": ([*exe, "chain", "status", "links6"], compiling),
            "python": ([sys.executable, "-c", "pass"], env),
        }, runs),
        "agent": _agent_alone(claude, runs),
    }
    if instructions:
        out["instructions"] = {
            "status": _instructions([*exe, "chain", "status", "links6"], env),
            "reset": _instructions(reset6, env),
            "start6": _instructions([*exe, "chain", "start", "links6"], env, before=reset6),
            "python": _instructions([sys.executable, "-c", "pass"], env),
        }
    out["load"] = (load_before, os.getloadavg())
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(pycache, ignore_errors=True)
    return out


ROWS = (("start6", "`chain start`, 6 links", "< 350 ms"), ("start12", "`chain start`, 12 links", ""),
        ("start30", "`chain start`, 30 links", ""), ("start60", "`chain start`, 60 links", ""),
        ("reset", "`chain reset`", "< 150 ms"), ("status", "`chain status NAME`", "< 150 ms"),
        ("status_compiling", "`chain status NAME`, no .pyc (compiles every module)", ""),
        ("python", "bare `python -c pass` (noise floor)", ""))


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--instructions"]
    runs = max(int(args[0]) if args else 7, MIN_RUNS)
    r = measure(runs, instructions="--instructions" in sys.argv[1:] and shutil.which("valgrind") is not None)
    (b1, b5, b15), (a1, a5, a15) = r["load"]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; load average (1/5/15 min) before "
          f"{b1:.2f}/{b5:.2f}/{b15:.2f}, after {a1:.2f}/{a5:.2f}/{a15:.2f}\n")
    print(f"| measure ({runs} runs each) | median | min-max | IQR | CPU (median) | peak RSS | target |")
    print("|---|---|---|---|---|---|---|")
    for key, label, target in ROWS:
        m = r[key]
        print(f"| {label} | {m['median_ms']:.0f} ms | {m['min_ms']:.0f}-{m['max_ms']:.0f} ms "
              f"| {m['q1_ms']:.0f}-{m['q3_ms']:.0f} ms | {m['cpu_ms']:.0f} ms | {m['rss_mb']:.0f} MB | {target} |")
    m = r["per_link"]
    print(f"| each extra link | {m['median_ms']:.1f} ms | {m['min_ms']:.1f}-{m['max_ms']:.1f} ms "
          f"| {m['q1_ms']:.1f}-{m['q3_ms']:.1f} ms | {m['cpu_ms']:.1f} ms | | < 5 ms |")
    m = r["agent"]
    print(f"| the instant agent alone (sh and cat; part of each link) | {m['median_ms']:.1f} ms "
          f"| {m['min_ms']:.1f}-{m['max_ms']:.1f} ms | {m['q1_ms']:.1f}-{m['q3_ms']:.1f} ms | {m['cpu_ms']:.1f} ms | | |")
    if "instructions" in r:
        print("\n| instructions (callgrind, one run) | millions |\n|---|---|")
        for key, label in (("start6", "`chain start`, 6 links (llmauto's process only)"), ("reset", "`chain reset`"),
                           ("status", "`chain status NAME`"), ("python", "bare `python -c pass`")):
            print(f"| {label} | {r['instructions'][key]:.0f} M |")
    print(f"\nEach extra link: the slope over {'/'.join(map(str, SIZES))} links of each of the {runs} rounds "
          "(wall, and CPU with the agents' own); median, min-max and IQR over the rounds.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
