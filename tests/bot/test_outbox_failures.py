"""What the outbox sender does when Telegram refuses a message, over real HTTP against the strict
fake Bot API (issue #16: paths no test ran): a note refused with 429 is sent after `retry_after`,
once; HTML Telegram cannot parse goes out as plain text; a chat that blocked the bot is recorded
and skipped without holding up the next note; a progress card whose message is gone is sent anew."""

from __future__ import annotations

import sqlite3

from bot.outbox_store import NewMessage, OutboxStore
from tests.bot.conftest import CHAT, Served
from tests.faults.serve_rig import until


async def queue(served: Served, *messages: NewMessage) -> None:
    await OutboxStore(served.engine.store).enqueue_now(messages)
    served.parts["sender"].wake.set()


def note(text: str) -> NewMessage:
    return NewMessage(chat_id=CHAT, kind="note", text=text)


def outbox_rows(served: Served) -> list[tuple[str, str | None, str | None]]:
    with sqlite3.connect(served.settings.db_path) as db:
        return [(r[0], r[1], r[2]) for r in db.execute("SELECT text, sent_at, error FROM outbox ORDER BY id")]


async def test_a_note_refused_with_429_is_sent_after_retry_after_once(served: Served) -> None:
    """Checked: with the RetryAfter branch of OutboxSender._deliver giving the rows up instead of
    `retry_later`, this fails (the note never arrives)."""
    served.api.fail_next("sendMessage", 429, retry_after=1)
    loop = served.api  # the fake records when each request was answered
    await queue(served, note("first note"))
    sent = await served.api.wait_for_message(CHAT, "first note", timeout=15)
    refused = [r for r in loop.requests("sendMessage") if r.status == 429]
    delivered = [r for r in loop.requests("sendMessage") if r.status == 200]
    assert len(refused) == 1 and len(delivered) == 1
    assert delivered[0].at - refused[0].at >= 0.9  # it waited out retry_after (1 s)
    assert [m.plain for m in served.api.messages(CHAT)] == ["first note"] and sent.plain == "first note"


async def test_html_telegram_cannot_parse_is_sent_as_plain_text(served: Served) -> None:
    """Checked: with the "parse entities" fallback of OutboxSender._deliver removed (the row given
    up like any bad request), this fails."""
    await queue(served, note("<b>unclosed &amp; broken"))
    sent = await served.api.wait_for_message(CHAT, "unclosed & broken", timeout=15)
    assert sent.parse_mode is None and sent.text == "unclosed & broken"
    assert any("can't parse entities" in r[2] for r in served.api.rejected)


async def test_a_chat_that_blocked_the_bot_is_recorded_and_skipped(served: Served) -> None:
    """Checked: with the Forbidden branch of OutboxSender._deliver retrying later instead of giving
    up, this fails (the row stays unsent)."""
    served.api.fail_next("sendMessage", 403)
    await queue(served, note("to a blocked chat"))
    await served.api.wait_for(lambda api: any(r[1] == 403 for r in api.rejected))
    await queue(served, note("the next one"))
    await served.api.wait_for_message(CHAT, "the next one", timeout=15)
    rows = outbox_rows(served)
    assert rows[0][0] == "to a blocked chat" and rows[0][1] is not None and "403" in (rows[0][2] or "")
    assert rows[1][0] == "the next one" and rows[1][2] is None
    assert [m.plain for m in served.api.messages(CHAT)] == ["the next one"]


async def test_a_card_whose_message_is_gone_is_sent_anew(served: Served) -> None:
    """Checked: with `message_id = None` on "not found" in OutboxSender._send_card removed (the
    error re-raised and the card given up), this fails."""
    card = dict(chat_id=CHAT, kind="card", card_key=f"card:{CHAT}:1", run_id=None)
    await queue(served, NewMessage(text="▶️ card one", **card))  # type: ignore[arg-type]
    first = await served.api.wait_for_message(CHAT, "card one", timeout=15)
    first.deleted = True  # someone deleted the card in the chat
    await queue(served, NewMessage(text="▶️ card two", **card))  # type: ignore[arg-type]
    second = await served.api.wait_for_message(CHAT, "card two", timeout=15)
    assert second.message_id != first.message_id and not second.edits
    served.api.fail_next("editMessageText", 400)  # any other refusal of an edit: recorded, skipped
    await queue(served, NewMessage(text="▶️ card three", **card))  # type: ignore[arg-type]
    await served.api.wait_for(lambda api: ("editMessageText", 400, "Error 400") in api.rejected)
    given_up = await until("the card's refusal to be recorded",
                           lambda: [r for r in outbox_rows(served) if r[0] == "▶️ card three" and r[2]])
    assert given_up[0][1] is not None and "Error 400" in (given_up[0][2] or "")
    assert second.plain == "▶️ card two"  # the refused edit changed nothing
