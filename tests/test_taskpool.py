"""Task pools: the pure text model by table, then real files in tmp_path (bounded reads, symlinks
out, a person editing the file meanwhile, directory pools moving files)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from engine import taskpool
from engine.taskpool import MAX_POOL_BYTES, append_task, check_pool, mark, read_pool
from engine.tasks import (
    DirectoryPool,
    FilePool,
    PoolError,
    PoolRead,
    Task,
    TaskState,
    append_to_text,
    listing,
    mark_in_text,
    new_task_name,
    next_open,
    parse_pool,
    parse_tasks,
    placeholders,
    task_id,
)

OP, D, B = TaskState.OPEN, TaskState.DONE, TaskState.BLOCKED
TODO = "# Night work\nSome context, not a task.\n\n- [ ] fix the login\n  see issue 12\n  - [ ] sub-step\n- [x] write the docs\n* [!] migrate the db\n1. [ ] numbered task\n- [ ]\n- [ ] fix the login\n"


# ---- parsing (pure) ------------------------------------------------------------------------------

def test_checkbox_tasks() -> None:
    """Broke the body loop's `> own` (as `>= own`): the second 'fix the login' was swallowed as a
    body line and the table went red."""
    got = [(t.text, t.state, t.body, t.line) for t in parse_tasks(TODO)]
    assert got == [
        ("fix the login", OP, "see issue 12\n- [ ] sub-step", 4),
        ("write the docs", D, "", 7),
        ("migrate the db", B, "", 8),
        ("numbered task", OP, "", 9),
        ("fix the login", OP, "", 11),
    ]


@pytest.mark.parametrize("text, fmt, expected", [
    ("", "checkbox", []),
    ("just prose\n# heading\n", "checkbox", []),
    ("- [X] upper x\n+ [ ] plus\n2) [ ] paren\n", "checkbox", [("upper x", D), ("plus", OP), ("paren", OP)]),
    ("-[ ] no space\n- [] empty box\n- [?] odd mark\n", "checkbox", []),
    ("  - [ ] indented alone\n", "checkbox", [("indented alone", OP)]),
    ("- [ ] a\n\n  - [ ] b after a blank\n", "checkbox", [("a", OP), ("b after a blank", OP)]),
    ("- [ ]   spaced   text  \n", "checkbox", [("spaced   text", OP)]),
    ("one\n\n# heading\n<!-- note -->\n- two\n* [x] three\n- [!] four\n  five\n", "lines",
     [("one", OP), ("two", OP), ("three", D), ("four", B), ("five", OP)]),
    ("- [ ] a\n  b\n", "lines", [("a", OP), ("b", OP)]),
    ("a\r\nb\r\n", "lines", [("a", OP), ("b", OP)]),
])
def test_parse_table(text: str, fmt: Any, expected: list[tuple[str, TaskState]]) -> None:
    assert [(t.text, t.state) for t in parse_tasks(text, fmt)] == expected


def test_ids_survive_edits_elsewhere_and_count_duplicates() -> None:
    """Broke the occurrence counter (every duplicate got occurrence 1): two tasks shared one id."""
    ids = [t.id for t in parse_tasks(TODO)]
    assert ids[0] == task_id("fix the login") and ids[4] == task_id("fix the login", 2)
    assert len(set(ids)) == 5 and all(len(i.split("-")[0]) == 8 for i in ids)
    edited = "- [ ] a new task on top\n" + TODO.replace("Some context", "Other context")
    assert [t.id for t in parse_tasks(edited)][1:] == ids
    marked = mark_in_text(TODO, "checkbox", ids[2], D)
    assert marked is not None and [t.id for t in parse_tasks(marked)] == ids
    assert task_id("fix  the\tlogin") == task_id("fix the login")


@pytest.mark.parametrize("text, fmt, target, state, expected", [
    ("- [ ] a\n- [ ] b\n", "checkbox", "b", D, "- [ ] a\n- [x] b\n"),
    ("- [ ] a\n- [ ] b\n", "checkbox", "a", B, "- [!] a\n- [ ] b\n"),
    ("- [!] a\n", "checkbox", "a", OP, "- [ ] a\n"),
    ("  * [ ] a  \r\nrest", "checkbox", "a", D, "  * [x] a  \r\nrest"),
    ("- [x] a\n", "checkbox", "a", D, "- [x] a\n"),  # already done: unchanged
    ("x\n  - b\ny", "lines", "b", D, "x\n  - [x] b\ny"),
    ("x\r\nb\r\n", "lines", "b", B, "x\r\n- [!] b\r\n"),
    ("- [ ] a\n", "checkbox", "gone", D, None),
])
def test_mark_in_text(text: str, fmt: Any, target: str, state: TaskState, expected: str | None) -> None:
    """Broke `content[:start] + mark + content[end:]` to rebuild the line: indent and spaces were lost
    (the `  * [ ] a  ` row went red)."""
    assert mark_in_text(text, fmt, task_id(target), state) == expected


def test_mark_changes_only_the_one_line() -> None:
    ids = [t.id for t in parse_tasks(TODO)]
    marked = mark_in_text(TODO, "checkbox", ids[4], D)
    assert marked is not None
    diff = [(a, b) for a, b in zip(TODO.splitlines(), marked.splitlines(), strict=True) if a != b]
    assert diff == [("- [ ] fix the login", "- [x] fix the login")]
    assert marked.splitlines()[3] == "- [ ] fix the login"  # the first one, same text, untouched


@pytest.mark.parametrize("text, fmt, new, expected", [
    ("", "checkbox", "a", "- [ ] a\n"),
    ("- [ ] x", "checkbox", "a", "- [ ] x\n- [ ] a\n"),
    ("- [ ] x\n", "checkbox", " two\nlines  ", "- [ ] x\n- [ ] two lines\n"),
    ("x\r\n", "lines", "a", "x\r\na\r\n"),
])
def test_append_to_text(text: str, fmt: Any, new: str, expected: str) -> None:
    assert append_to_text(text, fmt, new) == expected


@pytest.mark.parametrize("new, reason", [("", "the task is empty"), (" \n\t", "the task is empty"),
                                         ("x" * 4001, "the task is 4,001 characters, over the 4,000 limit")])
def test_append_refuses(new: str, reason: str) -> None:
    with pytest.raises(PoolError, match=reason):
        append_to_text("", "checkbox", new)


def test_next_open_skips_and_placeholders() -> None:
    tasks = parse_tasks(TODO)
    assert next_open(tasks) == tasks[0]
    assert next_open(tasks, {tasks[0].id}) == tasks[3]
    assert next_open(tasks, {tasks[0].id, tasks[3].id, tasks[4].id}) is None
    assert next_open([]) is None
    read = PoolRead(source=Path("/w/TODO.md"), tasks=tuple(tasks))
    assert placeholders(tasks[0], read) == {
        "TASK": "fix the login\nsee issue 12\n- [ ] sub-step", "TASK_ID": tasks[0].id,
        "TASKS_LEFT": "3", "TASK_FILE": "/w/TODO.md",
    }
    text = listing(read)
    assert text.startswith("open (3)\n") and "done (1)" in text and f"blocked (1)\n  {tasks[2].id}  migrate the db" in text


@pytest.mark.parametrize("raw, pool, problems", [
    (None, None, []),
    ({"type": "file", "path": "TODO.md"}, FilePool(path="TODO.md"), []),
    ({"type": "file", "path": "a.txt", "format": "lines"}, FilePool(path="a.txt", format="lines"), []),
    ({"type": "directory", "path": "tasks/"}, DirectoryPool(path="tasks/"), []),
    ({"type": "directory", "path": "t", "pattern": "*.txt"}, DirectoryPool(path="t", pattern="*.txt"), []),
    ("TODO.md", None, ['task_pool: expected an object like {"type": "file", "path": "TODO.md"}']),
    ({"path": "x"}, None, ["task_pool.type: expected file or directory, got None"]),
    ({"type": "url", "path": "x"}, None, ["task_pool.type: expected file or directory, got 'url'"]),
    ({"type": "file"}, None, ["task_pool.path: expected a path inside the workdir"]),
    ({"type": "file", "path": " "}, None, ["task_pool.path: expected a path inside the workdir"]),
    ({"type": "file", "path": "x", "format": "csv"}, None, ["task_pool.format: expected checkbox or lines, got 'csv'"]),
    ({"type": "file", "path": "x", "pattern": "*"}, None, ["task_pool.pattern: only a directory pool has a pattern"]),
    ({"type": "directory", "path": "t", "pattern": "a/*.md"}, None, ["task_pool.pattern: expected a file-name pattern like *.md, got 'a/*.md'"]),
    ({"type": "directory", "path": "t", "format": "lines"}, None, ["task_pool.format: only a file pool has a format"]),
    ({"type": "file", "path": "x", "colour": 1}, None, ["task_pool.colour: unknown field"]),
])
def test_parse_pool(raw: Any, pool: Any, problems: list[str]) -> None:
    got, found = parse_pool(raw)
    assert (got, [str(p) for p in found]) == (pool, problems)


@pytest.mark.parametrize("text, pattern, existing, expected", [
    ("Fix the login!", "*.md", [], "0001-fix-the-login.md"),
    ("x", "*.md", ["0009-a.md", "0010-b.md", "notes.md"], "0011-x.md"),
    ("x", "*.txt", ["3-a.txt"], "0004-x.txt"),
    ("!!!", "*.md", [], "0001-task.md"),
    ("a" * 100, "*.md", [], "0001-" + "a" * 40 + ".md"),
])
def test_new_task_name(text: str, pattern: str, existing: list[str], expected: str) -> None:
    assert new_task_name(text, pattern, existing) == expected


def test_new_task_name_must_match_the_pattern() -> None:
    with pytest.raises(PoolError, match=re.escape("cannot name a new task file that matches the pattern 'task-*'")):
        new_task_name("x", "task-*", [])


# ---- file pools on disk --------------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    return w


POOL = FilePool(path="TODO.md")


def test_a_round_trip_through_a_real_file(workdir: Path) -> None:
    """Broke `os.fchmod(..., S_IMODE(mode))` in _replace: the file came back 0600 and this went red."""
    todo = workdir / "TODO.md"
    todo.write_text(TODO, encoding="utf-8")
    todo.chmod(0o664)
    read = read_pool(POOL, workdir)
    first = next_open(read.tasks)
    assert first is not None and read.source == todo.resolve()
    assert mark(POOL, workdir, first.id, D)
    again = read_pool(POOL, workdir)
    assert next_open(again.tasks) == next(t for t in again.tasks if t.text == "numbered task")
    assert mark(POOL, workdir, again.tasks[3].id, B)
    final = read_pool(POOL, workdir)
    assert [t.state for t in final.tasks] == [D, D, B, B, OP]
    assert stat.S_IMODE(todo.stat().st_mode) == 0o664
    assert not mark(POOL, workdir, "deadbeef", D)
    assert [p.name for p in workdir.iterdir()] == ["TODO.md"]  # no temp file left


def test_a_person_adds_tasks_between_reads(workdir: Path) -> None:
    """A person inserts a task above and appends one below while the chain runs: the next read
    sees both, and marking by id changes the right line. Broke parse_tasks() to use the line
    index as the id (`id=str(index)`): the wrong line was marked."""
    todo = workdir / "TODO.md"
    todo.write_text("- [ ] one\n- [ ] two\n", encoding="utf-8")
    two = read_pool(POOL, workdir).tasks[1]
    todo.write_text("- [ ] urgent\n- [ ] one\n- [ ] two\n- [ ] three\n", encoding="utf-8")
    assert mark(POOL, workdir, two.id, D)
    assert todo.read_text(encoding="utf-8") == "- [ ] urgent\n- [ ] one\n- [x] two\n- [ ] three\n"
    assert [t.text for t in read_pool(POOL, workdir).open] == ["urgent", "one", "three"]


def test_a_save_between_read_and_replace_is_kept(workdir: Path) -> None:
    """The person saves after the engine read the file and before it replaced it: the engine
    notices (inode, size, mtime) and redoes its change on their text. Broke the `_same()` check
    (always True): the person's 'added meanwhile' line was lost."""
    todo = workdir / "TODO.md"
    todo.write_text("- [ ] one\n", encoding="utf-8")
    calls: list[str] = []

    def edit(text: str) -> str | None:
        calls.append(text)
        if len(calls) == 1:  # the person's save lands now, between read and replace
            todo.write_text(text + "- [ ] added meanwhile\n", encoding="utf-8")
        return mark_in_text(text, "checkbox", task_id("one"), D)

    taskpool._edit_file(POOL, workdir, edit)
    assert len(calls) == 2
    assert todo.read_text(encoding="utf-8") == "- [x] one\n- [ ] added meanwhile\n"


