"""The distributed mode (issue #15) end to end: a real PostgreSQL (tests/pg.py), real `llmauto
worker` subprocesses with homes of their own (two "hosts"), the engine of `serve` in this process
with the remote executor. Agents are `command` links (real subprocesses) that write which home
ran them into the handoff."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engine import account_slots
from engine.dist_settings import DistSettings
from engine.engine import Engine
from engine.queue_db import QueueDb
from engine.remote import RemoteExecutor
from engine.store import Store
from engine.worker import prepare
from tests.conftest import ROOT, make_settings, write_chain
from tests.fakes.gate import holding_command, started
from tests.faults.serve_rig import until

HEARTBEAT_S, LOST_AFTER_S = 0.3, 1.5
CAP = 2


def mark_link(name: str, spans: Path, hold_s: float = 0.0) -> list[str]:
    """A command link that appends `<home> <name>` to the handoff and its (start, end) to `spans`."""
    code = (
        "import os, sys, time, json; t0 = time.time(); time.sleep(float(sys.argv[3]))\n"
        "home = os.path.basename(os.environ['LLMAUTO_HOME'])\n"
        "open(os.environ['LLMAUTO_HANDOFF'], 'a').write(home + ' ' + sys.argv[1] + '\\n')\n"
        "open(sys.argv[2], 'a').write(json.dumps([t0, time.time()]) + '\\n')\n"
    )
    return [sys.executable, "-c", code, name, str(spans), str(hold_s)]


def new_home(root: Path, name: str) -> Path:
    home = root / name
    for sub in ("chains", "prompts", "state"):
        (home / sub).mkdir(parents=True)
    return home


class Cluster:
    """serve's home (here) and worker processes, each with its home."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.serve_home = new_home(root, "serve")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.homes: dict[str, Path] = {}
        self.extra_env: dict[str, str] = {}

    def chain(self, name: str, doc: dict[str, Any]) -> None:
        for home in (self.serve_home, *self.homes.values()):
            write_chain(home, name, doc)

    def add_home(self, name: str) -> Path:
        self.homes[name] = new_home(self.root, name)
        for chain in (self.serve_home / "chains").glob("*.json"):
            (self.homes[name] / "chains" / chain.name).write_text(chain.read_text())
        return self.homes[name]

    async def start_worker(self, name: str, *queues: str, max_links: int = 2) -> subprocess.Popen[bytes]:
        home = self.homes.get(name) or self.add_home(name)
        env = {**os.environ, "LLMAUTO_QUEUE_URL": self.url, "LLMAUTO_WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
               "LLMAUTO_WORKER_LOST_AFTER_S": str(LOST_AFTER_S), "LLMAUTO_MAX_PARALLEL_LINKS": str(CAP),
               "LLMAUTO_ENV_FILE": "none", "PYTHONPATH": str(ROOT), **self.extra_env}
        argv = [sys.executable, "-m", "llmauto", "--home", str(home), "worker", "--name", name,
                "--max-links", str(max_links)]
        if queues:
            argv += ["--queues", ",".join(queues)]
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        log.close()
        self.procs[name] = proc

        async def registered() -> bool:
            async with QueueDb.open(self.url, max_size=1) as db:
                await prepare(db)  # idempotent: the tables exist before the worker made them
                return any(w.name == name and not w.stopped for w in await db.workers())

        await until(f"worker {name} to register", registered, proc=proc)
        return proc

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg_url)
    try:
        yield c
    finally:
        c.close()


@asynccontextmanager
async def serving(c: Cluster) -> AsyncIterator[tuple[Engine, RemoteExecutor]]:
    settings = make_settings(c.serve_home, max_parallel_links=CAP)
    dist = DistSettings(queue_url=c.url, heartbeat_s=HEARTBEAT_S, lost_after_s=LOST_AFTER_S, max_parallel_links=CAP)
    # The documented set-up: serve's store and the queue in one PostgreSQL database
    # (LLMAUTO_DATABASE_URL, which LLMAUTO_QUEUE_URL defaults to).
    async with (RemoteExecutor.open(dist) as executor, Store.open(settings.db_path, url=c.url) as store,
                Engine(settings, store, execute=executor) as engine):
        yield engine, executor
    assert not settings.db_path.exists(), "serve's store is on PostgreSQL: no SQLite file"


