"""Run every benchmark and print one table: `python -m bench.run` (a few minutes on 2 cores).

Everything runs against fakes on this machine: no-op and sleeping agents as command links, the fake
`claude` for stops, and (for the bot figures) the fake Telegram Bot API on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys

from bench import cold_start, engine_overhead, scale, schedule_drift, stop_latency, store_growth
from bench.common import machine, table


def fmt(ms: float) -> str:
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms * 1000:.0f} µs"


def main() -> int:
    rows: list[tuple[str, str, str, str]] = []
    o = asyncio.run(engine_overhead.measure())
    rows += [
        ("1. engine overhead per link", f"median over {o['overhead']['n']} links", fmt(o["overhead"]["median"]), "< 5 ms"),
        ("", "p99", fmt(o["overhead"]["p99"]), "< 20 ms"),
        ("", "original llmauto (fixed sleeps)", "≈ 5000 ms", "floor, quoted"),
    ]
    s = asyncio.run(scale.measure())
    rows += [
        ("2. 50 chains × 3 links × 2 rounds", "links per second", f"{s['links_per_s']:.1f}", "agents take 0.1-2 s"),
        ("", "engine peak RSS", f"{s['peak_rss_mb']:.0f} MB", "< 150 MB"),
        ("", "engine CPU (whole run)", f"{s['engine_cpu_s']:.2f} s in {s['wall_s']:.1f} s", "small"),
        ("", "events lost", "0" if s["events_ok"] else "SOME", "0"),
    ]
    try:
        from bench import bot_load

        b20 = asyncio.run(bot_load.measure(chains=20))
        b = asyncio.run(bot_load.measure())
        rows += [
            ("3. /status under load (20 chains)", "median", fmt(b20["status"]["median"]), ""),
            ("", "p99", fmt(b20["status"]["p99"]), "< 150 ms"),
            ("   /status under load (50 chains)", "median", fmt(b["status"]["median"]), ""),
            ("", "p99", fmt(b["status"]["p99"]), "< 150 ms"),
            ("4. notification delivery", "link end → accepted, median", fmt(b["delivery"]["median"]), ""),
            ("", "p99", fmt(b["delivery"]["p99"]), ""),
            ("", "coalesced / 429s", f"{b['coalesced']} / {b['rejected_429']}", "0 429s"),
        ]
    except ImportError:
        rows.append(("3./4. bot", "(bench/bot_load.py not present)", "-", ""))
    st = asyncio.run(stop_latency.measure())
    rows += [
        ("5. stop latency", "graceful stop acknowledged", fmt(st["graceful_ack"]["median"]), ""),
        ("", "--now until the process group is gone", fmt(st["now_until_gone"]["median"]), "seconds"),
    ]
    c = cold_start.measure()
    rows += [
        ("6. cold start", "`llmauto --help`, median", fmt(c["help"]["median"]), "< 300 ms"),
        ("", "`llmauto chain status`, median", fmt(c["status"]["median"]), "< 300 ms"),
        ("", "bare `python -c pass`", fmt(c["python"]["median"]), "for scale"),
    ]
    g = asyncio.run(store_growth.measure())
    rows += [
        ("7. store growth", f"db size after {g['link_runs']:,} link runs", f"{g['db_mb']:.0f} MB", ""),
        ("", "status views, empty store (median)", fmt(g["empty"]["median"]), ""),
        ("", "status views, 100k link runs (median)", fmt(g["full"]["median"]), "no slowdown"),
    ]
    d = asyncio.run(schedule_drift.measure())
    rows += [
        ("8. schedule drift (50 busy chains)", "slot → chain started, median", fmt(d["drift"]["median"]), ""),
        ("", "p99 (10 firings)", fmt(d["drift"]["p99"]), "well under 1 s"),
    ]
    print(f"llmauto benchmarks — {machine()}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
