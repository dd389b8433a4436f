"""The notification outbox in the store: what the bot must send, what it sent, and where it is in
the event log. All SQL for the `outbox`, `messages` and `cursors` tables lives here.

Exactly-once *queueing*: the notifier turns stored events into outbox rows and moves its cursor
in ONE transaction, so each event becomes its notifications once, across restarts; the sender marks
a row done as soon as Telegram answers. What reaches the chat is another matter (see `bot.outbox`):
a row whose request timed out after it reached Telegram is marked `possibly_delivered` and never
sent again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.states import RunStatus
from engine.store import Store


@dataclass(frozen=True, kw_only=True)
class OutboxRow:
    id: int
    chat_id: int
    kind: str  # note | alert | card | report | question | reply (a command answer that failed to go)
    chain: str | None
    run_id: int | None
    event_id: int | None
    text: str
    buttons: list[list[dict[str, str]]] | None
    document_name: str | None
    document: str | None
    reply_to: int | None
    card_key: str | None
    attempts: int
    next_attempt_at: float

    @classmethod
    def from_row(cls, r: Any) -> OutboxRow:
        return cls(
            id=r["id"], chat_id=r["chat_id"], kind=r["kind"], chain=r["chain"], run_id=r["run_id"],
            event_id=r["event_id"], text=r["text"], buttons=json.loads(r["buttons"]) if r["buttons"] else None,
            document_name=r["document_name"], document=r["document"], reply_to=r["reply_to"],
            card_key=r["card_key"], attempts=r["attempts"], next_attempt_at=r["next_attempt_at"],
        )


@dataclass(frozen=True, kw_only=True)
class NewMessage:
    chat_id: int
    kind: str
    text: str
    chain: str | None = None
    run_id: int | None = None
    event_id: int | None = None
    buttons: list[list[dict[str, str]]] | None = None
    document_name: str | None = None
    document: str | None = None
    card_key: str | None = None


# Outcomes of a delivered row (the `outcome` column).
SENT = "sent"
POSSIBLY_DELIVERED = "possibly_delivered"
REFUSED = "refused"
# Kinds of outbox rows that are answers to commands (queued when they could not go at once).
REPLY_KINDS = ("reply", "reason")


@dataclass(frozen=True, kw_only=True)
class StaleCard:
    """A progress card that shows a run cut off (serve killed) after the card was last sent."""

    card_key: str
    chat_id: int
    run_ids: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class SentMessage:
    chat_id: int
    message_id: int
    chain: str | None
    run_id: int | None
    kind: str


class OutboxStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def cursor(self, name: str) -> int | None:
        rows = await self.store.query("SELECT event_id FROM cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    async def init_cursor(self, name: str, event_id: int) -> None:
        await self.store.execute("INSERT OR IGNORE INTO cursors (name, event_id) VALUES (?, ?)", (name, event_id))

    async def enqueue(self, cursor_name: str, cursor: int, messages: Sequence[NewMessage]) -> None:
        """Add the messages made from events up to `cursor`, and move the cursor, atomically."""
        async with self.store.transaction() as db:
            for m in messages:
                await self._insert(db, m)
            await db.execute("INSERT OR REPLACE INTO cursors (name, event_id) VALUES (?, ?)", (cursor_name, cursor))

    async def enqueue_now(self, messages: Sequence[NewMessage]) -> None:
        async with self.store.transaction() as db:
            for m in messages:
                await self._insert(db, m)

    async def _insert(self, db: Any, m: NewMessage) -> None:
        if m.kind == "card" and m.card_key:
            # Only the latest state of a progress card matters: replace an unsent one.
            cur = await db.execute(
                "UPDATE outbox SET text = ?, buttons = ? WHERE card_key = ? AND sent_at IS NULL",
                (m.text, json.dumps(m.buttons) if m.buttons else None, m.card_key),
            )
            if cur.rowcount:
                return
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, chain, run_id, event_id, text, buttons, document_name, document, "
            "card_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.chat_id, m.kind, m.chain, m.run_id, m.event_id, m.text, json.dumps(m.buttons) if m.buttons else None,
             m.document_name, m.document, m.card_key, self.store.stamp()),
        )

    async def pending(self, limit: int = 200) -> list[OutboxRow]:
        rows = await self.store.query(
            "SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?", (limit,))
        return [OutboxRow.from_row(r) for r in rows]

    async def pending_count(self) -> int:
        rows = await self.store.query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        return int(rows[0][0])

    async def mark_sent(
        self, rows: Sequence[OutboxRow], message_id: int | None, *, kind: str, chain: str | None,
        run_id: int | None, card_key: str | None = None, error: str | None = None, outcome: str | None = None,
    ) -> None:
        """Rows done (several when coalesced into one message), and the message remembered so
        replies to it can be traced back to its chain. `outcome` defaults to sent (no error) or
        refused (an error)."""
        now = self.store.stamp()
        outcome = outcome or (SENT if error is None else REFUSED)
        async with self.store.transaction() as db:
            first = rows[0].id
            for row in rows:
                # `text = ?`: a progress card whose text changed while it was being sent stays
                # pending, and goes out as an edit of the message just recorded. A possibly
                # delivered row is done whatever its text now: it is never sent again.
                await db.execute(
                    "UPDATE outbox SET sent_at = ?, message_id = ?, error = ?, outcome = ?, coalesced_into = ? "
                    "WHERE id = ? AND (text = ? OR ? = ?)",
                    (now, message_id, error, outcome, first if row.id != first else None, row.id, row.text,
                     outcome, POSSIBLY_DELIVERED),
                )
            if message_id is not None:
                await db.execute(
                    "INSERT OR REPLACE INTO messages (chat_id, message_id, chain, run_id, kind, event_id, card_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rows[0].chat_id, message_id, chain, run_id, kind, rows[0].event_id, card_key),
                )

    async def retry_later(self, row_ids: Sequence[int], delay_s: float, error: str) -> None:
        when = time.time() + delay_s
        async with self.store.transaction() as db:
            for row_id in row_ids:
                await db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, error = ? WHERE id = ?",
                    (when, error[:500], row_id),
                )

    async def card_message(self, card_key: str) -> int | None:
        rows = await self.store.query(
            "SELECT message_id FROM messages WHERE card_key = ? ORDER BY message_id DESC LIMIT 1", (card_key,))
        return int(rows[0][0]) if rows else None

    async def card_possibly_created(self, card_key: str) -> bool:
        """Did a request that creates this card time out after reaching Telegram (so a card may
        exist whose id we never learnt)?"""
        rows = await self.store.query(
            "SELECT 1 FROM outbox WHERE card_key = ? AND outcome = ? AND message_id IS NULL LIMIT 1",
            (card_key, POSSIBLY_DELIVERED))
        return bool(rows)

    async def replies_waiting(self, chat_id: int) -> bool:
        """Is an answer to a command queued for this chat (a later answer must queue behind it)?"""
        marks = ", ".join("?" for _ in REPLY_KINDS)
        rows = await self.store.query(
            f"SELECT 1 FROM outbox WHERE chat_id = ? AND sent_at IS NULL AND kind IN ({marks}) LIMIT 1",
            (chat_id, *REPLY_KINDS))
        return bool(rows)

    async def stale_cards(self, cut_chains: Sequence[str] = ()) -> list[StaleCard]:
        """Progress cards showing a run that a crash cut off after the card was last sent (or
        before it was ever sent): a run INTERRUPTED since, or one still marked RUNNING of a chain
        in `cut_chains` (its process is gone). Nothing will edit these cards again."""
        rows = await self.store.query(
            "SELECT o.card_key AS card_key, o.chat_id AS chat_id, r.id AS run_id, r.chain AS chain, r.status AS status, "
            "r.ended_at AS ended_at, (SELECT MAX(s.sent_at) FROM outbox s WHERE s.card_key = o.card_key "
            "AND s.message_id IS NOT NULL) AS shown_at "
            "FROM outbox o JOIN runs r ON r.id = o.run_id WHERE o.kind = 'card' AND o.card_key LIKE 'card:%' "
            "GROUP BY o.card_key, o.chat_id, r.id ORDER BY o.card_key, r.id")
        cards: dict[tuple[str, int], list[Any]] = {}
        for r in rows:
            cards.setdefault((r["card_key"], r["chat_id"]), []).append(r)
        out = []
        for (key, chat_id), runs in cards.items():
            cut = any((r["status"] == RunStatus.INTERRUPTED and (r["shown_at"] is None or r["ended_at"] >= r["shown_at"]))
                      or (r["status"] == RunStatus.RUNNING and r["chain"] in cut_chains) for r in runs)
            if cut:
                out.append(StaleCard(card_key=key, chat_id=chat_id, run_ids=tuple(r["run_id"] for r in runs)))
        return out

    async def remember(self, chat_id: int, message_id: int, *, kind: str, chain: str | None, run_id: int | None = None) -> None:
        await self.store.execute(
            "INSERT OR REPLACE INTO messages (chat_id, message_id, chain, run_id, kind) VALUES (?, ?, ?, ?, ?)",
            (chat_id, message_id, chain, run_id, kind),
        )

    async def message(self, chat_id: int, message_id: int) -> SentMessage | None:
        rows = await self.store.query(
            "SELECT chat_id, message_id, chain, run_id, kind FROM messages WHERE chat_id = ? AND message_id = ?",
            (chat_id, message_id),
        )
        if not rows:
            return None
        r = rows[0]
        return SentMessage(chat_id=r["chat_id"], message_id=r["message_id"], chain=r["chain"], run_id=r["run_id"], kind=r["kind"])
