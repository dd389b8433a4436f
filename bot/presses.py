"""Button presses, for BotHandlers (a mixin: presses share the handlers' answers, checks and
commands). A press counts only on a message this bot sent to that chat, by someone allowed, and only
while what the button was offered for still holds (`bot.callbacks.stale_reason`, and for a tool call
waiting for approval, that it still waits); one-shot keyboards are removed once used."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import Update
from telegram.error import BadRequest, NetworkError
from telegram.ext import ContextTypes

from bot import callbacks as cb
from bot import render
from engine.errors import LlmautoError

if TYPE_CHECKING:
    from bot.handlers import BotHandlers

log = logging.getLogger("bot.handlers")
Ctx = ContextTypes.DEFAULT_TYPE


class ButtonPresses:
    """The press handlers of a BotHandlers `h`: they answer, check and act through it (its
    `reply`, `_allowed`, `_errors`, engine and commands)."""

    def __init__(self, handlers: BotHandlers) -> None:
        self.h = handlers

    async def on_button(self, update: Update, context: Ctx) -> None:
        """A button press: only on a message this bot sent to that chat, only by someone allowed,
        and only while what the button was offered for still holds (`cb.stale_reason`)."""
        query = update.callback_query
        if query is None:
            return
        user_id = update.effective_user.id if update.effective_user else None
        press = cb.decode(query.data)
        if press is None:
            log.warning("unknown button data %r from user %s", render.shown((query.data or "")[:64]), user_id)
            await query.answer()
            return
        chat, message = update.effective_chat, query.message
        sent = None
        if chat is not None and message is not None and message.chat.id == chat.id:
            sent = await self.h.replies.sent(chat.id, message.message_id, from_bot=True)
        if sent is None:
            log.warning("button %r from user %s on message %s, which this bot did not send to chat %s: ignored",
                        query.data, user_id, message.message_id if message else None, chat.id if chat else None)
            await query.answer()
            return
        if not await self.h._allowed(update, cb.ACTIONS[press.kind]):
            return
        async with self.h._errors(update):
            stale, chain = await self._check_press(press)
            await query.answer(stale or None)
            if stale is None:
                await self._press(update, press, chain)
            if press.kind in cb.ONE_SHOT:
                await self._drop_keyboard(update)

    async def _check_press(self, press: cb.Press) -> tuple[str | None, str | None]:
        """(why the press no longer applies or None, the chain it concerns)."""
        store = self.h.engine.store
        chain = press.chain
        if press.kind in ("stop", "stopnow"):
            assert press.run_id is not None
            run = await store.run(press.run_id)
            if run is None:
                return cb.stale_reason(press, cb.Current(last_run_id=None, chain_status="")), None
            chain = run.chain
            st = await store.chain_state(chain)
            return cb.stale_reason(press, cb.Current(last_run_id=st.last_run_id, chain_status=st.status,
                                                     run_status=run.status)), chain
        if press.kind in ("start", "reset!") and chain is not None:
            st = await store.chain_state(chain)
            return cb.stale_reason(press, cb.Current(last_run_id=st.last_run_id, chain_status=st.status)), chain
        if press.kind in cb.APPROVAL_KINDS:
            assert press.approval_id is not None
            row = await store.approval(press.approval_id)
            if row is None or row.status != "pending":
                return "This request has expired.", row.chain if row else None
            return None, row.chain
        return None, chain

    async def _press(self, update: Update, press: cb.Press, chain: str | None) -> None:
        kind = press.kind
        if kind == "noop":
            return
        if press.schedule_id is not None:
            await self._schedule_button(update, kind, press.schedule_id)
            return
        assert chain is not None
        if kind == "start":
            await self.h._start(update, chain)
        elif kind == "stop":
            await self.h._ask_reason(update, chain)
        elif kind == "stopnow":
            await self.h._stop(update, chain, f"stopped now from Telegram by {self.h._who(update)}", now=True)
        elif kind == "hand":
            await self.h.cmd_handoff(update, [chain])
        elif kind == "stat":
            await self.h.cmd_status(update, [chain])
        elif kind == "reset!":
            await self.h.reply(update, "🔄 " + render.esc(await self.h.engine.reset_chain(chain)), chain=chain)
        elif kind in cb.APPROVAL_KINDS:
            await self._approval_press(update, press, chain)

    async def _approval_press(self, update: Update, press: cb.Press, chain: str) -> None:
        """Approve, deny, always allow (the decision edits the question message, see the notifier),
        or ask for the reason to deny with (a reply to that prompt denies)."""
        aid = press.approval_id
        assert aid is not None
        who = self.h._who(update)
        if press.kind == "dnyw":
            await self.h.reply(update, f"Why deny request #{aid} of <b>{render.esc(chain)}</b>? Reply to this message "
                                     "with the reason: the agent reads it.", chain=chain, kind=f"deny:{aid}",
                             force_reply=True)
            return
        try:
            await self.h.engine.decide_approval(chain, aid, approve=press.kind != "dny", by=who,
                                              message=f"Denied by {who} from Telegram." if press.kind == "dny" else None,
                                              always=press.kind == "alw")
        except LlmautoError as exc:
            await self.h.reply(update, "⌛ " + render.esc(exc), chain=chain)

    async def _drop_keyboard(self, update: Update) -> None:
        """The message's buttons have done their job (or no longer apply): remove them."""
        query = update.callback_query
        if query is None or query.message is None:
            return
        try:
            await update.get_bot().edit_message_reply_markup(query.message.chat.id, query.message.message_id,
                                                             reply_markup=None)
        except BadRequest as exc:  # already removed ("not modified"), or the message is gone
            log.info("cannot remove the buttons of message %s: %s", query.message.message_id, exc)
        except NetworkError as exc:  # the check in `on_button` still guards an old button
            log.info("cannot remove the buttons of message %s now: %s", query.message.message_id, exc)

    async def _schedule_button(self, update: Update, kind: str, sid: int) -> None:
        if kind == "sdel":
            removed = await self.h.book.remove(sid)
            text = f"🗑 Removed schedule #{removed.id} of <b>{render.esc(removed.chain)}</b>."
        else:
            s = await self.h.book.set_enabled(sid, kind == "sresume")
            text = f"Schedule #{s.id} of <b>{render.esc(s.chain)}</b> {'resumed' if s.enabled else 'paused'}."
        await self.h.refresh_schedules()
        await self.h.reply(update, text)
