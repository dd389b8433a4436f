"""Secrets never leave for Telegram: an agent that writes the bot token or an API key into its
handoff gets `[redacted]` in every note, reply, caption and document the bot sends."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.redact import MASK, Redactor
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, Served, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi

API_KEY = "sk-ant-api03-secret-value-0123456789"


def leaking_agent(lines: int) -> list[str]:
    """A command link that prints the secrets into the handoff (and its output)."""
    code = (f"import os\nh = os.environ['LLMAUTO_HANDOFF']\n"
            f"text = 'token {TOKEN} key {API_KEY} &amp; <b>'\n"
            f"open(h, 'a').write('\\n'.join([text] * {lines}) + '\\n')\nprint(text)\n")
    return [sys.executable, "-c", code]


@pytest.fixture
async def leaky(home: Path, fake_api: FakeBotApi) -> AsyncIterator[Served]:
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url, environ={"ANTHROPIC_API_KEY": API_KEY})
    async with serving(fake_api, settings) as served:
        yield served


def leaked(api: FakeBotApi) -> list[str]:
    out = []
    for m in api.sent:
        for text in [m.text, *m.edits, *([m.document[0], m.document[1].decode()] if m.document else [])]:
            if TOKEN in text or API_KEY in text:
                out.append(text[:200])
    return out


async def test_secrets_in_a_handoff_are_redacted_in_notes_replies_and_documents(leaky: Served) -> None:
    write_chain(leaky.home, "leak", {"max_rounds": 1, "links": [
        {"name": "w", "command": leaking_agent(1), "telegram_update": True}]})
    await leaky.answer("/start_chain leak", "Started")
    await leaky.api.wait_for_message(CHAT, "leak COMPLETED")
    report = await leaky.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if m.document), None))
    assert MASK.encode() in report.document[1]
    short = await leaky.answer("/handoff leak", "current handoff")
    assert f"token {MASK} key {MASK}" in short.plain
    write_chain(leaky.home, "long", {"max_rounds": 1, "links": [{"name": "w", "command": leaking_agent(300)}]})
    await leaky.answer("/start_chain long", "Started")
    await leaky.api.wait_for_message(CHAT, "long COMPLETED")
    await leaky.answer("/handoff long", "handoff", timeout=15)
    doc = await leaky.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if m.document
                                                      and m.document[0] == "long-handoff.md"), None))
    assert doc.document[1].count(MASK.encode()) == 600
    assert leaked(leaky.api) == []


def test_redactor_masks_raw_and_escaped_secrets_longest_first() -> None:
    redact = Redactor(["abc&defgh", "abc&defgh-longer", ""])
    assert redact("x abc&defgh-longer y abc&amp;defgh z") == f"x {MASK} y {MASK} z"
    assert redact.data(b"-abc&defgh-") == f"-{MASK}-".encode()
    assert Redactor([])("nothing to hide") == "nothing to hide"
