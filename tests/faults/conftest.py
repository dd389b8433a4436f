"""Fixtures of the fault suite: the fake Bot API and a real `serve` process around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.botapi import FakeBotApi
from tests.faults.serve_rig import CHAT, TOKEN, ServeProcess, close_db


@pytest.fixture
async def botapi() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as api:
        api.add_chat(CHAT)
        yield api


@pytest.fixture
async def serve_proc(home: Path, tmp_path: Path, botapi: FakeBotApi) -> AsyncIterator[ServeProcess]:
    s = ServeProcess(home, tmp_path, botapi)
    try:
        yield s
    finally:
        s.cleanup()
        await close_db(home)
