"""`llmauto serve`: the engine, the scheduler and the Telegram bot in one process.

One AsyncExitStack owns everything and closes it in reverse: the bot stops polling, the outbox
sender finishes its current send, the Application stops (after the handlers still running) and
closes its HTTP clients, the notifier stops, the scheduler stops firing, the engine stops (or lets
finish) the running links and records how each run ended; notifications not yet sent stay in the
outbox for the next start. If Telegram is unreachable at start, the engine and scheduler work
anyway while the bot keeps trying to connect. A second process polling the same token (409 Conflict) ends serve with a
clear message instead of a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from telegram.error import Conflict, InvalidToken, NetworkError

from bot import callbacks as cb
from bot import logsafe
from bot.app import App, HttpClients, announce_commands, build_application
from bot.auth import Access
from bot.handlers import BotHandlers
from bot.notify import CARD_REFRESH_S, Notifier
from bot.outbox import CARD_INTERVAL_S, OutboxSender
from bot.outbox_store import NewMessage, OutboxStore
from bot.pacer import Pacer
from bot.poller import Poller
from bot.summary import summary_loop
from engine.clock import RealSleeper
from engine.dist_settings import DistSettings
from engine.engine import Engine
from engine.errors import ConfigError, LlmautoError
from engine.exposure import agent_workdirs, env_file_exposure
from engine.marble import LinkExecutor
from engine.redact import Redactor
from engine.schedule_book import ScheduleBook
from engine.settings import Settings
from engine.store import Store
from engine.timer import Scheduler

log = logging.getLogger(__name__)

CONNECT_BACKOFF_MAX_S = 60.0
WIND_DOWN_S = 15.0
# The update types the handlers use (commands and replies are messages; buttons callback queries).
ALLOWED_UPDATES = ["message", "callback_query"]


class FatalBotError(LlmautoError):
    """The bot cannot go on (another instance polls the same token, or the token is wrong)."""


def check(settings: Settings) -> None:
    if not settings.telegram_token:
        raise ConfigError("TELEGRAM_BOT_TOKEN is not set (in the environment or the home's .env); serve needs it")
    if not settings.allowed_user_ids:
        raise ConfigError("TELEGRAM_ALLOWED_USER_IDS is not set: serve refuses to run a bot that anyone could use")


def serve(settings: Settings, *, with_worker: bool = False) -> int:
    check(settings)
    logsafe.install(settings.secrets())
    try:
        asyncio.run(_main(settings, with_worker=with_worker))
    except FatalBotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _main(settings: Settings, *, with_worker: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_serve(settings, stop, with_worker=with_worker)


async def run_serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    poll_timeout_s: float = 10.0,
    shutdown_kills_links: bool | None = None,
    pacer: Pacer | None = None,
    card_refresh_s: float = CARD_REFRESH_S,
    card_interval_s: float = CARD_INTERVAL_S,
    on_ready: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    on_engine: Callable[[Engine], None] | None = None,
    send_timeout_s: float | None = None,
    with_worker: bool = False,
) -> None:
    check(settings)
    if shutdown_kills_links is None:  # LLMAUTO_ON_SHUTDOWN: interrupt (the default) or finish
        shutdown_kills_links = settings.shutdown_kills_links
    fatal: list[BaseException] = []
    # The stack closes in reverse: polling stops; the outbox sender finishes its current send;
    # PTB stops (waiting for the handlers still running) and closes its HTTP clients, so no
    # request is ever in flight on a closed client; then the notifier and the summary (they
    # only write to the store), the scheduler, the engine, and the store last.
    async with AsyncExitStack() as stack:
        stack.enter_context(logsafe.protect(settings.secrets()))
        exposed = env_file_exposure(settings, agent_workdirs(settings))
        if exposed is not None:
            log.warning("%s", exposed)
        store = await stack.enter_async_context(Store.open_settings(settings))
        execute, workers = await distributed(stack, settings, with_worker=with_worker)
        engine = await stack.enter_async_context(Engine(settings, store, shutdown_kills_links=shutdown_kills_links,
                                                        execute=execute))
        scheduler = await stack.enter_async_context(Scheduler(settings, engine))
        outbox = OutboxStore(store)
        pacer = pacer or Pacer()
        wake = asyncio.Event()
        notifier = Notifier(settings, store, engine.bus, outbox, wake, card_refresh_s=card_refresh_s)
        redact = Redactor(settings.secrets())  # for everything that goes to Telegram
        handlers = BotHandlers(engine, ScheduleBook(store, settings), outbox, pacer,
                               Access(settings.allowed_user_ids, settings.viewer_user_ids), scheduler.refresh, wake,
                               redact=redact, workers=workers)
        clients = HttpClients(poll_timeout_s=poll_timeout_s, **({"send_timeout_s": send_timeout_s} if send_timeout_s else {}))
        app = build_application(settings, handlers, clients)
        side_tasks: list[asyncio.Task[None]] = [asyncio.create_task(notifier.run(), name="notifier")]
        stack.push_async_callback(_wind_down, side_tasks, [stop.set, notifier.halt.set])
        stack.push_async_callback(clients.aclose)

        await notifier.close_stale_cards(await engine.interrupted_chains())  # before any is resumed
        await _recover(engine, outbox, settings)
        if on_engine is not None:
            on_engine(engine)
        if not await _connect(app, stop):
            return
        stack.push_async_callback(app.shutdown)
        await announce_commands(app)
        await app.start()
        stack.push_async_callback(app.stop)
        sender = OutboxSender(app.bot, outbox, pacer, wake, redact=redact, card_interval_s=card_interval_s)
        sending = asyncio.create_task(sender.run(), name="outbox-sender")
        stack.push_async_callback(_wind_down, [sending], [stop.set, sender.halt.set, wake.set])
        poller = Poller(app.bot, app.update_queue, timeout_s=int(poll_timeout_s), allowed_updates=ALLOWED_UPDATES)
        polling = asyncio.create_task(_poll(poller, fatal, stop), name="poller")
        stack.push_async_callback(_wind_down, [polling], [stop.set, poller.halt.set])
        if settings.summary_at and settings.chat_id is not None:
            side_tasks.append(asyncio.create_task(
                summary_loop(settings, store, outbox, wake, engine.clock, RealSleeper(), stop), name="summary"))
        tasks = [*side_tasks, sending, polling]
        log.info("serving: %d chains, %d allowed users", len(engine.chain_names()), len(settings.allowed_user_ids))
        if on_ready is not None:
            result = on_ready({"engine": engine, "sender": sender, "notifier": notifier, "scheduler": scheduler})
            if result is not None:
                await result
        if ready is not None:
            ready.set()
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s died: %s", task.get_name(), task.exception())
                fatal.append(task.exception())  # type: ignore[arg-type]
    if fatal:
        exc = fatal[0]
        if isinstance(exc, Conflict):
            raise FatalBotError("another process is polling this bot token (409 Conflict: terminated by other "
                                "getUpdates request). Stop the other `llmauto serve` first.") from exc
        if isinstance(exc, InvalidToken):
            raise FatalBotError("Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized): check the token") from exc
        raise FatalBotError(f"serve stopped: {exc}") from exc


async def distributed(stack: AsyncExitStack, settings: Settings, *,
                      with_worker: bool) -> tuple[LinkExecutor | None, Callable[[], Awaitable[str]] | None]:
    """The distributed mode (#15), when a queue URL is set: links go to workers through the queue
    (None: the embedded mode, links run here as always). With `--with-worker` this process is one
    of the workers too (named after the host, serving the `any` queue)."""
    dist = DistSettings.from_settings(settings)
    if not dist.enabled:
        if with_worker:
            raise ConfigError("--with-worker needs the distributed mode: set LLMAUTO_QUEUE_URL (a postgresql:// URL)")
        return None, None
    from bot.render import workers_text
    from engine.remote import RemoteExecutor

    executor = await stack.enter_async_context(RemoteExecutor.open(dist))
    if with_worker:
        from engine.worker import LinkWorker, WorkerOptions, default_name

        worker_stop = asyncio.Event()
        worker = LinkWorker(settings, dist, WorkerOptions(name=default_name()))
        task = asyncio.create_task(worker.run(worker_stop), name="worker")
        stack.push_async_callback(_wind_down, [task], [worker_stop.set])
    log.info("distributed mode: links run by workers (queue database set)")

    async def workers() -> str:
        return workers_text(await executor.db.workers(), lost_after_s=dist.lost_after_s)

    return executor, workers


async def _connect(app: App, stop: asyncio.Event) -> bool:
    """Initialize the bot (getMe), retrying while Telegram is unreachable; the engine works meanwhile."""
    delay = 1.0
    while not stop.is_set():
        try:
            await app.initialize()
            return True
        except InvalidToken as exc:
            raise FatalBotError("Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized): check the token") from exc
        except NetworkError as exc:
            log.warning("cannot reach Telegram (%s); retrying in %.0f s", type(exc).__name__, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(CONNECT_BACKOFF_MAX_S, delay * 2)
    return False


async def _recover(engine: Engine, outbox: OutboxStore, settings: Settings) -> None:
    """Chains whose run a crash or a shutdown cut off go on by themselves (LLMAUTO_RECOVERY=auto),
    or the chat is asked first (ask): Resume or leave stopped. Without TELEGRAM_CHAT_ID there is
    no chat to ask in: they go on by themselves, and the log says so."""
    if settings.recovery == "ask" and settings.chat_id is None:
        log.warning("LLMAUTO_RECOVERY=ask needs TELEGRAM_CHAT_ID (the chat to ask in), which is not set: "
                    "interrupted chains are resumed automatically, as with LLMAUTO_RECOVERY=auto")
    for name in await engine.interrupted_chains():
        if settings.recovery == "ask" and settings.chat_id is not None:
            last_run = (await engine.store.chain_state(name)).last_run_id  # a later run makes Resume void
            buttons = cb.keyboard(cb.row(cb.start_button("Resume", name, last_run), cb.button("Leave stopped", "noop")))
            # kind "question": sent alone, never coalesced with notes (that would drop its buttons).
            await outbox.enqueue_now([NewMessage(
                chat_id=settings.chat_id, kind="question", chain=name, buttons=buttons,
                text=f"♻️ <b>{html.escape(name)}</b> was interrupted (crash or shutdown). Resume it where it was?")])
            continue
        try:
            run_id = await engine.start_chain(name, origin="recovery", chat_id=settings.chat_id, requested_by="recovery")
            log.info("%s was interrupted (crash or shutdown); resumed where it was (run #%d)", name, run_id)
            if settings.chat_id is not None:
                await outbox.enqueue_now([NewMessage(
                    chat_id=settings.chat_id, kind="note", chain=name, run_id=run_id,
                    text=f"♻️ <b>{html.escape(name)}</b> was interrupted (crash or shutdown); resumed where it was (run #{run_id}).")])
        except LlmautoError as exc:
            log.warning("cannot resume %s: %s", name, exc)
            if settings.chat_id is not None:
                await outbox.enqueue_now([NewMessage(chat_id=settings.chat_id, kind="note", chain=name,
                                                     text=f"⚠️ <b>{html.escape(name)}</b> could not be resumed: {html.escape(str(exc))}")])


async def _poll(poller: Poller, fatal: list[BaseException], stop: asyncio.Event) -> None:
    """Polling that cannot go on (409: another process polls this token; 401) ends serve."""
    try:
        await poller.run()
    except (Conflict, InvalidToken) as exc:
        fatal.append(exc)
        stop.set()


async def _wind_down(tasks: list[asyncio.Task[None]], halts: list[Callable[[], None]]) -> None:
    """Ask the side tasks to stop after their current step, and cancel only what does not within
    WIND_DOWN_S: a task cancelled inside a store transaction (at BEGIN, in particular) can leave the
    shared connection in a transaction, and the engine, which records how each run ended right
    after this, would fail with "cannot start a transaction within a transaction"."""
    for halt in halts:
        halt()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=WIND_DOWN_S)
        for task in pending:
            log.warning("%s did not stop within %.0f s; cancelling it", task.get_name(), WIND_DOWN_S)
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
