"""The chat commands and their arguments, pure: what exists, and parsing that refuses odd input
with a message the user can act on (`UserError`). No Telegram, no engine."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.render import shown

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ARG_CHARS = 1000
MAX_LOG_LINES = 50
DEFAULT_LOG_LINES = 10

# (command, description) in the order `setMyCommands` shows them.
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
    ("task", "Add a task to a chain's task pool"),
    ("tasks", "A chain's tasks: open, done, blocked"),
    ("workers", "The workers that run links (distributed mode)"),
    ("help", "How to use this bot"),
]


class UserError(Exception):
    """Bad input from the chat: answered with its text (already HTML-safe)."""


def check_size(args: list[str]) -> None:
    if sum(len(a) for a in args) > MAX_ARG_CHARS:
        raise UserError(f"That is too long (over {MAX_ARG_CHARS} characters).")


def chain_arg(value: str) -> str:
    """A chain name as the engine accepts it; anything else is refused (escaped, shortened)."""
    if not NAME.fullmatch(value):
        raise UserError(f"{shown(value, limit=100)} is not a chain name (letters, digits, . _ -)")
    return value


def required_chain(args: list[str], usage: str) -> str:
    if not args:
        raise UserError(f"Usage: {usage}")
    return chain_arg(args[0])


@dataclass(frozen=True)
class HandoffArgs:
    chain: str
    round_no: int | None = None
    diff: bool = False


def handoff_args(args: list[str]) -> HandoffArgs:
    """`NAME`, `NAME ROUND` or `NAME diff`."""
    name = chain_arg(args[0])
    if len(args) == 1:
        return HandoffArgs(name)
    which = args[1]
    if len(args) > 2 or not (which.lower() == "diff" or (which.isascii() and which.isdigit() and len(which) <= 9)):
        raise UserError("Usage: /handoff NAME [ROUND|diff]")
    return HandoffArgs(name, diff=True) if which.lower() == "diff" else HandoffArgs(name, round_no=int(which))


def log_args(args: list[str]) -> tuple[str, int]:
    """`NAME [N]`: N is clamped to 1..50."""
    name = required_chain(args, "/log NAME [N]")
    if len(args) == 1:
        return name, DEFAULT_LOG_LINES
    if len(args) > 2 or not (args[1].isascii() and args[1].isdigit() and len(args[1]) <= 6):
        raise UserError("Usage: /log NAME [N]")
    return name, max(1, min(MAX_LOG_LINES, int(args[1])))


def schedule_id(value: str) -> int:
    raw = value.removeprefix("#")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise UserError("Usage: /unschedule ID (see /schedules)")
    return int(raw)
