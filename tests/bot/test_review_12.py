"""Issue #12 (a hostile review of `serve`), the bot's side: old buttons and reply prompts act on the
run they were offered for or not at all; presses on messages the bot did not send to that chat are
ignored; invisible characters are shown, odd button data is not a usage message, escaped length
decides inline or document; a send whose answer times out is not sent again; a chat's replies keep
their order; the card shows a BLOCKED wait. All against a real `serve` and the strict fake Bot API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot import replies
from bot.app import SEND_READ_TIMEOUT_S
from bot.outbox_store import OutboxStore
from tests.bot.conftest import CHAT, GROUP, OPERATOR, TOKEN, VIEWER, Served, append_line, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi
from tests.faults.serve_rig import until

HANG = [sys.executable, "-c", "import time; time.sleep(300)"]


def one_round(home: Path, name: str) -> None:
    write_chain(home, name, {"max_rounds": 1, "links": [{"name": "w", "command": append_line("- did it")}]})


async def callback_answer(api: FakeBotApi, contains: str) -> str:
    found: str = await api.wait_for(lambda a: next(
        (c.get("text") for c in a.answered_callbacks if contains in (c.get("text") or "")), None))
    return found


async def stop_and_wait(s: Served, name: str) -> None:
    """Stop the chain at once (its link hangs) and wait until its run has ended."""
    await s.engine.stop_chain(name, "enough", now=True, by="test")
    await until(f"{name} to stop", lambda: not s.engine.is_running_here(name), 20)


# ---- 5: buttons and prompts bound to their run ---------------------------------------------------
async def test_an_old_stop_now_button_does_not_kill_a_later_run(served: Served) -> None:
    """Run #1's "Stop now", pressed while run #2 runs, answers that run #1 has ended, kills
    nothing, and loses its keyboard (broke: `stale_reason` returning None for stop/stopnow)."""
    write_chain(served.home, "hang", {"links": [{"name": "w", "command": HANG}]})
    await served.answer("/start_chain hang", "Started hang (run #1)")
    old = await served.answer("/stop_chain hang", "Or stop hang at once")
    assert old.data_of("Stop now") == "stopnow:1"
    await stop_and_wait(served, "hang")
    await served.answer("/start_chain hang", "Started hang (run #2)")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=old.message_id, data="stopnow:1")
    assert "run #1, which has ended" in await callback_answer(served.api, "run #1")
    await served.api.wait_for(lambda a: not old.buttons)  # the keyboard is removed
    assert served.engine.is_running_here("hang")
    assert (await served.engine.store.last_runs("hang"))[0].status == "RUNNING"
    await stop_and_wait(served, "hang")


async def test_a_used_stop_now_button_is_removed(served: Served) -> None:
    """Pressed once, a one-shot keyboard goes (editMessageReplyMarkup) (broke: `_drop_keyboard`
    call in `on_button` removed)."""
    write_chain(served.home, "hang", {"links": [{"name": "w", "command": HANG}]})
    await served.answer("/start_chain hang", "Started")
    prompt = await served.answer("/stop_chain hang", "Or stop hang at once")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=prompt.message_id, data=prompt.data_of("Stop now"))
    await served.api.wait_for_message(CHAT, "hang STOPPED", timeout=20)
    await served.api.wait_for(lambda a: a.requests("editMessageReplyMarkup") and not prompt.buttons)


async def test_an_old_reset_confirmation_does_nothing_after_a_later_run(served: Served) -> None:
    """"Yes, reset" offered after run #1 and pressed after run #2 ended resets nothing (broke:
    the reset!'s run/status check in `stale_reason`)."""
    one_round(served.home, "alpha")
    await served.answer("/start_chain alpha", "Started")
    first_end = await served.api.wait_for_message(CHAT, "alpha COMPLETED")
    confirm = await served.answer("/reset alpha", "Reset alpha?")
    await served.answer("/start_chain alpha", "Started alpha (run #2)")
    await served.api.wait_for_message(CHAT, "alpha COMPLETED", after=first_end.message_id)
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=confirm.message_id,
                            data=confirm.data_of("Yes, reset"))
    assert "out of date" in await callback_answer(served.api, "out of date")
    assert (served.home / "state" / "alpha" / "handoff.md").exists()
    assert not any("alpha: reset" in m.plain for m in served.api.messages(CHAT))


