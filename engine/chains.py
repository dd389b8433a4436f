"""Chain definitions: the frozen value types, loading from `chains/NAME.json`, defaults, validation.

Compatible with the original llmauto format (see shared DESIGN.md). Precedence for per-link
settings: link beats chain `defaults` beats global settings. Errors name the file, the field path
(e.g. `links[2].model`) and the reason; unknown fields become warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

Role = Literal["worker", "reviewer", "controller"]
Mode = Literal["loop", "once", "deadend"]
OnBlocked = Literal["continue", "wait"]

DEFAULT_TIMEOUT_S = 2 * 3600.0
DEFAULT_STALL_S = 600.0
DEFAULT_BLOCKED_WAIT_S = 6 * 3600.0
NAME_PATTERN = r"[A-Za-z0-9_.-]+"


@dataclass(frozen=True, kw_only=True)
class LinkDef:
    """One link: one non-interactive run of claude (or of `command`)."""

    name: str
    role: Role = "worker"
    model: str | None = None
    command: tuple[str, ...] | None = None
    # The prompt template text, already resolved from a key, a file or inline text.
    prompt: str = ""
    continue_session: bool = False
    fallback_model: str | None = None
    until_full: bool = False
    telegram_update: bool = False
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    stall_s: float = DEFAULT_STALL_S
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_command(self) -> bool:
        return self.command is not None


@dataclass(frozen=True, kw_only=True)
class ChainDef:
    """A whole chain, with defaults applied and every prompt resolved."""

    name: str
    path: Path
    description: str = ""
    mode: Mode = "loop"
    max_rounds: int = 0  # 0 = unlimited
    runtime_hours: float = 0.0  # 0 = unlimited
    deadline: datetime | None = None  # aware
    max_consecutive_blocks: int = 3  # 0 = never stop for BLOCKED rounds
    max_cost_usd: float | None = None
    workdir: Path | None = None  # None: the home folder
    on_blocked: OnBlocked = "continue"
    blocked_wait_s: float = DEFAULT_BLOCKED_WAIT_S
    notify_every_link: bool = False
    # Names of environment variables handed to agents; None = the parent's environment minus
    # secrets (the bot token and other *TOKEN*/*SECRET*/*API_KEY* variables except ANTHROPIC_*).
    env_allow: tuple[str, ...] | None = None
    links: tuple[LinkDef, ...] = ()
    warnings: tuple[str, ...] = ()
