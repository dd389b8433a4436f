"""Answers in a chat, and the way back from a reply to the chain it concerns.

`Replies.send` answers an update: paced (the pacer the outbox shares), long text split at line ends
(documents for long content are the caller's choice), tried again after a 429's `retry_after`,
and when Telegram cannot be reached the answer is written to the outbox and sent later. A chat's
answers keep their order: while one waits in the outbox, the next ones queue behind it. An answer
whose request reached Telegram but whose response timed out is *not* sent again (it may well have
arrived: at most once, see `bot.outbox`). Text and documents are scrubbed of secrets first
(`bot.redact`). Every message sent is remembered (in memory at once, and in the store's `messages`
table) with its chain, kind and run, so that a reply to it (a reason, an answer to a BLOCKED
alert, `/stop_chain REASON`) maps back to them, and a button press can be checked against the
messages this bot really sent to that chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import ForceReply, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter

from bot import callbacks as cb
from bot import render
from bot.outbox import markup, possibly_delivered
from bot.outbox_store import NewMessage, OutboxStore, SentMessage
from bot.pacer import Pacer, retry_after_s
from engine.redact import Redactor

log = logging.getLogger(__name__)

RECORD_WAIT_S = 2.0
# A reply that Telegram answers with 429 is tried again after `retry_after`, up to this many
# times in all, when the wait is at most REPLY_WAIT_MAX_S; otherwise it goes to the outbox.
REPLY_ATTEMPTS = 3
REPLY_WAIT_MAX_S = 30.0
RECENT_MAX = 2000


class Replies:
    def __init__(self, outbox: OutboxStore, pacer: Pacer, wake: asyncio.Event, *, redact: Redactor) -> None:
        self.outbox = outbox
        self.redact = redact
        self.pacer = pacer
        self.wake = wake  # the outbox sender's
        # Messages this process just sent: a quick reply must not wait for the store.
        self._recent: dict[tuple[int, int], SentMessage] = {}
        self._recorded = asyncio.Event()

    async def send(self, update: Update, text: str, *, buttons: cb.Buttons | None = None, chain: str | None = None,
                   kind: str = "reply", document: tuple[str, str] | None = None, force_reply: bool = False,
                   run_id: int | None = None) -> Message | None:
        """Answer in the update's chat, paced. Long text goes out in several messages, split at
        line ends. If Telegram cannot be reached, the answer goes to the outbox (sent later)."""
        chat = update.effective_chat
        if chat is None:
            return None
        bot = update.get_bot()
        text = self.redact(text)
        if document is not None:
            document = (self.redact(document[0]), self.redact(document[1]))
        parts = [render.truncate(text, render.CAPTION_LIMIT)] if document else render.split(text)
        message = None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1

            async def send_part(part: str = part, last: bool = last) -> Message:
                if document is not None:
                    return await bot.send_document(chat.id, document=document[1].encode(), filename=document[0],
                                                   caption=part, parse_mode=ParseMode.HTML)
                reply_markup: Any = ForceReply(selective=True) if force_reply else markup(buttons)
                return await bot.send_message(chat.id, part, parse_mode=ParseMode.HTML,
                                              reply_markup=reply_markup if last else None)

            queued = NewMessage(
                chat_id=chat.id, kind=kind, text=part, chain=chain, run_id=run_id, buttons=buttons if last else None,
                document_name=document[0] if document else None, document=document[1] if document else None)
            if await self.outbox.replies_waiting(chat.id):  # an earlier answer waits: keep the order
                await self.outbox.enqueue_now([queued])
                self.wake.set()
                continue
            try:
                message = await self._paced(chat.id, send_part)
            except BadRequest:
                raise
            except (RetryAfter, NetworkError) as exc:
                if possibly_delivered(exc):
                    log.warning("reply to chat %s: Telegram got the request but its answer timed out; not sent "
                                "again (it may have arrived)", chat.id)
                    continue
                log.info("reply to chat %s failed (%s); queued in the outbox", chat.id, type(exc).__name__)
                await self.outbox.enqueue_now([queued])
                self.wake.set()
                continue
            self._recent[(chat.id, message.message_id)] = SentMessage(
                chat_id=chat.id, message_id=message.message_id, chain=chain, run_id=run_id, kind=kind)
            await self.outbox.remember(chat.id, message.message_id, kind=kind, chain=chain, run_id=run_id)
        if len(self._recent) > RECENT_MAX:  # the store has the chains' messages; this is only for fast replies
            for key in list(self._recent)[:500]:
                del self._recent[key]
        self._recorded.set()
        return message

    async def _paced(self, chat_id: int, send: Callable[[], Awaitable[Message]]) -> Message:
        """Send in the chat's turn. A 429 is honoured: nothing goes to the chat (replies and the
        outbox alike) before its `retry_after`, and then the answer is tried again, as long as
        the wait is short enough for someone waiting for an answer; a longer one raises
        RetryAfter (the caller hands the answer to the outbox, which waits as long as needed)."""
        for attempt in range(REPLY_ATTEMPTS):
            await self.pacer.acquire(chat_id)
            try:
                return await send()
            except RetryAfter as exc:
                seconds = retry_after_s(exc)
                self.pacer.backoff(chat_id, seconds)
                if attempt == REPLY_ATTEMPTS - 1 or seconds > REPLY_WAIT_MAX_S:
                    raise
                log.info("reply to chat %s: 429, retrying in %.0f s", chat_id, seconds)
        raise AssertionError("unreachable")

    async def replied(self, update: Update) -> SentMessage:
        """The bot message this update replies to (chain, kind and run are None if none)."""
        message = update.effective_message
        replied = message.reply_to_message if message else None
        chat = update.effective_chat
        none = SentMessage(chat_id=0, message_id=0, chain=None, run_id=None, kind="")
        if replied is None or chat is None:
            return none
        from_bot = replied.from_user is not None and replied.from_user.is_bot
        return await self.sent(chat.id, replied.message_id, from_bot=from_bot) or none

    async def sent(self, chat_id: int, message_id: int, *, from_bot: bool) -> SentMessage | None:
        """The message this bot sent to that chat with that id, or None. A quick reply (or press)
        can overtake the bookkeeping of the message it concerns: when the message is the bot's,
        wait for it briefly."""
        key = (chat_id, message_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_WAIT_S
        while True:
            if key in self._recent:
                return self._recent[key]
            sent = await self.outbox.message(*key)
            if sent is not None:
                return sent
            if not from_bot or loop.time() >= deadline:
                return None
            self._recorded.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recorded.wait(), max(0.0, deadline - loop.time()))
