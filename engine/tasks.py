"""Task lists, pure: the pool definitions, the task model, parsing and editing a pool's text.

The disk side (reading bounded, marking, appending, directory pools) is `engine/taskpool.py`.

A file pool's format `checkbox` (the default): each markdown checkbox line (`- [ ] text`, also
`*`, `+` or `1.` bullets) is a task; `[ ]` open, `[x]` done, `[!]` blocked. Lines indented under a
checkbox (until a blank or a less-indented line) are its details, so nested checkboxes belong to
their parent task. Everything else (headings, prose) is context and is never touched. Format
`lines`: every non-empty line that is not a heading (`#`) or an HTML comment is a task; marking
one turns it into a checkbox line (`fix the login` → `- [x] fix the login`), so a lines pool
reads the same marks back.

A file task's id is the first 8 hex digits of the SHA-1 of its text (whitespace collapsed), plus
`-2`, `-3`... for the second, third task with the same text. It survives a person adding,
removing or reordering other lines, and marking (which changes the box, not the text); editing
the task's own text makes it a new task. Line numbers would not survive the first insertion
above. A directory task's id is its file name.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from engine.errors import LlmautoError
from engine.records import Record
from engine.routing import Problem

MAX_TASK_CHARS = 4000  # a task added from the phone or the CLI
PLACEHOLDERS = ("TASK", "TASK_ID", "TASKS_LEFT", "TASK_FILE")
DONE_DIR, BLOCKED_DIR = "done", "blocked"

Format = Literal["checkbox", "lines"]


class PoolError(LlmautoError):
    """The task pool cannot be used: missing, unreadable, outside the workdir, too large."""


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"
    BLOCKED = "blocked"


_MARKS = {TaskState.OPEN: " ", TaskState.DONE: "x", TaskState.BLOCKED: "!"}
_STATE_OF_MARK = {" ": TaskState.OPEN, "x": TaskState.DONE, "X": TaskState.DONE, "!": TaskState.BLOCKED}


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class FilePool(Record):
    path: str  # as written in the chain
    format: Format = "checkbox"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class DirectoryPool(Record):
    path: str
    pattern: str = "*.md"


PoolDef = FilePool | DirectoryPool


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Task(Record):
    id: str
    text: str  # the task's line (file) or its first line (directory)
    state: TaskState = TaskState.OPEN
    body: str = ""  # the lines under it (file) or the rest of the file (directory)
    line: int | None = None  # 1-based, at the time of the read (file pools)
    file: str | None = None  # the file's name (directory pools)

    @property
    def full_text(self) -> str:
        return f"{self.text}\n{self.body}" if self.body else self.text


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class PoolRead(Record):
    """The tasks of a pool as read at one moment, and per-task problems (a directory pool's task
    file that is too large or a symlink out is left out and reported here)."""

    source: Path  # the pool's file or folder, resolved
    tasks: tuple[Task, ...] = ()
    problems: tuple[str, ...] = ()
    is_directory: bool = False

    def in_state(self, state: TaskState) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.state is state)

    @property
    def open(self) -> tuple[Task, ...]:
        return self.in_state(TaskState.OPEN)

    @property
    def done(self) -> tuple[Task, ...]:
        return self.in_state(TaskState.DONE)

    @property
    def blocked(self) -> tuple[Task, ...]:
        return self.in_state(TaskState.BLOCKED)

    def task_file(self, task: Task) -> Path:
        if self.is_directory and task.file is not None:
            folder = {TaskState.DONE: DONE_DIR, TaskState.BLOCKED: BLOCKED_DIR}.get(task.state)
            return self.source / folder / task.file if folder else self.source / task.file
        return self.source


# ---- the definition (pure) ---------------------------------------------------------------------

def parse_pool(raw: Any, field_path: str = "task_pool") -> tuple[PoolDef | None, list[Problem]]:
    """The pool a chain's raw `task_pool` value defines (shape only; `check_pool` looks at the disk)."""
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, [Problem(field_path, 'expected an object like {"type": "file", "path": "TODO.md"}')]
    problems: list[Problem] = []
    unknown = sorted(set(map(str, raw)) - {"type", "path", "pattern", "format"})
    problems += [Problem(f"{field_path}.{k}", "unknown field") for k in unknown]
    kind = raw.get("type")
    if kind not in ("file", "directory"):
        problems.append(Problem(f"{field_path}.type", f"expected file or directory, got {kind!r}"))
    path = raw.get("path")
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        problems.append(Problem(f"{field_path}.path", "expected a path inside the workdir"))
    if kind == "file":
        fmt = raw.get("format", "checkbox")
        if fmt not in ("checkbox", "lines"):
            problems.append(Problem(f"{field_path}.format", f"expected checkbox or lines, got {fmt!r}"))
        if "pattern" in raw:
            problems.append(Problem(f"{field_path}.pattern", "only a directory pool has a pattern"))
        return (None if problems else FilePool(path=str(path), format=fmt)), problems
    if kind == "directory":
        pattern = raw.get("pattern", "*.md")
        if not isinstance(pattern, str) or not pattern.strip() or "/" in pattern or pattern.startswith("."):
            problems.append(Problem(f"{field_path}.pattern", f"expected a file-name pattern like *.md, got {pattern!r}"))
        if "format" in raw:
            problems.append(Problem(f"{field_path}.format", "only a file pool has a format"))
        return (None if problems else DirectoryPool(path=str(path), pattern=str(pattern))), problems
    return None, problems


