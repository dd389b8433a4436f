"""The python-telegram-bot Application: built for long polling against `TELEGRAM_API_BASE_URL`,
with concurrent updates (a slow handler never holds up `/stop_chain`), the handlers registered, and
the commands announced with `setMyCommands`. `serve` runs it embedded in its own loop."""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes
from telegram.request import HTTPXRequest

from bot.commands import COMMANDS
from bot.handlers import BotHandlers
from engine.settings import Settings

log = logging.getLogger(__name__)

# How long a send waits for Telegram's answer. A request that reached Telegram and timed out may
# have been delivered, and is then not sent again (see `bot.outbox`), so this is generous: a
# slow Telegram (answers 25 s late) still yields every message exactly once. Handlers run
# concurrently, so a slow answer holds up nobody else's command.
SEND_READ_TIMEOUT_S = 60.0
SEND_WRITE_TIMEOUT_S = 30.0

App = Application[Any, Any, Any, Any, Any, Any]


class HttpClients:
    """The two HTTP clients of the bot (one for long polling, one for everything else), owned here
    so that `serve` closes them whatever happened: PTB closes them only in `Application.shutdown`,
    which it skips when `initialize` never succeeded (Telegram unreachable at start)."""

    def __init__(self, *, poll_timeout_s: float, send_timeout_s: float = SEND_READ_TIMEOUT_S) -> None:
        self.requests = HTTPXRequest(connection_pool_size=256, read_timeout=send_timeout_s,
                                     write_timeout=min(send_timeout_s, SEND_WRITE_TIMEOUT_S))
        self.get_updates = HTTPXRequest(connection_pool_size=1, read_timeout=poll_timeout_s + 10)

    async def aclose(self) -> None:
        """Idempotent: a client already closed (by PTB's shutdown) is left alone."""
        await self.get_updates.shutdown()
        await self.requests.shutdown()


def build_application(settings: Settings, handlers: BotHandlers, clients: HttpClients) -> App:
    if not settings.telegram_token:
        raise ValueError("build_application needs settings.telegram_token")
    app = (
        ApplicationBuilder()
        .token(settings.telegram_token)
        .base_url(settings.api_base_url)
        .concurrent_updates(True)
        .job_queue(None)  # the engine's Scheduler owns the timing
        .updater(None)  # `bot.poller` polls (it stops at a 409 instead of retrying)
        .request(clients.requests)
        .get_updates_request(clients.get_updates)
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
