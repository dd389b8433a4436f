"""`llmauto chain start NAME`: run a chain in this terminal with a live view.

Ctrl-C (or the terminal closing) stops the chain at once, recording why; the chain resumes where it
was on the next start. `stop`, `status`, `handoff` and `log` work from another terminal meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

from engine import event_types as et
from engine import events as ev
from engine.engine import Engine
from engine.errors import LlmautoError
from engine.settings import Settings
from engine.states import ChainStatus, RunStatus
from engine.store import Store
from llmauto.textview import event_line, progress_line

PROGRESS_EVERY_S = 5.0  # when stdout is not a terminal


async def run_foreground(settings: Settings, name: str) -> int:
    """Run the chain here until it ends. Exit code 0 or 1 by how it ended; 128 + the signal's
    number when a signal stopped it (130 for Ctrl-C, 143 for SIGTERM), once the stop is recorded."""
    async with Store.open_for_cli(settings) as store, Engine(settings, store) as engine:
        engine.load(name)
        queue = engine.bus.subscribe()
        loop = asyncio.get_running_loop()
        signalled: signal.Signals | None = None
        stop_sent = False
        pending: set[asyncio.Future[None]] = set()

        def reason() -> str:
            return f"interrupted from the terminal ({signalled.name if signalled else '?'})"

        async def stop() -> None:
            nonlocal stop_sent
            with contextlib.suppress(LlmautoError):  # not running yet: sent again once it is
                await engine.stop_chain(name, reason(), now=True, by="cli")
                stop_sent = True

        def on_signal(sig: signal.Signals) -> None:
            nonlocal signalled
            if signalled is not None:
                return
            signalled = sig
            print(f"\n{name}: stopping now: {reason()}", file=sys.stderr)
            task = asyncio.ensure_future(stop())
            pending.add(task)
            task.add_done_callback(pending.discard)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await engine.start_chain(name, origin="cli", requested_by="cli")
            if pending:
                await asyncio.gather(*pending)
            if signalled is not None and not stop_sent:
                await stop()  # the signal came while the run was being set up
            outcome = await _watch(engine, name, queue)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        if signalled is not None:
            return 128 + signalled.value
        return 1 if outcome in (ChainStatus.FAILED, ChainStatus.BLOCKED) else 0


async def _watch(engine: Engine, name: str, queue: asyncio.Queue[ev.Event]) -> str:
    tty = sys.stdout.isatty()
    waiter = asyncio.create_task(engine.wait(name))
    link_started = time.monotonic()
    cost = 0.0
    last_progress = 0.0
    status: str = ChainStatus.STOPPED
    while True:
        if queue.empty():  # else the next event at once: no task and no wait for each of a burst (#14)
            getter = asyncio.create_task(queue.get())
            await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                while not queue.empty():
                    _print_event(queue.get_nowait(), tty)
                break
            event = getter.result()
        else:
            event = queue.get_nowait()
        if event.chain != name:
            continue
        if event.kind == ev.PROGRESS:
            now = time.monotonic()
            if et.LiveProgress.from_data(event.data).kind == "spawned":  # the agent starts (after a wait for a slot)
                link_started = now
                continue
            if tty:
                line = progress_line(event, now - link_started, cost)
                print("\r" + line[:160].ljust(160), end="", flush=True)
            elif now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                print(progress_line(event, now - link_started, cost), flush=True)
            continue
        if event.kind == ev.LINK_STARTED:
            link_started = time.monotonic()
        if event.kind == ev.LINK_FINISHED:
            cost = et.LinkFinished.from_data(event.data).run_cost_usd or cost
        if event.kind == ev.RUN_FINISHED:
            status = str(et.RunFinished.from_data(event.data).status)
        _print_event(event, tty)
    outcome = waiter.result()
    return status if outcome.status != RunStatus.INTERRUPTED else ChainStatus.STOPPED


def _print_event(event: ev.Event, tty: bool) -> None:
    line = event_line(event)
    if line is not None:
        print(("\r" + " " * 160 + "\r" if tty else "") + line, flush=True)