# ---- file pools: parsing and editing text (pure) --------------------------------------------------

_CHECKBOX = re.compile(
    r"^(?P<indent>[ \t]*)(?P<bullet>[-*+]|\d{1,9}[.)])[ \t]+\[(?P<mark>[ xX!])\](?:[ \t]+(?P<text>.*?))?[ \t]*$"
)
_BULLET = re.compile(r"^(?:[-*+]|\d{1,9}[.)])[ \t]+")


def task_id(text: str, occurrence: int = 1) -> str:
    """The id of the `occurrence`-th task with this text (see the module docstring)."""
    import hashlib  # only pools need ids: loading a chain skips it (#14)

    digest = hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()[:8]
    return digest if occurrence <= 1 else f"{digest}-{occurrence}"


def _width(indent: str) -> int:
    return len(indent.expandtabs(4))


def _entries(text: str, fmt: Format) -> list[tuple[int, str, TaskState, str]]:
    """(line index, task text, state, body) for each task, in file order."""
    lines = text.splitlines()
    out: list[tuple[int, str, TaskState, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _CHECKBOX.match(line)
        if m and m.group("text"):
            own = _width(m.group("indent"))
            j = i + 1
            while fmt == "checkbox" and j < len(lines) and lines[j].strip() and _width(_indent(lines[j])) > own:
                j += 1
            out.append((i, m.group("text"), _STATE_OF_MARK[m.group("mark")], _dedent(lines[i + 1:j])))
            i = j
            continue
        stripped = line.strip()
        if fmt == "lines" and stripped and not stripped.startswith(("#", "<!--")) and not m:
            out.append((i, _BULLET.sub("", stripped).strip() or stripped, TaskState.OPEN, ""))
        i += 1
    return out


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _dedent(lines: list[str]) -> str:
    if not lines:
        return ""
    cut = min(len(_indent(ln)) for ln in lines)
    return "\n".join(ln[cut:].rstrip() for ln in lines)


def parse_tasks(text: str, fmt: Format = "checkbox") -> list[Task]:
    """The tasks of a file pool's text."""
    seen: dict[str, int] = {}
    tasks = []
    for index, task_text, state, body in _entries(text, fmt):
        key = " ".join(task_text.split())
        seen[key] = seen.get(key, 0) + 1
        tasks.append(Task(id=task_id(task_text, seen[key]), text=task_text.strip(), state=state, body=body, line=index + 1))
    return tasks


def mark_in_text(text: str, fmt: Format, task_id_: str, state: TaskState) -> str | None:
    """`text` with the one task `task_id_` put in `state` (only its line changes, line endings
    kept); unchanged if it already is; None if no task has that id (a person removed it)."""
    task = next((t for t in parse_tasks(text, fmt) if t.id == task_id_), None)
    if task is None or task.line is None:
        return None
    if task.state is state:
        return text
    lines = text.splitlines(keepends=True)
    line = lines[task.line - 1]
    content = line.rstrip("\r\n")
    ending = line[len(content):]
    m = _CHECKBOX.match(content)
    if m:
        start, end = m.span("mark")
        content = content[:start] + _MARKS[state] + content[end:]
    else:
        content = f"{_indent(content)}- [{_MARKS[state]}] {task.text}"
    lines[task.line - 1] = content + ending
    return "".join(lines)


def clean_task_text(text: str) -> str:
    """A new task's text on one line; PoolError if there is nothing left or it is too long."""
    one_line = " ".join(text.split())
    if not one_line:
        raise PoolError("the task is empty")
    if len(one_line) > MAX_TASK_CHARS:
        raise PoolError(f"the task is {len(one_line):,} characters, over the {MAX_TASK_CHARS:,} limit")
    return one_line


def append_to_text(text: str, fmt: Format, task_text: str) -> str:
    """`text` with a new open task at its end (`- [ ] text`, or the bare line in a lines pool)."""
    line = clean_task_text(task_text)
    ending = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith(("\n", "\r")):
        text += ending
    return text + (line if fmt == "lines" else f"- [ ] {line}") + ending


# ---- choosing and describing (pure) --------------------------------------------------------------

def next_open(tasks: Iterable[Task], skip_ids: Iterable[str] = ()) -> Task | None:
    """The first open task not in `skip_ids` (e.g. tasks the run could not mark)."""
    skip = set(skip_ids)
    return next((t for t in tasks if t.state is TaskState.OPEN and t.id not in skip), None)


def placeholders(task: Task, read: PoolRead) -> dict[str, str]:
    """{TASK}, {TASK_ID}, {TASKS_LEFT} (open tasks, this one included), {TASK_FILE} (absolute)."""
    return {
        "TASK": task.full_text,
        "TASK_ID": task.id,
        "TASKS_LEFT": str(len(read.open)),
        "TASK_FILE": str(read.task_file(task)),
    }


def listing(read: PoolRead, max_each: int = 20) -> str:
    """Open, done and blocked tasks as short text (for `/tasks NAME`)."""
    parts = []
    for title, tasks in (("open", read.open), ("done", read.done), ("blocked", read.blocked)):
        parts.append(f"{title} ({len(tasks)})")
        parts += [f"  {t.id}  {t.text[:100]}" for t in tasks[:max_each]]
        if len(tasks) > max_each:
            parts.append(f"  … and {len(tasks) - max_each} more")
    parts += [f"problem: {p}" for p in read.problems]
    return "\n".join(parts)


_SLUG = re.compile(r"[^a-z0-9]+")
_NUMBER = re.compile(r"^(\d+)")


def new_task_name(text: str, pattern: str, existing: Iterable[str]) -> str:
    """A file name for a new task that sorts after every numbered task: `0042-fix-the-login.md`."""
    numbers = [int(m.group(1)) for n in existing if (m := _NUMBER.match(n))]
    suffix = pattern[1:] if pattern.startswith("*") and not any(c in pattern[1:] for c in "*?[") else ".md"
    slug = _SLUG.sub("-", text.lower()).strip("-")[:40].strip("-") or "task"
    name = f"{max(numbers, default=0) + 1:04d}-{slug}{suffix}"
    if not fnmatch.fnmatchcase(name, pattern):
        raise PoolError(f"cannot name a new task file that matches the pattern {pattern!r}")
    return name


def counts(read: PoolRead) -> Mapping[TaskState, int]:
    return {s: len(read.in_state(s)) for s in TaskState}
