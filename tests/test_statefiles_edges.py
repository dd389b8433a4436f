"""The state files' readers (engine/statefiles.py) when the chain's state folder itself is not a
folder (an agent replaced `state/NAME` by a file): every read fails with ENOTDIR, not "missing",
and each reader says so its own way, without raising. Real files."""

from __future__ import annotations

from pathlib import Path

from engine.statefiles import ChainFiles


def test_a_state_folder_replaced_by_a_file(tmp_path: Path) -> None:
    """Red with read_bounded's `except OSError` on opening removed (NotADirectoryError escapes),
    read_status's `except OSError: return None` removed, or stop_reason's `except OSError` on its
    lstat removed or made to say there is no STOP (a chain whose state cannot be read would go on)."""
    state = tmp_path / "home" / "state"
    state.mkdir(parents=True)
    (state / "alpha").write_text("not a folder\n")
    files = ChainFiles(state, "alpha")
    read = files.read_handoff()
    assert read.text is None and read.problem == "handoff.md cannot be read: Not a directory"
    assert files.read_status() is None
    assert files.stop_reason() == "STOP file present"
