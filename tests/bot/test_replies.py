"""Answers to commands: retried after a 429, never dropped."""

from __future__ import annotations

from tests.bot.conftest import CHAT, Served


async def test_a_reply_refused_with_429_is_sent_after_retry_after(served: Served) -> None:
    served.api.fail_next("sendMessage", 429, retry_after=1)
    reply = await served.answer("/help", "marble runs", timeout=10)
    sends = served.api.requests("sendMessage")
    assert [r.status for r in sends] == [429, 200]
    assert sends[1].at - sends[0].at >= 0.95  # Telegram's retry_after was honoured
    assert reply.chat_id == CHAT
    assert await served.parts["sender"].outbox.pending_count() == 0  # sent by the reply itself
