"""The bot's small parts on the paths no flow of the suite took (issue #16): the pacer's group
window and global cap, the log redactor on records without secrets, with a traceback text or a
stack, `serve`'s logging set up in a fresh interpreter, the Application refused without a token,
`setMyCommands` refused, and the poller's 429s, a 409 at start and a halt or cancel mid-poll
(a real PTB Bot over real HTTP against the fake Bot API)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot
from telegram.error import Conflict

from bot import logsafe
from bot.app import HttpClients, announce_commands, build_application
from bot.pacer import Pacer
from bot.poller import Poller
from tests.bot.conftest import CHAT, OPERATOR, TOKEN
from tests.conftest import make_settings
from tests.fakes.botapi import FakeBotApi

ROOT = Path(__file__).resolve().parents[2]


def test_a_group_gets_twenty_a_minute_and_its_window_slides() -> None:
    """Red with the pacer's group window never sliding (`sends.popleft()` dropped: the 21st send
    after a minute still waits) or the group cap ignored."""
    pacer = Pacer(per_chat_s=0.0, group_per_minute=20, global_per_second=1000)
    for i in range(20):
        assert pacer.delay(-5, now=100.0 + i) == 0.0
        pacer.record(-5, now=100.0 + i)
    assert pacer.delay(-5, now=119.5) == pytest.approx(40.5)  # the first send leaves the window at 160
    assert pacer.delay(-5, now=160.0) == 0.0
    pacer.record(-5, now=160.0)  # in the window now: 101 ... 119 and 160
    assert pacer.delay(-5, now=160.5) == pytest.approx(0.5)
    assert pacer.delay(7, now=119.5) == 0.0  # a private chat is not held by the group's cap


def test_the_global_cap_holds_every_chat() -> None:
    """Red with the pacer's global cap ignored (`wait = max(wait, self._global[0] + 1 - now)`)."""
    pacer = Pacer(per_chat_s=0.0, group_per_minute=1000, global_per_second=3)
    for chat in (1, 2, 3):
        pacer.record(chat, now=50.0 + chat / 10)
    assert pacer.delay(4, now=50.5) == pytest.approx(0.6)
    assert pacer.delay(4, now=51.05) == pytest.approx(0.05)
    assert pacer.delay(4, now=51.1) == 0.0  # the first left the last second
    assert pacer.delay(4, now=51.4) == 0.0


def record(msg: str, **kw: Any) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, None, None, **kw)


def test_the_redactor_masks_traceback_texts_and_stacks_and_leaves_records_alone_without_secrets() -> None:
    """Red with RedactingFilter's exc_text or stack_info branch dropped (the secret stays), or its
    no-secrets shortcut dropped with the record then rewritten (args set to None)."""
    secret = "sk-test-0123456789abcdefghij"
    redactor = logsafe.RedactingFilter([secret])
    text = record("plain")
    text.exc_text = f"Traceback: {secret}"
    text.stack_info = f"Stack: {secret}"
    assert redactor.filter(text)
    assert text.exc_text == "Traceback: [REDACTED]" and text.stack_info == "Stack: [REDACTED]"
    keep = logging.LogRecord("t", logging.INFO, __file__, 1, "x=%s", (secret,), None)
    assert logsafe.RedactingFilter([]).filter(keep)
    assert keep.args == (secret,)  # nothing to hide: untouched


