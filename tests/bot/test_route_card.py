"""The progress card of a routing chain shows the current round's path (#13): "Path: worker →
reviewer (NEEDS_FIX) → worker (1/3)", from a real `serve` over HTTP and from the notifier's state."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from bot import render
from bot.notify import Notifier
from bot.outbox_store import OutboxStore
from engine import events as ev
from engine.events import Event, EventBus
from engine.settings import Settings
from engine.store import Store
from tests.bot.conftest import CHAT, Served
from tests.conftest import ROOT, write_chain

ROUTE_AGENT = ROOT / "tests" / "fakes" / "route_agent.py"


async def test_the_card_shows_the_routed_path_of_the_round(served: Served, tmp_path: Path) -> None:
    """While the bounced round's worker runs, the card says "Path: worker → reviewer (NEEDS_FIX)
    → worker (1/3)". Guards: ev.ROUTED in bot/notify.py CARD_EVENTS (broken: removed, the card
    never learns of the hop) and the `hop_mark` of `_hop` (broken: None: "(1/3)" is missing)."""
    box = tmp_path / "box"
    box.mkdir()
    write_chain(served.home, "rv", {"mode": "conditional", "max_rounds": 1, "links": [
        {"name": "worker", "command": [sys.executable, str(ROUTE_AGENT), "worker", str(box)]},
        {"name": "reviewer", "role": "reviewer", "command": [sys.executable, str(ROUTE_AGENT), "reviewer", str(box),
                                                             "NEEDS_FIX,APPROVED"],
         "routes": {"NEEDS_FIX": "worker", "APPROVED": "next"}}]})
    await served.answer("/start_chain rv", "Started")
    want = "Path: worker → reviewer (NEEDS_FIX) → worker (1/3)"

    def card_with_path(api: Any) -> Any:
        return next((m for m in api.messages(CHAT) if any(want in render_plain(t) for t in [m.plain, *m.edits])), None)

    card = await served.api.wait_for(card_with_path, timeout=20)
    assert (box / "worker-waits").exists()  # the card said so while the bounced worker ran
    assert "Link: worker (command)" in "\n".join(render_plain(t) for t in [card.plain, *card.edits])
    (box / "go").touch()
    await served.api.wait_for_message(CHAT, "rv COMPLETED")


def render_plain(text: str) -> str:
    return text.replace("<b>", "").replace("</b>", "")


def test_path_text_keeps_the_last_steps() -> None:
    assert render.path_text(["a", "b"]) == "a → b"
    assert render.path_text([str(i) for i in range(15)], keep=3) == "… → 12 → 13 → 14"


async def test_a_resumed_round_shows_its_path_so_far(settings: Settings, store: Store) -> None:
    """A run resumed mid-round (after a crash) starts its card with the round's path as committed
    (RUN_STARTED's `path`), then goes on from there. Guards: the `resumed` seed in `_card_state`
    (broken: `path=[]`: the card shows only "worker")."""
    notifier = Notifier(settings, store, EventBus(), OutboxStore(store), asyncio.Event(), monotonic=lambda: 0.0)

    def event(kind: str, **data: object) -> Event:
        return Event(id=0, kind=kind, chain="rv", run_id=9, ts="2026-01-01T00:00:00+00:00", data=data)

    notifier._card_state(CHAT, event(ev.RUN_STARTED, round=2, path="planner → worker → reviewer", resumed=True))
    state = notifier._card_state(CHAT, event(ev.LINK_STARTED, link="worker", round=2))
    assert "Path: planner → worker → reviewer → worker\n" in render.card(state, 0.0)
    state = notifier._card_state(CHAT, event(ev.ROUND_FINISHED, round=2))
    state = notifier._card_state(CHAT, event(ev.LINK_STARTED, link="planner", round=3))
    assert "Path: planner\n" in render.card(state, 0.0)
