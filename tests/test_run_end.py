"""How a run ends when something cuts it off: the counters committed after its last link survive
(a shutdown, a store that refuses the last write), so the next start goes on from there and never
redoes links that already ran."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from engine.clock import RecordingSleeper
from engine.engine import Engine
from engine.settings import Settings
from engine.store import Store
from tests.conftest import write_chain
from tests.fakes.scripted_runner import Call, ScriptedRunner, ok

LOOP = {
    "max_rounds": 0,
    "links": [
        {"name": "worker", "role": "worker", "model": "m-w", "prompt": "work {ROUND}"},
        {"name": "reviewer", "role": "reviewer", "model": "m-r", "prompt": "review {ROUND}"},
    ],
}


async def test_a_shutdown_keeps_the_links_this_run_already_did(home: Path, settings: Settings, store: Store) -> None:
    write_chain(home, "sd", LOOP)
    runner = ScriptedRunner()
    reached = asyncio.Event()

    def worker(call: Call):  # type: ignore[no-untyped-def]
        if call.round == 2:
            runner.gates["reviewer"] = asyncio.Event()  # the reviewer of round 2 hangs until killed
            reached.set()
        return ok()

    runner.default = lambda call: worker(call) if call.link == "worker" else ok()
    async with Engine(settings, store, runner=runner, sleeper=RecordingSleeper()) as engine:
        await engine.start_chain("sd", origin="test")
        await asyncio.wait_for(reached.wait(), 10)
        runner.started.clear()
        await asyncio.wait_for(runner.started.wait(), 10)  # the reviewer of round 2 is running
        assert [(c.link, c.round) for c in runner.calls][-1] == ("reviewer", 2)
    st = await store.chain_state("sd")
    assert (st.round, st.next_link, st.rounds_counted) == (2, 1, 1)
    run = (await store.last_runs("sd", 1))[0]
    assert run.status == "INTERRUPTED"

    again = ScriptedRunner()
    again.script("reviewer", lambda c: (c.write_status("ALL_DONE"), ok())[1])
    async with Engine(settings, store, runner=again, sleeper=RecordingSleeper()) as engine:
        await engine.start_chain("sd", origin="test")
        outcome = await asyncio.wait_for(engine.wait("sd"), 10)
    assert outcome.status == "ALL_DONE"
    assert [(c.link, c.round) for c in again.calls] == [("reviewer", 2)]


async def test_a_locked_store_at_the_end_is_retried_and_the_run_recorded(home: Path, settings: Settings) -> None:
    """Another program holds the database's write lock when the reviewer ends: the link's commit
    fails, the run ends FAILED, and that end is written on a retry once the lock is gone, with the
    counters committed after the worker (so the next start re-runs the reviewer only)."""
    write_chain(home, "lk", dict(LOOP, max_rounds=1))
    runner = ScriptedRunner()
    gate = runner.gates["reviewer"] = asyncio.Event()
    sleeper = RecordingSleeper()
    released = asyncio.Event()
    blocker = sqlite3.connect(settings.db_path, timeout=0, isolation_level=None)
    async with Store.open(settings.db_path, busy_timeout_ms=50) as store:
        async with Engine(settings, store, runner=runner, sleeper=sleeper) as engine:
            await engine.start_chain("lk", origin="test")
            while len(runner.calls) < 2:  # the reviewer is running
                await runner.started.wait()
                runner.started.clear()
            real_sleep = sleeper.sleep

            async def pause_then_release(seconds: float, wake: asyncio.Event) -> bool:
                if not released.is_set():  # the first pause before a retry: the other program lets go
                    blocker.execute("ROLLBACK")
                    released.set()
                return await real_sleep(seconds, wake)

            sleeper.sleep = pause_then_release  # type: ignore[method-assign]
            blocker.execute("BEGIN IMMEDIATE")
            gate.set()
            outcome = await asyncio.wait_for(engine.wait("lk"), 30)
        blocker.close()
        assert released.is_set(), "the end of the run was never retried"
        assert outcome.status == "FAILED" and "locked" in outcome.reason
        run = (await store.last_runs("lk", 1))[0]
        assert run.status == "FAILED"
        st = await store.chain_state("lk")
        assert (st.status, st.round, st.next_link) == ("FAILED", 1, 1)
