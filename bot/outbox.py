"""The outbox sender: delivers notifications in order per chat, paced, coalesced, retried.

Per chat: command replies waiting for their turn go before anything here (see `bot.pacer`);
then BLOCKED alerts, questions and command answers that could not go at once,
each alone (a reply to one must map back to it); then the pending notes in order, coalesced into
one message of up to 4096 characters; then run reports (several become one document). That keeps
a chat fed by many chains within Telegram's flood limits; a report may arrive after later notes.
The progress card is one message per chat (every run reporting there), edited in place at most
every few seconds; "message is not modified" counts as done. A Telegram outage (network errors,
5xx, 429 retry_after) delays rows, never drops them; a message Telegram refuses for good (bad
request, blocked bot) is recorded with its error and skipped. Every text, caption and document
is scrubbed of secrets on the way out (`bot.redact`).

What "once each" really means. Telegram has no idempotency key: when a request reached it and the
answer did not come back, nobody can tell whether the message exists. So, per outcome:
- Telegram answered (message id known): delivered, never sent again (the row is marked sent in
  the store as soon as the answer arrives; a crash between the two is the one way left to send
  a message twice);
- refused before it was sent (429, 5xx, connection refused, connect/pool/write timeout): not
  delivered, sent again later, in order: at least once, and in practice once;
- the request was sent and the *answer* timed out (a read timeout): possibly delivered. The row is
  marked `possibly_delivered` and NOT sent again: at most once. Sends wait up to
  `SEND_READ_TIMEOUT_S` (see `bot.app`) for Telegram's answer, so a slow Telegram (answers delayed
  25 s) still yields each message exactly once; only an answer later than that is given up on.
  A progress card whose creation timed out is not created again (a second card could appear
  beside it); its later updates are dropped, and the run's notes go on. Edits of a card are
  idempotent and simply retried.
- a connection dropped before any answer (a network error other than a timeout) is retried: if
  Telegram had in fact received that request, the message arrives twice. That is the only
  duplicate left, and it needs a connection cut between Telegram's receipt and its answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import httpx
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from bot import render
from bot.outbox_store import POSSIBLY_DELIVERED, OutboxRow, OutboxStore
from bot.pacer import Pacer, retry_after_s
from engine.redact import Redactor

log = logging.getLogger(__name__)

CARD_INTERVAL_S = 3.0
MAX_BACKOFF_S = 60.0
COALESCE = frozenset({"note"})
ALONE_FIRST = frozenset({"alert", "question", "reply", "reason"})


def markup(buttons: list[list[dict[str, str]]] | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b["text"], callback_data=b["data"]) for b in row] for row in buttons])


def possibly_delivered(exc: BaseException) -> bool:
    """Did the request reach Telegram before this error (so the message may exist)? True for a
    read timeout (the request was written, the answer never came); a timeout while connecting,
    waiting for a pooled connection or writing the request means Telegram never got it whole."""
    return isinstance(exc, TimedOut) and isinstance(exc.__cause__, httpx.ReadTimeout)


def plain(text: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", text))


class OutboxSender:
    def __init__(self, bot: Bot, outbox: OutboxStore, pacer: Pacer, wake: asyncio.Event, *, redact: Redactor,
                 card_interval_s: float = CARD_INTERVAL_S) -> None:
        self.bot = bot
        self.redact = redact
        self.outbox = outbox
        self.pacer = pacer
        self.wake = wake
        self.card_interval_s = card_interval_s
        self._card_edit_at: dict[str, float] = {}
        self.sent_messages = 0
        self.coalesced = 0
        # Set (with `wake`) to stop after the current step: a send is never cut off between
        # Telegram's answer and marking the row sent.
        self.halt = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while not self.halt.is_set():
            try:
                delay = await self.send_due()
                failures = 0
            except Exception:  # e.g. the database locked for too long: the rows wait, try again
                failures += 1
                log.exception("outbox: sending failed (attempt %d)", failures)
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** failures)
            self.wake.clear()
            if self.halt.is_set():
                break
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def send_due(self) -> float:
        """Send what may go now; returns how long to wait before looking again."""
        rows = await self.outbox.pending()
        if not rows:
            return 30.0
        now = time.time()
        wait = 30.0
        chats: dict[int, list[OutboxRow]] = {}
        blocked: set[int] = set()
        cards: list[OutboxRow] = []
        for row in rows:
            if row.kind == "card":
                cards.append(row)
                continue
            if row.chat_id in blocked:
                continue
            if row.next_attempt_at > now:
                blocked.add(row.chat_id)  # keep the order: nothing after a row that waits
                wait = min(wait, row.next_attempt_at - now)
                continue
            chats.setdefault(row.chat_id, []).append(row)
        for chat_id, chat_rows in chats.items():
            if self.halt.is_set():
                return 0.0
            pace = self.pacer.delay(chat_id, behind_replies=True)
            if pace > 0:
                wait = min(wait, pace)
                continue
            await self._send_batch(chat_id, chat_rows)
            wait = 0.0
        for row in cards:
            if self.halt.is_set():
                return 0.0
            if row.next_attempt_at > now:
                wait = min(wait, row.next_attempt_at - now)
                continue
            since = time.monotonic() - self._card_edit_at.get(row.card_key or "", -1e9)
            pace = max(self.pacer.delay(row.chat_id, behind_replies=True), self.card_interval_s - since)
            if pace > 0:
                wait = min(wait, pace)
                continue
            await self._send_card(row)
            wait = 0.0
        return max(0.01, wait)

    async def _send_batch(self, chat_id: int, rows: Sequence[OutboxRow]) -> None:
        """One message for this chat: alerts, questions and command answers first, each alone
        (someone is waiting, and a reply to one must map back to it), then all pending notes
        coalesced (in order), then run reports (several become one document)."""
        alone = [r for r in rows if r.kind in ALONE_FIRST]
        notes = [r for r in rows if r.kind in COALESCE]
        if alone:
            rows = alone
        elif notes:
            rows = notes
        head = rows[0]
        if head.kind in COALESCE:
            group = [rows[i] for i in render.coalesce([r.text for r in rows])[0]]
            text = "\n\n".join(r.text for r in group)
            buttons = group[0].buttons if len(group) == 1 else None
            chains = {r.chain for r in group}
            await self._deliver(group, lambda: self._send_message(
                chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup(buttons)),
                kind=group[0].kind if len(group) == 1 else "notes", chain=chains.pop() if len(chains) == 1 else None,
                plain_text=plain(text))
            if len(group) > 1:
                self.coalesced += len(group) - 1
        elif head.document is not None:
            # Reports of runs that ended together go as one document (flood limits).
            docs = [head]
            for row in rows[1:]:
                if head.kind != "report" or row.document is None or row.kind != head.kind or len(docs) >= 20:
                    break
                docs.append(row)
            name = head.document_name or "document.md" if len(docs) == 1 else f"{head.kind}s-{len(docs)}-runs.md"
            data = "\n\n---\n\n".join(d.document or "" for d in docs).encode("utf-8")
            caption = render.truncate("\n".join(d.text for d in docs), render.CAPTION_LIMIT)
            await self._deliver(docs, lambda: self.bot.send_document(
                chat_id, document=self.redact.data(data), filename=self.redact(name), caption=self.redact(caption),
                parse_mode=ParseMode.HTML),
                kind=head.kind, chain=head.chain if len(docs) == 1 else None, plain_text=None)
            if len(docs) > 1:
                self.coalesced += len(docs) - 1
        else:
            await self._deliver([head], lambda: self._send_message(
                chat_id, head.text, parse_mode=ParseMode.HTML, reply_markup=markup(head.buttons)),
                kind=head.kind, chain=head.chain, plain_text=plain(head.text))

    async def _send_message(self, chat_id: int, text: str, **kwargs: Any) -> Message:
        return await self.bot.send_message(chat_id, self.redact(text), **kwargs)

    async def _deliver(self, rows: Sequence[OutboxRow], send: Any, *, kind: str, chain: str | None,
                       plain_text: str | None) -> None:
        chat_id = rows[0].chat_id
        self.pacer.record(chat_id)
        try:
            message = await send()
        except RetryAfter as exc:
            seconds = retry_after_s(exc)
            self.pacer.backoff(chat_id, seconds)
            await self.outbox.retry_later([r.id for r in rows], seconds, f"429: {exc}")
            return
        except BadRequest as exc:
            text = str(exc).lower()
            if "parse entities" in text and plain_text:
                log.warning("message %s could not be parsed by Telegram; sending it as plain text", rows[0].id)
                try:
                    message = await self._send_message(chat_id, render.truncate(plain_text))
                except TelegramError as again:
                    await self._give_up(rows, kind, chain, f"{exc} / {again}")
                    return
            else:
                await self._give_up(rows, kind, chain, str(exc))
                return
        except Forbidden as exc:
            await self._give_up(rows, kind, chain, str(exc))
            return
        except (TimedOut, NetworkError) as exc:
            if possibly_delivered(exc):
                await self._possibly_delivered(rows, kind, chain)
                return
            await self._later(rows, exc)
            return
        except TelegramError as exc:
            await self._later(rows, exc)
            return
        await self.outbox.mark_sent(rows, message.message_id, kind=kind, chain=chain, run_id=rows[0].run_id)
        self.sent_messages += 1

    async def _later(self, rows: Sequence[OutboxRow], exc: Exception) -> None:
        attempts = max(r.attempts for r in rows)
        delay = min(MAX_BACKOFF_S, 0.5 * (2 ** attempts))
        log.info("Telegram unreachable (%s); retrying %d message(s) in %.1f s", type(exc).__name__, len(rows), delay)
        await self.outbox.retry_later([r.id for r in rows], delay, f"{type(exc).__name__}: {exc}")

    async def _possibly_delivered(self, rows: Sequence[OutboxRow], kind: str, chain: str | None,
                                  card_key: str | None = None) -> None:
        log.warning("Telegram's answer to message %s timed out: it may have arrived, so it is not sent again",
                    rows[0].id)
        await self.outbox.mark_sent(rows, None, kind=kind, chain=chain, run_id=rows[0].run_id, card_key=card_key,
                                    error="the answer timed out: possibly delivered", outcome=POSSIBLY_DELIVERED)

    async def _give_up(self, rows: Sequence[OutboxRow], kind: str, chain: str | None, error: str) -> None:
        log.error("Telegram refused message %s for good: %s", rows[0].id, error)
        await self.outbox.mark_sent(rows, None, kind=kind, chain=chain, run_id=rows[0].run_id, error=error)

    async def _send_card(self, row: OutboxRow) -> None:
        key = row.card_key or f"card:{row.chat_id}:{row.run_id}"
        self._card_edit_at[key] = time.monotonic()
        self.pacer.record(row.chat_id)
        message_id = await self.outbox.card_message(key)
        if message_id is None and await self.outbox.card_possibly_created(key):
            # This card may exist with an id we never learnt: creating it again could show two.
            await self._possibly_delivered([row], "card", row.chain, key)
            return
        try:
            if message_id is not None:
                try:
                    await self.bot.edit_message_text(self.redact(row.text), chat_id=row.chat_id, message_id=message_id,
                                                     parse_mode=ParseMode.HTML, reply_markup=markup(row.buttons))
                except BadRequest as exc:
                    if "not modified" in str(exc).lower():
                        pass
                    elif "not found" in str(exc).lower():
                        message_id = None
                    else:
                        raise
            if message_id is None:
                sent = await self._send_message(row.chat_id, row.text, parse_mode=ParseMode.HTML,
                                                   reply_markup=markup(row.buttons))
                message_id = sent.message_id
        except RetryAfter as exc:
            seconds = retry_after_s(exc)
            self.pacer.backoff(row.chat_id, seconds)
            await self.outbox.retry_later([row.id], seconds, f"429: {exc}")
            return
        except BadRequest as exc:
            await self._give_up([row], "card", row.chain, str(exc))
            return
        except (TelegramError, NetworkError) as exc:
            if message_id is None and possibly_delivered(exc):  # creating the card, not editing it
                await self._possibly_delivered([row], "card", row.chain, key)
                return
            await self._later([row], exc)
            return
        await self.outbox.mark_sent([row], message_id, kind="card", chain=row.chain, run_id=row.run_id, card_key=key)
