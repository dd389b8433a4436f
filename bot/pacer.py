"""Pacing of sends so that Telegram never answers 429: about one message per second per chat,
twenty per minute in groups, thirty per second overall. Shared by the outbox and command replies."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class Pacer:
    def __init__(self, *, per_chat_s: float = 1.05, group_per_minute: int = 19, global_per_second: int = 25) -> None:
        self.per_chat_s = per_chat_s
        self.group_per_minute = group_per_minute
        self.global_per_second = global_per_second
        self._last: dict[int, float] = {}
        self._group: dict[int, deque[float]] = {}
        self._global: deque[float] = deque()

    def delay(self, chat_id: int, now: float | None = None) -> float:
        """Seconds until a message to this chat may go (0 when it may go now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        last = self._last.get(chat_id)
        if last is not None:
            wait = max(wait, last + self.per_chat_s - now)
        if chat_id < 0:
            sends = self._group.get(chat_id, deque())
            while sends and now - sends[0] >= 60:
                sends.popleft()
            if len(sends) >= self.group_per_minute:
                wait = max(wait, sends[0] + 60 - now)
        while self._global and now - self._global[0] >= 1:
            self._global.popleft()
        if len(self._global) >= self.global_per_second:
            wait = max(wait, self._global[0] + 1 - now)
        return max(0.0, wait)

    def record(self, chat_id: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._last[chat_id] = now
        if chat_id < 0:
            self._group.setdefault(chat_id, deque()).append(now)
        self._global.append(now)

    async def acquire(self, chat_id: int) -> None:
        """Wait for this chat's turn and take it. No lock: the last check and the record happen
        without an await between them, and a wait for one chat never holds up another."""
        while (wait := self.delay(chat_id)) > 0:  # noqa: ASYNC110 (time-based, no event)
            await asyncio.sleep(wait)
        self.record(chat_id)

    def backoff(self, chat_id: int, seconds: float) -> None:
        """Telegram said retry_after: nothing to this chat before then."""
        self._last[chat_id] = time.monotonic() + seconds - self.per_chat_s
