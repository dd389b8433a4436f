"""Task pools on disk: a chain works through a list of tasks, one per round.

A chain's `task_pool` is one of

    {"type": "file", "path": "TODO.md"}                          (format "checkbox", the default)
    {"type": "file", "path": "ideas.txt", "format": "lines"}
    {"type": "directory", "path": "tasks/", "pattern": "*.md"}

with the path inside the chain's workdir (relative to it, or absolute but inside it). The text
formats and task ids are described in `engine/tasks.py` (pure); this module reads and changes
the files.

Directory pools: each regular file in the folder whose name matches `pattern` (not hidden) is an
open task, in file-name order (name them `0010-login.md`); `{TASK}` is its content. Done tasks
are moved to `done/`, blocked ones to `blocked/` inside the folder; a task added from the phone
becomes `NNNN-slug.md`, numbered after the highest number there.

Tasks are read afresh at the start of each round, so a person may add tasks while a chain runs.
Every change is a re-read, a change of the one task found by its id, and an atomic replace (temp
file, fsync, rename, keeping the file's mode); if the file changed between the read and the
replace, the change is redone on the new text. Reads are bounded (`MAX_POOL_BYTES`) and never
follow a symlink out of the workdir (`statefiles.open_regular`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections.abc import Callable
from pathlib import Path

from engine.routing import Problem
from engine.statefiles import NotAFile, open_regular
from engine.tasks import (
    BLOCKED_DIR,
    DONE_DIR,
    DirectoryPool,
    FilePool,
    PoolDef,
    PoolError,
    PoolRead,
    Task,
    TaskState,
    append_to_text,
    clean_task_text,
    mark_in_text,
    new_task_name,
    parse_tasks,
)

MAX_POOL_BYTES = 1024 * 1024  # a pool file larger than this is refused, never read whole
MAX_TASK_FILE_BYTES = 256 * 1024  # one task file of a directory pool
MAX_DIR_TASKS = 1000  # open task files read per round
_WRITE_ATTEMPTS = 5


# ---- the disk ------------------------------------------------------------------------------------

def resolve(pool: PoolDef, workdir: Path) -> Path:
    """The pool's real path, checked to lie inside the workdir (symlinks and `..` resolved)."""
    raw = Path(pool.path).expanduser()
    path = raw if raw.is_absolute() else workdir / raw
    real_root = Path(os.path.realpath(workdir))
    real = Path(os.path.realpath(path))
    if real != real_root and not real.is_relative_to(real_root):
        raise PoolError(f"{pool.path!r} leads outside the workdir {real_root} (to {real})")
    if real == real_root and isinstance(pool, FilePool):
        raise PoolError(f"{pool.path!r} is the workdir itself, not a file")
    return real


def check_pool(pool: PoolDef, workdir: Path, field_path: str = "task_pool.path") -> list[Problem]:
    """What keeps the pool from being used now, as validation problems (empty: usable)."""
    try:
        read_pool(pool, workdir)
    except PoolError as exc:
        return [Problem(field_path, str(exc))]
    return []


def read_pool(pool: PoolDef, workdir: Path) -> PoolRead:
    """The pool's tasks now. PoolError when the pool as a whole cannot be read."""
    if isinstance(pool, FilePool):
        path = resolve(pool, workdir)
        text, _ = _read_text(path, workdir, MAX_POOL_BYTES, pool.path)
        return PoolRead(source=path, tasks=tuple(parse_tasks(text, pool.format)))
    return _read_directory(pool, workdir)


