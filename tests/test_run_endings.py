"""How a run ends when something unplanned happens (issue #16: MarbleRun.run's cancel and
unexpected-exception endings), in-process with the scripted runner: the run is recorded with
its reason and the counters of the links that finished, and the chain can start again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import write_chain
from tests.fakes.scripted_runner import Call, ok
from tests.test_marble import WORKER_REVIEWER, Harness, harness  # noqa: F401 (the fixture)


async def test_an_unexpected_exception_ends_the_run_failed_and_a_new_start_works(home: Path, harness: Harness) -> None:  # noqa: F811
    """Checked: with MarbleRun.run's `except Exception` branch removed, this fails (the run is
    left RUNNING and the exception escapes the run task)."""
    write_chain(home, "boom", dict(WORKER_REVIEWER, max_rounds=1))

    def explode(c: Call) -> object:
        raise RuntimeError("the runner broke")

    harness.runner.script("worker", lambda c: ok(), lambda c: ok())
    harness.runner.script("reviewer", explode)
    outcome = await harness.run("boom")
    assert (outcome.status, outcome.reason) == ("FAILED", "engine error: the runner broke")
    run = (await harness.store.last_runs("boom"))[0]
    assert (run.status, run.links_run) == ("FAILED", 1)  # the worker's link was committed
    assert (await harness.engine.view("boom")).status == "FAILED"
    assert (await harness.run("boom")).status == "COMPLETED"  # the reviewer's step is back to ok()


async def test_a_cancelled_run_is_recorded_interrupted(home: Path, harness: Harness) -> None:  # noqa: F811
    """Checked: with the `asyncio.shield(self._finish(...))` of MarbleRun.run's CancelledError branch
    removed, this fails (the run stays RUNNING)."""
    write_chain(home, "cut", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.gates["reviewer"] = asyncio.Event()  # never opened: the reviewer hangs
    await harness.engine.start_chain("cut", origin="test")
    await asyncio.wait_for(harness.runner.started.wait(), 5)
    while harness.runner.links_called() != ["worker", "reviewer"]:
        await asyncio.wait_for(harness.queue.get(), 5)  # each event is a step of the run
    task = harness.engine._runs["cut"][1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run = (await harness.store.last_runs("cut"))[0]
    assert (run.status, run.stop_reason, run.links_run) == ("INTERRUPTED", "cancelled", 1)
