"""The distributed mode's parts one by one (issue #15): the job and outcome values, the
exactly-once commit on a real PostgreSQL, `runs_on` in chain files, the chat's `worker_lost`
notice, `llmauto worker list` and the bad-usage errors of `llmauto worker`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import render
from engine import event_types as et
from engine.chains import load_chain
from engine.errors import InvalidChain
from engine.linkjob import JobKey, LinkJob, Outcome
from engine.permissions import Refusal
from engine.queue_db import QueueDb
from engine.stream import ErrorClass, LinkResult
from engine.worker import prepare
from tests.helpers import Cli

KEY = JobKey(run_id=7, round_no=2, index=1, attempt=1)


def job(prompt: str = "read /srv/serve/state/c/handoff.md in /srv/serve") -> LinkJob:
    return LinkJob(chain="c", key=KEY, link="rev", model="m", prompt=prompt, timeout_s=60.0, handoff="# h\n",
                   status="RUNNING", values={"HOME": "/srv/serve", "BASH_HOME": "/srv/serve",
                                             "STATE_DIR": "/srv/serve/state/c", "HANDOFF": "/srv/serve/state/c/handoff.md"})


def test_a_job_and_an_outcome_survive_json() -> None:
    """Broken once: `raw["refusals"] = tuple(...)` removed from Outcome.from_json → the refusals
    come back as dicts (red)."""
    assert LinkJob.from_json(json.loads(json.dumps(job().to_json()))) == job()
    result = LinkResult(error_class=ErrorClass.TIMEOUT, text="t", cost_usd=0.5, turns=3, error_message="slow",
                        refusals=(Refusal(tool="Bash", target="rm -rf /", message="no"),), permission_denials=("Bash",))
    outcome = Outcome(result=result, handoff="# after\n", status="BLOCKED", worker="laptop")
    back = Outcome.from_json(json.loads(json.dumps(outcome.to_json())))
    assert back == outcome


def test_the_prompt_names_the_workers_own_files() -> None:
    """serve's paths in the prompt become the worker's (the handoff before its state folder).
    Broken once: `sorted(pairs, ...)` → `reversed(pairs)` (HOME replaced first) → the odd layout
    below gets /w/state/c/handoff.md instead of /x/h.md (red)."""
    mine = {"HOME": "/w", "BASH_HOME": "/w", "STATE_DIR": "/w/state/c", "HANDOFF": "/w/state/c/handoff.md"}
    assert job().localized_prompt(mine) == "read /w/state/c/handoff.md in /w"
    odd = job("see /srv/serve/state/c/handoff.md")
    odd = LinkJob.from_json({**odd.to_json(), "values": {**odd.values, "HANDOFF": "/srv/serve/state/c/handoff.md",
                                                          "STATE_DIR": "/srv/serve/state/c"}})
    assert odd.localized_prompt({**mine, "HANDOFF": "/x/h.md", "STATE_DIR": "/x"}) == "see /x/h.md"


async def test_an_attempt_commits_once(pg_url: str) -> None:
    """The second commit of one key (a redelivered job) changes nothing and says so.
    Broken once: `ON CONFLICT DO NOTHING` dropped from commit_outcome → UniqueViolation (red)."""
    async with QueueDb.open(pg_url) as db:
        await prepare(db)
        await prepare(db)  # idempotent
        first = Outcome(result=LinkResult(error_class=ErrorClass.OK, text="one"), handoff="a", status=None, worker="w1")
        second = Outcome(result=LinkResult(error_class=ErrorClass.OK, text="two"), handoff="b", status=None, worker="w2")
        assert await db.commit_outcome(KEY, first) is True
        assert await db.commit_outcome(KEY, second) is False
        assert await db.outcome(KEY) == first
        assert await db.committed_count(KEY.run_id) == [(2, 1, 1)]


def test_chain_validate_shows_where_a_chain_runs(cli: Cli) -> None:
    """Broken once: the `runs on` limit removed from textview.chain_summary (red)."""
    (cli.home / "chains" / "t.json").write_text(json.dumps({"runs_on": "buildbox", "links": [{"name": "w", "command": ["true"]}]}))
    out = cli.run("chain", "validate", "t")
    assert out.returncode == 0 and "runs on buildbox" in out.stdout.splitlines()[0], out.stdout


def test_runs_on_is_a_queue_name(home: Path) -> None:
    """Broken once: the QUEUE_NAME check in _Loader.runs_on removed → "a b" accepted (red)."""
    (home / "chains" / "t.json").write_text(json.dumps({"runs_on": "buildbox", "links": [{"name": "w", "command": ["true"]}]}))
    assert load_chain(home, "t").runs_on == "buildbox"
    for bad in ("a b", "", 3):
        (home / "chains" / "t.json").write_text(json.dumps({"runs_on": bad, "links": [{"name": "w", "command": ["true"]}]}))
        with pytest.raises(InvalidChain) as info:
            load_chain(home, "t")
        assert any("runs_on" in p for p in info.value.problems)


def test_the_chat_is_told_which_worker_was_lost_and_where_the_link_goes() -> None:
    """Broken once: the WORKER_LOST branch of render.event_text removed → None (red)."""
    lost = et.WorkerLost(worker="buildbox", link="reviewer", round=3, retry_on="laptop").to_data()
    assert render.event_text("c", "worker_lost", lost) == (
        "🛰 <b>c</b>: worker buildbox lost during reviewer; retrying on laptop")
    nowhere = et.WorkerLost(worker="buildbox", link="reviewer").to_data()
    assert "retrying on the next free worker" in (render.event_text("c", "worker_lost", nowhere) or "")


async def test_worker_list_and_usage_errors(cli: Cli, pg_url: str) -> None:
    """`llmauto worker list` shows each worker; bad --queues, no queue URL: exit 2 with the reason.
    Broken once: the QUEUE_NAME check in worker_cli.options removed → the worker starts and runs
    (the run times out, red)."""
    async with QueueDb.open(pg_url) as db:
        await prepare(db)
        await db.register_worker("buildbox", "bb.example", ["buildbox", "any"], 3)
        await db.worker_heartbeat("buildbox", ["c/reviewer"])
    cli.env["LLMAUTO_QUEUE_URL"] = pg_url
    out = cli.run("worker", "list")
    assert out.returncode == 0, out.stderr
    assert "buildbox" in out.stdout and "host bb.example" in out.stdout and "queues buildbox,any" in out.stdout
    assert "1/3 running (c/reviewer)" in out.stdout and " up " in out.stdout
    bad = cli.run("worker", "--queues", "a b")
    assert bad.returncode == 2 and "--queues" in bad.stderr
    del cli.env["LLMAUTO_QUEUE_URL"]
    none = cli.run("worker")
    assert none.returncode == 2 and "LLMAUTO_QUEUE_URL" in none.stderr


async def test_serve_aborts_the_jobs_an_earlier_serve_left(pg_url: str) -> None:
    """A job enqueued by a serve that died is aborted when the next serve opens the queue (its run
    resumes as a new run, which enqueues the link again).
    Broken once: `await executor.abort_orphans()` removed from RemoteExecutor.open → the job is
    still todo (red)."""
    from procrastinate.jobs import Status

    from engine.dist_settings import DistSettings
    from engine.linkjob import TASK_NAME
    from engine.remote import RemoteExecutor

    dist = DistSettings(queue_url=pg_url)
    async with RemoteExecutor.open(dist) as first:
        job_id = await first.app.configure_task(TASK_NAME, queue="any").defer_async(job=job().to_json())
    async with RemoteExecutor.open(dist) as second:
        assert await second.app.job_manager.get_job_status_async(job_id) is Status.CANCELLED
