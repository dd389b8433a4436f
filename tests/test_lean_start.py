"""The import diet of the reading commands (#14, whole-process cost).

`llmauto chain status NAME` and `chain reset NAME` are fresh processes a person waits for, and most
of their time is spent importing. They need the store, the chain definitions and the facade, not
the run loop, the claude runner, APScheduler (whose package scans the installed distributions for
its own version) or the bot. These tests run the real command (`python -X importtime -m engine`,
as users and scripts run it) and read every module it imported from the interpreter's own report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmauto.cli import COMMANDS, build_parser, parser_for
from tests.conftest import ROOT, write_chain

# What a reading command must not import: each is either the run machinery (imported when a run
# starts), the timer's scheduler library, or the Telegram side.
HEAVY = (
    "apscheduler", "importlib.metadata", "engine.marble", "engine.runner", "engine.link", "engine.stream",
    "engine.event_types", "engine.approval_desk", "engine.timer", "engine.cron_trigger", "llmauto.serve",
    "bot", "telegram", "httpx",
    # the distributed mode (#15): its parser is built for every command, its modules only for `worker`
    # (checked: worker_cli importing engine.dist_settings at its top again: red)
    "engine.dist_settings", "engine.worker", "procrastinate", "psycopg",
    # one-shot commands run without an event loop on a blocking SQLite store (engine/loopless.py):
    # asyncio alone was a third of `chain status` (checked: `import asyncio` back at the top of
    # engine/store.py: red); shutil came with argparse's help formatter, socket with the leases,
    # the task pool modules with every chain
    "asyncio", "aiosqlite", "ssl", "engine.slots", "shutil", "socket", "engine.tasks", "engine.taskpool",
)

CHAIN = {"description": "two links", "max_rounds": 3, "links": [
    {"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work on {HANDOFF}"},
    {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": "review {HANDOFF}"},
]}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "LLMAUTO_"))}
    return {**env, "LLMAUTO_HOME": str(home), "LLMAUTO_TIMEZONE": "UTC", "PYTHONPATH": str(ROOT)}


def _imported(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `llmauto ARGS` as a fresh process; its result and the names of every module it imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine", *args], env=_env(home),
                          cwd=home, capture_output=True, text=True, timeout=60)
    names = [line.split("|")[-1] for line in proc.stderr.splitlines() if line.startswith("import time:")]
    # What the command imports: from `-m engine` on. Before it, site's start-up hooks (coverage's
    # subprocess measurement under scripts/coverage.sh imports socket there) are not the command's.
    start = names.index(" engine") if " engine" in names else 0
    modules = {name.strip() for name in names[start:]}
    assert "llmauto.cli" in modules, proc.stderr[-2000:]  # the report is there: an empty set proves nothing
    return proc, modules


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.fixture
def scheduled(home: Path) -> Path:
    """A chain with a cron schedule, so `status` computes a next fire time (cron, not APScheduler)."""
    write_chain(home, "lean", CHAIN)
    added = subprocess.run([sys.executable, "-m", "engine", "schedule", "add", "lean", "0 2 * * *"], env=_env(home),
                           cwd=home, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    return home


def test_status_imports_no_run_machinery_scheduler_or_bot(scheduled: Path) -> None:
    """Broken once by adding `import engine.marble` at the top of llmauto/cli.py, and once by
    importing `apscheduler.triggers.base` at the top of engine/cron.py again: red, naming them."""
    proc, modules = _imported(scheduled, "chain", "status", "lean")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lean: READY" in proc.stdout and "next scheduled run: " in proc.stdout  # it did the real work
    assert _heavy(modules) == []


def test_reset_imports_no_run_machinery_scheduler_or_bot(scheduled: Path) -> None:
    """Broken once by importing `MarbleRun` at the top of engine/engine.py again: red."""
    proc, modules = _imported(scheduled, "chain", "reset", "lean")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lean: reset" in proc.stdout
    assert (scheduled / "state" / "lean" / "status.txt").read_text().strip() == "READY"
    assert _heavy(modules) == []


def test_status_of_all_chains_is_as_lean(scheduled: Path) -> None:
    """`chain status` without a name (`chain list`) reads every chain. Broken once by importing
    `engine.event_types` at the top of llmauto/textview.py again: red."""
    proc, modules = _imported(scheduled, "chain", "status")
    assert proc.returncode == 0 and "lean" in proc.stdout, proc.stderr[-2000:]
    assert _heavy(modules) == []


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["chain", "list"], 0, "lean"),
    (["chain", "log", "lean"], 0, "no links run yet"),
    (["chain", "stop", "lean", "because"], 1, "lean is not running"),
    (["chain", "answer", "lean", "use", "the", "staging", "db"], 0, "note added"),
    (["chain", "deny", "lean"], 1, "no request waiting"),
    (["chain", "handoff", "lean"], 0, "use the staging db"),
    (["schedule", "list"], 0, "0 2 * * *"),
    (["chain", "validate", "lean"], 0, "worker"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_one_shot_commands_run_without_an_event_loop(scheduled: Path, argv: list[str], code: int, says: str) -> None:
    """Every command but `chain start`, `pipe`, `worker` and `serve` drives the engine without an
    event loop: the real command does its work (or refuses, as it should) and never imports
    asyncio. Broken once by making `llmauto.cli.main` use `asyncio.run` for every command: red."""
    if argv[:2] == ["chain", "handoff"]:
        _imported(scheduled, "chain", "answer", "lean", "use the staging db")  # a handoff to show
    proc, modules = _imported(scheduled, *argv)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert says in proc.stdout + proc.stderr
    assert sorted(m for m in modules if m.split(".")[0] in ("asyncio", "aiosqlite", "ssl")) == []


# ---- the parser of one subcommand ------------------------------------------------------------
ACTIONS = sorted(key for key in COMMANDS if key[1] is not None)
SAMPLES = [  # argv that each parser takes, refuses, or answers with help
    ["NAME"], ["NAME", "extra", "words"], ["NAME", "--now"], ["NAME", "7"], ["NAME", "x", "--bg"], ["12"],
    ["NAME", "0 2 * * *", "--tz", "UTC"], ["--always", "NAME", "3"], [], ["--help"], ["--bogus"],
]


def _outcome(parser_of: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    assert callable(parser_of)
    try:
        result: object = vars(parser_of(argv).parse_args(argv))
    except SystemExit as exc:
        result = ("exit", exc.code)
    out, err = capsys.readouterr()
    return result, out, err


@pytest.mark.parametrize(("command", "action"), ACTIONS)
def test_one_subcommand_parses_as_the_whole_parser(command: str, action: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`parser_for` builds only the parsers `COMMAND ACTION ...` goes through; whatever follows,
    the outcome (the namespace, or the exit code) and every word printed (help, usage errors) are
    the whole parser's. Broken once by adding `-v` to the whole parser only: red (the lean
    namespaces had no `verbose`)."""
    for rest in SAMPLES:
        argv = [command, action, *rest]
        assert _outcome(parser_for, argv, capsys) == _outcome(lambda _argv: build_parser(), argv, capsys), argv


def test_only_the_path_taken_is_built() -> None:
    """The point of it: `chain status NAME` builds 3 parsers, not 26; a path that does not exist
    gets the whole parser (and its messages). Broken once by making `parser_for` always build the
    whole parser, and once by taking a lean parser whose path was not all found (`if found:`):
    red both times."""
    lean = parser_for(["chain", "status", "x"])
    whole = build_parser()

    def count(parser: object) -> int:
        subs = [a for a in getattr(parser, "_actions", []) if a.__class__.__name__ == "_SubParsersAction"]
        return 1 + sum(count(p) for s in subs for p in s.choices.values())

    assert (count(lean), count(whole)) == (3, count(whole)) and count(whole) >= 20
    for argv in (["chain", "bogus"], ["pipe", "hello"], ["--home", "h", "chain", "status"], ["chain"]):
        assert count(parser_for(argv)) == count(whole), argv
