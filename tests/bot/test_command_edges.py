"""Commands on the paths no flow of the suite took (issue #16): each answer a person gets when
there is nothing to act on, when a command lacks its arguments, when a reply is not an answer,
and when a name is too long for a confirmation button. Real `serve` in-process against the fake
Bot API over HTTP."""

from __future__ import annotations

import sys

from tests.bot.conftest import CHAT, Served
from tests.conftest import write_chain

ONE_LINK = {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", "pass"]}]}


async def test_with_no_chains_the_pickers_say_so(served: Served) -> None:
    """Red with _pick's empty case dropped (an empty keyboard Telegram refuses, or a question
    with no buttons), or /stop_chain's nothing-running answer dropped (an empty picker)."""
    await served.answer("/start_chain", "No chains yet: put a definition in chains/NAME.json.")
    await served.answer("/handoff", "No chains yet")
    await served.answer("/stop_chain", "No chain is running.")


async def test_handoff_without_a_name_asks_which_when_none_runs(served: Served) -> None:
    """Red with /handoff's picker replaced by the one running chain regardless (with none running
    it would fail), or the picker's buttons left out."""
    write_chain(served.home, "alpha", ONE_LINK)
    write_chain(served.home, "beta", ONE_LINK)
    asked = await served.answer("/handoff", "Handoff of which chain?")
    assert [label for label, _ in asked.buttons] == ["alpha", "beta"]


async def test_commands_without_their_arguments_say_how(served: Served) -> None:
    """Red with /schedule's or /unschedule's usage check dropped (an IndexError: the generic
    "failed on our side")."""
    usage = await served.answer("/schedule alpha", "Usage: /schedule NAME CRON")
    assert "/schedule nightly 0 2 * * *" in usage.plain
    await served.answer("/unschedule", "Usage: /unschedule ID (see /schedules)")


async def test_a_reply_to_a_chain_message_that_is_no_answer_says_where_answers_go(served: Served) -> None:
    """Red with on_reply's last branch dropped (the reply would be ignored without a word), or the
    length check (a 5000-character reply would go on to the same hint)."""
    write_chain(served.home, "alpha", ONE_LINK)
    status = await served.answer("/status alpha", "alpha")
    hint = await served.answer("hello there", "To answer an agent, reply to its ⛔ BLOCKED alert", reply_to=status.message_id)
    assert hint.chat_id == CHAT
    await served.answer("x" * 4001, "That answer is too long (over 4000 characters).", reply_to=status.message_id)


async def test_reset_of_a_name_too_long_for_its_button_says_what_to_do(served: Served) -> None:
    """Red with /reset's check of the button dropped (a keyboard with a None button: the generic
    failure, and no word of `llmauto chain reset`)."""
    name = "a" * 60
    write_chain(served.home, name, ONE_LINK)
    await served.answer(f"/reset {name}", "too long for a confirmation button; use llmauto chain reset")
