"""Long polling of `getUpdates` into the Application's update queue.

Why not PTB's `Updater`: after a `409 Conflict` (another process polls the same token) it goes on
retrying until it is stopped, and stopping it sends one more `getUpdates` to confirm the offset;
each of those cuts off the other process's long poll, which then gets the 409 in turn, so both
would end. Here a 409 (or a refused token) ends polling at once, with no further request, and
`serve` ends with a clear message. Everything else is retried: network errors and 5xx with a
growing delay (up to `MAX_BACKOFF_S`), 429 after its `retry_after`, a timeout at once. On a normal
stop the offset of the updates already handed to the handlers is confirmed (one short
`getUpdates`), so that the next start does not fetch them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from telegram import Bot
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError, TimedOut

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
T = TypeVar("T")


class Poller:
    def __init__(self, bot: Bot, queue: asyncio.Queue[Any], *, timeout_s: int, allowed_updates: Sequence[str]) -> None:
        self.bot = bot
        self.queue = queue
        self.timeout_s = timeout_s
        self.allowed_updates = list(allowed_updates)
        self.offset: int | None = None
        self._unconfirmed = False  # updates fetched that no later getUpdates has confirmed yet
        # Set to stop: a long poll under way is cut off (its connection closed cleanly).
        self.halt = asyncio.Event()

    async def run(self) -> None:
        """Poll until `halt`. Raises Conflict or InvalidToken: polling cannot go on."""
        await self._retrying(lambda: self.bot.delete_webhook(), "deleteWebhook")
        failures = 0
        while not self.halt.is_set():
            try:
                updates = await self._unless_halted(self.bot.get_updates(
                    offset=self.offset, timeout=self.timeout_s, allowed_updates=self.allowed_updates))
            except (Conflict, InvalidToken):
                raise
            except RetryAfter as exc:
                await self._pause(_seconds(exc.retry_after))
                continue
            except TimedOut:
                continue
            except TelegramError as exc:  # network errors, 5xx
                failures += 1
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** failures)
                log.info("polling Telegram failed (%s); retrying in %.1f s", type(exc).__name__, delay)
                await self._pause(delay)
                continue
            if updates is None:
                break
            failures = 0
            self._unconfirmed = bool(updates)
            for update in updates:
                await self.queue.put(update)
                self.offset = update.update_id + 1
        await self._confirm()

    async def _confirm(self) -> None:
        if not self._unconfirmed:
            return
        try:
            await self.bot.get_updates(offset=self.offset, timeout=0, allowed_updates=self.allowed_updates)
        except TelegramError as exc:
            log.info("could not confirm the last updates (%s); they may be handled again after a restart",
                     type(exc).__name__)

    async def _retrying(self, call: Any, what: str) -> None:
        failures = 0
        while not self.halt.is_set():
            try:
                await self._unless_halted(call())
                return
            except (Conflict, InvalidToken):
                raise
            except RetryAfter as exc:
                await self._pause(_seconds(exc.retry_after))
            except TelegramError as exc:
                failures += 1
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** failures)
                log.info("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
                await self._pause(delay)

    async def _unless_halted(self, call: Awaitable[T]) -> T | None:
        """The call's result, or None when `halt` came first (the call is then cancelled)."""
        task = asyncio.ensure_future(call)
        halted = asyncio.ensure_future(self.halt.wait())
        try:
            await asyncio.wait({task, halted}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            halted.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.halt.wait(), seconds)


def _seconds(value: Any) -> float:
    return float(value if isinstance(value, int | float) else value.total_seconds())

