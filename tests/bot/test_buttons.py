"""Buttons, replies and groups from the (fake) phone, against the real bot over HTTP: the Stop
button's reason flow, stopping by replying to an alert, viewers and strangers in a group around a
BLOCKED alert, schedule buttons, long answers split, the token kept out of logs, and /status
latency with twenty chains running."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from bot.pacer import Pacer
from tests.bot.conftest import CHAT, GROUP, OPERATOR, STRANGER, TOKEN, VIEWER, Served
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi, parsed_length

REFUSAL = "Sorry, you are not allowed to use this bot."
ALWAYS_BLOCKED = (
    "import os\n"
    "h = os.environ['LLMAUTO_HANDOFF']\n"
    "text = open(h).read() if os.path.exists(h) else ''\n"
    "if 'Operator note' in text:\n"
    "    open(h, 'a').write('\\n## Status: DONE\\nthanks\\n')\n"
    "else:\n"
    "    open(h, 'a').write('\\n## Status: BLOCKED\\nQUESTION: which <db> & why?\\n')\n"
)


def sleeper(seconds: float) -> list[str]:
    return [sys.executable, "-c", f"import time; time.sleep({seconds})"]


def asker(home: Path, name: str = "asker") -> None:
    write_chain(home, name, {"max_rounds": 2, "on_blocked": "wait", "blocked_wait_minutes": 10, "links": [
        {"name": "agent", "command": [sys.executable, "-c", ALWAYS_BLOCKED]}]})


async def test_stop_button_asks_for_a_reason_and_the_reply_stops_the_chain(served: Served) -> None:
    write_chain(served.home, "slow", {"links": [{"name": "w", "command": sleeper(0.2), "telegram_update": True}]})
    await served.answer("/start_chain slow", "Started")
    note = await served.api.wait_for(lambda api: next(
        (m for m in api.messages(CHAT) if "Stop" in dict(m.buttons) and "round" in m.plain), None))
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=note.message_id, data=note.data_of("Stop"))
    prompt = await served.api.wait_for_message(CHAT, "Why stop slow?", after=note.message_id)
    assert prompt.force_reply
    await served.answer("the disk is full", "stopping after the current link", reply_to=prompt.message_id)
    final = await served.api.wait_for_message(CHAT, "slow STOPPED")
    assert "the disk is full" in final.plain


async def test_replying_stop_chain_to_a_blocked_alert_stops_that_chain(served: Served) -> None:
    asker(served.home)
    await served.answer("/start_chain asker", "Started")
    alert = await served.api.wait_for_message(CHAT, "BLOCKED at agent")
    await served.answer("/stop_chain not today", "stopping", reply_to=alert.message_id)
    final = await served.api.wait_for_message(CHAT, "asker STOPPED", after=alert.message_id)
    assert "not today" in final.plain
    assert "Operator note" not in (served.home / "state" / "asker" / "handoff.md").read_text()


async def test_in_a_group_only_the_operator_acts_on_an_alert(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    api = served.api
    api.add_chat(GROUP, "supergroup")
    asker(served.home)
    await served.answer("/start_chain asker", "Started", chat=GROUP, chat_type="supergroup")
    alert = await api.wait_for_message(GROUP, "BLOCKED at agent")
    assert "which <db> & why?" in alert.plain and ("Handoff", "hand:asker") in alert.buttons
    # The viewer may read (Handoff) but not stop, nor answer.
    api.press_button(user_id=VIEWER, chat_id=GROUP, message_id=alert.message_id, data="hand:asker")
    await api.wait_for_message(GROUP, "current handoff", after=alert.message_id)
    api.press_button(user_id=VIEWER, chat_id=GROUP, message_id=alert.message_id, data=alert.data_of("Stop"))
    await api.wait_for(lambda a: any(c.get("text") == REFUSAL for c in a.answered_callbacks))
    await served.answer("use postgres", REFUSAL, user=VIEWER, chat=GROUP, reply_to=alert.message_id)
    await served.answer("drop everything", REFUSAL, user=STRANGER, chat=GROUP, reply_to=alert.message_id)
    assert not any("Why stop" in m.plain for m in api.messages(GROUP))
    handoff = served.home / "state" / "asker" / "handoff.md"
    assert "Operator note" not in handoff.read_text()
    assert served.engine.is_running_here("asker")
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert refusals == [f"refused 'stop_chain' from user {VIEWER} in chat {GROUP}",
                        f"refused 'answer' from user {VIEWER} in chat {GROUP}",
                        f"refused 'answer' from user {STRANGER} in chat {GROUP}"]
    # The operator's reply is the answer: into the handoff, and the chain goes on to the end.
    await served.answer("sqlite, one file", "answer added", chat=GROUP, reply_to=alert.message_id)
    await api.wait_for_message(GROUP, "asker COMPLETED", timeout=20)
    text = handoff.read_text()
    assert "sqlite, one file" in text and "drop everything" not in text and "use postgres" not in text


async def test_schedule_buttons_pause_resume_and_delete(served: Served) -> None:
    write_chain(served.home, "nightly", {"max_rounds": 1, "links": [{"name": "w", "command": sleeper(0)}]})
    await served.answer("/schedule nightly 0 2 * * *", "Schedule #1")
    listing = await served.answer("/schedules", "Schedules")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=listing.message_id, data="spause:1")
    await served.api.wait_for_message(CHAT, "Schedule #1 of nightly paused", after=listing.message_id)
    paused = await served.answer("/schedules", "next: paused")
    assert ("#1 resume", "sresume:1") in paused.buttons
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=paused.message_id, data="sresume:1")
    await served.api.wait_for_message(CHAT, "Schedule #1 of nightly resumed", after=paused.message_id)
    # A stranger's press is refused with a popup and removes nothing. Checked: with `on_button`
    # going on after a refusal for `sdel`, this fails (the query is answered twice, the schedule
    # removed by the stranger); before, the owner's press made the same "Removed" text.
    answered = len(served.api.answered_callbacks)
    served.api.press_button(user_id=STRANGER, chat_id=CHAT, message_id=paused.message_id, data="sdel:1")
    refusal = await served.api.wait_for(lambda api: api.answered_callbacks[answered:] and api.answered_callbacks[answered])
    assert refusal.get("text") == REFUSAL
    kept = await served.answer("/schedules", "Schedules")
    assert "nightly" in kept.plain
    # ... and its handler stopped at the refusal: its query was answered once, with the popup.
    same = [c for c in served.api.answered_callbacks if c["callback_query_id"] == refusal["callback_query_id"]]
    assert same == [refusal]
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=paused.message_id, data="sdel:1")
    await served.api.wait_for_message(CHAT, "Removed schedule #1 of nightly", after=kept.message_id)
    await served.answer("/schedules", "No schedules")
    removed = [m for m in served.api.messages(CHAT) if "Removed schedule" in m.plain]
    assert len(removed) == 1 and removed[0].message_id > kept.message_id


async def test_a_long_answer_arrives_in_several_valid_messages(served: Served) -> None:
    names = [f"a-chain-with-a-rather-long-name-to-fill-the-status-list-{i:03d}" for i in range(80)]
    for name in names:
        write_chain(served.home, name, {"links": [{"name": "w", "command": sleeper(0)}]})
    asked = served.say("/status")
    last = await served.api.wait_for_message(CHAT, names[-1], after=asked["message_id"])
    parts = [m for m in served.api.messages(CHAT) if asked["message_id"] < m.message_id <= last.message_id]
    assert len(parts) >= 2 and all(parsed_length(m.text, "HTML") <= 4096 for m in parts)
    text = "\n".join(m.plain for m in parts)
    assert [n for n in names if f"{n} READY" in text] == names


async def test_the_token_never_reaches_a_log_even_with_httpx_at_debug(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # a careless operator turns request logging on
    write_chain(served.home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": sleeper(0)}]})
    await served.answer("/start_chain alpha", "Started")
    await served.api.wait_for_message(CHAT, "alpha COMPLETED")
    requests = [r for r in caplog.records if r.name == "httpx" and "HTTP Request" in r.getMessage()]
    assert requests and all("/bot[REDACTED]/" in r.getMessage() for r in requests)
    assert not [r for r in caplog.records if TOKEN in r.getMessage() or TOKEN in (r.exc_text or "")]
    assert TOKEN not in caplog.text
    assert all(TOKEN not in m.text for m in served.api.messages())


async def test_status_shows_twenty_running_chains_while_they_report(home: Path, fake_api: FakeBotApi) -> None:
    """/status keeps answering, complete, while twenty chains run links and report into the same
    chat (its latency is measured in bench/bot_load.py, not here)."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url, max_parallel_links=20)
    for i in range(20):
        write_chain(home, f"c{i:02d}", {"links": [{"name": "w", "command": sleeper(0.05), "telegram_update": True}]})
    served = Served(fake_api, settings, home)
    await served.start(pacer=Pacer(per_chat_s=0.0, group_per_minute=1000, global_per_second=1000))
    try:
        for i in range(20):
            await served.engine.start_chain(f"c{i:02d}", origin="test")
        for _ in range(5):
            reply = await served.answer("/status", "Chains")
            assert reply.plain.count("RUNNING") == 20
        # Meanwhile every chain's link notes reach the chat (coalesced).
        await fake_api.wait_for(lambda api: all(any(f"✅ c{i:02d} · round" in m.plain for m in api.messages(CHAT))
                                                for i in range(20)))
    finally:
        await served.shutdown()