async def test_a_reply_to_an_old_runs_why_stop_does_not_stop_a_later_run(served: Served) -> None:
    """The reason prompt is bound to its run (broke: the `_check_prompt` call in `on_reply`)."""
    write_chain(served.home, "hang", {"links": [{"name": "w", "command": HANG}]})
    await served.answer("/start_chain hang", "Started")
    prompt = await served.answer("/stop_chain hang", "Why stop hang?")
    await stop_and_wait(served, "hang")
    await served.answer("/start_chain hang", "Started hang (run #2)")
    refusal = await served.answer("stop it", "from run #1, which has ended", reply_to=prompt.message_id)
    assert "nothing done" in refusal.plain
    assert served.engine.is_running_here("hang")
    await stop_and_wait(served, "hang")


async def test_viewers_get_no_state_changing_buttons(served: Served) -> None:
    """A viewer's /status of a running chain has Handoff and Status, no Stop (broke: the access
    filter in `BotHandlers.reply`)."""
    write_chain(served.home, "hang", {"links": [{"name": "w", "command": HANG}]})
    await served.answer("/start_chain hang", "Started")
    served.api.add_chat(VIEWER)
    mine = await served.answer("/status hang", "hang: RUNNING")
    assert "Stop" in dict(mine.buttons)
    theirs = await served.answer("/status hang", "hang: RUNNING", user=VIEWER)
    assert [label for label, _ in theirs.buttons] == ["Handoff", "Status"]
    await stop_and_wait(served, "hang")


# ---- 6: a press must sit on a message the bot sent to that chat ----------------------------------
async def test_a_press_claiming_another_chat_is_ignored(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    """The update says the confirmation sits in the group; the bot sent it to the private chat: the
    press is ignored (broke: the `sent is None` check in `on_button`)."""
    one_round(served.home, "alpha")
    await served.answer("/start_chain alpha", "Started")
    await served.api.wait_for_message(CHAT, "alpha COMPLETED")
    confirm = await served.answer("/reset alpha", "Reset alpha?")
    served.api.add_chat(GROUP, "supergroup")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=confirm.message_id,
                            data=confirm.data_of("Yes, reset"), forged_chat=GROUP)
    await served.api.wait_for(lambda a: any("did not send to chat -1001" in r.getMessage() for r in caplog.records))
    assert (served.home / "state" / "alpha" / "handoff.md").exists()
    assert served.api.messages(GROUP) == []


# ---- 8: what is echoed, odd data, escaped length -------------------------------------------------
async def test_invisible_characters_are_shown_not_echoed(served: Served) -> None:
    """NUL and U+202E come back as \\x00 and \\u202e (broke: `shown` -> `esc` in `chain_arg`)."""
    refusal = await served.answer("/start_chain a\x00b\u202ecod.exe", "is not a chain name")
    assert "\x00" not in refusal.text and "\u202e" not in refusal.text
    assert "a\\x00b\\u202ecod.exe" in refusal.plain


async def test_a_bad_schedule_id_in_button_data_is_no_usage_message(served: Served) -> None:
    """`spause:abc` was never made by the bot: ignored, not "Usage: /unschedule ID" (broke: the
    `sid` shape in `_SHAPES` widened to any text)."""
    note = await served.answer("/schedules", "No schedules")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=note.message_id, data="spause:abc", forged=True)
    await served.api.wait_for(lambda a: len(a.answered_callbacks) == 1)
    await served.answer("/help", "marble runs")  # everything before it is handled
    assert not any("Usage" in m.plain for m in served.api.messages(CHAT))


async def test_a_handoff_that_escapes_past_the_limit_goes_as_a_document(served: Served) -> None:
    """2,990 `<` are 11,960 characters escaped: a document, not a message cut at 4,096 (broke:
    `len(inline) <= LIMIT` dropped from `handoff_message`)."""
    write_chain(served.home, "lt", {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", (
        "import os; open(os.environ['LLMAUTO_HANDOFF'], 'w').write('<' * 2990)")]}]})
    await served.answer("/start_chain lt", "Started")
    await served.api.wait_for_message(CHAT, "lt COMPLETED")
    sent = await served.answer("/handoff lt", "attached")
    assert sent.document is not None and sent.document[1] == b"<" * 2990


