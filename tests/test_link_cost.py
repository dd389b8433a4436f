"""What each link costs the run loop in store transactions (#14), and that the records stay what
they were when a link's end and its outcome are written together: in-process, with the scripted
runner (which starts no process, so no `set_link_process`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine import statefiles
from engine.engine import Engine
from engine.permissions import Refusal
from engine.settings import Settings
from engine.store import Store, Writer
from engine.stream import ErrorClass
from tests.conftest import write_chain
from tests.fakes.scripted_runner import ScriptedRunner, fail, ok


def plain_chain(links: int) -> dict[str, Any]:
    """`links` links whose prompt is a plain text: the chain warns once per link, as the bench's do."""
    return {"mode": "once", "links": [{"name": f"l{i}", "model": "m", "prompt": "go"} for i in range(links)]}


@pytest.fixture
async def engine(settings: Settings, store: Store) -> AsyncIterator[tuple[Engine, ScriptedRunner]]:
    runner = ScriptedRunner()
    async with Engine(settings, store, runner=runner) as eng:
        yield eng, runner


def count_transactions(store: Store) -> Callable[[], int]:
    """Counts the store's write transactions from now on."""
    seen = [0]
    real = store.transaction

    def counting() -> contextlib.AbstractAsyncContextManager[Writer]:
        seen[0] += 1
        return real()

    store.transaction = counting  # type: ignore[method-assign]
    return lambda: seen[0]


async def run(eng: Engine, name: str) -> Any:
    await eng.start_chain(name, origin="test")
    return await asyncio.wait_for(eng.wait(name), 20)


async def test_each_link_costs_the_run_loop_two_transactions(home: Path, store: Store,
                                                             engine: tuple[Engine, ScriptedRunner]) -> None:
    """Per link: `start_link` and `commit_link` (which also writes the attempt's end), whatever the
    chain's warnings. Broke: `self.live = LiveLink(defer_end=True)` in MarbleRun.__init__ as
    `LiveLink()` (the end in a transaction of its own: 3 per link); and the warnings stored by one
    `self._store(...)` each in `MarbleRun.run` (one more transaction per warning, here per link)."""
    eng, _ = engine
    write_chain(home, "two", plain_chain(2))
    write_chain(home, "eight", plain_chain(8))
    counted = count_transactions(store)
    await run(eng, "two")
    two = counted()
    await run(eng, "eight")
    eight = counted() - two
    assert [len(eng.load(n).warnings) for n in ("two", "eight")] == [2, 8]
    assert (eight - two) / 6 == 2


async def test_a_links_end_and_outcome_are_recorded_as_before(home: Path, store: Store,
                                                              engine: tuple[Engine, ScriptedRunner]) -> None:
    """The attempt's end (cost, tokens, duration, exit code, excerpt, its time) lands in the link
    run's row with the link's outcome: a retried attempt's as it ran, the last one's `done` with the
    outcome judged after it (`denied`: refused and nothing changed) and its refusals. Broke: the
    `record_end` call before a retry in `_run_with_retries` (the retried row kept no end: error
    class None); and `end["error_class"], end["error_message"] = outcome` in `Store.commit_link`
    (the row said `ok`)."""
    eng, runner = engine
    doc = {"mode": "once", "links": [{"name": "w", "model": "big", "fallback_model": "small", "prompt": "p"}]}
    write_chain(home, "rec", doc)
    refused = (Refusal(tool="Bash", target="mkdir x", tool_use_id="t1", message="denied by the rules"),)
    runner.script("w", lambda c: fail(ErrorClass.OVERLOADED, "529", cost_usd=0.5, input_tokens=7),
                  lambda c: ok("did nothing", cost=0.25, output_tokens=3, turns=2, refusals=refused, tool_calls=1))
    await run(eng, "rec")
    rows = await store.link_runs("rec")
    assert [(r.attempt, r.status, r.model, r.error_class, r.cost_usd, r.input_tokens, r.output_tokens, r.turns,
             r.exit_code, r.result_excerpt) for r in rows] == [
        (1, "retried", "big", "overloaded", 0.5, 7, 0, 0, 1, "529"),
        (2, "done", "small", "denied", 0.25, 0, 3, 2, 0, "did nothing"),
    ]
    assert rows[1].refusals is not None and "Bash" in rows[1].refusals
    assert rows[1].error_message.startswith("claude was refused")
    assert all(r.ended_at is not None and r.ended_at >= r.started_at and r.duration_s == 0.01 for r in rows)
    assert all(r.current_tool is None for r in rows)
    kinds = [e.kind for e in await store.run_events(rows[0].run_id)]
    assert kinds.count(ev.LINK_STARTED) == 2 and kinds.count(ev.LINK_FINISHED) == 1


@pytest.mark.parametrize(("written", "expect_text"), [(100, True), (300, False)])
def test_a_handoff_that_grew_after_its_size_was_taken_is_read_on_to_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: int, expect_text: bool) -> None:
    """The handoff is read in a buffer sized to the file (not 1 MiB), and a file that grew between
    the fstat and the read is read on: whole if within the limit, refused if over it. Broke:
    `raw += handle.read(limit + 1 - len(raw))` in `statefiles.read_bounded` (the text cut at the
    size first seen, and the grown file not refused)."""
    path = tmp_path / "handoff.md"
    path.write_text("x" * written, encoding="utf-8")
    real = os.fstat

    def fstat_before_the_growth(fd: int) -> os.stat_result:
        st = real(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10,
                               st.st_atime, st.st_mtime, st.st_ctime))

    monkeypatch.setattr(statefiles.os, "fstat", fstat_before_the_growth)
    read = statefiles.read_bounded(path, 200, tmp_path)
    if expect_text:
        assert (read.text, read.problem) == ("x" * written, None)
    else:
        assert read.text is None and read.problem is not None and "over the 200-byte limit" in read.problem
