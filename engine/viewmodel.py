"""What the two views of a run show, computed once: the chat's HTML (`bot/render.py`) and the
terminal's plain text (`engine/textview.py`) word and format these facts their own way, but
decide them here, so the phone and the terminal never disagree on what happened (which outcome a
link had, whether its refusals are worth a line, how many rounds are done). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.records import Record
from engine.states import icon

if TYPE_CHECKING:  # types only: a terminal `status` need not import the typed events (#14)
    from engine.event_types import LinkFinished
    from engine.store import LinkRunRow

__all__ = ["LinkEnd", "Rounds", "icon", "link_end", "rounds", "rounds_done", "row_end"]


@dataclass(frozen=True, eq=False, repr=False)
class LinkEnd(Record):
    """How a link ended, as a line about it says it."""

    ok: bool
    outcome: str  # the error class ("ok", "timeout", "denied", ...) or the row's status
    error: str  # the error to show: "" when the link went well or said nothing
    refused: str  # "Bash ×2 (rm …)": claude's refusals worth a line ("" when `denied` says it already)
    denied_tools: tuple[str, ...] = ()  # claude's own permission_denials, when no refusal was told
    hop: str = ""  # the routed hop's note (#13)


def link_end(e: LinkFinished) -> LinkEnd:
    """The facts of a `link_finished` event."""
    return LinkEnd(
        ok=e.ok, outcome=str(e.error_class), error="" if e.ok else e.error,
        refused=e.refusals if e.error_class != "denied" else "",
        denied_tools=e.permission_denials if not e.refusals else (), hop=e.hop,
    )


def row_end(row: LinkRunRow) -> LinkEnd:
    """The facts of a stored link run (the log, a status's last link)."""
    outcome = row.error_class or row.status
    ok = outcome == "ok"
    return LinkEnd(ok=ok, outcome=outcome, error="" if ok else (row.error_message or ""),
                   refused=(row.refusals or "") if outcome != "denied" else "")


def outcome_and_time(end: LinkEnd, took: str) -> list[str]:
    """A link's outcome and how long it took, for a log line: a link still running is said once
    ("running"), not "running, running"."""
    return [end.outcome] if took == end.outcome else [end.outcome, took]


def money(value: float | None) -> str:
    """Dollars as every view says them: four decimals under $1 (an agent's few tenths of a cent
    show), two from $1 on."""
    v = float(value or 0)
    return f"${v:.4f}" if v < 1 else f"${v:.2f}"


def definition_problem(error: str) -> str:
    """An invalid chain's error in one line, for a list of chains: its first problem, without the
    chain file's name the list already shows, and how many more `chain validate` would give."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != "invalid chain:":  # one message (unreadable JSON, ...)
        return lines[0] if lines else error
    first, more = lines[1], len(lines) - 2
    path, sep, rest = first.partition(".json: ")
    if sep and "/" in path and " " not in path:
        first = rest
    return first + (f" (+{more} more)" if more else "")


def rounds_done(next_round: int | None) -> int:
    """Rounds completed, as round_counter.txt counts them, from the round the chain runs next."""
    return max(0, (next_round or 1) - 1)


@dataclass(frozen=True, eq=False, repr=False)
class Rounds(Record):
    """A chain's rounds: "round 3 of 10 (2 done)" while it runs, "rounds done: 2 of 10" when not."""

    current: int
    done: int
    max_rounds: int | None
    counted: int | None  # rounds that count toward max_rounds, when not all the done ones
    running: bool

    @property
    def of(self) -> str:
        return f" of {self.max_rounds}" if self.max_rounds else ""

    @property
    def counted_note(self) -> str:
        return f"{self.counted} counted toward max_rounds" if self.counted is not None else ""


def rounds(round_no: int, max_rounds: int | None, rounds_counted: int, *, running: bool) -> Rounds:
    done = rounds_done(round_no)
    return Rounds(current=round_no, done=done, max_rounds=max_rounds,
                  counted=rounds_counted if rounds_counted != done else None, running=running)