# ---- 9: a send that timed out after reaching Telegram is not sent again ---------------------------
async def test_a_send_answered_late_is_not_sent_again(home: Path, fake_api: FakeBotApi) -> None:
    """Telegram delivers, then answers after the bot's read timeout: "Started" arrives once and one
    card appears (broke: `possibly_delivered` returning False: the reply is queued and resent)."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url)
    write_chain(home, "demo", {"max_rounds": 1, "links": [
        {"name": "w", "command": [sys.executable, "-c", "import time; time.sleep(1.5)"], "telegram_update": True}]})
    async with serving(fake_api, settings, send_timeout_s=0.5) as s:
        fake_api.late["sendMessage"] = 1.0
        s.say("/start_chain demo")
        await fake_api.wait_for_message(CHAT, "demo COMPLETED", timeout=30)
        fake_api.late.clear()
        await s.answer("/help", "marble runs")
        outbox = s.parts["sender"].outbox
        await until("the outbox to drain", lambda: _drained(outbox), 20)
        rows = await outbox.store.query("SELECT kind, outcome FROM outbox")
    texts = [m.plain for m in fake_api.messages(CHAT)]
    assert sum("Started demo" in t for t in texts) == 1, texts
    assert sum(t.startswith("▶️ demo · round") or t.startswith("✅ demo COMPLETED · ") for t in texts) == 1, texts
    assert sum("demo COMPLETED" in t and "run cost" in t for t in texts) == 1, texts
    assert any(r["outcome"] == "possibly_delivered" for r in rows)


async def _drained(outbox: OutboxStore) -> bool:
    return await outbox.pending_count() == 0


def test_sends_wait_long_enough_for_a_slow_telegram() -> None:
    """Answers 25 s late still arrive within the read timeout (broke: PTB's 5 s default)."""
    assert SEND_READ_TIMEOUT_S >= 30


# ---- 10: a chat's replies in order ---------------------------------------------------------------
async def test_a_reply_held_by_a_429_is_not_overtaken(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """/help is refused with a 429 longer than a reply waits, so it goes to the outbox; /chains
    after it queues behind it (broke: the `replies_waiting` check in `Replies.send`)."""
    monkeypatch.setattr(replies, "REPLY_WAIT_MAX_S", 0.2)
    served.api.fail_next("sendMessage", 429, retry_after=1)
    served.say("/help")
    outbox = served.parts["sender"].outbox
    await served.api.wait_for(lambda a: any(r.status == 429 for r in a.requests("sendMessage")))
    await until("/help queued in the outbox", outbox.pending_count, 5)
    await served.answer("/chains", "No chains")
    texts = [m.plain for m in served.api.messages(CHAT)]
    help_at = next(i for i, t in enumerate(texts) if "marble runs" in t)
    assert help_at < next(i for i, t in enumerate(texts) if t.startswith("Chains") or "No chains" in t), texts


# ---- 11: the card shows a BLOCKED wait -----------------------------------------------------------
ASKS = ("import os\nh = os.environ['LLMAUTO_HANDOFF']\n"
        "open(h, 'a').write('\\n## Status: BLOCKED\\nQUESTION: which db?\\n')\n")


async def test_the_card_shows_the_wait_for_a_blocked_answer(served: Served) -> None:
    """While the chain waits for the answer, the card says so, not "Link: b" (broke: ev.BLOCKED
    dropped from CARD_EVENTS)."""
    write_chain(served.home, "asker", {"max_rounds": 3, "on_blocked": "wait", "blocked_wait_minutes": 10, "links": [
        {"name": "a", "command": append_line("- a")}, {"name": "b", "command": [sys.executable, "-c", ASKS]}]})
    await served.answer("/start_chain asker", "Started")
    await served.api.wait_for_message(CHAT, "BLOCKED at b")
    card = await served.api.wait_for(lambda a: next((m for m in a.messages(CHAT) if "waits for your answer (reply" in m.plain), None))
    assert "round 1/3" in card.plain and "Link:" not in card.plain
    await stop_and_wait(served, "asker")