def handoff(home: Path, chain: str) -> list[str]:
    return (home / "state" / chain / "handoff.md").read_text().splitlines()


def max_overlap(spans: Path) -> int:
    events = []
    for line in spans.read_text().splitlines():
        start, end = json.loads(line)
        events += [(start, 1), (end, -1)]
    now = best = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        best = max(best, now)
    return best


async def test_two_workers_six_chains_runs_on_and_the_account_wide_cap(cluster: Cluster) -> None:
    """Six chains of two links, two rounds each, on two workers ("laptop" serves the `any` queue,
    "buildbox" only its own): every (round, link) is committed once and its mark is in serve's
    handoff; the pinned chain ran on buildbox, the others on laptop; at most CAP agents ran at once,
    account-wide (sampled in PostgreSQL and from the agents' own spans), and the cap was reached.
    Broken once each: `queue=ctx.chain.runs_on or ANY_QUEUE` → `queue=ANY_QUEUE` in remote.py →
    the pinned chain ran on laptop (red); `range(self.count)` → `range(self.count + 2)` in
    account_slots.py → 3 agents at once (red)."""
    spans = cluster.root / "spans"
    for i in range(6):
        doc: dict[str, Any] = {"max_rounds": 2, "links": [
            {"name": "a", "command": mark_link(f"c{i}-a", spans, 0.3)},
            {"name": "b", "command": mark_link(f"c{i}-b", spans, 0.3)}]}
        if i == 5:
            doc["runs_on"] = "buildbox"
        cluster.chain(f"c{i}", doc)
    await cluster.start_worker("laptop")
    await cluster.start_worker("buildbox", "buildbox")
    samples: list[int] = []
    async with serving(cluster) as (engine, executor):
        stop_sampling = asyncio.Event()

        async def sample() -> None:
            while not stop_sampling.is_set():
                samples.append(await account_slots.held(cluster.url))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        run_ids = [await engine.start_chain(f"c{i}") for i in range(6)]
        outcomes = [await engine.wait(f"c{i}") for i in range(6)]
        stop_sampling.set()
        await sampler
        assert [o.status for o in outcomes] == ["COMPLETED"] * 6, outcomes
        for run_id in run_ids:
            assert await executor.db.committed_count(run_id) == [(1, 0, 1), (1, 1, 1), (2, 0, 1), (2, 1, 1)]
    for i in range(6):
        marks = [line for line in handoff(cluster.serve_home, f"c{i}") if line.endswith(("-a", "-b"))]
        assert [m.split()[1] for m in marks] == [f"c{i}-a", f"c{i}-b"] * 2
        assert {m.split()[0] for m in marks} == {"buildbox" if i == 5 else "laptop"}
    assert max(samples) <= CAP and max_overlap(spans) <= CAP, (max(samples), max_overlap(spans))
    assert max_overlap(spans) == CAP  # the cap was the limit, not the load


def held_chain(cluster: Cluster) -> Path:
    """Chain `far`: link `a` holds until the returned gate file exists, then `b` marks the handoff."""
    gate = cluster.root / "gate"
    cluster.chain("far", {"max_rounds": 1, "links": [
        {"name": "a", "command": holding_command(gate)},
        {"name": "b", "command": mark_link("b", cluster.root / "spans")}]})
    return gate


