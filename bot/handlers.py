"""Chat commands, replies and button presses, translated into engine calls. No chain logic here.

Every update passes the allow-list first (commands, buttons and replies alike, per user, also in
groups); strangers get one short refusal (at most one per chat every few minutes, so that nobody
can spend the chat's flood budget) and nothing else, and every attempt is logged. Errors the user
can act on (an unknown chain, an invalid definition, a bad cron expression) are answered with the
reason, in one place: `_errors`. Handlers run concurrently (the Application is built with
`concurrent_updates`), so a slow one never holds up a `/stop_chain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from telegram import Message, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import callbacks as cb
from bot import render, tasks_cmd
from bot.auth import Access
from bot.commands import (
    COMMANDS,
    UserError,
    chain_arg,
    check_size,
    handoff_args,
    log_args,
    required_chain,
    schedule_id,
)
from bot.outbox_store import OutboxStore
from bot.pacer import Pacer
from bot.presses import ButtonPresses
from bot.replies import Replies
from engine.engine import Engine
from engine.errors import InvalidChain, LlmautoError
from engine.redact import Redactor
from engine.schedule_book import ScheduleBook, next_fire_for_chain
from engine.states import RunStatus

log = logging.getLogger(__name__)

__all__ = ["REFUSAL", "BotHandlers", "UserError", "chain_arg"]

REFUSAL = "Sorry, you are not allowed to use this bot."
REFUSE_AGAIN_AFTER_S = 600.0
MAX_ANSWER_CHARS = 4000
Ctx = ContextTypes.DEFAULT_TYPE


class BotHandlers:
    def __init__(self, engine: Engine, book: ScheduleBook, outbox: OutboxStore, pacer: Pacer, access: Access,
                 refresh_schedules: Callable[[], Awaitable[None]], wake: asyncio.Event | None = None, *,
                 redact: Redactor, workers: Callable[[], Awaitable[str]] | None = None) -> None:
        self.engine = engine
        self.workers = workers  # the workers' lines (distributed mode, #15); None: embedded
        self.settings = engine.settings
        self.book = book
        self.outbox = outbox
        self.pacer = pacer
        self.access = access
        self.refresh_schedules = refresh_schedules
        self.replies = Replies(outbox, pacer, wake or asyncio.Event(), redact=redact)
        self.presses = ButtonPresses(self)
        self._refused: dict[tuple[int | None, int | None], float] = {}

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        for name, _ in COMMANDS:
            app.add_handler(CommandHandler(name, self._command(name)))
        app.add_handler(CommandHandler("start", self._command("help")))
        app.add_handler(CallbackQueryHandler(self.presses.on_button))
        app.add_handler(MessageHandler(filters.REPLY & filters.TEXT & ~filters.COMMAND, self.on_reply))
        app.add_handler(MessageHandler(filters.COMMAND, self.on_unknown_command))  # after every known one

    # ---- plumbing ------------------------------------------------------------------------
    def _command(self, name: str) -> Callable[[Update, Ctx], Coroutine[Any, Any, None]]:
        method = getattr(self, f"cmd_{name}")

        async def handle(update: Update, context: Ctx) -> None:
            if not await self._allowed(update, name):
                return
            args = list(context.args or [])
            async with self._errors(update):
                check_size(args)
                await method(update, args)

        return handle

    async def _allowed(self, update: Update, action: str, *, shown: str | None = None) -> bool:
        """May this update's sender do `action`? If not: logged (user id, chat, and what they
        tried: the command, or `shown`), and refused."""
        user = update.effective_user
        user_id = user.id if user else None
        if self.access.may(user_id, action):
            return True
        chat = update.effective_chat
        chat_id = chat.id if chat else None
        log.warning("refused %r from user %s in chat %s", shown or action, user_id, chat_id)
        if update.callback_query is not None:
            await update.callback_query.answer(REFUSAL, show_alert=False)  # a popup: costs no message
            return False
        now = time.monotonic()
        if chat is not None and now - self._refused.get((user_id, chat_id), -1e9) >= REFUSE_AGAIN_AFTER_S:
            self._refused[(user_id, chat_id)] = now
            await self.reply(update, REFUSAL)
        return False

    @asynccontextmanager
    async def _errors(self, update: Update) -> AsyncIterator[None]:
        """The one place where errors become answers."""
        try:
            yield
        except UserError as exc:
            await self.reply(update, str(exc))
        except InvalidChain as exc:
            await self.reply(update, "❗ Invalid chain:\n" + render.shown("\n".join(exc.problems)[:3500]))
        except LlmautoError as exc:  # unknown chain (with the names), busy, bad schedule, not running
            await self.reply(update, "❗ " + render.shown(exc))
        except Exception:
            log.exception("handling %s failed", _describe(update))
            with contextlib.suppress(Exception):
                await self.reply(update, "❗ That failed on our side (the details are in the log).")

    def _who(self, update: Update) -> str:
        user = update.effective_user
        if user is None:
            return "tg:?"
        return f"tg:{user.id}" + (f" ({user.username})" if user.username else "")

    async def reply(self, update: Update, text: str, *, buttons: cb.Buttons | None = None, chain: str | None = None,
                    kind: str = "reply", document: tuple[str, str] | None = None, force_reply: bool = False,
                    run_id: int | None = None) -> Message | None:
        """Answer in the update's chat; buttons the sender may not use are left out (a viewer's
        answer carries no Stop)."""
        user = update.effective_user
        if buttons:
            buttons = cb.keyboard(*([b for b in r if self._may_press(user.id if user else None, b)] for r in buttons))
        return await self.replies.send(update, text, buttons=buttons, chain=chain, kind=kind, document=document,
                                       force_reply=force_reply, run_id=run_id)

    def _may_press(self, user_id: int | None, button: cb.Button) -> bool:
        press = cb.decode(button["data"])
        return press is not None and self.access.may(user_id, cb.ACTIONS[press.kind])

    async def on_unknown_command(self, update: Update, context: Ctx) -> None:
        """A command no handler knows: refused (and logged) for strangers, a pointer to /help for
        the others. Commands addressed to another bot in a group are not ours."""
        message = update.effective_message
        command = ((message.text or "").split() or [""])[0] if message else ""
        name, _, addressee = command.partition("@")
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return
        if not await self._allowed(update, "help", shown=f"{name[:33]} (unknown command)"):
            return
        await self.reply(update, f"Unknown command {render.shown(name[:33])}. /help lists the commands.")

    # ---- commands ------------------------------------------------------------------------
    async def cmd_help(self, update: Update, args: list[str]) -> None:
        await self.reply(update, render.HELP)

    async def cmd_start_chain(self, update: Update, args: list[str]) -> None:
        if not args:
            views = await self.engine.views()  # cached definitions: an invalid chain is no choice
            invalid = [v.name for v in views if v.error]
            question = "Which chain?" + (f"\n(Not startable: {render.shown(', '.join(invalid), limit=300)}; /chains says why.)"
                                         if invalid else "")
            states = await self.engine.store.all_chain_states()  # what a press of the button is checked against
            await self._pick(update, question, [
                (v.name, cb.start_button(v.name, v.name, states[v.name].last_run_id if v.name in states else None))
                for v in views if not v.error])
            return
        await self._start(update, chain_arg(args[0]))

    async def _pick(self, update: Update, question: str, choices: list[tuple[str, cb.Button | None]]) -> None:
        if not choices:
            raise UserError("No chains yet: put a definition in chains/NAME.json.")
        await self.reply(update, question, buttons=cb.picker(choices))

    async def _start(self, update: Update, name: str) -> None:
        chat = update.effective_chat
        run_id = await self.engine.start_chain(name, origin="telegram", chat_id=chat.id if chat else None,
                                               requested_by=self._who(update))
        await self.reply(update, f"▶️ Started <b>{render.esc(name)}</b> (run #{run_id}).", chain=name, run_id=run_id,
                         buttons=cb.chain_buttons(name, run_id))

    async def cmd_stop_chain(self, update: Update, args: list[str]) -> None:
        replied_chain = (await self.replies.replied(update)).chain
        if replied_chain and (not args or args[0] != replied_chain):
            name, reason = replied_chain, " ".join(args)  # a reply to a chain's message: all is the reason
        elif args:
            name, reason = chain_arg(args[0]), " ".join(args[1:])
        else:
            running = [(v.name, cb.button(v.name, "stop", v.last_run.id)) for v in await self.engine.views()
                       if (v.running_here or v.running_elsewhere) and v.last_run is not None]
            if not running:
                raise UserError("No chain is running.")
            await self._pick(update, "Stop which chain?", running)
            return
        if not reason.strip():
            await self._ask_reason(update, name)
            return
        await self._stop(update, name, reason, now=False)

    async def _ask_reason(self, update: Update, name: str) -> None:
        """Ask why (a reply prompt) and offer Stop now, both bound to the run that runs now."""
        self.engine.load(name)
        view = await self.engine.view(name)
        if not (view.running_here or view.running_elsewhere) or view.last_run is None:
            raise UserError(f"<b>{render.esc(name)}</b> is not running: there is nothing to stop.")
        run_id = view.last_run.id
        await self.reply(update, f"Why stop <b>{render.esc(name)}</b>? Reply to this message with the reason "
                                 f"(for run #{run_id}).", chain=name, kind="reason", force_reply=True, run_id=run_id)
        await self.reply(update, f"Or stop <b>{render.esc(name)}</b> at once, killing the running link:",
                         buttons=cb.keyboard(cb.row(cb.button("Stop now", "stopnow", run_id))), chain=name, run_id=run_id)

    async def _stop(self, update: Update, name: str, reason: str, *, now: bool) -> None:
        text = await self.engine.stop_chain(name, reason.strip()[:500], now=now, by=self._who(update))
        await self.reply(update, "⏹ " + render.esc(text), chain=name)

    async def cmd_status(self, update: Update, args: list[str]) -> None:
        if not args:
            waiting = render.approvals_waiting(await self.engine.pending_approvals())
            workers = "\n\n" + await self.workers() if self.workers is not None else ""
            await self.reply(update, render.status_compact(await self.engine.views()) + waiting + workers)
            return
        name = chain_arg(args[0])
        view = await self.engine.view(name)
        fire = await next_fire_for_chain(self.engine.store, name, self.settings)
        running = bool(view.running_here or view.running_elsewhere) and view.last_run is not None
        run_id = view.last_run.id if running and view.last_run is not None else None
        waiting = render.approvals_waiting(await self.engine.pending_approvals(name))
        await self.reply(update, render.status_detail(view, fire) + waiting, chain=name,
                         buttons=cb.chain_buttons(name, run_id))

    async def cmd_workers(self, update: Update, args: list[str]) -> None:
        """#15: each worker: host, queues, links running, last heartbeat."""
        if self.workers is None:
            await self.reply(update, "No workers: llmauto runs links itself (set LLMAUTO_QUEUE_URL for workers).")
            return
        await self.reply(update, await self.workers())

    async def cmd_chains(self, update: Update, args: list[str]) -> None:
        await self.cmd_status(update, [])

    async def cmd_handoff(self, update: Update, args: list[str]) -> None:
        if not args:
            names = self.engine.chain_names()
            running = [n for n in names if self.engine.is_running_here(n)]
            if len(running) != 1:
                await self._pick(update, "Handoff of which chain?", [(n, cb.button(n, "hand", n)) for n in names])
                return
            args = running
        which = handoff_args(args)
        name = which.chain
        if which.diff:
            text, doc = render.diff_message(name, await self.engine.handoff_diff(name))
            await self.reply(update, text, chain=name, document=(f"{name}-handoff.diff", doc) if doc else None)
            return
        title, body = await self.engine.handoff_text(name, which.round_no)
        text, doc = render.handoff_message(title, body)
        await self.reply(update, text, chain=name, document=(f"{name}-handoff.md", doc) if doc else None)

    async def cmd_log(self, update: Update, args: list[str]) -> None:
        name, n = log_args(args)
        await self.reply(update, render.log_text(name, await self.engine.log(name, n)), chain=name)

    async def cmd_pause(self, update: Update, args: list[str]) -> None:
        name = required_chain(args, "/pause NAME")
        self.engine.load(name)
        await self.reply(update, "⏸ " + render.esc(await self.engine.pause_chain(name, by=self._who(update))), chain=name)

    async def cmd_resume(self, update: Update, args: list[str]) -> None:
        name = required_chain(args, "/resume NAME")
        self.engine.load(name)
        await self.reply(update, "▶️ " + render.esc(await self.engine.resume_chain(name, by=self._who(update))), chain=name)

    async def cmd_reset(self, update: Update, args: list[str]) -> None:
        name = required_chain(args, "/reset NAME")
        self.engine.load(name)
        state = await self.engine.store.chain_state(name)
        confirm = cb.button("Yes, reset", "reset!", name, state.last_run_id or 0, state.status)
        if confirm is None:
            raise UserError("That name is too long for a confirmation button; use <code>llmauto chain reset</code>.")
        await self.reply(update, f"Reset <b>{render.esc(name)}</b>? It starts over at round 1 with a fresh handoff "
                                 "(history stays in the log).",
                         buttons=[cb.row(confirm, cb.button("Cancel", "noop"))], chain=name)

    async def cmd_schedule(self, update: Update, args: list[str]) -> None:
        if len(args) < 2:
            raise UserError("Usage: /schedule NAME CRON — e.g. <code>/schedule nightly 0 2 * * *</code>, "
                            "<code>daily 02:00</code>, <code>weekdays 07:30 tz=Europe/Berlin</code>")
        name = chain_arg(args[0])
        chat = update.effective_chat
        schedule, fires = await self.book.add_cron(name, " ".join(args[1:]), created_by=self._who(update),
                                                    chat_id=chat.id if chat else None)
        await self.refresh_schedules()
        times = "\n".join(f"• {f.strftime('%a %Y-%m-%d %H:%M %Z')}" for f in fires)
        await self.reply(update, f"⏰ Schedule #{schedule.id}: <b>{render.esc(name)}</b> {render.esc(schedule.description())}\n"
                                 f"Next runs:\n{times}", chain=name)

    async def cmd_schedules(self, update: Update, args: list[str]) -> None:
        schedules = await self.book.list()
        if not schedules:
            await self.reply(update, "No schedules. Add one with /schedule NAME CRON.")
            return
        now = datetime.now(UTC)
        lines, rows = ["<b>Schedules</b>"], []
        for s in schedules:
            nxt = self.book.next_fires(s, now, 1) if s.enabled else []
            when = nxt[0].strftime("%Y-%m-%d %H:%M %Z") if nxt else ("paused" if not s.enabled else "-")
            last = f" · last: {render.esc(s.last_outcome)}" if s.last_outcome else ""
            lines.append(f"#{s.id} <b>{render.esc(s.chain)}</b> {render.esc(s.description())} · next: {when}{last}")
            toggle = (cb.button(f"#{s.id} resume", "sresume", s.id) if not s.enabled
                      else cb.button(f"#{s.id} pause", "spause", s.id))
            rows.append(cb.row(toggle, cb.button(f"#{s.id} delete", "sdel", s.id)))
        await self.reply(update, "\n".join(lines), buttons=cb.keyboard(*rows[:20]))

    async def cmd_unschedule(self, update: Update, args: list[str]) -> None:
        if not args:
            raise UserError("Usage: /unschedule ID (see /schedules)")
        removed = await self.book.remove(schedule_id(args[0]))
        await self.refresh_schedules()
        await self.reply(update, f"🗑 Removed schedule #{removed.id} of <b>{render.esc(removed.chain)}</b>.")

    async def cmd_task(self, update: Update, args: list[str]) -> None:
        answer = await tasks_cmd.add(self.engine, args)
        await self.reply(update, answer.text, chain=answer.chain)

    async def cmd_tasks(self, update: Update, args: list[str]) -> None:
        answer = await tasks_cmd.show(self.engine, args)
        await self.reply(update, answer.text, chain=answer.chain, document=answer.document)

    # ---- buttons -------------------------------------------------------------------------
    # ---- replies -------------------------------------------------------------------------
    async def on_reply(self, update: Update, context: Ctx) -> None:
        """A reply to a chain's message: the reason asked for, or the answer to a BLOCKED alert,
        each bound to the run it was asked for (a reply to an old run's prompt does nothing)."""
        replied = await self.replies.replied(update)
        chain, kind = replied.chain, replied.kind
        if chain is None:
            return  # a reply to something that is not a chain's message: not for us
        if not await self._allowed(update, "answer"):
            return
        message = update.effective_message
        text = (message.text or "").strip() if message else ""
        if not text:
            return
        async with self._errors(update):
            if len(text) > MAX_ANSWER_CHARS:
                raise UserError(f"That answer is too long (over {MAX_ANSWER_CHARS} characters).")
            if kind in ("reason", "alert") and replied.run_id is not None:
                await self._check_prompt(chain, kind, replied.run_id)
            if kind is not None and kind.startswith("deny:") and kind[5:].isdigit():
                # The reason asked for by "Deny and say why": the agent gets it as the denial.
                said = await self.engine.decide_approval(chain, int(kind[5:]), approve=False, by=self._who(update),
                                                         message=text)
                await self.reply(update, "❌ " + render.esc(said), chain=chain)
                return
            if kind == "reason":
                await self._stop(update, chain, text, now=False)
            elif kind == "alert":
                result = await self.engine.answer(chain, text, by=self._who(update))
                await self.reply(update, "📝 " + render.esc(result), chain=chain)
            else:
                await self.reply(update, "To answer an agent, reply to its ⛔ BLOCKED alert; to stop the chain, "
                                         "reply with <code>/stop_chain REASON</code>.", chain=chain)

    async def _check_prompt(self, chain: str, kind: str, run_id: int) -> None:
        """A reason prompt holds while its run runs; an alert's answer while its run is the chain's
        last (an ended run's alert may still leave a note for the next run, not for a later one)."""
        store = self.engine.store
        run = await store.run(run_id)
        ended = (await store.chain_state(chain)).last_run_id != run_id or (
            kind == "reason" and (run is None or run.status != RunStatus.RUNNING))
        if ended:
            what = "question" if kind == "alert" else "prompt"
            raise UserError(render.esc(f"This {what} is from run #{run_id}, which has ended: nothing done for {chain}."))

def _describe(update: Update) -> str:
    message = update.effective_message
    if update.callback_query is not None:
        return f"button {(update.callback_query.data or '')[:64]!r}"
    return f"message {(message.text or '')[:40]!r}" if message else "update"
