"""Status words as StrEnums (engine/states.py): the same words on disk, in the store and in JSON."""

from __future__ import annotations

import json

from engine.statefiles import STATUS_WORDS, ChainFiles
from engine.states import AGENT_STOPS, ChainStatus, RunStatus


def test_status_words_are_the_contracts() -> None:
    """DESIGN.md's status.txt words, unchanged. Checked: with
    `STATUS_WORDS = frozenset(ChainStatus) - {ChainStatus.WAITING}` in engine/statefiles.py, this fails."""
    assert {"READY", "RUNNING", "PAUSED", "WAITING", "STOPPED", "ALL_DONE", "BLOCKED", "COMPLETED", "FAILED"} == STATUS_WORDS
    assert set(RunStatus) - set(ChainStatus) == {"INTERRUPTED"}
    assert {"ALL_DONE", "STOPPED"} == AGENT_STOPS


def test_an_enum_is_written_and_serialised_as_its_bare_word(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Checked: with ChainStatus a plain Enum (not a StrEnum), the file holds
    `ChainStatus.BLOCKED`."""
    files = ChainFiles(tmp_path, "c")
    files.ensure()
    files.write_status(ChainStatus.BLOCKED)
    assert files.status.read_text(encoding="utf-8").strip() == "BLOCKED"
    assert files.read_status() == ChainStatus.BLOCKED
    assert json.dumps({"status": RunStatus.INTERRUPTED}) == '{"status": "INTERRUPTED"}'
