"""The cap on agent processes across every llmauto process of one home.

`LLMAUTO_MAX_PARALLEL_LINKS` counts claude processes of the whole home: `serve`, foreground and
background `chain start`s all draw from the same N slots. A slot is a file `state/slots/slot-I.lock`
held with a non-blocking `fcntl.flock`; whoever holds the lock on one of the N files may run one
agent. The kernel drops a flock when its holder dies, however it dies (SIGKILL included), so a crash
never leaks a slot and nothing needs cleaning up. Waiters poll (every `poll_s`); within one process
they queue on an asyncio.Lock, so they get slots in the order they asked (FIFO-ish: across
processes it is whoever polls first).

`FileSlots` is an `asyncio.Semaphore` as far as its users see (`async with slots:`), so the run
loop does not know whether its cap is local or home-wide. The lock files are opened close-on-exec
(Python's default), so an agent never inherits, and never outlives its run holding, a slot. A
slot released in this process wakes its waiters at once, without waiting for the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

POLL_S = 0.25


class FileSlots(asyncio.Semaphore):
    """N slots shared by every process that opens the same folder with the same N."""

    def __init__(self, folder: Path, count: int, *, poll_s: float = POLL_S) -> None:
        if count < 1:
            raise ValueError(f"slot count must be at least 1, got {count}")
        super().__init__(count)
        self.folder = folder
        self.count = count
        self.poll_s = poll_s
        self._held: list[int] = []  # fds of the slot files this process holds locked
        self._turn = asyncio.Lock()  # waiters of this process, in order
        self._freed = asyncio.Event()  # a slot of this process was released
        self._paths = [str(folder / f"slot-{index}.lock") for index in range(count)]

    def _open(self, index: int) -> int:
        path = self._paths[index]
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the folder is created on the first take (and again if removed)
            self.folder.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _try_take(self) -> bool:
        for index in range(self.count):
            fd = self._open(index)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self._held.append(fd)
            return True
        return False

    def locked(self) -> bool:
        """True when no slot is free right now (in any process)."""
        if self._try_take():
            self.release()
            return False
        return True

    @property
    def held(self) -> int:
        """Slots this process holds."""
        return len(self._held)

    async def acquire(self, on_wait: Callable[[], None] | None = None) -> Literal[True]:
        """Wait for a free slot and take it. `on_wait` is called once if the slot is not free at
        once (to tell people why nothing happens)."""
        async with self._turn:
            told = False
            while True:
                self._freed.clear()
                if self._try_take():
                    return True
                if not told and on_wait is not None:
                    told = True
                    on_wait()
                # A slot freed in this process wakes the waiter at once; other processes' are polled.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), self.poll_s)

    def release(self) -> None:
        if not self._held:
            raise ValueError("FileSlots released more often than acquired")
        fd = self._held.pop()
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._freed.set()


class WaitingSlots(asyncio.Semaphore):
    """One run's view of the shared slots: the same slots, plus a note when it has to wait."""

    def __init__(self, slots: FileSlots, on_wait: Callable[[], None]) -> None:
        super().__init__(1)
        self.slots = slots
        self.on_wait = on_wait

    def locked(self) -> bool:
        return self.slots.locked()

    async def acquire(self) -> Literal[True]:
        return await self.slots.acquire(self.on_wait)

    def release(self) -> None:
        self.slots.release()