async def test_a_worker_killed_mid_link_is_detected_and_the_link_finishes_on_the_other(cluster: Cluster) -> None:
    """SIGKILL of the worker running link a: within the detection bound a worker_lost event names
    it and the other worker; the link runs again there from its input handoff; each (round, link)
    is committed once and the event is told once.
    Broken once: `await self.app.job_manager.retry_job(lost)` removed in remote.py → the link never
    runs again (timed out, red)."""
    gate = held_chain(cluster)
    first = await cluster.start_worker("buildbox", max_links=1)
    async with serving(cluster) as (engine, executor):
        run_id = await engine.start_chain("far")
        agent_started = cluster.homes["buildbox"] / "state" / "far"
        await until("link a to start on buildbox", lambda: started(gate))
        await cluster.start_worker("laptop", max_links=1)
        killed_at = time.monotonic()
        first.send_signal(signal.SIGKILL)
        first.wait()
        gate.touch()  # the orphaned agent and the retried one may both end now; one commits
        outcome = await asyncio.wait_for(engine.wait("far"), 30)
        elapsed = time.monotonic() - killed_at
        assert outcome.status == "COMPLETED", outcome
        assert await executor.db.committed_count(run_id) == [(1, 0, 1), (1, 1, 1)]
        lost = [e for e in await engine.store.run_events(run_id) if e.kind == "worker_lost"]
        assert [(e.data["worker"], e.data["link"], e.data["retry_on"]) for e in lost] == [("buildbox", "a", "laptop")]
        # Every notification once: the chat's notes are sent from these events, one per event.
        told = [(e.kind, e.data.get("link")) for e in await engine.store.run_events(run_id)
                if e.kind in ("link_finished", "run_finished")]
        assert told == [("link_finished", "a"), ("link_finished", "b"), ("run_finished", None)], told
        assert elapsed < LOST_AFTER_S + 2 * HEARTBEAT_S + 5, elapsed
        print(f"SIGKILL of a worker to the run's end on the other: {elapsed:.2f} s "
              f"(bound {LOST_AFTER_S + 2 * HEARTBEAT_S:.1f} s + the link)")
    assert agent_started.exists()
    assert handoff(cluster.serve_home, "far")[-1] == "laptop b"


async def test_a_worker_stopped_mid_link_hands_it_to_the_other(cluster: Cluster) -> None:
    """SIGTERM of the worker running link a (LLMAUTO_ON_SHUTDOWN=interrupt, the default): it
    kills its agent and commits nothing; serve puts the job back in the queue, tells the chat,
    and the other worker runs it from the same input handoff.
    Broken once each: `if context.abort_reason() is AbortReason.USER_REQUEST:` → `if True:` in
    worker.py → the stopped worker commits `killed`, link a runs again as attempt 2 (two commits
    for it, red); `current[0] = await self._defer(ctx, job)` and its `continue` → `pass` in
    RemoteExecutor._wait → nobody runs link a again (timed out, red)."""
    gate = held_chain(cluster)
    first = await cluster.start_worker("buildbox", max_links=1)
    async with serving(cluster) as (engine, executor):
        run_id = await engine.start_chain("far")
        await until("link a to start on buildbox", lambda: started(gate))
        await cluster.start_worker("laptop", max_links=1)
        started_marker = gate.with_name(gate.name + ".started")
        started_marker.unlink()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0
        await until("link a to start again on laptop", lambda: started(gate))
        gate.touch()
        outcome = await asyncio.wait_for(engine.wait("far"), 30)
        assert outcome.status == "COMPLETED", outcome
        assert await executor.db.committed_count(run_id) == [(1, 0, 1), (1, 1, 1)]
        lost = [e for e in await engine.store.run_events(run_id) if e.kind == "worker_lost"]
        assert [(e.data["worker"], e.data["link"], e.data["retry_on"]) for e in lost] == [("buildbox", "a", "laptop")]
        links = [(r.link, r.attempt, r.error_class) for r in await engine.store.run_link_runs(run_id)]
        assert links == [("a", 1, "ok"), ("b", 1, "ok")], links
    assert handoff(cluster.serve_home, "far")[-1] == "laptop b"


