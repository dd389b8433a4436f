"""The python-telegram-bot Application: built for long polling against `TELEGRAM_API_BASE_URL`,
with concurrent updates (a slow handler never holds up `/stop_chain`), the handlers registered, and
the commands announced with `setMyCommands`. `serve` runs it embedded in its own loop."""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot.commands import COMMANDS
from bot.handlers import BotHandlers
from engine.settings import Settings

log = logging.getLogger(__name__)

App = Application[Any, Any, Any, Any, Any, Any]


def build_application(settings: Settings, handlers: BotHandlers, *, poll_timeout_s: float) -> App:
    if not settings.telegram_token:
        raise ValueError("build_application needs settings.telegram_token")
    app = (
        ApplicationBuilder()
        .token(settings.telegram_token)
        .base_url(settings.api_base_url)
        .concurrent_updates(True)
        .job_queue(None)  # the engine's Scheduler owns the timing
        .get_updates_read_timeout(poll_timeout_s + 10)
        .build()
    )
    handlers.register(app)
    app.add_error_handler(_log_handler_error)
    return app


async def announce_commands(app: App) -> bool:
    """`setMyCommands`, so the phone offers them; a failure is logged, not fatal."""
    try:
        await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
    except TelegramError as exc:
        log.warning("setMyCommands failed: %s", exc)
        return False
    return True


async def _log_handler_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    log.error("handler failed: %s", context.error, exc_info=context.error)
