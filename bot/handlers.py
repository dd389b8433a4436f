"""Chat commands, replies and button presses, translated into engine calls. No chain logic here.

Every update passes the allow-list first (commands, buttons and replies alike, per user, also in
groups); strangers get one short refusal and nothing else, and the attempt is logged. Errors the
user can act on (an unknown chain, an invalid definition, a bad cron expression) are answered
with the reason, in one place: `_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import render
from bot.auth import Access
from bot.pacer import Pacer
from engine.engine import Engine
from engine.errors import ChainBusy, InvalidChain, LlmautoError, ScheduleError, UnknownChain
from engine.outbox_store import OutboxStore
from engine.schedules import ScheduleBook, next_fire_for_chain

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_ARG_CHARS = 1000
RECORD_WAIT_S = 2.0
COMMANDS: list[tuple[str, str]] = [
    ("start_chain", "Start a chain"),
    ("stop_chain", "Stop a chain (with a reason)"),
    ("status", "Status of one chain or all"),
    ("handoff", "Show a chain's handoff"),
    ("log", "Last links of a chain"),
    ("chains", "List the chains"),
    ("pause", "Pause a chain after its current link"),
    ("resume", "Resume a paused chain"),
    ("reset", "Start a chain over"),
    ("schedule", "Schedule a chain (cron)"),
    ("schedules", "List schedules"),
    ("unschedule", "Remove a schedule"),
    ("help", "How to use this bot"),
]
REFUSAL = "Sorry, you are not allowed to use this bot."
Ctx = ContextTypes.DEFAULT_TYPE


class UserError(Exception):
    """Bad input from the chat: answered with its text."""


def _kb(buttons: render.Buttons | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b["text"], callback_data=b["data"]) for b in row] for row in buttons])


def chain_arg(value: str) -> str:
    if not NAME.match(value):
        raise UserError(f"{render.esc(value[:70])!s} is not a chain name (letters, digits, . _ -)")
    return value


class BotHandlers:
    def __init__(self, engine: Engine, book: ScheduleBook, outbox: OutboxStore, pacer: Pacer, access: Access,
                 refresh_schedules: Callable[[], Awaitable[None]]) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.book = book
        self.outbox = outbox
        self.pacer = pacer
        self.access = access
        self.refresh_schedules = refresh_schedules
        self._recent: dict[tuple[int, int], tuple[str | None, str | None]] = {}
        self._recorded = asyncio.Event()

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        for name, _ in COMMANDS:
            app.add_handler(CommandHandler(name, self._command(name)))
        app.add_handler(CommandHandler("start", self._command("help")))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(MessageHandler(filters.REPLY & filters.TEXT & ~filters.COMMAND, self.on_reply))

    # ---- plumbing ------------------------------------------------------------------------
    def _command(self, name: str) -> Callable[[Update, Ctx], Coroutine[Any, Any, None]]:
        method = getattr(self, f"cmd_{name}")

        async def handle(update: Update, context: Ctx) -> None:
            if not await self._allowed(update, name):
                return
            args = [a for a in (context.args or [])]
            if sum(len(a) for a in args) > MAX_ARG_CHARS:
                await self.reply(update, f"That is too long (over {MAX_ARG_CHARS} characters).")
                return
            async with self._errors(update):
                await method(update, args)

        return handle

    async def _allowed(self, update: Update, action: str) -> bool:
        user = update.effective_user
        if self.access.may(user.id if user else None, action):
            return True
        chat = update.effective_chat
        log.warning("refused %r from user %s in chat %s", action, user.id if user else None, chat.id if chat else None)
        if update.callback_query is not None:
            await update.callback_query.answer(REFUSAL, show_alert=False)
        elif chat is not None:
            await self.reply(update, REFUSAL)
        return False

    @asynccontextmanager
    async def _errors(self, update: Update) -> Any:
        try:
            yield
        except UserError as exc:
            await self.reply(update, str(exc))
        except InvalidChain as exc:
            await self.reply(update, "❗ Invalid chain:\n" + render.esc("\n".join(exc.problems)[:3500]))
        except (UnknownChain, ChainBusy, ScheduleError) as exc:
            await self.reply(update, "❗ " + render.esc(exc))
        except LlmautoError as exc:
            await self.reply(update, "❗ " + render.esc(exc))

    async def reply(self, update: Update, text: str, *, buttons: render.Buttons | None = None, chain: str | None = None,
                    kind: str = "reply", document: tuple[str, str] | None = None, force_reply: bool = False) -> Message | None:
        chat = update.effective_chat
        if chat is None:
            return None
        await self.pacer.acquire(chat.id)
        bot = update.get_bot()
        if document is not None:
            message = await bot.send_document(chat.id, document=document[1].encode(), filename=document[0],
                                              caption=render.truncate(text, render.CAPTION_LIMIT), parse_mode=ParseMode.HTML)
        else:
            markup: Any = ForceReply(selective=True) if force_reply else _kb(buttons)
            message = await bot.send_message(chat.id, render.truncate(text), parse_mode=ParseMode.HTML, reply_markup=markup)
        if chain is not None:
            self._recent[(chat.id, message.message_id)] = (chain, kind)
            if len(self._recent) > 2000:  # the store has them all; this is only for fast replies
                del self._recent[next(iter(self._recent))]
            self._recorded.set()
            await self.outbox.remember(chat.id, message.message_id, kind=kind, chain=chain)
        return message

    def _who(self, update: Update) -> str:
        user = update.effective_user
        if user is None:
            return "tg:?"
        return f"tg:{user.id}" + (f" ({user.username})" if user.username else "")

    async def _replied_chain(self, update: Update) -> tuple[str | None, str | None]:
        message = update.effective_message
        replied = message.reply_to_message if message else None
        if replied is None or update.effective_chat is None:
            return None, None
        key = (update.effective_chat.id, replied.message_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_WAIT_S
        while True:
            if key in self._recent:
                return self._recent[key]
            sent = await self.outbox.message(*key)
            if sent is not None:
                return sent.chain, sent.kind
            # A quick reply can overtake the bookkeeping of the message it answers: wait for it
            # briefly when the replied message is ours.
            from_bot = replied.from_user is not None and replied.from_user.is_bot
            if not from_bot or loop.time() >= deadline:
                return None, None
            self._recorded.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recorded.wait(), max(0.0, deadline - loop.time()))

    def _pick(self, names: list[str], prefix: str) -> render.Buttons:
        buttons = [render.button(n, f"{prefix}:{n}") for n in names if render.fits(f"{prefix}:{n}")]
        return [buttons[i:i + 2] for i in range(0, len(buttons), 2)]

    # ---- commands ------------------------------------------------------------------------
    async def cmd_help(self, update: Update, args: list[str]) -> None:
        await self.reply(update, render.HELP)

    async def cmd_start_chain(self, update: Update, args: list[str]) -> None:
        if not args:
            names = self.engine.chain_names()
            if not names:
                raise UserError("No chains yet: put a definition in chains/NAME.json.")
            await self.reply(update, "Which chain?", buttons=self._pick(names, "start"))
            return
        await self._start(update, chain_arg(args[0]))

    async def _start(self, update: Update, name: str) -> None:
        chat = update.effective_chat
        run_id = await self.engine.start_chain(name, origin="telegram", chat_id=chat.id if chat else None,
                                               requested_by=self._who(update))
        await self.reply(update, f"▶️ Started <b>{render.esc(name)}</b> (run #{run_id}).", chain=name,
                         buttons=render.chain_buttons(name))

    async def cmd_stop_chain(self, update: Update, args: list[str]) -> None:
        replied_chain, _ = await self._replied_chain(update)
        if replied_chain and (not args or args[0] != replied_chain):
            name, reason = replied_chain, " ".join(args)
        elif args:
            name, reason = chain_arg(args[0]), " ".join(args[1:])
        else:
            running = [v.name for v in await self.engine.views() if v.running_here or v.running_elsewhere]
            if not running:
                raise UserError("No chain is running.")
            await self.reply(update, "Stop which chain?", buttons=self._pick(running, "stop"))
            return
        if not reason.strip():
            await self._ask_reason(update, name)
            return
        await self._stop(update, name, reason, now=False)

    async def _ask_reason(self, update: Update, name: str) -> None:
        self.engine.load(name)
        await self.reply(update, f"Why stop <b>{render.esc(name)}</b>? Reply to this message with the reason.",
                         chain=name, kind="reason", force_reply=True)
        if render.fits(f"stopnow:{name}"):
            await self.reply(update, f"Or stop <b>{render.esc(name)}</b> at once, killing the running link:",
                             buttons=[[render.button("Stop now", f"stopnow:{name}")]], chain=name)

    async def _stop(self, update: Update, name: str, reason: str, *, now: bool) -> None:
        text = await self.engine.stop_chain(name, reason.strip()[:500], now=now, by=self._who(update))
        await self.reply(update, "⏹ " + render.esc(text), chain=name)

    async def cmd_status(self, update: Update, args: list[str]) -> None:
        if not args:
            await self.reply(update, render.status_compact(await self.engine.views()))
            return
        name = chain_arg(args[0])
        view = await self.engine.view(name)
        fire = await next_fire_for_chain(self.engine.store, name, self.settings)
        await self.reply(update, render.status_detail(view, fire), chain=name, buttons=render.chain_buttons(name, stop=bool(view.running_here or view.running_elsewhere)))

    async def cmd_chains(self, update: Update, args: list[str]) -> None:
        await self.cmd_status(update, [])

    async def cmd_handoff(self, update: Update, args: list[str]) -> None:
        if not args:
            names = self.engine.chain_names()
            running = [n for n in names if self.engine.is_running_here(n)]
            if len(running) == 1:
                args = running
            else:
                await self.reply(update, "Handoff of which chain?", buttons=self._pick(names, "hand"))
                return
        name = chain_arg(args[0])
        if len(args) > 1 and args[1].lower() == "diff":
            text, doc = render.diff_message(name, await self.engine.handoff_diff(name))
            await self.reply(update, text, chain=name, document=(f"{name}-handoff.diff", doc) if doc else None)
            return
        round_no = None
        if len(args) > 1:
            if not args[1].isdigit() or len(args[1]) > 9:
                raise UserError("Usage: /handoff NAME [ROUND|diff]")
            round_no = int(args[1])
        title, body = await self.engine.handoff_text(name, round_no)
        text, doc = render.handoff_message(title, body)
        await self.reply(update, text, chain=name, document=(f"{name}-handoff.md", doc) if doc else None)

    async def cmd_log(self, update: Update, args: list[str]) -> None:
        if not args:
            raise UserError("Usage: /log NAME [N]")
        name = chain_arg(args[0])
        n = 10
        if len(args) > 1:
            if not args[1].isdigit():
                raise UserError("Usage: /log NAME [N]")
            n = max(1, min(50, int(args[1])))
        await self.reply(update, render.log_text(name, await self.engine.log(name, n)), chain=name)

    async def cmd_pause(self, update: Update, args: list[str]) -> None:
        name = chain_arg(args[0]) if args else ""
        if not name:
            raise UserError("Usage: /pause NAME")
        self.engine.load(name)
        await self.reply(update, "⏸ " + render.esc(await self.engine.pause_chain(name, by=self._who(update))), chain=name)

    async def cmd_resume(self, update: Update, args: list[str]) -> None:
        name = chain_arg(args[0]) if args else ""
        if not name:
            raise UserError("Usage: /resume NAME")
        self.engine.load(name)
        await self.reply(update, "▶️ " + render.esc(await self.engine.resume_chain(name, by=self._who(update))), chain=name)

    async def cmd_reset(self, update: Update, args: list[str]) -> None:
        if not args:
            raise UserError("Usage: /reset NAME")
        name = chain_arg(args[0])
        self.engine.load(name)
        if not render.fits(f"reset!:{name}"):
            raise UserError("That name is too long for a confirmation button; use `llmauto chain reset`.")
        await self.reply(update, f"Reset <b>{render.esc(name)}</b>? It starts over at round 1 with a fresh handoff "
                                 "(history stays in the log).",
                         buttons=[[render.button("Yes, reset", f"reset!:{name}"), render.button("Cancel", "noop")]], chain=name)

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
        lines, buttons = ["<b>Schedules</b>"], []
        for s in schedules:
            nxt = self.book.next_fires(s, now, 1)
            when = nxt[0].strftime("%Y-%m-%d %H:%M %Z") if nxt and s.enabled else ("paused" if not s.enabled else "-")
            last = f" · last: {render.esc(s.last_outcome)}" if s.last_outcome else ""
            lines.append(f"#{s.id} <b>{render.esc(s.chain)}</b> {render.esc(s.description())} · next: {when}{last}")
            toggle = render.button(f"#{s.id} resume" if not s.enabled else f"#{s.id} pause",
                                   f"sresume:{s.id}" if not s.enabled else f"spause:{s.id}")
            buttons.append([toggle, render.button(f"#{s.id} delete", f"sdel:{s.id}")])
        await self.reply(update, render.truncate("\n".join(lines)), buttons=buttons[:20])

    async def cmd_unschedule(self, update: Update, args: list[str]) -> None:
        if not args or not args[0].lstrip("#").isdigit():
            raise UserError("Usage: /unschedule ID (see /schedules)")
        removed = await self.book.remove(int(args[0].lstrip("#")))
        await self.refresh_schedules()
        await self.reply(update, f"🗑 Removed schedule #{removed.id} of <b>{render.esc(removed.chain)}</b>.")

    # ---- buttons -------------------------------------------------------------------------
    async def on_button(self, update: Update, context: Ctx) -> None:
        query = update.callback_query
        if query is None:
            return
        kind, _, arg = (query.data or "").partition(":")
        action = {"hand": "handoff", "stat": "status"}.get(kind, kind)
        if not await self._allowed(update, action):
            return
        await query.answer()
        async with self._errors(update):
            if kind == "noop":
                return
            if kind in ("spause", "sresume", "sdel"):
                await self._schedule_button(update, kind, int(arg))
                return
            name = chain_arg(arg)
            if kind == "start":
                await self._start(update, name)
            elif kind == "stop":
                await self._ask_reason(update, name)
            elif kind == "stopnow":
                await self._stop(update, name, f"stopped now from Telegram by {self._who(update)}", now=True)
            elif kind == "hand":
                await self.cmd_handoff(update, [name])
            elif kind == "stat":
                await self.cmd_status(update, [name])
            elif kind == "reset!":
                await self.reply(update, "🔄 " + render.esc(await self.engine.reset_chain(name)), chain=name)

    async def _schedule_button(self, update: Update, kind: str, schedule_id: int) -> None:
        if kind == "sdel":
            removed = await self.book.remove(schedule_id)
            text = f"🗑 Removed schedule #{removed.id} of <b>{render.esc(removed.chain)}</b>."
        else:
            s = await self.book.set_enabled(schedule_id, kind == "sresume")
            text = f"Schedule #{s.id} of <b>{render.esc(s.chain)}</b> {'resumed' if s.enabled else 'paused'}."
        await self.refresh_schedules()
        await self.reply(update, text)

    # ---- replies -------------------------------------------------------------------------
    async def on_reply(self, update: Update, context: Ctx) -> None:
        chain, kind = await self._replied_chain(update)
        if chain is None:
            return  # a reply to something that is not a chain's message: not for us
        if not await self._allowed(update, "answer"):
            return
        message = update.effective_message
        text = (message.text or "").strip() if message else ""
        if not text:
            return
        async with self._errors(update):
            if len(text) > 4000:
                raise UserError("That answer is too long (over 4000 characters).")
            if kind == "reason":
                await self._stop(update, chain, text, now=False)
            elif kind == "alert":
                result = await self.engine.answer(chain, text, by=self._who(update))
                await self.reply(update, "📝 " + render.esc(result), chain=chain)
            else:
                await self.reply(update, "To answer an agent, reply to its ⛔ BLOCKED alert; to stop the chain, "
                                         "reply with <code>/stop_chain REASON</code>.", chain=chain)