def test_append_task_to_a_file(workdir: Path) -> None:
    todo = workdir / "TODO.md"
    todo.write_text("# list\n- [ ] one", encoding="utf-8")
    added = append_task(POOL, workdir, "  buy\nmilk ")
    assert added == Task(id=task_id("buy milk"), text="buy milk", line=3)
    assert todo.read_text(encoding="utf-8") == "# list\n- [ ] one\n- [ ] buy milk\n"
    twice = append_task(POOL, workdir, "buy milk")
    assert twice.id == task_id("buy milk", 2)


def test_a_10_mb_pool_is_refused_without_reading_it(workdir: Path) -> None:
    """Broke `if st.st_size > limit` (removed): the 10 MB file was read and parsed."""
    big = workdir / "TODO.md"
    with big.open("wb") as handle:
        handle.truncate(10 * 1024 * 1024)
    reason = f"'TODO.md' is 10,485,760 bytes, over the {MAX_POOL_BYTES:,}-byte limit"
    with pytest.raises(PoolError, match=reason):
        read_pool(POOL, workdir)
    assert [str(p) for p in check_pool(POOL, workdir)] == [f"task_pool.path: {reason}"]
    with pytest.raises(PoolError, match="over the"):
        mark(POOL, workdir, "x", D)


def test_bad_pools_have_precise_reasons(workdir: Path, tmp_path: Path) -> None:
    """Missing, outside (by `..`, an absolute path, a symlink, a symlinked folder), not a regular
    file, not UTF-8, binary. Broke resolve()'s `is_relative_to(real_root)` check (`if False:`): the
    `..` row read the file outside and went red."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "TODO.md").write_text("- [ ] secret\n", encoding="utf-8")
    (workdir / "link.md").symlink_to(outside / "TODO.md")
    (workdir / "linkdir").symlink_to(outside)
    (workdir / "inner.md").symlink_to(workdir / "real.md")
    (workdir / "real.md").write_text("- [ ] fine\n", encoding="utf-8")
    (workdir / "folder").mkdir()
    (workdir / "latin1.md").write_bytes("- [ ] caf\xe9\n".encode("latin-1"))
    (workdir / "nul.md").write_bytes(b"- [ ] a\x00b\n")
    os.mkfifo(workdir / "fifo.md")
    real_out = os.path.realpath(outside)
    cases = {
        "missing.md": f"'missing.md' does not exist in the workdir {workdir}",
        "../outside/TODO.md": f"'../outside/TODO.md' leads outside the workdir {os.path.realpath(workdir)} (to {real_out}/TODO.md)",
        str(outside / "TODO.md"): "leads outside the workdir",
        "link.md": f"'link.md' leads outside the workdir {os.path.realpath(workdir)} (to {real_out}/TODO.md)",
        "linkdir/TODO.md": "leads outside the workdir",
        "folder": "'folder': folder is a directory, not a regular file",
        "fifo.md": "'fifo.md': fifo.md is a FIFO, not a regular file",
        "latin1.md": "'latin1.md' is not UTF-8 text (byte 9)",
        "nul.md": "'nul.md' holds binary data (NUL bytes)",
        ".": "'.' is the workdir itself, not a file",
    }
    for path, reason in cases.items():
        problems = check_pool(FilePool(path=path), workdir)
        assert len(problems) == 1 and reason in problems[0].reason, (path, problems)
    assert check_pool(FilePool(path="inner.md"), workdir) == []  # a symlink inside is fine
    assert check_pool(FilePool(path="folder/../real.md"), workdir) == []
    assert [t.text for t in read_pool(FilePool(path="inner.md"), workdir).tasks] == ["fine"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_pool(workdir: Path) -> None:
    todo = workdir / "TODO.md"
    todo.write_text("- [ ] a\n", encoding="utf-8")
    todo.chmod(0)
    assert [str(p) for p in check_pool(POOL, workdir)] == ["task_pool.path: 'TODO.md' cannot be read: Permission denied"]


# ---- directory pools on disk ---------------------------------------------------------------------

DIR = DirectoryPool(path="tasks/")


def test_a_directory_pool(workdir: Path, tmp_path: Path) -> None:
    """Broke the `startswith(".")` filter in _names: the hidden file became a task."""
    folder = workdir / "tasks"
    folder.mkdir()
    (folder / "0020-b.md").write_text("# Second\nmore words\n", encoding="utf-8")
    (folder / "0010-a.md").write_text("First task\n", encoding="utf-8")
    (folder / ".hidden.md").write_text("no\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not a task\n", encoding="utf-8")
    (folder / "sub.md").mkdir()
    (tmp_path / "secret.md").write_text("secret\n", encoding="utf-8")
    (folder / "0030-out.md").symlink_to(tmp_path / "secret.md")
    read = read_pool(DIR, workdir)
    assert [(t.id, t.text, t.body) for t in read.tasks] == [("0010-a.md", "First task", ""), ("0020-b.md", "Second", "more words")]
    assert len(read.problems) == 1 and "0030-out.md is a symlink out of the home" in read.problems[0]
    assert placeholders(read.tasks[1], read)["TASK_FILE"] == str(folder.resolve() / "0020-b.md")
    assert placeholders(read.tasks[1], read)["TASK"] == "Second\nmore words"

    assert mark(DIR, workdir, "0010-a.md", D)
    assert mark(DIR, workdir, "0020-b.md", B)
    assert not mark(DIR, workdir, "0099-none.md", D)
    assert not mark(DIR, workdir, "../secret.md", D)
    after = read_pool(DIR, workdir)
    assert [(t.id, t.state) for t in after.tasks] == [("0010-a.md", D), ("0020-b.md", B)]
    assert (folder / "done" / "0010-a.md").is_file() and (folder / "blocked" / "0020-b.md").is_file()
    assert after.task_file(after.tasks[0]) == folder.resolve() / "done" / "0010-a.md"
    assert mark(DIR, workdir, "0020-b.md", OP) and (folder / "0020-b.md").is_file()

    # a task of the same name done before keeps its file: the new one gets another name
    (folder / "0010-a.md").write_text("First task again\n", encoding="utf-8")
    assert mark(DIR, workdir, "0010-a.md", D)
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["0010-a-2.md", "0010-a.md"]


def test_append_to_a_directory_pool(workdir: Path) -> None:
    """A new task never replaces anything: a folder squatting on the next name (not a task, so
    not counted) is stepped over. Broke `os.link(tmp, ...)` as `os.replace(tmp, ...)` (which
    overwrites): IsADirectoryError, red; dropped `taken.append(name)`: 'could not find a free
    file name', red."""
    folder = workdir / "tasks"
    (folder / "done").mkdir(parents=True)
    (folder / "0012-fix-the-login.md").mkdir()
    (folder / "done" / "0010-old.md").write_text("old\n", encoding="utf-8")
    task = append_task(DIR, workdir, "Fix the login\nwith details")
    assert (task.id, task.text, task.body) == ("0011-fix-the-login.md", "Fix the login", "with details")
    assert (folder / task.id).read_text(encoding="utf-8") == "Fix the login\nwith details\n"
    assert stat.S_IMODE((folder / task.id).stat().st_mode) == 0o644
    second = append_task(DIR, workdir, "Fix the login")
    assert second.id == "0013-fix-the-login.md"
    assert [t.id for t in read_pool(DIR, workdir).open] == ["0011-fix-the-login.md", "0013-fix-the-login.md"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "0011-fix-the-login.md", "0012-fix-the-login.md", "0013-fix-the-login.md", "done",
    ]


