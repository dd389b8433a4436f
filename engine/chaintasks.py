"""A chain's task pool from outside its run: adding a task and listing the pool, for the chat's
`/task` and `/tasks` and the CLI's `chain task` and `chain tasks`.

Both only touch the pool's file (or folder) through `engine/taskpool.py`, which re-reads and
replaces atomically, so a task added while the chain runs is safe next to the run's own marking
and is taken when a round starts (each round reads the pool afresh). The chain is loaded by the
caller (`Engine.load`), so an unknown chain, an invalid definition or a pool that cannot be read
(validation reads it) fails there with its reason; what is left here is the chain without a pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine import taskpool
from engine.chains import ChainDef
from engine.errors import ChainError
from engine.tasks import PoolDef, PoolRead, Task


class NoTaskPool(ChainError):
    """The chain has no `task_pool`: there is nothing to add to or list."""


@dataclass(frozen=True, kw_only=True)
class Added:
    task: Task
    pool: PoolRead  # the pool as read right after the addition


def pool_of(chain: ChainDef, home: Path) -> tuple[PoolDef, Path]:
    """The chain's pool and the folder its path is relative to (the workdir, else the home)."""
    if chain.task_pool is None:
        raise NoTaskPool(f"{chain.name} has no task_pool: add one to {chain.path.name}, "
                         'e.g. "task_pool": {"type": "file", "path": "TODO.md"}')
    return chain.task_pool, chain.workdir or home


def read_tasks(chain: ChainDef, home: Path) -> PoolRead:
    """The pool's tasks now (PoolError when it cannot be read)."""
    pool, workdir = pool_of(chain, home)
    return taskpool.read_pool(pool, workdir)


def add_task(chain: ChainDef, home: Path, text: str) -> Added:
    """Append one open task (PoolError: empty, too long, the pool cannot be read or written)."""
    pool, workdir = pool_of(chain, home)
    task = taskpool.append_task(pool, workdir, text)
    return Added(task=task, pool=taskpool.read_pool(pool, workdir))
