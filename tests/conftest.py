"""Shared fixtures: every test gets its own temporary llmauto home."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from engine.settings import Settings
from engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "tests" / "fakes" / "bin" / "claude"

# Property tests draw the same examples on every run (a suite that passes passes again, in CI too);
# LLMAUTO_HYPOTHESIS=explore draws new ones each run, to look for cases the fixed draw misses.
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("LLMAUTO_HYPOTHESIS", "deterministic"))

# A real PostgreSQL for the distributed mode (issue #15): `pg_server` (session), `pg_url` (per test).
pytest_plugins = ["tests.pg"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    for sub in ("chains", "prompts", "state"):
        (h / sub).mkdir(parents=True)
    return h


def write_chain(home: Path, name: str, doc: dict[str, Any]) -> Path:
    path = home / "chains" / f"{name}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def make_settings(home: Path, **overrides: Any) -> Settings:
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8"}
    environ.update(overrides.pop("environ", {}))
    base: dict[str, Any] = {
        "home": home, "claude_bin": str(FAKE_CLAUDE), "max_parallel_links": 4, "timezone": "UTC",
        "environ": environ,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(home: Path) -> Settings:
    return make_settings(home)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with Store.open(settings.db_path) as s:
        yield s


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Iterator[Any]:
    """Runs `python -m engine` against the test's home with the fake claude."""
    from tests.helpers import Cli

    c = Cli(home, tmp_path)
    try:
        yield c
    finally:
        c.cleanup()
