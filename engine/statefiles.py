"""The plain files in `state/<chain>/` that agents read and write.

`handoff.md` (the marble), `status.txt` (one word), `round_counter.txt`, `start_time.txt`. The engine
writes them atomically (temp file in the same folder, fsync, rename) so an agent or a crash never
sees half a file; it reads them bounded, so an agent that writes hundreds of MB cannot make the
engine read them into memory whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

STATUS_WORDS = frozenset(
    {"READY", "RUNNING", "PAUSED", "WAITING", "STOPPED", "ALL_DONE", "BLOCKED", "COMPLETED", "FAILED"}
)
MAX_HANDOFF_BYTES = 1024 * 1024  # larger handoffs are reported, not read whole
MAX_STATUS_BYTES = 256


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class HandoffRead:
    """What reading handoff.md found: the text, or why there is none usable."""

    text: str | None
    problem: str | None = None
    size: int = 0


def read_bounded(path: Path, limit: int) -> HandoffRead:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return HandoffRead(None, "handoff.md is missing (deleted?)")
    except OSError as exc:
        return HandoffRead(None, f"handoff.md cannot be read: {exc.strerror}")
    if size > limit:
        return HandoffRead(None, f"handoff.md is {size:,} bytes, over the {limit:,}-byte limit", size)
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        return HandoffRead(None, f"handoff.md cannot be read: {exc.strerror}")
    if not raw.strip():
        return HandoffRead(None, "handoff.md is empty", len(raw))
    if b"\x00" in raw:
        return HandoffRead(None, "handoff.md holds binary data (NUL bytes)", len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return HandoffRead(None, f"handoff.md is not UTF-8 text (byte {exc.start})", len(raw))
    return HandoffRead(text, None, len(raw))


class ChainFiles:
    """The state folder of one chain."""

    def __init__(self, state_dir: Path, chain: str) -> None:
        self.dir = state_dir / chain
        self.handoff = self.dir / "handoff.md"
        self.status = self.dir / "status.txt"
        self.round_counter = self.dir / "round_counter.txt"
        self.start_time = self.dir / "start_time.txt"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def read_handoff(self, limit: int = MAX_HANDOFF_BYTES) -> HandoffRead:
        return read_bounded(self.handoff, limit)

    def write_handoff(self, text: str) -> None:
        atomic_write(self.handoff, text)

    def read_status(self) -> str | None:
        """The first word of status.txt, upper-cased; None when missing or empty."""
        try:
            with self.status.open("rb") as handle:
                raw = handle.read(MAX_STATUS_BYTES)
        except OSError:
            return None
        words = raw.decode("utf-8", "replace").split()
        return words[0].strip().upper() if words else None

    def write_status(self, word: str) -> None:
        atomic_write(self.status, word + "\n")

    def write_round(self, round_no: int) -> None:
        atomic_write(self.round_counter, f"{round_no}\n")

    def write_start_time(self, iso: str) -> None:
        atomic_write(self.start_time, iso + "\n")
