"""Driving a coroutine that never waits, without an event loop.

A one-shot CLI command (`chain status`, `reset`, `stop`, `log`...) runs the same `Engine` and
`Store` coroutines as `serve`, on a blocking SQLite database (`engine.db_sqlite`), where every
`await` completes at once. Such a coroutine finishes on its first step, so it needs no event
loop, and the command never imports asyncio: about a third of its whole-process cost (#14,
`bench/whole_process.py`). If the coroutine does wait on something (an event-loop future, a
sleep), that is a bug in the command's choice of driver, and it says so instead of hanging.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class NeedsEventLoop(RuntimeError):
    """The coroutine waited: it needs `asyncio.run`, not `run_loopless`."""


def run_loopless(coro: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result (or its exception), run to its end in one step."""
    try:
        waited_on = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    where = _suspended_at(coro)
    coro.close()  # runs its finally blocks (the store closes its connection)
    raise NeedsEventLoop(f"{getattr(coro, '__qualname__', coro)!s} waited on {waited_on!r} at {where}: "
                         "it needs an event loop")


def _suspended_at(coro: Any) -> str:
    """Where the coroutine waits: file:line (function) of each frame of its await chain that can
    be followed, outermost first."""
    where = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(where) or "?"
