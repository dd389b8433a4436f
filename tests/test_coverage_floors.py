"""The coverage gate of CI (scripts/coverage_floors.py, run by scripts/coverage.sh): with
--enforce, a package under 95% of its lines or a module under 85% fails it, and says which;
without, it only reports. Run as CI runs it, a real interpreter on a coverage JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "coverage_floors.py"


def report(tmp_path: Path, files: dict[str, tuple[int, int]]) -> Path:
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps({"files": {
        name: {"summary": {"covered_lines": covered, "num_statements": total}} for name, (covered, total) in files.items()
    }}), encoding="utf-8")
    return path


def floors(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(path), *args], capture_output=True, text=True, timeout=60)


def test_floors_met_pass_and_a_module_below_85_fails_only_when_enforced(tmp_path: Path) -> None:
    """Red with the module floor's comparison dropped or --enforce ignored (exit 0 either way)."""
    met = report(tmp_path, {"engine/a.py": (96, 100), "bot/b.py": (950, 1000), "llmauto/c.py": (1, 10)})
    ok = floors(met, "--enforce")
    assert ok.returncode == 0 and "coverage floors met" in ok.stdout, ok.stdout
    low = report(tmp_path, {"engine/a.py": (84, 100), "engine/big.py": (9000, 9000), "bot/b.py": (95, 100)})
    enforced = floors(low, "--enforce")
    assert enforced.returncode == 1
    assert "coverage floor missed: engine/a.py: 84.0% of lines, floor 85%" in enforced.stdout, enforced.stdout
    assert floors(low).returncode == 0  # reported, not enforced


def test_a_package_below_95_fails_though_every_module_is_above_85(tmp_path: Path) -> None:
    """Red with the package floor's comparison dropped, or a package's total taken from one module."""
    low = report(tmp_path, {"engine/a.py": (90, 100), "engine/b.py": (99, 100), "bot/c.py": (100, 100)})
    out = floors(low, "--enforce")
    assert out.returncode == 1 and "coverage floor missed: engine/ overall: 94.5% of lines, floor 95%" in out.stdout
    assert "bot/ overall" not in out.stdout.split("coverage floor missed", 1)[1]
