"""Edge paths of the state folder (engine/statefiles.py, on real files: a socket, a device link,
a directory where a file belongs, an oversized handoff) and of the hop helpers (engine/hops.py:
corrupt bounce counts, the verdict of an appended handoff, a round's task outcome)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine import hops
from engine.chains import ChainDef, LinkDef
from engine.routing import Hop, HopKind, Route, Routes
from engine.statefiles import ChainFiles, NotAFile, atomic_write, open_regular, read_bounded, remove
from engine.store import ChainState
from engine.tasks import TaskState


@pytest.fixture
def files(tmp_path: Path) -> ChainFiles:
    f = ChainFiles(tmp_path / "state", "c")
    f.ensure()
    return f


def test_a_socket_or_a_device_is_named_not_read(files: ChainFiles, tmp_path: Path) -> None:
    """An agent may leave anything where handoff.md belongs: the reader names it and reads
    nothing. Red with the socket branch of `_kind` removed ("something else") or the symlink
    guard of `open_regular` dropped (/dev/null would be opened)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(files.handoff))
        assert read_bounded(files.handoff, 1000, files.home).problem == "handoff.md is a socket, not a regular file"
    files.handoff.unlink()
    files.handoff.symlink_to("/dev/null")
    assert read_bounded(files.handoff, 1000, files.home).problem == (
        "handoff.md is a symlink out of the home (to /dev/null)")
    inside = tmp_path / "dev-link"
    inside.symlink_to("/dev/null")
    with pytest.raises(NotAFile, match="a device, not a regular file"):
        open_regular(inside, Path("/"))  # followed (inside "/"), then refused as a device


def test_an_oversized_handoff_is_refused_by_its_size(files: ChainFiles) -> None:
    """Red with the `size > limit` check removed (the read would go on to `refusal`, which
    reports the bytes read, limit + 1, not the file's size)."""
    files.handoff.write_bytes(b"x" * 5000)
    read = files.read_handoff(limit=100)
    assert (read.text, read.problem) == (None, "handoff.md is 5,000 bytes, over the 100-byte limit")


def test_a_directory_where_a_state_file_belongs_is_moved_aside(files: ChainFiles) -> None:
    """Writing status.txt over a directory an agent made moves the directory aside (contents
    kept); `remove` does the same. Red with the `move_aside_if_directory` call removed
    (IsADirectoryError)."""
    files.status.mkdir()
    (files.status / "keep.txt").write_text("mine")
    assert files.read_status() == "<A DIRECTORY>"
    files.write_status("DONE")
    assert files.read_status() == "DONE"
    (aside,) = files.dir.glob(".status.txt.not-a-file-*")
    assert (aside / "keep.txt").read_text() == "mine"
    files.round_counter.mkdir()
    remove(files.round_counter)
    assert not files.round_counter.exists() and len(list(files.dir.glob(".round_counter.txt.not-a-file-*"))) == 1
    remove(files.round_counter)  # nothing there: no error


def test_a_failed_atomic_write_leaves_no_temporary_file(files: ChainFiles) -> None:
    """Red with the cleanup in atomic_write's except branch removed (a .tmp stays behind)."""
    with pytest.raises(UnicodeEncodeError):
        atomic_write(files.handoff, "bad \udc80 surrogate")
    assert sorted(p.name for p in files.dir.iterdir()) == []


def test_a_stop_file_that_is_not_a_file_still_stops(files: ChainFiles) -> None:
    """Red with the `except OSError: return "STOP file present"` of stop_reason removed."""
    assert files.stop_reason() is None
    files.stop_file.mkdir()
    assert files.stop_reason() == "STOP file present"
    files.stop_file.rmdir()
    files.stop_file.write_text("  nightly\n maintenance  ")
    assert files.stop_reason() == "nightly maintenance"
    files.stop_file.write_text("\n")
    assert files.stop_reason() == "STOP file present"


@pytest.mark.parametrize(("stored", "counts"), [
    ("", {}),
    ('{"worker": 2, "r": "x"}', {"worker": 2}),
    ("{not json", {}),
    ("[1, 2]", {}),
])
def test_bounce_counts_as_persisted(stored: str, counts: dict[str, int]) -> None:
    """A corrupt `round_bounces` column counts as no bounces. Red with the ValueError handler
    removed (the run would crash on it) or the `isinstance(raw, dict)` guard dropped."""
    assert hops.bounces(ChainState(chain="c", round_bounces=stored)) == counts


@pytest.mark.parametrize(("before", "after", "verdict"), [
    ("a\nVERDICT: FAIL\n", "a\nVERDICT: FAIL\n", None),  # unchanged: said nothing
    ("x", None, None),  # deleted
    ("a\nVERDICT: FAIL\n", "a\nVERDICT: FAIL\nmore\nVERDICT: PASS\n", "PASS"),  # appended: its own verdict
    ("a\nVERDICT: FAIL\n", "a\nVERDICT: FAIL\nno verdict this time\n", None),  # an older verdict does not count
    ("a\nVERDICT: FAIL\n", "rewritten\nVERDICT: pass\n", "PASS"),  # rewritten: the whole text
    (None, "VERDICT: NEEDS_FIX\n", "NEEDS_FIX"),
])
def test_read_verdict(before: str | None, after: str | None, verdict: str | None) -> None:
    """Red with `after.startswith(before)` dropped (the old FAIL would route the appended round)."""
    assert hops.read_verdict(before, after) == verdict


ROUTED = LinkDef(name="r", routes=Routes((Route("PASS", "next"), Route("FAIL", "w"))))
PLAIN = LinkDef(name="w")
CHAIN = ChainDef(name="c", path=Path("c.json"), links=(PLAIN, ROUTED))


@pytest.mark.parametrize(("last", "hop", "blocked", "failed", "outcome"), [
    (PLAIN, None, True, False, TaskState.BLOCKED),
    (PLAIN, None, True, True, TaskState.BLOCKED),
    (PLAIN, None, False, True, None),
    (PLAIN, None, False, False, TaskState.DONE),
    (ROUTED, Hop(kind=HopKind.NEW_ROUND, next_index=0, verdict="PASS", route=Route("PASS", "next")), False, False, TaskState.DONE),
    (ROUTED, Hop(kind=HopKind.GO, next_index=0, verdict="FAIL", route=Route("FAIL", "w")), False, False, None),
    (ROUTED, Hop(kind=HopKind.NEW_ROUND, next_index=0, verdict=None), False, False, None),
    (ROUTED, None, False, False, None),
])
def test_task_outcome(last: LinkDef, hop: Hop | None, blocked: bool, failed: bool, outcome: TaskState | None) -> None:
    """Red with the `hop.route.kind is Target.NEXT` test made `is not`, or blocked checked after failed."""
    assert hops.task_outcome(CHAIN, last, hop, blocked=blocked, failed=failed) is outcome
    assert hops.ends_round(hop) is (hop is not None and hop.kind is not HopKind.GO)
