"""Issue #12, item 11: a real `serve` SIGKILLed mid-link leaves a progress card that nothing will
edit again ("Link: worker · 0.0s" forever). The next serve finishes that card with the run's outcome
and says that progress goes on in a new card."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import write_chain
from tests.fakes.botapi import FakeBotApi
from tests.faults.serve_rig import (
    CHAT,
    OPERATOR,
    ServeProcess,
    exited,
    settled_status,
    until,
    until_ready,
)
from tests.test_cli import LOOP


async def test_the_card_of_a_run_cut_off_by_sigkill_is_finished_on_restart(
        serve_proc: ServeProcess, botapi: FakeBotApi, home: Path) -> None:
    """Broke: the `close_stale_cards` call in `run_serve` removed: the old card keeps
    "Link: worker" and the wait below times out."""
    write_chain(home, "crash", {**LOOP, "max_rounds": 1})
    serve_proc.scenario_is({"links": {
        "worker": [{"hang": True}, {"handoff": "- worker after recovery\n", "handoff_mode": "append"}],
        "reviewer": [{"handoff": "- reviewer\n", "handoff_mode": "append"}],
    }})
    first = serve_proc.start()
    await until_ready(botapi, first, 0)
    botapi.user_message(user_id=OPERATOR, text="/start_chain crash")
    card = await until("the card showing the running worker", lambda: next(
        (m for m in botapi.messages(CHAT) if "Link: worker" in m.plain), None), proc=first)
    first.send_signal(signal.SIGKILL)
    await exited(first, 10)

    polls = botapi.arrived.count("getUpdates")
    second = serve_proc.start()
    await until_ready(botapi, second, polls)
    assert await until("the resumed run to end", lambda: settled_status(home, "crash"), 60, proc=second) == "COMPLETED"
    await until("the old card to be finished", lambda: "INTERRUPTED" in card.plain, 60, proc=second)
    assert "Link: worker" not in card.plain and "new card" in card.plain
    await until("the resumed run's own card", lambda: any(
        m.message_id != card.message_id and "crash COMPLETED · 1 round done" in m.plain for m in botapi.messages(CHAT)), 60)
