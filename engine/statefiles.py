"""The plain files in `state/<chain>/` that agents read and write.

`handoff.md` (the marble), `status.txt` (one word), `round_counter.txt`, `start_time.txt`. The engine
writes them atomically (temp file in the same folder, fsync, rename) so an agent or a crash never
sees half a file; it reads them bounded, so an agent that writes hundreds of MB cannot make the
engine read them into memory whole.

Agents can also replace a file by something that is not one: a FIFO (opening it would block until
someone writes), a directory, a device, or a symlink to anywhere. Reads look first (`lstat`), open
with O_NONBLOCK | O_NOFOLLOW and check again (`fstat`), and refuse anything but a regular file
inside the home, as a reported problem; the engine then puts the last good handoff back. Writes
replace such an entry (a directory is moved aside, never deleted: it is the agent's).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.records import Record
from engine.states import ChainStatus

STATUS_WORDS = frozenset(ChainStatus)
MAX_HANDOFF_BYTES = 1024 * 1024  # larger handoffs are reported, not read whole
MAX_STATUS_BYTES = 256
MAX_STOP_BYTES = 2000


def atomic_write(path: Path, text: str, *, durable: bool = True) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never a mix. A symlink,
    FIFO or device at `path` is replaced (not written through); a directory is moved aside.
    `durable` syncs the data to disk before the rename (so a power cut cannot leave the file
    empty); the small files the engine rewrites from its database at every start skip it: an
    fsync on the event loop's thread costs about a millisecond a link, and far more while the
    disk is busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        move_aside_if_directory(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_temp_file(path: Path) -> tuple[int, str]:
    """A new private file next to `path` (".NAME.RANDOM.tmp", 0600), as `tempfile.mkstemp` makes
    one, without importing tempfile (and with it shutil and random) into `chain reset` (#14).
    48 random bits: O_EXCL refuses anything already there, a symlink included."""
    tmp = str(path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp"))
    return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp


def move_aside_if_directory(path: Path) -> None:
    """A directory where a state file belongs cannot be renamed over: move it to a hidden name
    next to it (the agent may want its contents back)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return
    except FileNotFoundError:
        return
    import uuid  # rarely needed; uuid imports platform (#14)

    os.rename(path, path.with_name(f".{path.name}.not-a-file-{uuid.uuid4().hex[:8]}"))


def remove(path: Path) -> None:
    """Remove a state file, whatever an agent put in its place."""
    move_aside_if_directory(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class NotAFile(OSError):
    """The path is not a regular file the engine may read: `what` it is instead, and the
    `problem` as reported."""

    def __init__(self, path: Path, what: str, detail: str = "") -> None:
        self.what = what
        self.problem = f"{path.name} is {what}{detail}"
        super().__init__(self.problem)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "something else"


def open_regular(path: Path, root: Path | None) -> int:
    """A read-only fd of `path` if it is a regular file, reached directly or through symlinks
    that stay inside `root` (None: no symlink at all). Never blocks, never follows a link out.
    Raises FileNotFoundError, NotAFile, or another OSError."""
    target = path
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        resolved = Path(os.path.realpath(path))
        if root is None or not resolved.is_relative_to(os.path.realpath(root)):
            raise NotAFile(path, "a symlink out of the home", f" (to {resolved})")
        target = resolved
        st = os.lstat(target)
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(path, _kind(st.st_mode), ", not a regular file")
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped between the look and the open
            raise NotAFile(path, _kind(mode), ", not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True, eq=False, repr=False)
class HandoffRead(Record):
    """What reading handoff.md found: the text, or why there is none usable."""

    text: str | None
    problem: str | None = None
    size: int = 0


def read_bounded(path: Path, limit: int, root: Path | None = None) -> HandoffRead:
    """The handoff's text, or the problem that makes it unusable. Symlinks are followed only
    while they stay inside `root`."""
    try:
        fd = open_regular(path, root)
    except FileNotFoundError:
        return HandoffRead(None, "handoff.md is missing (deleted?)")
    except NotAFile as exc:
        return HandoffRead(None, exc.problem)
    except OSError as exc:
        return HandoffRead(None, f"handoff.md cannot be read: {exc.strerror}")
    try:
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                return HandoffRead(None, f"handoff.md is {size:,} bytes, over the {limit:,}-byte limit", size)
            # Sized to the file, not to the limit: a buffer of limit + 1 (1 MiB) for a handoff of a
            # few KB cost ~35 us a read, two reads a link (#14). A file that grew since the fstat
            # is read on, to the limit + 1 as before.
            raw = handle.read(min(size, limit) + 1)
            if size < len(raw) <= limit:
                raw += handle.read(limit + 1 - len(raw))
    except OSError as exc:
        return HandoffRead(None, f"handoff.md cannot be read: {exc.strerror}")
    problem = refusal(raw, limit)
    if problem is not None:
        return HandoffRead(None, problem, len(raw))
    return HandoffRead(raw.decode("utf-8"), None, len(raw))


def refusal(raw: bytes, limit: int = MAX_HANDOFF_BYTES) -> str | None:
    """Why a handoff's bytes are unusable (None: usable). The one rule for the reader and for the
    store, which records no version the reader would refuse (it would be put back as "last good"
    and refused again, every link)."""
    if len(raw) > limit:
        return f"handoff.md is {len(raw):,} bytes, over the {limit:,}-byte limit"
    if not raw.strip():
        return "handoff.md is empty"
    if b"\x00" in raw:
        return "handoff.md holds binary data (NUL bytes)"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"handoff.md is not UTF-8 text (byte {exc.start})"
    return None


def text_refusal(text: str, limit: int = MAX_HANDOFF_BYTES) -> str | None:
    """`refusal` for a text about to be written or recorded (lone surrogates are not UTF-8)."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"handoff.md is not UTF-8 text (character {exc.start})"
    return refusal(raw, limit)


class ChainFiles:
    """The state folder of one chain; symlinks in it are followed only inside `home` (by default
    the folder above `state_dir`)."""

    def __init__(self, state_dir: Path, chain: str, home: Path | None = None) -> None:
        self.home = home or state_dir.parent
        self.dir = state_dir / chain
        self.handoff = self.dir / "handoff.md"
        self.status = self.dir / "status.txt"
        self.round_counter = self.dir / "round_counter.txt"
        self.start_time = self.dir / "start_time.txt"
        self.stop_file = self.dir / "STOP"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def read_handoff(self, limit: int = MAX_HANDOFF_BYTES) -> HandoffRead:
        return read_bounded(self.handoff, limit, self.home)

    def write_handoff(self, text: str) -> None:
        atomic_write(self.handoff, text)

    def read_status(self) -> str | None:
        """The first word of status.txt, upper-cased; None when missing or empty. A status.txt
        that is not a regular file reads as `<WHAT IT IS>` (e.g. `<A FIFO>`): not a status word,
        so the run reports it and writes a good one in its place."""
        try:
            fd = open_regular(self.status, self.home)
        except NotAFile as exc:
            return f"<{exc.what.upper()}>"
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as handle:
                raw = handle.read(MAX_STATUS_BYTES)
        except OSError:
            return None
        words = raw.decode("utf-8", "replace").split()
        return words[0].strip().upper() if words else None

    def write_status(self, word: str) -> None:
        atomic_write(self.status, word + "\n", durable=False)

    def write_round(self, round_no: int) -> None:
        atomic_write(self.round_counter, f"{round_no}\n", durable=False)

    def write_start_time(self, iso: str) -> None:
        atomic_write(self.start_time, iso + "\n", durable=False)

    def stop_reason(self) -> str | None:
        """The original llmauto's stop file: `state/NAME/STOP` (its text is the reason) stops the
        chain before its next link. None when there is none; a STOP that is not a regular file
        (or cannot be read) still counts, with a generic reason."""
        try:
            os.lstat(self.stop_file)
        except FileNotFoundError:
            return None
        except OSError:
            return "STOP file present"
        try:
            fd = open_regular(self.stop_file, self.home)
            with os.fdopen(fd, "rb") as handle:
                raw = handle.read(MAX_STOP_BYTES)
        except OSError:
            return "STOP file present"
        text = " ".join(raw.decode("utf-8", "replace").split())
        return text or "STOP file present"

    def remove_stop_file(self) -> None:
        remove(self.stop_file)
