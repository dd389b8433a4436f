"""The status words of chains and runs, as `StrEnum`s.

`ChainStatus` is the contract's word set: what `state/<chain>/status.txt` holds and what the
store keeps per chain (DESIGN.md). `RunStatus` is a run's (table `runs`): running, one of the
ending words, or INTERRUPTED (cut off by a shutdown or a crash; it resumes on the next start).
Both are `str` subclasses, so they are stored, compared and printed as the bare words they
replace, and rows written before read as before.
"""

from __future__ import annotations

from enum import StrEnum


class ChainStatus(StrEnum):
    READY = "READY"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    WAITING = "WAITING"  # a usage limit, or a tool call waiting for a person's approval
    STOPPED = "STOPPED"
    ALL_DONE = "ALL_DONE"
    BLOCKED = "BLOCKED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    INTERRUPTED = "INTERRUPTED"
    STOPPED = "STOPPED"
    ALL_DONE = "ALL_DONE"
    BLOCKED = "BLOCKED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


AGENT_STOPS = frozenset({ChainStatus.ALL_DONE, ChainStatus.STOPPED})  # words an agent writes to end the run

# How the chat shows a status (a chain's, or a run's: INTERRUPTED); the terminal shows the word.
ICONS: dict[str, str] = {
    ChainStatus.RUNNING: "▶️", ChainStatus.PAUSED: "⏸", ChainStatus.WAITING: "⏳", ChainStatus.BLOCKED: "⛔",
    ChainStatus.STOPPED: "⏹", ChainStatus.ALL_DONE: "✅", ChainStatus.COMPLETED: "✅", ChainStatus.FAILED: "❌",
    ChainStatus.READY: "⚪", RunStatus.INTERRUPTED: "⚠️",
}


def icon(status: object, default: str = "•") -> str:
    return ICONS.get(str(status), default)


def status_of(word: str) -> ChainStatus | RunStatus:
    """A stored status word as its enum: a chain's, or INTERRUPTED, which the store briefly keeps
    for a chain too (between a cut-off run's end and the chain's STOPPED). Unknown words raise."""
    return ChainStatus(word) if word in ChainStatus._value2member_map_ else RunStatus(word)
