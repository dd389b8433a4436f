"""Operator notes: a person's answer (to a BLOCKED alert, or sent while the chain is idle) written
into the chain's handoff, where the next agent reads it.

There is one writer so that every path (a running run between links, the engine for a chain that
is not running) stamps the note the same way: in the home's zone (`LLMAUTO_TIMEZONE`, else the
machine's), as schedules and deadlines are read, and records the new handoff as a version in the
store. The note's text is cleaned in `engine/handoff.py` (`operator_note`), which stays pure.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from engine import handoff as hp
from engine.statefiles import ChainFiles
from engine.store import Store


def stamp(now: datetime, tz: tzinfo | None) -> str:
    """The note's time, to the minute, in the home's zone (None: the machine's)."""
    return now.astimezone(tz).isoformat(timespec="minutes")


async def add_operator_note(
    files: ChainFiles, store: Store, tz: tzinfo | None, now: datetime, *,
    run_id: int | None, round_no: int, who: str, text: str,
) -> str:
    """Append the note to the handoff file and record that version (link "(operator)").
    Returns the new handoff text."""
    current = files.read_handoff().text or ""
    updated = hp.operator_note(current, text, who, stamp(now, tz))
    files.write_handoff(updated)
    await store.save_handoff(files.dir.name, run_id, None, round_no, "(operator)", updated)
    return updated
