"""Directory task pools (engine/taskpool.py) on the paths tests/test_taskpool.py leaves out: an
empty or oversized task refused before anything is written, and a `done` that is a file, not a
folder (the task stays where it is). Real files in a temp workdir."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.taskpool import MAX_TASK_FILE_BYTES, append_task, mark, read_pool
from engine.tasks import DirectoryPool, PoolError, TaskState


def test_an_empty_or_oversized_task_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """Red with _new_task_file's empty check removed (a file holding only a newline appears) or its
    size check removed (a 256 KiB + 1 task file appears)."""
    (tmp_path / "tasks").mkdir()
    pool = DirectoryPool(path="tasks/")
    with pytest.raises(PoolError, match="the task is empty"):
        append_task(pool, tmp_path, "  \n ")
    with pytest.raises(PoolError, match="the task is over the 262,144-byte limit"):
        append_task(pool, tmp_path, "x" * (MAX_TASK_FILE_BYTES + 1))
    assert list((tmp_path / "tasks").iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_done_that_is_not_a_folder_is_refused_and_the_task_stays_open(tmp_path: Path, kind: str) -> None:
    """Red with _move_task's check of the state folder removed (the task is moved through the
    symlink out of the pool), or, for a file, with mkdir's FileExistsError let through (it was,
    before this test: a bare FileExistsError instead of the PoolError that names the folder)."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "elsewhere").mkdir()
    pool = DirectoryPool(path="tasks/")
    task = append_task(pool, tmp_path, "fix the build")
    done = tmp_path / "tasks" / "done"
    if kind == "file":
        done.write_text("not a folder\n")
    else:
        done.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PoolError, match="tasks/done is not a folder"):
        mark(pool, tmp_path, task.id, TaskState.DONE)
    assert [t.id for t in read_pool(pool, tmp_path).tasks if t.state is TaskState.OPEN] == [task.id]
    assert list((tmp_path / "elsewhere").iterdir()) == []
