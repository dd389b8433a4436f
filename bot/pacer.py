"""Pacing of sends so that Telegram never answers 429: about one message per second per chat,
twenty per minute in groups, thirty per second overall. Shared by the outbox and command replies.

Command replies come first: while a reply waits for its chat's turn (`acquire`), the outbox
sender, which asks with `delay(..., behind_replies=True)`, leaves that chat's turns to it. So an
answer to `/status` goes out in the next free turn however many notifications queue up."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import deque
from datetime import timedelta

from telegram.error import RetryAfter


def retry_after_s(exc: RetryAfter) -> float:
    """Seconds Telegram asked to wait. PTB 22 keeps them as a timedelta; its public
    `retry_after` returns an int with a deprecation warning unless PTB_TIMEDELTA is set, so read
    the timedelta as PTB's own retry loop does."""
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, timedelta):
        return value.total_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = exc.retry_after
    return float(raw if isinstance(raw, int | float) else raw.total_seconds())


# How long a notification steps back for a reply waiting for the same chat before looking again.
YIELD_S = 0.1


class Pacer:
    def __init__(self, *, per_chat_s: float = 1.05, group_per_minute: int = 19, global_per_second: int = 25) -> None:
        self.per_chat_s = per_chat_s
        self.group_per_minute = group_per_minute
        self.global_per_second = global_per_second
        self._last: dict[int, float] = {}
        self._group: dict[int, deque[float]] = {}
        self._global: deque[float] = deque()
        self._replies_waiting: dict[int, int] = {}

    def delay(self, chat_id: int, now: float | None = None, *, behind_replies: bool = False) -> float:
        """Seconds until a message to this chat may go (0 when it may go now). `behind_replies`:
        for notifications, which wait while a reply to the same chat waits for its turn."""
        now = time.monotonic() if now is None else now
        wait = YIELD_S if behind_replies and self._replies_waiting.get(chat_id) else 0.0
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
        """Wait for this chat's turn and take it, ahead of notifications. No lock: the last check
        and the record happen without an await between them, and a wait for one chat never
        holds up another."""
        self._replies_waiting[chat_id] = self._replies_waiting.get(chat_id, 0) + 1
        try:
            while (wait := self.delay(chat_id)) > 0:  # noqa: ASYNC110 (time-based, no event)
                await asyncio.sleep(wait)
            self.record(chat_id)
        finally:
            self._replies_waiting[chat_id] -= 1
            if not self._replies_waiting[chat_id]:
                del self._replies_waiting[chat_id]

    def backoff(self, chat_id: int, seconds: float) -> None:
        """Telegram said retry_after: nothing to this chat before then."""
        self._last[chat_id] = time.monotonic() + seconds - self.per_chat_s
