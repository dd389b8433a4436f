"""`llmauto chain task NAME TEXT...` and `llmauto chain tasks NAME` as real processes (#13)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_chain
from tests.helpers import Cli


def test_chain_task_adds_and_chain_tasks_lists(cli: Cli, home: Path) -> None:
    """Guards: the ("chain", "task") and ("chain", "tasks") entries of llmauto/cli.py COMMANDS
    (broken: either removed, a KeyError ends the process with a traceback) and the empty/too long
    check of `cmd_task` (broken: `clean_task_text(text)` removed: exit 1, not 2)."""
    todo = home / "work" / "TODO.md"
    todo.parent.mkdir()
    todo.write_text("- [ ] one\n- [!] stuck\n", encoding="utf-8")
    write_chain(home, "todo", {"workdir": str(todo.parent), "task_pool": {"type": "file", "path": "TODO.md"},
                               "links": [{"name": "w", "command": ["true"]}]})
    added = cli.run("chain", "task", "todo", "write", "the", "docs")
    assert added.returncode == 0, added.stderr
    assert "write the docs (2 open)" in added.stdout
    assert todo.read_text(encoding="utf-8") == "- [ ] one\n- [!] stuck\n- [ ] write the docs\n"
    listed = cli.run("chain", "tasks", "todo")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "open (2)" and lines[1].endswith("  one") and lines[2].endswith("  write the docs")
    assert "blocked (1)" in lines and lines[-1].endswith("  stuck")

    too_long = cli.run("chain", "task", "todo", "x" * 4001)
    assert too_long.returncode == 2 and "over the 4,000 limit" in too_long.stderr
    write_chain(home, "plain", {"links": [{"name": "w", "command": ["true"]}]})
    none = cli.run("chain", "tasks", "plain")
    assert none.returncode == 2 and "plain has no task_pool" in none.stderr
    assert todo.read_text(encoding="utf-8") == "- [ ] one\n- [!] stuck\n- [ ] write the docs\n"
