"""The life of `serve`: how it shuts down, and how it ends when it cannot go on."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import sys
import warnings
from pathlib import Path

import pytest

from bot.outbox_store import NewMessage
from llmauto.serve import FatalBotError
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, Served
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi


async def test_shutdown_lets_a_send_in_flight_finish_before_the_http_client_closes(served: Served) -> None:
    """The sender stops before PTB closes its HTTP client: a send under way when SIGTERM comes
    is answered and recorded, and no socket is left for the garbage collector."""
    sender = served.parts["sender"]
    served.api.slow["sendMessage"] = 1.0
    await sender.outbox.enqueue_now([NewMessage(chat_id=CHAT, kind="note", text="in flight at shutdown")])
    sender.wake.set()
    await served.api.wait_for(lambda api: "sendMessage" in api.arrived)
    await served.shutdown()
    assert [m.text for m in served.api.messages(CHAT)] == ["in flight at shutdown"]
    assert sender.sent_messages == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()


async def test_a_second_poller_ends_serve_with_a_clear_message(served: Served, fake_api: FakeBotApi) -> None:
    """Telegram answers 409 to the earlier of two pollers: that serve stops, saying why, and
    sends no further getUpdates (one would cut off the other process's poll in turn)."""
    second = Served(fake_api, served.settings, served.home)
    await second.start()
    try:
        assert served.task is not None
        done, _ = await asyncio.wait({served.task}, timeout=30)
        assert done, "the first serve should have stopped"
        assert isinstance(served.task.exception(), FatalBotError)
        assert "another process is polling this bot token" in str(served.task.exception())
        conflicts = len([r for r in fake_api.rejected if r[1] == 409])
        assert conflicts == 1
        await second.answer("/help", "marble runs")  # the other one still serves
        assert second.task is not None and not second.task.done()
        assert len([r for r in fake_api.rejected if r[1] == 409]) == 1
    finally:
        await second.shutdown()


async def test_a_409_ends_serve_at_once_without_polling_again(served: Served, fake_api: FakeBotApi) -> None:
    fake_api.conflict = True
    assert served.task is not None
    done, _ = await asyncio.wait({served.task}, timeout=15)
    assert done, "serve should have stopped at the 409"
    assert isinstance(served.task.exception(), FatalBotError)
    polls = [r.status for r in fake_api.requests("getUpdates")]
    assert polls.count(409) == 1 and polls[-1] == 409  # no retry, no confirming call after it
    assert fake_api.arrived.count("getUpdates") == len(polls)


async def test_recovery_ask_without_a_chat_warns_and_resumes_by_itself(
        home: Path, fake_api: FakeBotApi, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url)
    write_chain(home, "cut", {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", "import time; time.sleep(30)"]}]})
    first = Served(fake_api, settings, home)
    await first.start()
    await first.engine.start_chain("cut", origin="test")
    await fake_api.wait_for(lambda api: any("Link: w" in m.plain for m in api.messages(CHAT)))
    await first.shutdown()  # kills the link: the run is INTERRUPTED
    caplog.set_level(logging.INFO, logger="llmauto.serve")
    asking = Served(fake_api, dataclasses.replace(settings, recovery="ask", chat_id=None), home)
    await asking.start()
    try:
        assert asking.engine.is_running_here("cut")
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "llmauto.serve"]
        assert any("LLMAUTO_RECOVERY=ask needs TELEGRAM_CHAT_ID" in w and "resumed automatically" in w for w in warned)
        assert any("cut was interrupted (crash or shutdown); resumed where it was" in r.getMessage() for r in caplog.records)
    finally:
        await asking.shutdown()
