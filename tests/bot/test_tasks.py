"""`/task NAME TEXT` and `/tasks NAME` (#13), from the (fake) phone against a real `serve` over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.bot.conftest import VIEWER, Served
from tests.conftest import write_chain


def todo_chain(home: Path, name: str = "todo", todo: str = "# Tonight\n- [ ] one\n- [x] two\n", **pool: Any) -> Path:
    (home / "TODO.md").write_text(todo, encoding="utf-8")
    write_chain(home, name, {"max_rounds": 1, "task_pool": {"type": "file", "path": "TODO.md", **pool},
                             "links": [{"name": "w", "command": [sys.executable, "-c", "pass"]}]})
    return home / "TODO.md"


async def test_task_appends_to_the_pool_and_tasks_lists_it(served: Served) -> None:
    """Guards: engine/chaintasks.py `add_task` (broken: `taskpool.append_task(...)` replaced by the
    pool's first open task: the file is unchanged) and bot/tasks_cmd.py `show` (broken: `listing(read, ...)` replaced by "": the ids and states are missing)."""
    todo = todo_chain(served.home)
    added = await served.answer("/task todo fix   the <login>  redirect", "Added to todo")
    assert "fix the <login> redirect" in added.plain and "2 open tasks." in added.plain
    assert todo.read_text(encoding="utf-8") == "# Tonight\n- [ ] one\n- [x] two\n- [ ] fix the <login> redirect\n"
    listed = await served.answer("/tasks todo", "todo: tasks (2 open, 1 done, 0 blocked)")
    assert "open (2)" in listed.plain and "one" in listed.plain and "fix the <login> redirect" in listed.plain
    assert "done (1)" in listed.plain and "two" in listed.plain


async def test_task_errors_say_why_and_change_nothing(served: Served) -> None:
    """Guards: the empty-text and length checks of `task_args` (broken: `if not text` removed, the
    answer is the pool's own "the task is empty"; the limit raised to 4,000: the 1,493 characters
    are added) and `chaintasks.pool_of` (broken: its `if chain.task_pool is None` removed, an
    AttributeError ends as "failed on our side")."""
    todo = todo_chain(served.home)
    before = todo.read_text(encoding="utf-8")
    write_chain(served.home, "plain", {"links": [{"name": "w", "command": [sys.executable, "-c", "pass"]}]})
    assert "unknown chain" in (await served.answer("/task nope do it", "❗")).plain
    assert "plain has no task_pool" in (await served.answer("/task plain do it", "❗")).plain
    assert "plain has no task_pool" in (await served.answer("/tasks plain", "❗")).plain
    assert (await served.answer("/task todo", "The task is empty")).plain
    assert (await served.answer("/task", "Usage: /task NAME TEXT")).plain
    assert (await served.answer("/tasks", "Usage: /tasks NAME")).plain
    long = " ".join(["ab"] * 498)  # with the name, 1,000 characters of words (what /task takes); 1,493 with spaces
    assert (await served.answer(f"/task todo {long}", "1,493 characters, over the 1,000 limit")).plain
    assert todo.read_text(encoding="utf-8") == before
    todo.unlink()
    gone = await served.answer("/tasks todo", "Invalid chain")
    assert "TODO.md' does not exist" in gone.plain
    assert "does not exist" in (await served.answer("/task todo one more", "Invalid chain")).plain
    assert not todo.exists()


async def test_viewers_may_list_tasks_but_not_add_them(served: Served) -> None:
    """Guards: "tasks" in bot/auth.py READ_ONLY (broken: removed, the viewer is refused)."""
    todo = todo_chain(served.home)
    before = todo.read_text(encoding="utf-8")
    assert "open (1)" in (await served.answer("/tasks todo", "todo: tasks", user=VIEWER)).plain
    assert (await served.answer("/task todo sneak one in", "not allowed", user=VIEWER)).plain
    assert todo.read_text(encoding="utf-8") == before


async def test_a_long_task_list_comes_as_a_document(served: Served) -> None:
    """Guards: the document of `show` (broken: `listing(read, max_each=LIST_ALL)` with the default
    20 per state: the document ends "… and 280 more" and lacks the last task)."""
    todo_chain(served.home, todo="".join(f"- [ ] task number {i} " + "x" * 40 + "\n" for i in range(300)))
    sent = await served.answer("/tasks todo", "attached")
    assert sent.document is not None and sent.document[0] == "todo-tasks.txt"
    assert b"task number 299" in sent.document[1] and b"more" not in sent.document[1]
    assert "300 open" in sent.plain
