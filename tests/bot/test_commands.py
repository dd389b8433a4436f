"""Every command from the (fake) phone, against the real bot over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.handlers import UserError, chain_arg
from tests.bot.conftest import CHAT, OPERATOR, STRANGER, Served, append_line
from tests.conftest import write_chain


def loop_chain(home: Path, name: str, rounds: int = 2, **extra: object) -> None:
    write_chain(home, name, {"max_rounds": rounds, "description": f"{name} test", **extra, "links": [
        {"name": "worker", "command": append_line("- worked"), "telegram_update": True},
        {"name": "reviewer", "role": "reviewer", "command": append_line("- reviewed")},
    ]})


async def test_commands_are_registered_and_help_answers(served: Served) -> None:
    names = [c["command"] for c in served.api.commands]
    assert names[:3] == ["start_chain", "stop_chain", "status"] and "unschedule" in names
    reply = await served.answer("/help", "marble runs")
    assert "/stop_chain" in reply.plain


async def test_start_chain_runs_and_reports(served: Served) -> None:
    loop_chain(served.home, "alpha")
    reply = await served.answer("/start_chain alpha", "Started")
    assert "run #1" in reply.plain
    done = await served.api.wait_for_message(CHAT, "alpha COMPLETED:")
    assert "max_rounds (2) reached" in done.plain
    notes = [m for m in served.api.messages(CHAT) if "round" in m.plain and "worker (command)" in m.plain]
    assert len(notes) >= 1  # worker has telegram_update (notes may be coalesced into one message)
    report = await served.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if m.document), None))
    assert report.document[0] == "report-alpha-run1.md"
    assert b"| 2 | reviewer | reviewer |" in report.document[1]
    # One progress card, edited from "running" to the run's end. Checked: with the
    # `out.append(self._card(chat, event))` of bot/notify.py removed, this fails; before, any "✅ alpha" note passed.
    card = await served.api.wait_for(lambda api: next(
        (m for m in api.messages(CHAT) if m.plain.startswith("✅ alpha COMPLETED · 2 rounds done")), None))
    assert card.edits and card.edits[0].startswith("▶️ <b>alpha</b> · round 1/2")


async def test_start_chain_errors_say_why(served: Served) -> None:
    loop_chain(served.home, "alpha")
    unknown = await served.answer("/start_chain nope", "unknown chain")
    assert "alpha" in unknown.plain
    write_chain(served.home, "broken", {"links": [{"name": "w", "model": 5, "prompt": "x y"}]})
    invalid = await served.answer("/start_chain broken", "Invalid chain")
    assert "links[0].model" in invalid.plain
    await served.answer("/start_chain ../../etc", "not a chain name")
    assert served.engine.running_here() == [] and not (served.home / "etc").exists()


async def test_start_chain_without_a_name_offers_buttons(served: Served) -> None:
    loop_chain(served.home, "alpha", rounds=1)
    (served.home / "chains" / "broken.json").write_text('{"links": []}')
    picker = await served.answer("/start_chain", "Which chain?")
    assert ("alpha", "start:alpha:0") in picker.buttons  # offered while alpha had no run yet
    # An invalid chain is no choice (pressing it could only fail): named, not offered. Red with the
    # `if not v.error` filter dropped.
    assert [label for label, _ in picker.buttons] == ["alpha"]
    assert "Not startable: broken; /chains says why." in picker.plain
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=picker.message_id, data="start:alpha:0")
    await served.api.wait_for_message(CHAT, "Started alpha")


async def test_status_handoff_log_chains(served: Served) -> None:
    loop_chain(served.home, "alpha", rounds=1)
    await served.answer("/start_chain alpha", "Started")
    await served.api.wait_for_message(CHAT, "COMPLETED")
    status = await served.answer("/status alpha", "alpha: COMPLETED")
    assert "Rounds done: 1 of 1" in status.plain and "Last link" in status.plain
    compact = await served.answer("/status", "Chains")
    assert "alpha" in compact.plain
    handoff = await served.answer("/handoff alpha", "current handoff")
    assert "- worked" in handoff.plain and "- reviewed" in handoff.plain
    after = await served.answer("/handoff alpha 1", "after round 1")
    assert "- reviewed" in after.plain
    diff = await served.answer("/handoff alpha diff", "what the last link changed")
    assert "+- reviewed" in diff.plain
    log = await served.answer("/log alpha 5", "last 2 links")
    assert "worker" in log.plain and "reviewer" in log.plain
    chains = await served.answer("/chains", "Chains")
    assert "alpha" in chains.plain


async def test_long_and_hostile_handoff_arrives_intact(served: Served) -> None:
    write_chain(served.home, "big", {"max_rounds": 1, "links": [
        {"name": "w", "command": append_line("<b>not bold</b> & *stars* _under_ [x](y) " * 200)}]})
    await served.answer("/start_chain big", "Started")
    await served.api.wait_for_message(CHAT, "COMPLETED")
    sent = await served.answer("/handoff big", "attached")
    assert sent.document is not None and sent.document[0] == "big-handoff.md"
    assert b"<b>not bold</b> & *stars*" in sent.document[1]
    write_chain(served.home, "small", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("<script>&amp; 1 < 2 >")}]})
    await served.answer("/start_chain small", "Started")
    await served.api.wait_for_message(CHAT, "small COMPLETED")
    small = await served.answer("/handoff small", "current handoff")
    assert "<script>&amp; 1 < 2 >" in small.plain


async def test_pause_resume_and_stop_with_reason(served: Served) -> None:
    write_chain(served.home, "slow", {"max_rounds": 0, "links": [
        {"name": "w", "command": ["python3", "-c", "import time; time.sleep(0.3)"]}]})
    await served.answer("/start_chain slow", "Started")
    await served.answer("/pause slow", "pausing")
    await served.api.wait_for_message(CHAT, "slow paused")
    await served.answer("/resume slow", "resuming")
    prompt = await served.answer("/stop_chain slow", "Why stop slow?")
    assert prompt.force_reply
    await served.answer("tests are red", "stopping after the current link", reply_to=prompt.message_id)
    final = await served.api.wait_for_message(CHAT, "slow STOPPED")
    assert "tests are red" in final.plain and "tg:111" in final.plain


async def test_stop_with_reason_inline_and_by_replying_to_a_chain_message(served: Served) -> None:
    write_chain(served.home, "slow", {"max_rounds": 0, "links": [{"name": "w", "command": ["python3", "-c", "import time; time.sleep(0.2)"]}]})
    started = await served.answer("/start_chain slow", "Started")
    await served.answer("/stop_chain wrong branch", "stopping", reply_to=started.message_id)
    final = await served.api.wait_for_message(CHAT, "slow STOPPED")
    assert "wrong branch" in final.plain
    await served.answer("/start_chain slow", "Started")
    ack = await served.answer("/stop_chain slow enough for today", "stopping")
    final2 = await served.api.wait_for_message(CHAT, "slow STOPPED", after=ack.message_id)
    assert "enough for today" in final2.plain


async def test_stop_now_button_kills_the_running_link(served: Served) -> None:
    write_chain(served.home, "hang", {"links": [{"name": "w", "command": ["python3", "-c", "import time; time.sleep(300)"]}]})
    await served.answer("/start_chain hang", "Started")
    prompt = await served.answer("/stop_chain hang", "Or stop hang at once")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=prompt.message_id,
                              data=prompt.data_of("Stop now"))
    final = await served.api.wait_for_message(CHAT, "hang STOPPED", timeout=20)
    assert "stopped now from Telegram" in final.plain
    rows = await served.engine.store.link_runs("hang")
    assert rows[-1].error_class == "killed"


async def test_reset_asks_to_confirm(served: Served) -> None:
    loop_chain(served.home, "alpha", rounds=1)
    await served.answer("/start_chain alpha", "Started")
    await served.api.wait_for_message(CHAT, "COMPLETED")
    confirm = await served.answer("/reset alpha", "Reset alpha?")
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=confirm.message_id,
                              data=confirm.data_of("Yes, reset"))
    await served.api.wait_for_message(CHAT, "alpha: reset")
    assert not (served.home / "state" / "alpha" / "handoff.md").exists()


async def test_buttons_on_notes(served: Served) -> None:
    loop_chain(served.home, "alpha", rounds=1)
    await served.answer("/start_chain alpha", "Started")
    note = await served.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if ("Handoff", "hand:alpha") in m.buttons and "worker" in m.plain), None))
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=note.message_id, data="hand:alpha")
    await served.api.wait_for_message(CHAT, "current handoff", after=note.message_id)
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=note.message_id, data="stat:alpha")
    await served.api.wait_for_message(CHAT, "alpha:", after=note.message_id)


async def test_schedule_commands(served: Served) -> None:
    loop_chain(served.home, "nightly", rounds=1)
    bad = await served.answer("/schedule nightly 0 25 * * *", "hour: 25 is out of range")
    assert "Example" in bad.plain
    added = await served.answer("/schedule nightly daily 02:00 tz=Europe/Berlin", "Schedule #1")
    assert "every day at 02:00 (Europe/Berlin)" in added.plain and added.plain.count("•") == 3
    listing = await served.answer("/schedules", "Schedules")
    assert "#1" in listing.plain and ("#1 pause", "spause:1") in listing.buttons
    served.api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=listing.message_id, data="spause:1")
    await served.api.wait_for_message(CHAT, "paused", after=listing.message_id)
    paused = await served.answer("/schedules", "next: paused")
    assert "#1 nightly" in paused.plain and ("#1 resume", "sresume:1") in paused.buttons
    await served.answer("/status nightly", "nightly: READY")  # a paused schedule starts nothing
    await served.answer("/unschedule 1", "Removed schedule #1")
    await served.answer("/schedules", "No schedules")
    await served.answer("/unschedule 9", "no schedule #9")


async def test_commands_answer_within_a_second(served: Served) -> None:
    loop_chain(served.home, "alpha", rounds=1)
    loop = asyncio.get_running_loop()
    for command, expect in (("/status", "Chains"), ("/help", "marble"), ("/status alpha", "alpha")):
        started = loop.time()
        await served.answer(command, expect)
        assert loop.time() - started < 1.0


async def test_hostile_arguments_are_refused_or_handled(served: Served) -> None:
    loop_chain(served.home, "alpha", rounds=1)
    long = await served.answer("/start_chain " + "x" * 5000, "too long")
    assert "1000" in long.plain
    for text in ("/status ../../etc/passwd", "/log alpha; rm -rf /", "/start_chain ａｌｐｈａ", "/pause $(reboot)",
                 "/handoff <b>x</b>"):
        # The strict fake parses the HTML: the reply arriving at all proves the argument was escaped.
        reply = await served.answer(text, "not a chain name")
        assert reply.plain.split(" is not a chain name")[0].strip() in text
    await served.answer("/handoff alpha 99999999999999", "Usage: /handoff")
    tricky = await served.answer("/stop_chain alpha \u202eevil\u200b reason <i>", "not running")
    assert "alpha" in tricky.plain


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
@example("0" * 13 + "\x1f" * 6 + "\x08" * 2 + "\U00018cd6" + "\U00018d09" * 5 + "\U0001b2fc\U0001bc89\U0001dab0\U0001e95a\U0002ebe1")
@example("<" * 80)
def test_chain_argument_parser(text: str) -> None:
    """Found by hypothesis on 2026-12-04: the refusal echoed 70 characters of the name, but each
    invisible one is shown as a 10-character escape, and the message reached 200 characters. Now the
    echo is capped as sent (`shown(limit=100)`); red with the `[:70]` cut instead."""
    try:
        name = chain_arg(text)
    except UserError as exc:
        assert "is not a chain name" in str(exc)
        assert len(str(exc)) < 200
    else:
        assert name == text and 1 <= len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)


async def test_stop_chain_of_a_chain_that_is_not_running_says_so(served: Served) -> None:
    loop_chain(served.home, "idle")
    asked = await served.answer("/stop_chain idle", "idle is not running")
    assert asked.plain == "idle is not running: there is nothing to stop."
    with_reason = await served.answer("/stop_chain idle because", "not running")
    assert "idle is not running" in with_reason.plain
    assert not any("Why stop" in m.plain for m in served.api.messages(CHAT))


async def test_unknown_commands_get_a_pointer_or_a_logged_refusal(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    hint = await served.answer("/frobnicate now", "Unknown command")
    assert hint.plain == "Unknown command /frobnicate. /help lists the commands."
    served.api.add_chat(STRANGER)
    refusal = await served.answer("/frobnicate", "not allowed", user=STRANGER)
    assert refusal.plain == "Sorry, you are not allowed to use this bot."
    assert f"refused '/frobnicate (unknown command)' from user {STRANGER} in chat {STRANGER}" in caplog.text
    served.say("/help@some_other_bot")  # addressed to another bot: not ours
    served.say("/help")
    await served.api.wait_for_message(CHAT, "marble runs", after=hint.message_id)
    assert not any("Unknown command /help" in m.plain for m in served.api.messages(CHAT))


async def test_get_updates_asks_only_for_the_update_types_used(served: Served) -> None:
    polls = await served.api.wait_for(lambda api: api.requests("getUpdates"))
    assert {p.params.get("allowed_updates") for p in polls} == {'["message", "callback_query"]'}
