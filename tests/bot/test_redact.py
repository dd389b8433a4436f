"""Secrets never leave for Telegram: an agent that writes the bot token or an API key into its
handoff gets `[redacted]` in every note, reply, caption and document the bot sends."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.redact import MASK, Redactor
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, Served, append_line, serving
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


def _runs(secret: str, n: int = 12) -> list[str]:
    return [secret[i:i + n] for i in range(len(secret) - n + 1)]


def partly_leaked(api: FakeBotApi) -> list[str]:
    """Messages, edits and documents that hold 12 consecutive characters of a secret."""
    found = []
    for m in api.sent:
        for text in [m.text, *m.edits, *([m.document[0], m.document[1].decode()] if m.document else [])]:
            found += [run for secret in (TOKEN, API_KEY) for run in _runs(secret) if run in text]
    return found


async def test_partial_encoded_and_wrapped_secrets_never_reach_the_chat(leaky: Served) -> None:
    """Issue #12 item 2: the token's secret part alone, its URL-encoded form and the token and the
    API key broken across lines, written into the handoff over two links: /handoff, /handoff 1,
    /handoff diff (a viewer may send these) and the run report hold no 12 characters of either.
    Fails on the old Redactor (whole raw and HTML forms only)."""
    part = TOKEN.split(":", 1)[1]
    forms = [f"part {part}", f"url bot{TOKEN.replace(':', '%3A')}/getMe",
             f"wrapped {TOKEN[:20]}\n    {TOKEN[20:]}", f"key {API_KEY[:9]}\n{API_KEY[9:]}"]
    write_chain(leaky.home, "forms", {"max_rounds": 1, "links": [
        {"name": "a", "command": append_line("\n".join(forms[:2]))},
        {"name": "b", "command": append_line("\n".join(forms[2:])), "telegram_update": True}]})
    await leaky.answer("/start_chain forms", "Started")
    await leaky.api.wait_for_message(CHAT, "forms COMPLETED")
    await leaky.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if m.document), None))
    for command, reply in (("/handoff forms", "current handoff"), ("/handoff forms 1", "after round 1"),
                           ("/handoff forms diff", "wrapped")):
        shown = await leaky.answer(command, reply)
        assert MASK in shown.plain, shown.plain
    assert partly_leaked(leaky.api) == []


async def test_serve_warns_at_start_when_the_token_file_is_where_agents_run(
    home: Path, fake_api: FakeBotApi, caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue #12 item 3: the home's .env holds the token and agents run in the home (no chain sets
    a workdir): serve logs a warning that says so and how to move it, without the token. Removed
    the warning from run_serve: this fails."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url, env_file=home / ".env",
                             env_file_keys=frozenset({"TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID"}))
    caplog.set_level(logging.WARNING)
    async with serving(fake_api, settings):
        pass
    warned = [r.getMessage() for r in caplog.records if "holds TELEGRAM_BOT_TOKEN" in r.getMessage()]
    assert len(warned) == 1 and str(home / ".env") in warned[0] and "LLMAUTO_ENV_FILE" in warned[0]
    assert TOKEN not in caplog.text
