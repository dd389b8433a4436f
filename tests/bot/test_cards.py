"""The progress card of a running link is refreshed while the link runs: its elapsed time moves
on, never more often than allowed, and not when the text would not change."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import sys

from bot.notify import Notifier
from bot.outbox_store import OutboxStore
from engine import events as ev
from engine.events import Event, EventBus
from engine.settings import Settings
from engine.store import Store
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi
from tests.fakes.gate import holding_command


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(kind: str, **data: object) -> Event:
    return Event(id=0, kind=kind, chain="long", run_id=7, ts="2026-01-01T00:00:00+00:00", data=data)


async def test_the_card_of_a_running_link_is_refreshed_when_its_elapsed_time_changes(settings: Settings, store: Store) -> None:
    clock = Clock()
    outbox = OutboxStore(store)
    notifier = Notifier(settings, store, EventBus(), outbox, asyncio.Event(), card_refresh_s=30, monotonic=clock)
    for e in (event(ev.RUN_STARTED, round=1, max_rounds=3), event(ev.LINK_STARTED, link="w", model="opus", round=1)):
        notifier._card_state(CHAT, e)
    notifier._card(CHAT, e)  # the card as the LINK_STARTED event queued it

    async def refreshed_at(t: float) -> str | None:
        clock.now = 1000.0 + t
        await notifier.refresh_cards()
        rows = await outbox.pending()
        for row in rows:
            await outbox.mark_sent([row], 1, kind="card", chain="long", run_id=7, card_key=row.card_key)
        return rows[-1].text if rows else None

    assert await refreshed_at(10) is None  # the interval has not passed
    assert "Link: <b>w</b> (opus) · 31s" in (await refreshed_at(31) or "")
    assert await refreshed_at(40) is None
    assert "· 1m" in (await refreshed_at(65) or "")
    assert await refreshed_at(100) is None  # interval passed, but it would still say 1m
    assert "· 2m" in (await refreshed_at(125) or "")
    notifier._card_state(CHAT, event(ev.RUN_FINISHED, status="COMPLETED"))
    assert await refreshed_at(500) is None  # nothing runs: nothing to refresh


async def test_a_long_links_card_is_edited_in_place_as_time_passes(home: object, fake_api: FakeBotApi) -> None:
    """The link holds until the test has seen three edits (a gate, not a 4 s sleep). Checked: with
    `Notifier.refresh_cards` returning at once, this fails (no edits while the link runs)."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url)
    gate = settings.home / "gate"
    write_chain(settings.home, "long", {"max_rounds": 1, "links": [{"name": "w", "command": holding_command(gate)}]})
    async with serving(fake_api, settings, card_refresh_s=0.5, card_interval_s=0.8) as served:
        await served.engine.start_chain("long", origin="test")
        card = await fake_api.wait_for(lambda api: next((m for m in api.messages(CHAT) if len(m.edits) >= 3), None),
                                       timeout=15)
        gate.touch()  # the link held until three edits were seen, however slow the machine
        shown = [float(x) for x in re.findall(r"Link: w \(command\) · ([\d.]+)s", "\n".join([*card.edits[1:], card.plain])
                                                                                   .replace("<b>", "").replace("</b>", ""))]
        assert len(shown) >= 2 and shown == sorted(shown) and shown[-1] > shown[0]
        edits = [r.at for r in fake_api.requests("editMessageText") if r.status == 200]
        # never more often than the sender allows (0.8 s here; 0.2 s of slack for answer times)
        assert all(b - a >= 0.6 for a, b in itertools.pairwise(edits))
        assert not [r for r in fake_api.rejected if "not modified" in r[2]]
        await served.engine.wait("long")


async def test_a_link_waiting_for_an_agent_slot_says_so_until_it_starts(settings: Settings, store: Store) -> None:
    clock = Clock()
    reporting = dataclasses.replace(settings, chat_id=CHAT)  # run 7 is not in the store: its chat is this one
    notifier = Notifier(reporting, store, EventBus(), OutboxStore(store), asyncio.Event(), monotonic=clock)
    for e in (event(ev.RUN_STARTED, round=1), event(ev.LINK_STARTED, link="w", model="opus", round=1),
              event(ev.WAITING_SLOT, link="w", slots=2)):
        notifier._card_state(CHAT, e)
    assert "Link: <b>w</b> waits for a free agent slot (all 2 in use) · 0.0s" in notifier._card(CHAT, e).text
    clock.now += 90
    await notifier._progress(Event(id=0, kind=ev.PROGRESS, chain="long", run_id=7, ts="", data={"link": "w", "kind": "spawned"}))
    clock.now += 5
    text = notifier._card(CHAT, e).text
    assert "Link: <b>w</b> (opus) · 5.0s" in text and "waits" not in text  # elapsed counts from the agent's start


async def test_the_card_of_a_chain_held_by_the_home_wide_cap_tells_why(home: object, fake_api: FakeBotApi) -> None:
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url, max_parallel_links=1)
    gate = settings.home / "gate"
    hold = [sys.executable, "-c", f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    write_chain(settings.home, "first", {"max_rounds": 1, "links": [{"name": "a", "command": hold}]})
    write_chain(settings.home, "second", {"max_rounds": 1, "links": [{"name": "b", "command": [sys.executable, "-c", "pass"]}]})
    async with serving(fake_api, settings, card_refresh_s=0.5, card_interval_s=0.3) as served:
        await served.engine.start_chain("first", origin="test", chat_id=CHAT)
        await fake_api.wait_for(lambda api: any("Link: a (command)" in m.plain for m in api.messages(CHAT)))
        await served.engine.start_chain("second", origin="test", chat_id=CHAT)
        await fake_api.wait_for(lambda api: any("b waits for a free agent slot (all 1 in use)" in m.plain
                                                for m in api.messages(CHAT)), timeout=15)
        gate.write_text("go")
        await served.engine.wait("second")
