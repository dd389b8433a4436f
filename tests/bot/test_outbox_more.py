"""More of what the outbox sender does with Telegram's answers, over real HTTP against the strict
fake Bot API (issue #16: paths no test ran): reports of runs that ended together go as one
document; a message to a chat Telegram does not know is given up and recorded, without holding up
the next; a refusal that is neither a bad request nor a network error (409) is sent again later."""

from __future__ import annotations

from bot.outbox_store import NewMessage
from tests.bot.conftest import CHAT, Served
from tests.bot.test_outbox_failures import note, outbox_rows, queue


async def test_reports_that_end_together_go_as_one_document(served: Served) -> None:
    """Red with the coalescing loop of OutboxSender's document branch stopping at once (two
    documents) or its file name of several runs replaced by the first run's."""
    sender = served.parts["sender"]
    await queue(served, *(NewMessage(chat_id=CHAT, kind="report", text=f"<b>run {i}</b> report", chain=f"c{i}",
                                     document_name=f"report-c{i}-run1.md", document=f"# run {i}\n") for i in (1, 2)))
    sent = await served.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if m.document), None))
    assert sent.document == ("reports-2-runs.md", b"# run 1\n\n\n---\n\n# run 2\n")
    assert "run 1 report" in sent.plain and "run 2 report" in sent.plain
    await served.api.wait_for(lambda api: all(r[1] for r in outbox_rows(served)) or None)
    assert len([m for m in served.api.messages(CHAT) if m.document]) == 1 and sender.coalesced >= 1


async def test_a_message_to_an_unknown_chat_is_given_up_and_the_next_goes(served: Served) -> None:
    """Red with OutboxSender._deliver's bad-request branch retrying instead of giving up (the row
    stays unsent and the test's wait for its record times out)."""
    await queue(served, NewMessage(chat_id=4242, kind="note", text="to nowhere"))
    await served.api.wait_for(lambda api: any(r[1] == 400 and "chat not found" in r[2] for r in api.rejected))
    await queue(served, note("the next one"))
    await served.api.wait_for_message(CHAT, "the next one", timeout=15)
    rows = await served.api.wait_for(lambda api: (r := outbox_rows(served)) and r[0][1] and r)
    assert rows[0][0] == "to nowhere" and "chat not found" in (rows[0][2] or "").lower()


async def test_an_odd_refusal_is_sent_again_later(served: Served) -> None:
    """Red with the last `except TelegramError` of OutboxSender._deliver giving up instead of
    `_later` (the note never arrives)."""
    served.api.fail_next("sendMessage", 409)
    await queue(served, note("once more"))
    await served.api.wait_for_message(CHAT, "once more", timeout=15)
    assert [r.status for r in served.api.requests("sendMessage")] == [409, 200]