@pytest.mark.parametrize("setup, reason", [
    ("missing", "'tasks/' does not exist in the workdir"),
    ("file", "'tasks/' is not a directory"),
    ("symlink-out", "'tasks/' leads outside the workdir"),
])
def test_bad_directory_pools(workdir: Path, tmp_path: Path, setup: str, reason: str) -> None:
    if setup == "file":
        (workdir / "tasks").write_text("x", encoding="utf-8")
    elif setup == "symlink-out":
        (tmp_path / "elsewhere").mkdir()
        (workdir / "tasks").symlink_to(tmp_path / "elsewhere")
    problems = check_pool(DIR, workdir)
    assert len(problems) == 1 and reason in problems[0].reason
    with pytest.raises(PoolError, match=reason.replace("/", ".")):
        append_task(DIR, workdir, "x")


def test_a_big_task_file_is_reported_and_skipped(workdir: Path) -> None:
    folder = workdir / "tasks"
    folder.mkdir()
    (folder / "a.md").write_bytes(b"x" * (taskpool.MAX_TASK_FILE_BYTES + 1))
    (folder / "b.md").write_text("fine\n", encoding="utf-8")
    read = read_pool(DIR, workdir)
    assert [t.id for t in read.tasks] == ["b.md"]
    assert read.problems == ("'tasks/a.md' is 262,145 bytes, over the 262,144-byte limit",)
