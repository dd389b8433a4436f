"""Events to notifications. The Notifier reads stored events after its persisted cursor and writes
the outbox rows they call for together with the new cursor, in one transaction: each event becomes
its notifications exactly once, whatever crashes. It wakes on every in-process publish and also
polls the database every half second for events other processes stored (one indexed query), such as a
CLI foreground run. Progress events (never stored) only refresh the progress card, which is also
refreshed every `card_refresh_s` while a link runs, so that its elapsed time moves on. While a run
waits for the answer to a BLOCKED alert, its card says so. A card lives in this process's memory:
on start (`serve` calls `close_stale_cards` before resuming anything), every card that still shows
a run a crash cut off is finished with that run's outcome, so no card stays frozen mid-link."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from bot import callbacks as cb
from bot import render
from bot.outbox_store import NewMessage, OutboxStore
from bot.report import build_report
from engine import event_types as et
from engine import events as ev
from engine.events import Event, EventBus
from engine.hops import PATH_SEP
from engine.permissions import Refusal
from engine.settings import Settings
from engine.states import RunStatus
from engine.store import Store

log = logging.getLogger(__name__)

CURSOR = "notifier"
POLL_S = 0.5
MAX_RETRY_S = 30.0
PROGRESS_CARD_EVERY_S = 2.0
# A running link's card shows the time since the link started: refreshed this often even when no
# event comes (a long link's card is not frozen), when the text changed (elapsed is shown in
# minutes after the first one). The sender edits a card at most every CARD_INTERVAL_S anyway.
CARD_REFRESH_S = 30.0
CARD_EVENTS = frozenset({ev.RUN_STARTED, ev.LINK_STARTED, ev.LINK_FINISHED, ev.RUN_FINISHED, ev.ROUND_FINISHED,
                         ev.WAITING_SLOT, ev.BLOCKED, ev.OPERATOR_NOTE, ev.APPROVAL_REQUESTED, ev.APPROVAL_DECIDED, ev.ROUTED})


class Notifier:
    def __init__(self, settings: Settings, store: Store, bus: EventBus, outbox: OutboxStore, wake: asyncio.Event, *,
                 card_refresh_s: float = CARD_REFRESH_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.card_refresh_s = card_refresh_s
        self.monotonic = monotonic
        self.store = store
        self.bus = bus
        self.outbox = outbox
        self.wake = wake  # the sender's
        self._chats: dict[int, int | None] = {}
        self._cards: dict[int, dict[int, render.Card]] = {}  # chat -> run -> card state
        self._card_keys: dict[int, str] = {}
        self._progress_at: dict[int, float] = {}
        self._card_at: dict[int, float] = {}  # chat -> when its card was last queued
        self._card_text: dict[int, str] = {}
        self.caught_up = asyncio.Event()
        # Set to stop after the current step: never cancelled mid-transaction (see `serve`).
        self.halt = asyncio.Event()

    async def run(self) -> None:
        queue = self.bus.subscribe()
        try:
            if await self.outbox.cursor(CURSOR) is None:
                # First start: notify from now on, not about the whole history.
                await self.outbox.init_cursor(CURSOR, await self.store.last_event_id())

            failures = 0
            while not self.halt.is_set():
                try:
                    await self.drain()
                    failures = 0
                except Exception:  # e.g. the database locked for too long: the events wait, try again
                    failures += 1
                    log.exception("notifier: cannot read events (attempt %d)", failures)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.halt.wait(), min(MAX_RETRY_S, POLL_S * 2 ** failures))
                    continue
                self.caught_up.set()
                # Wake on any in-process publish; otherwise look again after POLL_S for events
                # that other processes stored.
                event = await self._next(queue, POLL_S)
                while event is not None and not self.halt.is_set():
                    if event.kind == ev.PROGRESS:
                        try:
                            await self._progress(event)
                        except Exception:  # a missed card refresh: the next one catches up
                            log.exception("notifier: progress card")
                    event = queue.get_nowait() if not queue.empty() else None
                try:
                    await self.refresh_cards()
                except Exception:  # a missed refresh: the next one catches up
                    log.exception("notifier: card refresh")
        finally:
            self.bus.unsubscribe(queue)

    async def _next(self, queue: asyncio.Queue[Event], wait_s: float) -> Event | None:
        """The next published event, or None after `wait_s` or on halt."""
        if not queue.empty():
            return queue.get_nowait()
        getter = asyncio.ensure_future(queue.get())
        halted = asyncio.ensure_future(self.halt.wait())
        done, _ = await asyncio.wait({getter, halted}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        halted.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()  # an item it was about to take stays in the queue
        return None

    async def drain(self) -> None:
        """Turn every stored event after the cursor into outbox rows."""
        while not self.halt.is_set():
            cursor = await self.outbox.cursor(CURSOR) or 0
            events = await self.store.events_after(cursor, 200)
            if not events:
                return
            messages: list[NewMessage] = []
            for event in events:
                try:
                    messages += await self._messages(event)
                except Exception:  # one odd event must not stop the notifications
                    log.exception("cannot render event %s (%s)", event.id, event.kind)
            await self.outbox.enqueue(CURSOR, events[-1].id, messages)
            if messages:
                self.wake.set()

    async def _chat_of(self, event: Event) -> int | None:
        told = et.typed(event.kind, event.data)
        if isinstance(told, et.ScheduleEvent) and told.chat_id is not None:
            return told.chat_id
        if event.run_id is None:
            return self.settings.chat_id
        if event.run_id not in self._chats:
            run = await self.store.run(event.run_id)
            self._chats[event.run_id] = (run.chat_id if run and run.chat_id else None) or self.settings.chat_id
        return self._chats[event.run_id]

    def _card_state(self, chat: int, event: Event) -> render.Card:
        """The card of a chat shows every run reporting there (one message, however many chains)."""
        assert event.run_id is not None
        runs = self._cards.setdefault(chat, {})
        if not any(not st.finished for st in runs.values()) and event.kind == ev.RUN_STARTED:
            runs.clear()  # a new card message for a new wave of runs
            self._card_keys[chat] = f"card:{chat}:{event.run_id}"
        self._card_keys.setdefault(chat, f"card:{chat}:{event.run_id}")
        state = runs.get(event.run_id) or render.Card(chain=event.chain)
        state = runs[event.run_id] = _fold(state, et.typed(event.kind, event.data), self.monotonic())
        return state

    def _card(self, chat: int, event: Event) -> NewMessage:
        return self._card_message(chat, event.chain, event.run_id, event.id or None)

    def _card_message(self, chat: int, chain: str | None, run_id: int | None, event_id: int | None, *,
                      queued: bool = True) -> NewMessage:
        runs = self._cards.get(chat, {})
        active = [st for st in runs.values() if not st.finished]
        now = self.monotonic()
        parts = [render.card(st, now) for st in sorted(runs.values(), key=lambda st: (st.finished, str(st.chain)))]
        text = "\n\n".join(parts)
        if len(text) > render.LIMIT:
            shown, size = [], 0
            for part in parts:
                if size + len(part) + 40 > render.LIMIT:
                    break
                shown.append(part)
                size += len(part) + 2
            text = "\n\n".join(shown) + f"\n\n… and {len(parts) - len(shown)} more"
        active_runs = [run for run, st in runs.items() if not st.finished]
        buttons = cb.chain_buttons(str(active[0].chain), active_runs[0]) if len(active) == 1 else None
        if queued:
            self._card_at[chat], self._card_text[chat] = now, text
        return NewMessage(chat_id=chat, kind="card", chain=chain if len(runs) == 1 else None, run_id=run_id,
                          event_id=event_id, text=text, buttons=buttons,
                          card_key=self._card_keys.get(chat, f"card:{chat}:{run_id}"))

    async def refresh_cards(self) -> None:
        """Queue the card of every chat with a running link whose card was last queued at least
        `card_refresh_s` ago, if its text changed (the elapsed time, in practice)."""
        now = self.monotonic()
        due: list[NewMessage] = []
        for chat, runs in self._cards.items():
            running = [(run_id, st) for run_id, st in runs.items() if not st.finished and st.link]
            if not running or now - self._card_at.get(chat, -1e9) < self.card_refresh_s:
                continue
            run_id, state = running[0]
            card = self._card_message(chat, state.chain, run_id, None, queued=False)
            if card.text != self._card_text.get(chat):
                self._card_at[chat], self._card_text[chat] = now, card.text
                due.append(card)
        if due:
            await self.outbox.enqueue_now(due)
            self.wake.set()

    async def close_stale_cards(self, cut_chains: Sequence[str] = ()) -> None:
        """Finish every card that still shows a run cut off by a crash (nothing else will edit it):
        each of its runs with its outcome (INTERRUPTED for a run of `cut_chains` still marked
        RUNNING), and a pointer to the new card. Failures are logged: a card is not worth more."""
        try:
            await self._close_stale_cards(cut_chains)
        except Exception:
            log.exception("notifier: cannot finish the cards of interrupted runs")

    async def _close_stale_cards(self, cut_chains: Sequence[str]) -> None:
        closing: list[NewMessage] = []
        for stale in await self.outbox.stale_cards(cut_chains):
            parts = []
            for run_id in stale.run_ids:
                run = await self.store.run(run_id)
                if run is None:
                    continue
                links = await self.store.run_link_runs(run_id)
                status = RunStatus.INTERRUPTED if run.status == RunStatus.RUNNING else run.status
                parts.append(render.card(render.Card(chain=run.chain, finished=True, status=status,
                                                     round=links[-1].round if links else None, cost=run.cost_usd), 0.0))
            if not parts:
                continue
            text = "\n\n".join(parts) + "\n<i>serve was restarted: progress goes on in a new card.</i>"
            closing.append(NewMessage(chat_id=stale.chat_id, kind="card", run_id=stale.run_ids[-1],
                                      text=render.truncate(text), card_key=stale.card_key))
        if closing:
            await self.outbox.enqueue_now(closing)
            self.wake.set()

    async def _messages(self, event: Event) -> list[NewMessage]:
        chat = await self._chat_of(event)
        if chat is None:
            return []
        chain = event.chain or ""
        out: list[NewMessage] = []
        if event.kind in CARD_EVENTS and event.run_id is not None:
            self._card_state(chat, event)
            out.append(self._card(chat, event))
        base: dict[str, Any] = {"chat_id": chat, "chain": event.chain, "run_id": event.run_id, "event_id": event.id}
        finished = et.LinkFinished.from_data(event.data) if event.kind == ev.LINK_FINISHED else None
        if finished is not None and finished.notify and not finished.rerun:
            out.append(NewMessage(kind="note", text=render.link_note(chain, finished),
                                  buttons=cb.chain_buttons(chain, event.run_id), **base))
        elif event.kind == ev.BLOCKED:
            out.append(NewMessage(kind="alert", text=render.blocked_alert(chain, et.Blocked.from_data(event.data)),
                                  buttons=cb.alert_buttons(chain, event.run_id), **base))
        elif event.kind in (ev.APPROVAL_REQUESTED, ev.APPROVAL_DECIDED):
            out.append(await self._approval_message(chain, event, base))
        elif event.kind == ev.RUN_FINISHED and event.run_id is not None:
            out.append(NewMessage(kind="note", text=render.event_text(chain, event.kind, event.data) or "", **base))
            report = await build_report(self.store, event.run_id)
            if report is not None:
                name, text, caption = report
                out.append(NewMessage(kind="report", text=render.esc(caption), document_name=name, document=text, **base))
        else:
            notice = render.event_text(event.chain, event.kind, event.data)
            if notice:
                out.append(NewMessage(kind="note", text=notice, **base))
        return out

    async def _approval_message(self, chain: str, event: Event, base: dict[str, Any]) -> NewMessage:
        """A tool call waiting for approval is one message with its buttons (kept under the key
        approval:ID, like a card); its decision edits that message: who decided what and when,
        and the buttons go."""
        if event.kind == ev.APPROVAL_REQUESTED:
            asked = et.ApprovalRequested.from_data(event.data)
            return NewMessage(kind="card", card_key=f"approval:{asked.id}",
                              text=render.approval_question(chain, event.run_id, asked),
                              buttons=cb.approval_buttons(asked.id, always=asked.always), **base)
        d = et.ApprovalDecided.from_data(event.data)
        key = f"approval:{d.id}"
        row = await self.store.approval(d.id)
        request = {"link": d.link, "tool": d.tool, "command": ""}
        if row is not None:
            from engine.approvals import describe

            request["command"] = describe(row.tool, row.tool_input)
        when = render.short_local_time(event.ts, self.settings.timezone)
        return NewMessage(kind="card", card_key=key, text=render.approval_decided(chain, event.run_id, request, d, when),
                          **base)

    async def _progress(self, event: Event) -> None:
        """A live progress event: refresh the card, at most every few seconds per chat."""
        if event.run_id is None:
            return
        chat = await self._chat_of(event)
        state = self._cards.get(chat, {}).get(event.run_id) if chat is not None else None
        if chat is None or state is None:
            return
        p = et.LiveProgress.from_data(event.data)
        if state.waiting_slots and p.kind == "spawned":
            # The slot it waited for is free: the link runs from now on, and its elapsed time with it.
            state = replace(state, waiting_slots=False, link_started_mono=self.monotonic())
            self._progress_at[chat] = 0.0  # show it at once
        if p.kind == "refused":
            state = replace(state, refused=(*state.refused, Refusal(tool=p.tool or "?", target=p.target or None))[-50:])
            self._progress_at[chat] = 0.0  # a refusal is news: show it at once
        elif p.tool:
            state = replace(state, tool=f"{p.tool} {p.target or ''}".strip(), turns=p.turns)
        self._cards[chat][event.run_id] = state
        now = self.monotonic()
        if now - self._progress_at.get(chat, 0.0) < PROGRESS_CARD_EVERY_S:
            return
        self._progress_at[chat] = now
        await self.outbox.enqueue_now([self._card(chat, event)])
        self.wake.set()


def _fold(state: render.Card, e: et.StoredEvent | None, now_mono: float) -> render.Card:
    """The card after one more event of its run (pure; `now_mono` stamps the waits that start)."""
    if isinstance(e, et.RunStarted):
        resumed = tuple(p for p in e.path.split(PATH_SEP) if p)  # a routing chain's round so far
        return replace(state, round=e.round, max_rounds=e.max_rounds, hop_mark=None, path=resumed,
                       routed=state.routed or bool(resumed))
    if isinstance(e, et.LinkStarted):
        return replace(_walk(state, e), link=e.link, model=e.model, round=e.round, tool=None, turns=None,
                       link_started_mono=now_mono, refused=(), waiting_answer=None)
    if isinstance(e, et.Blocked):
        if e.policy != "wait":
            return state
        return replace(state, waiting_answer=e.link or state.link or "?", waiting_round=e.round,
                       waiting_since_mono=now_mono)
    if isinstance(e, et.OperatorNote):
        return replace(state, waiting_answer=None)
    if isinstance(e, et.ApprovalRequested):
        asking = render.Asking(id=e.id, tool=e.tool, command=e.command, since_mono=now_mono)
        return replace(state, approvals=(*(a for a in state.approvals if a.id != e.id), asking))
    if isinstance(e, et.ApprovalDecided):
        return replace(state, approvals=tuple(a for a in state.approvals if a.id != e.id))
    if isinstance(e, et.WaitingSlot):
        return replace(state, waiting_slots=True, slots=e.slots or None)
    if isinstance(e, et.LinkFinished):
        return replace(state, cost=state.cost if e.run_cost_usd is None else e.run_cost_usd, tool=None,
                       waiting_slots=False, slots=None)
    if isinstance(e, et.Routed):
        return _hop(state, e)
    if isinstance(e, et.RoundFinished):
        return replace(state, round=e.round + 1, path=(), hop_mark=None)
    if isinstance(e, et.RunFinished):
        return replace(state, finished=True, waiting_answer=None, status=e.status,
                       cost=state.cost if e.cost_usd is None else e.cost_usd)
    return state


def _walk(state: render.Card, e: et.LinkStarted) -> render.Card:
    """A link starts: it joins the round's path (a new round starts a new path; a retry of the
    same link is not a new step), with the bounce mark the hop that sent the marble here left."""
    path = state.path if e.round == state.round else ()
    if e.attempt <= 1:
        path = (*path, f"{e.link} {state.hop_mark}" if state.hop_mark else e.link)
    return replace(state, path=path, hop_mark=None)


def _hop(state: render.Card, hop: et.Routed) -> render.Card:
    """A routed hop: the verdict is shown on the link that gave it, a bounce's count on the link
    it sends the marble back to ("worker → reviewer (NEEDS_FIX) → worker (2/3)")."""
    path = state.path
    if path and hop.verdict:
        path = (*path[:-1], f"{path[-1]} ({hop.verdict})")
    return replace(state, path=path, routed=True, hop_mark=f"({hop.count}/{hop.max})" if hop.bounce and hop.count else None)
