"""The package layering (#14): `engine` runs chains with no Telegram in it, `bot` is a front end over
it, and only the composition root `llmauto` (the command line and `serve`) knows both.

Checked in a fresh interpreter, since this test process has long since imported the bot: every
module of the engine package is imported there, and neither `bot` nor `telegram` may appear in
`sys.modules` afterwards. Checked: with `import bot.outbox_store` added at the top of
engine/engine.py, test_the_engine_core_never_imports_the_bot fails naming `bot` and
`bot.outbox_store`."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import engine
from tests.conftest import ROOT

# engine/__main__.py runs the command line when imported; it is the one entry point, not the core.
ENTRY_POINTS = {"engine.__main__"}


def _engine_modules() -> list[str]:
    return sorted(f"engine.{m.name}" for m in pkgutil.iter_modules(engine.__path__)
                  if f"engine.{m.name}" not in ENTRY_POINTS)


def _loaded_after_importing(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_the_engine_core_never_imports_the_bot() -> None:
    modules = _engine_modules()
    assert len(modules) >= 30 and "engine.engine" in modules and "engine.timer" in modules
    loaded = _loaded_after_importing(modules)
    assert set(modules) <= set(loaded)
    front = [m for m in loaded if m.split(".")[0] in {"bot", "telegram", "llmauto"}]
    assert front == []


def test_the_engine_package_map_names_every_module() -> None:
    """engine/__init__.py's docstring map is the first thing a reader sees: every module is in it,
    and nothing that is not a module. Checked: with the `timer` line removed from the map, this
    fails naming timer."""
    listed = {line.split()[0] for line in (engine.__doc__ or "").splitlines()
              if line.startswith("  ") and line.split()}
    modules = {m.removeprefix("engine.") for m in _engine_modules()}
    assert sorted(modules - listed) == [] and sorted(listed - modules) == []