def test_serve_logging_in_a_fresh_interpreter_masks_the_token_and_quiets_httpx() -> None:
    """Red with install's stderr handler not added when the root has none (nothing is logged at
    all), or its filter not put on it (the token shows)."""
    code = (
        "import logging; from bot import logsafe\n"
        f"logsafe.install([{TOKEN!r}])\n"
        f"logging.getLogger('x').info('token is %s', {TOKEN!r})\n"
        "logging.getLogger('httpx').info('GET /bot... 200')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "INFO x: token is [REDACTED]" in out.stderr, out.stderr
    assert TOKEN not in out.stderr and TOKEN.split(":")[1] not in out.stderr and "httpx" not in out.stderr


async def test_no_application_without_a_token_and_a_refused_set_my_commands_is_not_fatal(
        home: Path, fake_api: FakeBotApi) -> None:
    """Red with build_application's token check removed (PTB would fail later with its own
    words), or announce_commands letting the TelegramError through."""
    clients = HttpClients(poll_timeout_s=1)
    try:
        with pytest.raises(ValueError, match=r"needs settings\.telegram_token"):
            build_application(make_settings(home), None, clients)  # type: ignore[arg-type]
        settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                                 api_base_url=fake_api.base_url)

        class NoHandlers:
            def register(self, app: Any) -> None:
                pass

        app = build_application(settings, NoHandlers(), clients)  # type: ignore[arg-type]
        await app.bot.initialize()
        fake_api.fail_next("setMyCommands", 400)
        assert await announce_commands(app) is False
        assert await announce_commands(app) is True
        assert [r.status for r in fake_api.requests("setMyCommands")] == [400, 200]
        await app.bot.shutdown()
    finally:
        await clients.aclose()


async def polling(api: FakeBotApi, *, timeout_s: int = 1) -> tuple[Bot, Poller, asyncio.Queue[Any]]:
    bot = Bot(TOKEN, base_url=api.base_url)
    await bot.initialize()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    return bot, Poller(bot, queue, timeout_s=timeout_s, allowed_updates=["message"]), queue


async def test_the_poller_waits_out_429s_and_keeps_polling(fake_api: FakeBotApi) -> None:
    """Red with either RetryAfter branch of the poller dropped (a 429 is then a network error,
    retried after 1 s instead of the 2 s Telegram asked for), or its pause skipped."""
    fake_api.fail_next("deleteWebhook", 429, retry_after=2)
    fake_api.fail_next("getUpdates", 429, retry_after=2)
    bot, poller, queue = await polling(fake_api)
    task = asyncio.create_task(poller.run())
    try:
        fake_api.user_message(user_id=OPERATOR, text="hello")
        update = await asyncio.wait_for(queue.get(), 20)
        assert update.message.text == "hello"
        webhook, polls = fake_api.requests("deleteWebhook"), fake_api.requests("getUpdates")
        assert [r.status for r in webhook] == [429, 200] and [r.status for r in polls][:2] == [429, 200]
        assert webhook[1].at - webhook[0].at >= 1.9 and polls[1].at - polls[0].at >= 1.9
    finally:
        poller.halt.set()
        await asyncio.wait_for(task, 20)
        await bot.shutdown()


async def test_a_409_at_start_ends_polling_at_once(fake_api: FakeBotApi) -> None:
    """Red with _retrying's `except (Conflict, InvalidToken): raise` dropped (it would retry the
    409 as a network error, and the test's timeout ends it)."""
    fake_api.fail_next("deleteWebhook", 409)
    bot, poller, _ = await polling(fake_api)
    try:
        with pytest.raises(Conflict):
            await asyncio.wait_for(poller.run(), 10)
        assert fake_api.requests("getUpdates") == []
    finally:
        await bot.shutdown()


async def test_a_halt_mid_poll_cuts_the_long_poll_and_a_cancel_cancels_it(fake_api: FakeBotApi) -> None:
    """Red with Poller.run's `if updates is None: break` dropped (the halted poll's None is read
    as a list: TypeError), or _unless_halted not cancelling the call when it is itself cancelled
    (the long poll would stay open: the request's task is still pending)."""
    bot, poller, _ = await polling(fake_api, timeout_s=30)
    try:
        task = asyncio.create_task(poller.run())
        await fake_api.wait_for(lambda api: api.arrived.count("getUpdates") >= 1 or None)
        poller.halt.set()
        await asyncio.wait_for(task, 5)  # long before the 30 s poll would end

        poller.halt.clear()
        task = asyncio.create_task(poller.run())
        await fake_api.wait_for(lambda api: api.arrived.count("getUpdates") >= 2 or None)
        [poll] = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "get_updates"]  # type: ignore[union-attr]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait({poll}, timeout=5)
        assert poll.cancelled()  # the long poll's request was cancelled too
    finally:
        await bot.shutdown()
