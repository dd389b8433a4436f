"""Approve or deny an agent's tool call from the phone (#11), end to end: a real `serve` against
the fake Bot API, the REAL Claude Code CLI against the loopback mock API. The agent wants to run a
Bash command that the chain's `approve.ask` rule sends to the phone.

Checked by breaking the code: with `Access.may` letting viewers do "approve" the viewer's press
approves (red); with `_check_press` not checking the request's status the expired press reaches
the engine and answers differently (red); without the APPROVAL_DECIDED edit in the notifier the
question keeps its buttons (red).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.bot.conftest import CHAT, OPERATOR, TOKEN, VIEWER, Served, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.anthropic_api import MockAnthropic, Reply, tool_results
from tests.fakes.botapi import FakeBotApi, SentMessage
from tests.fakes.claude_env import REAL_CLAUDE_MISSING, offline_env, real_claude_bin

pytestmark = [
    pytest.mark.real_claude,
    pytest.mark.skipif(real_claude_bin() is None, reason=REAL_CLAUDE_MISSING),
]

COMMAND = "git push origin main; touch pushed.txt"


def agent(request: dict[str, Any]) -> Reply:
    results = tool_results(request)
    if results:
        return Reply.text("agent saw: " + json.dumps(results[0].get("content")))
    return Reply.bash(COMMAND, description="Push the release branch")


@pytest.fixture
async def phone(home: Path, tmp_path: Path, fake_api: FakeBotApi) -> AsyncIterator[tuple[Served, MockAnthropic]]:
    claude = real_claude_bin()
    assert claude is not None
    (tmp_path / "tmp").mkdir()
    write_chain(home, "ship", {"mode": "once", "approve": {"ask": ["Bash(git push:*)"], "timeout_minutes": 10},
                               "links": [{"name": "pusher", "model": "claude-sonnet-4-6", "prompt": "Push it."}]})
    with MockAnthropic(agent) as api:
        environ = offline_env(api.base_url, tmp_path / "claude-config", home=tmp_path)
        environ["TMPDIR"] = str(tmp_path / "tmp")
        settings = make_settings(home, claude_bin=claude, environ=environ, telegram_token=TOKEN,
                                 allowed_user_ids=frozenset({OPERATOR}), viewer_user_ids=frozenset({VIEWER}),
                                 chat_id=CHAT, api_base_url=fake_api.base_url)
        async with serving(fake_api, settings) as served:
            yield served, api


async def question(served: Served) -> SentMessage:
    await served.answer("/start_chain ship", "Started")
    return await served.api.wait_for_message(CHAT, "asks to use Bash", timeout=60)


async def edited(served: Served, message_id: int, contains: str) -> SentMessage:
    def done(api: FakeBotApi) -> SentMessage | None:
        m = next(m for m in api.messages(CHAT) if m.message_id == message_id)
        return m if contains in m.plain else None
    return await served.api.wait_for(done, timeout=60)


async def test_approve_from_the_phone_runs_the_command(phone: tuple[Served, MockAnthropic]) -> None:
    served, _ = phone
    asked = await question(served)
    assert "ship · run #1 · round 1 · pusher asks to use Bash:" in asked.plain
    assert COMMAND in asked.plain and "Reason: Push the release branch" in asked.plain
    assert [label for label, _ in asked.buttons] == ["✅ Approve", "❌ Deny", "✍️ Deny and say why",
                                                     "♾ Always allow this in this run"]
    status = await served.answer("/status ship", "Waiting for your approval")
    assert f"#1 ship · pusher: Bash {COMMAND}" in status.plain
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=asked.message_id, data=asked.data_of("✅ Approve"))
    done = await edited(served, asked.message_id, "Approved by tg:111")
    assert done.buttons == []  # the decision took the buttons away
    await served.api.wait_for_message(CHAT, "COMPLETED", timeout=60)
    assert (served.home / "pushed.txt").exists()


async def test_deny_and_say_why_reaches_the_agent(phone: tuple[Served, MockAnthropic]) -> None:
    served, api = phone
    asked = await question(served)
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=asked.message_id,
                            data=asked.data_of("✍️ Deny and say why"))
    prompt = await served.api.wait_for_message(CHAT, "Why deny request #1 of ship?")
    assert prompt.force_reply
    served.say("not before the release review", reply_to=prompt.message_id)
    await edited(served, asked.message_id, "Denied by tg:111")
    await served.api.wait_for_message(CHAT, "COMPLETED", timeout=60)
    assert not (served.home / "pushed.txt").exists()
    seen = [r.body for r in api.message_requests() if tool_results(r.body)]
    assert "not before the release review" in json.dumps(tool_results(seen[-1])[0].get("content"))


async def test_a_viewers_press_does_nothing_and_an_expired_one_neither(phone: tuple[Served, MockAnthropic]) -> None:
    served, _ = phone
    asked = await question(served)
    before = len(served.api.answered_callbacks)
    served.api.press_button(user_id=VIEWER, chat_id=CHAT, message_id=asked.message_id, data=asked.data_of("✅ Approve"))
    await served.api.wait_for(lambda api: len(api.answered_callbacks) > before)
    assert [r.status for r in await served.engine.pending_approvals("ship")] == ["pending"]
    assert "not allowed" in str(served.api.answered_callbacks[-1].get("text"))
    await served.engine.stop_chain("ship", "enough", now=True, by="test")  # a stop denies what waits
    await edited(served, asked.message_id, "The chain is stopping")
    before = len(served.api.answered_callbacks)
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=asked.message_id, data=asked.data_of("✅ Approve")
                            if asked.buttons else "apr:1", forged=not asked.buttons)
    await served.api.wait_for(lambda api: len(api.answered_callbacks) > before)
    assert served.api.answered_callbacks[-1].get("text") == "This request has expired."
    assert not (served.home / "pushed.txt").exists()
