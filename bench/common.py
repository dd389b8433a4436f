"""Shared bits for the benchmarks: a temporary home, chains of no-op agents, statistics, tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "tests" / "fakes" / "bin" / "claude"


def temp_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="llmauto-bench-"))
    for sub in ("chains", "prompts", "state"):
        (home / sub).mkdir()
    return home


def write_chain(home: Path, name: str, doc: dict[str, Any]) -> None:
    (home / "chains" / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")


def settings_for(home: Path, **overrides: Any) -> Settings:
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8"}
    environ.update(overrides.pop("environ", {}))
    base: dict[str, Any] = {"home": home, "claude_bin": str(FAKE_CLAUDE), "max_parallel_links": 8,
                            "timezone": "UTC", "environ": environ}
    base.update(overrides)
    return Settings(**base)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "median": statistics.median(ms), "p99": percentile(ms, 99), "max": max(ms)}


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("benchmark", "measure", "result", "target")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])
