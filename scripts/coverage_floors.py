"""Line coverage per module from a coverage JSON report, against the floors of issue #16:
95% of the lines of engine/ and of bot/ overall, and 85% of every module's lines.

`coverage report` mixes lines and branches into one figure (branch = true); the floors are on
lines, so they are computed here from the report's covered_lines / num_statements. Prints the
modules lowest first and the two package totals; with --enforce, exits 1 when a floor is missed
and says which. Usage: python scripts/coverage_floors.py REPORT.json [--enforce]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PACKAGE_FLOOR = 95.0
MODULE_FLOOR = 85.0
PACKAGES = ("engine", "bot")


def pct(covered: int, total: int) -> float:
    return 100.0 if total == 0 else 100.0 * covered / total


def check(report: dict[str, object]) -> tuple[list[str], list[str]]:
    """The table's lines and the floors missed, from a parsed `coverage json` report."""
    files = report["files"]
    assert isinstance(files, dict)
    rows: list[tuple[float, str, int, int]] = []
    totals = {p: [0, 0] for p in PACKAGES}
    for name, data in files.items():
        package = Path(name).parts[0]
        if package not in totals:
            continue
        covered, total = data["summary"]["covered_lines"], data["summary"]["num_statements"]
        if total == 0:
            continue
        rows.append((pct(covered, total), name, covered, total))
        totals[package][0] += covered
        totals[package][1] += total
    lines = [f"{'module':<32} {'lines':>11} {'cover':>7}"]
    missed = []
    for share, name, covered, total in sorted(rows):
        flag = "  < floor" if share < MODULE_FLOOR else ""
        lines.append(f"{name:<32} {covered:>5}/{total:<5} {share:6.1f}%{flag}")
        if share < MODULE_FLOOR:
            missed.append(f"{name}: {share:.1f}% of lines, floor {MODULE_FLOOR:g}%")
    for package, (covered, total) in totals.items():
        share = pct(covered, total)
        lines.append(f"{package + '/ overall':<32} {covered:>5}/{total:<5} {share:6.1f}%")
        if share < PACKAGE_FLOOR:
            missed.append(f"{package}/ overall: {share:.1f}% of lines, floor {PACKAGE_FLOOR:g}%")
    return lines, missed


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    lines, missed = check(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    print("\n".join(lines))
    for m in missed:
        print(f"coverage floor missed: {m}")
    if not missed:
        print(f"coverage floors met: every package >= {PACKAGE_FLOOR:g}%, every module >= {MODULE_FLOOR:g}% of lines")
    return 1 if missed and "--enforce" in argv[1:] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