async def test_a_routed_hop_back_runs_the_link_again_remotely(cluster: Cluster) -> None:
    """worker, reviewer (NEEDS_FIX), worker again in the same round, reviewer (APPROVED): the
    second visit of the worker (same round, link index and attempt number) is a new job, not a
    replay of the first one's committed result.
    Broken once: `visit=link_run_id` → `visit=0` in RemoteExecutor.__call__ → the second visit
    gets the first's outcome (its handoff, without the verdict): the bounce guard blocks the
    chain (red)."""
    spans = cluster.root / "spans"
    review = ("import os; p = os.environ['LLMAUTO_HANDOFF']; n = open(p).read().count('VERDICT')\n"
              "open(p, 'a').write('VERDICT: ' + ('NEEDS_FIX' if n == 0 else 'APPROVED') + '\\n')")
    cluster.chain("loop", {"mode": "conditional", "max_rounds": 1, "links": [
        {"name": "worker", "command": mark_link("w", spans)},
        {"name": "reviewer", "role": "reviewer", "command": [sys.executable, "-c", review],
         "routes": {"NEEDS_FIX": "worker", "APPROVED": "next"}}]})
    await cluster.start_worker("laptop")
    async with serving(cluster) as (engine, _executor):
        await engine.start_chain("loop")
        outcome = await asyncio.wait_for(engine.wait("loop"), 30)
    assert outcome.status == "COMPLETED", outcome
    lines = [line for line in handoff(cluster.serve_home, "loop") if line.startswith(("laptop", "VERDICT"))]
    assert lines == ["laptop w", "VERDICT: NEEDS_FIX", "laptop w", "VERDICT: APPROVED"], lines


async def test_a_claude_link_on_a_worker_gets_its_files_and_the_runs_budget(cluster: Cluster) -> None:
    """A claude link (the fake claude) on a worker: its prompt names the worker's handoff, not
    serve's, and each call is capped at what the run may still spend (max_cost_usd 1.0, 0.4 a
    call: 1.0, then 0.6, then 0.2; then the budget stops the chain).
    Broken once each: `BudgetedRunner(self.w.runner, ...)` → `self.w.runner` in worker.py → no
    --max-budget-usd (red); `prompt=job.localized_prompt(values)` → `prompt=job.prompt` → the
    prompt names serve's handoff (red)."""
    log = cluster.root / "claude.jsonl"
    scenario = cluster.root / "scenario.json"
    scenario.write_text(json.dumps({"default": {"cost": 0.4, "result": "done"}}))
    cluster.extra_env = {"CLAUDE_BIN": str(ROOT / "tests" / "fakes" / "bin" / "claude"),
                         "FAKE_CLAUDE_LOG": str(log), "FAKE_CLAUDE_SCENARIO": str(scenario),
                         "FAKE_CLAUDE_PYTHON": sys.executable, "CLAUDE_CONFIG_DIR": str(cluster.root / "cc")}
    cluster.chain("paid", {"max_rounds": 5, "max_cost_usd": 1.0, "links": [
        {"name": "w", "model": "claude-sonnet-4-6", "prompt": "Read {HANDOFF} and go on."}]})
    await cluster.start_worker("laptop")
    async with serving(cluster) as (engine, _executor):
        await engine.start_chain("paid")
        outcome = await asyncio.wait_for(engine.wait("paid"), 60)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    budgets = [float(c["argv"][c["argv"].index("--max-budget-usd") + 1]) for c in calls]
    assert budgets == pytest.approx([1.0, 0.6, 0.2]), (budgets, outcome)
    mine = str(cluster.homes["laptop"] / "state" / "paid" / "handoff.md")
    assert all(f"Read {mine} and go on." in c["prompt"] for c in calls), calls[0]["prompt"]


async def test_stop_now_reaches_a_remote_link_within_two_seconds(cluster: Cluster) -> None:
    """stop-now of a link held on a worker: the run ends (the link killed, its result committed)
    within 2 s. Broken once: `await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)`
    removed from RemoteExecutor._wait → the run waits for the held agent (red, timed out)."""
    gate = cluster.root / "gate"
    cluster.chain("held", {"max_rounds": 1, "links": [{"name": "a", "command": holding_command(gate)}]})
    await cluster.start_worker("buildbox")
    async with serving(cluster) as (engine, _executor):
        await engine.start_chain("held")
        await until("link a to start on the worker", lambda: started(gate))
        t0 = time.monotonic()
        await engine.stop_chain("held", "enough", now=True, by="test")
        outcome = await asyncio.wait_for(engine.wait("held"), 10)
        took = time.monotonic() - t0
    gate.touch()
    assert outcome.status == "STOPPED", outcome
    assert took < 2.0, took
    print(f"stop-now of a remote link: {took * 1000:.0f} ms")
