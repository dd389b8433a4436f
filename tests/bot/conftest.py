"""A running `serve` (engine, scheduler, bot) against the fake Bot API on 127.0.0.1, in-process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.pacer import Pacer
from engine.settings import Settings
from llmauto.serve import run_serve
from tests.conftest import make_settings
from tests.fakes.botapi import FakeBotApi, SentMessage

TOKEN = "123456:TEST-token-not-real-abcdefghijklmnopqrst"
OPERATOR = 111
VIEWER = 222
STRANGER = 333
CHAT = 111  # the operator's private chat
GROUP = -1001


def append_line(text: str) -> list[str]:
    """A command link that appends a line to the handoff (a stand-in agent)."""
    code = f"import os; open(os.environ['LLMAUTO_HANDOFF'], 'a').write({text!r} + '\\n')"
    return [sys.executable, "-c", code]


class Served:
    def __init__(self, api: FakeBotApi, settings: Settings, home: Path) -> None:
        self.api = api
        self.settings = settings
        self.home = home
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.parts: dict[str, Any] = {}

    async def start(self, *, pacer: Pacer | None = None, **serve_kw: Any) -> None:
        self.stop = asyncio.Event()
        ready = asyncio.Event()

        async def keep(parts: dict[str, Any]) -> None:
            self.parts = parts

        self.task = asyncio.create_task(run_serve(self.settings, self.stop, ready=ready, poll_timeout_s=1,
                                                  pacer=pacer or Pacer(per_chat_s=0.0, group_per_minute=1000, global_per_second=1000),
                                                  on_ready=keep, **serve_kw))
        done, _ = await asyncio.wait({self.task, asyncio.ensure_future(ready.wait())}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()
        assert ready.is_set(), "serve did not become ready"

    async def shutdown(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop.set()
            await asyncio.wait_for(self.task, 30)

    @property
    def engine(self) -> Any:
        return self.parts["engine"]

    def say(self, text: str, *, user: int = OPERATOR, chat: int | None = None, reply_to: int | None = None,
            chat_type: str = "private") -> dict[str, Any]:
        return self.api.user_message(user_id=user, chat_id=chat, text=text, reply_to_message_id=reply_to, chat_type=chat_type)

    async def answer(self, text: str, contains: str, *, user: int = OPERATOR, chat: int | None = None,
                     timeout: float = 15.0, **kw: Any) -> SentMessage:
        sent = self.say(text, user=user, chat=chat, **kw)
        return await self.api.wait_for_message(chat if chat is not None else user, contains, after=sent["message_id"],
                                               timeout=timeout)


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns (PTBDeprecationWarning) whenever it builds a RetryAfter unless PTB_TIMEDELTA is
    set, and the test suite turns warnings into errors; opt in to its future behaviour (the bot
    reads retry_after either way: `bot.pacer.retry_after_s`)."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as api:
        api.add_chat(CHAT)
        yield api


@contextlib.asynccontextmanager
async def serving(api: FakeBotApi, settings: Settings, **start: Any) -> AsyncIterator[Served]:
    """`serve` for `settings` against `api`, ready on entry and shut down on exit."""
    s = Served(api, settings, settings.home)
    await s.start(**start)
    try:
        yield s
    finally:
        await s.shutdown()


@pytest.fixture
async def served(home: Path, fake_api: FakeBotApi) -> AsyncIterator[Served]:
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}),
                             viewer_user_ids=frozenset({VIEWER}), chat_id=CHAT, api_base_url=fake_api.base_url)
    async with serving(fake_api, settings) as s:
        yield s
