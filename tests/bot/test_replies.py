"""Answers to commands: retried after a 429, never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import pytest

from bot.pacer import Pacer
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, Served
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi


async def test_a_reply_refused_with_429_is_sent_after_retry_after(served: Served) -> None:
    served.api.fail_next("sendMessage", 429, retry_after=1)
    reply = await served.answer("/help", "marble runs", timeout=10)
    sends = served.api.requests("sendMessage")
    assert [r.status for r in sends] == [429, 200]
    assert sends[1].at - sends[0].at >= 0.95  # Telegram's retry_after was honoured
    assert reply.chat_id == CHAT
    assert await served.parts["sender"].outbox.pending_count() == 0  # sent by the reply itself


async def test_status_answers_within_a_turn_while_twenty_chains_queue_notes(home: Path) -> None:
    """Telegram-like limits (1 message per second per chat) and the real Pacer: notes of twenty
    chains queue up, and /status still goes out in the chat's next turn."""
    async with FakeBotApi(TOKEN, per_chat_interval_s=1.0, global_per_second=30) as api:
        api.add_chat(CHAT)
        settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                                 api_base_url=api.base_url, max_parallel_links=20)
        for i in range(20):
            write_chain(home, f"c{i:02d}", {"max_rounds": 30, "links": [
                {"name": "w", "command": [sys.executable, "-c", "import time; time.sleep(0.2)"], "telegram_update": True}]})
        served = Served(api, settings, home)
        await served.start(pacer=Pacer())
        try:
            for i in range(20):
                await served.engine.start_chain(f"c{i:02d}", origin="test")
            outbox = served.parts["sender"].outbox
            loop = asyncio.get_running_loop()
            latencies = []
            for _ in range(4):
                await api.wait_for(lambda api: len([m for m in api.messages(CHAT) if " · round " in m.plain]) > 0)
                async def backlog() -> bool:
                    return await outbox.pending_count() > 0
                deadline = loop.time() + 10
                while not await backlog():  # notes waiting for the chat's turn
                    assert loop.time() < deadline, "no notes queued"
                    await asyncio.sleep(0.02)
                started = loop.time()
                reply = await served.answer("/status", "Chains", timeout=10)
                latencies.append(loop.time() - started)
                assert "c00" in reply.plain
            assert max(latencies) < 1.5, latencies
            assert [r for r in api.rejected if r[1] == 429] == []
        finally:
            for i in range(20):
                with contextlib.suppress(Exception):
                    await served.engine.stop_chain(f"c{i:02d}", "test over", now=True, by="test")
            await served.shutdown()


async def test_a_waiting_reply_takes_its_chats_next_turn_before_notifications() -> None:
    pacer = Pacer(per_chat_s=0.3, group_per_minute=100, global_per_second=100)
    pacer.record(1)
    reply = asyncio.create_task(pacer.acquire(1))
    await asyncio.sleep(0)  # the reply waits for the turn
    turn = time.monotonic() + 0.3
    assert pacer.delay(1, turn) == 0.0
    assert pacer.delay(1, turn, behind_replies=True) > 0  # a notification steps back
    assert pacer.delay(2, turn, behind_replies=True) == 0.0  # other chats are not held up
    await reply
    assert pacer.delay(1, behind_replies=True) == pytest.approx(0.3, abs=0.05)  # the reply took the turn