def _read_text(path: Path, workdir: Path, limit: int, shown: str) -> tuple[str, os.stat_result]:
    """A file's text, bounded, never through a symlink out of the workdir, and its stat."""
    try:
        fd = open_regular(path, workdir)
    except FileNotFoundError:
        raise PoolError(f"{shown!r} does not exist in the workdir {workdir}") from None
    except NotAFile as exc:
        raise PoolError(f"{shown!r}: {exc.problem}") from None
    except OSError as exc:
        raise PoolError(f"{shown!r} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if st.st_size > limit:
            raise PoolError(f"{shown!r} is {st.st_size:,} bytes, over the {limit:,}-byte limit")
        try:
            raw = handle.read(limit + 1)
        except OSError as exc:
            raise PoolError(f"{shown!r} cannot be read: {exc.strerror}") from None
    if len(raw) > limit:  # grew between the stat and the read
        raise PoolError(f"{shown!r} is over the {limit:,}-byte limit")
    if b"\x00" in raw:
        raise PoolError(f"{shown!r} holds binary data (NUL bytes)")
    try:
        return raw.decode("utf-8-sig"), st
    except UnicodeDecodeError as exc:
        raise PoolError(f"{shown!r} is not UTF-8 text (byte {exc.start})") from None


def _replace(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` atomically (temp file in the same folder, fsync, rename), mode kept."""
    import tempfile  # writers only: loading a chain skips it (#14)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), stat.S_IMODE(mode))
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_ino, b.st_size, b.st_mtime_ns)


def _edit_file(pool: FilePool, workdir: Path, edit: Callable[[str], str | None]) -> str | None:
    """Read, apply `edit(text) -> new text | None`, replace; redone on the new text if a person
    saved the file between the read and the replace. Returns what the file holds now, or None
    when `edit` found nothing to change (None)."""
    path = resolve(pool, workdir)
    for _ in range(_WRITE_ATTEMPTS):
        text, st = _read_text(path, workdir, MAX_POOL_BYTES, pool.path)
        new = edit(text)
        if new is None or new == text:
            return new
        if len(new.encode("utf-8")) > MAX_POOL_BYTES:
            raise PoolError(f"{pool.path!r} would grow over the {MAX_POOL_BYTES:,}-byte limit")
        with contextlib.suppress(FileNotFoundError):
            if _same(os.stat(path), st):
                _replace(path, new, st.st_mode)
                return new
    raise PoolError(f"{pool.path!r} kept changing while a task was being written; try again")


def mark(pool: PoolDef, workdir: Path, task_id_: str, state: TaskState) -> bool:
    """Put one task in `state` (done: `[x]` or done/; blocked: `[!]` or blocked/; open: back).
    False if no task has that id any more (a person removed or reworded it)."""
    if isinstance(pool, FilePool):
        return _edit_file(pool, workdir, lambda text: mark_in_text(text, pool.format, task_id_, state)) is not None
    return _move_task(pool, workdir, task_id_, state)


def append_task(pool: PoolDef, workdir: Path, text: str) -> Task:
    """Add an open task at the end of the pool and return it."""
    if isinstance(pool, FilePool):
        line = clean_task_text(text)
        written = _edit_file(pool, workdir, lambda old: append_to_text(old, pool.format, line)) or ""
        tasks = [t for t in parse_tasks(written, pool.format) if t.text == line]
        return tasks[-1]
    return _new_task_file(pool, workdir, text)


# ---- directory pools -----------------------------------------------------------------------------

def _folder(pool: DirectoryPool, workdir: Path) -> Path:
    folder = resolve(pool, workdir)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        raise PoolError(f"{pool.path!r} does not exist in the workdir {workdir}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PoolError(f"{pool.path!r} is not a directory")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise PoolError(f"{pool.path!r} cannot be read: Permission denied")
    return folder


def _names(folder: Path, pattern: str) -> list[str]:
    """Task file names in `folder` (sorted; not hidden; matching; no sub-folders)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if not e.name.startswith(".") and fnmatch.fnmatchcase(e.name, pattern)
                     and not e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    return sorted(names)


def _state_folder(folder: Path, sub: str) -> Path | None:
    """done/ or blocked/, if it is a real folder (a symlink there is ignored, never followed)."""
    path = folder / sub
    try:
        return path if stat.S_ISDIR(os.lstat(path).st_mode) else None
    except FileNotFoundError:
        return None


def _read_directory(pool: DirectoryPool, workdir: Path) -> PoolRead:
    folder = _folder(pool, workdir)
    tasks: list[Task] = []
    problems: list[str] = []
    names = _names(folder, pool.pattern)
    if len(names) > MAX_DIR_TASKS:
        problems.append(f"{len(names) - MAX_DIR_TASKS} task files after the first {MAX_DIR_TASKS:,} not read")
    for name in names[:MAX_DIR_TASKS]:
        try:
            content, _ = _read_text(folder / name, workdir, MAX_TASK_FILE_BYTES, f"{pool.path.rstrip('/')}/{name}")
        except PoolError as exc:
            problems.append(str(exc))
            continue
        title, _, body = content.strip().partition("\n")
        tasks.append(Task(id=name, text=title.strip().lstrip("#").strip() or name, body=body.strip(), file=name))
    for sub, state in ((DONE_DIR, TaskState.DONE), (BLOCKED_DIR, TaskState.BLOCKED)):
        sub_folder = _state_folder(folder, sub)
        if sub_folder is not None:
            tasks += [Task(id=n, text=n, state=state, file=n) for n in _names(sub_folder, pool.pattern)[:MAX_DIR_TASKS]]
    return PoolRead(source=folder, tasks=tuple(tasks), problems=tuple(problems), is_directory=True)


def _free_name(folder: Path, name: str) -> str:
    stem, dot, ext = name.partition(".")
    candidate, n = name, 1
    while os.path.lexists(folder / candidate):
        n += 1
        candidate = f"{stem}-{n}{dot}{ext}"
    return candidate


def _move_task(pool: DirectoryPool, workdir: Path, task_id_: str, state: TaskState) -> bool:
    folder = _folder(pool, workdir)
    where = {TaskState.OPEN: folder, TaskState.DONE: folder / DONE_DIR, TaskState.BLOCKED: folder / BLOCKED_DIR}
    if "/" in task_id_ or task_id_.startswith(".") or not task_id_:
        return False
    for current_state, current in where.items():
        if current_state is not TaskState.OPEN and _state_folder(folder, current.name) is None:
            continue
        source = current / task_id_
        if not os.path.lexists(source):
            continue
        if current_state is state:
            return True
        target = where[state]
        if state is not TaskState.OPEN:
            with contextlib.suppress(FileExistsError):  # a file of that name: refused just below
                target.mkdir(exist_ok=True)
            if _state_folder(folder, target.name) is None:
                raise PoolError(f"{pool.path.rstrip('/')}/{target.name} is not a folder")
        os.rename(source, target / _free_name(target, task_id_))
        return True
    return False


def _new_task_file(pool: DirectoryPool, workdir: Path, text: str) -> Task:
    folder = _folder(pool, workdir)
    body = text.strip()
    if not body:
        raise PoolError("the task is empty")
    if len(body.encode("utf-8")) > MAX_TASK_FILE_BYTES:
        raise PoolError(f"the task is over the {MAX_TASK_FILE_BYTES:,}-byte limit")
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".new-task.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body + "\n")
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        taken: list[str] = []
        for _ in range(_WRITE_ATTEMPTS):
            existing = _names(folder, pool.pattern) + taken
            for sub in (DONE_DIR, BLOCKED_DIR):
                if (f := _state_folder(folder, sub)) is not None:
                    existing += _names(f, pool.pattern)
            name = new_task_name(body.partition("\n")[0], pool.pattern, existing)
            try:
                os.link(tmp, folder / name)  # fails if the name is taken (meanwhile): never overwrites
            except FileExistsError:
                taken.append(name)
                continue
            title, _, rest = body.partition("\n")
            return Task(id=name, text=title.strip().lstrip("#").strip() or name, body=rest.strip(), file=name)
        raise PoolError(f"could not find a free file name in {pool.path!r}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
