"""A real `llmauto serve` stopped gracefully (SIGTERM) mid-run, then started again.

serve kills the running link, records the run INTERRUPTED and exits 0; the next serve resumes the
chain by itself (LLMAUTO_RECOVERY=auto) at the interrupted link: links that finished before the
stop are not run again, and every notification arrives once, in order.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from engine.statefiles import ChainFiles
from tests.conftest import write_chain
from tests.fakes.botapi import FakeBotApi
from tests.fakes.claude_env import read_log
from tests.faults.serve_rig import (
    CHAT,
    OPERATOR,
    ServeProcess,
    db,
    delivered_exactly_once_in_order,
    delivery_record,
    exited,
    settled_status,
    until,
    until_ready,
)
from tests.helpers import gone
from tests.test_cli import LOOP


async def test_sigterm_interrupts_the_run_and_restart_resumes_it(
    serve_proc: ServeProcess, botapi: FakeBotApi, home: Path,
) -> None:
    write_chain(home, "graceful", {**LOOP, "max_rounds": 1})
    serve_proc.scenario_is({"links": {
        "worker": [{"handoff": "- worker round 1\n", "handoff_mode": "append"}],
        "reviewer": [{"hang": True}, {"handoff": "- reviewer round 1\n", "handoff_mode": "append"}],
    }})
    files = ChainFiles(home / "state", "graceful")
    first = serve_proc.start()
    await until_ready(botapi, first, 0)
    botapi.user_message(user_id=OPERATOR, text="/start_chain graceful")

    async def reviewer_running() -> Any:
        async with db(home) as store:
            running = await store.running_links("graceful")
            return running[0] if running and running[0].pid and running[0].link == "reviewer" else None

    link = await until("the reviewer's process", reviewer_running, proc=first)
    # The fake logs a call once it took its behaviour: from then on the reviewer hangs.
    await until("the hanging reviewer", lambda: [c["link"] for c in read_log(serve_proc.claude_log)] == [
        "worker", "reviewer"], proc=first)
    after_worker = files.read_handoff().text or ""
    assert after_worker.endswith("- worker round 1\n")

    first.send_signal(signal.SIGTERM)
    assert await exited(first) == 0, serve_proc.stderr(0)
    assert gone(link.pid), "a graceful stop kills the running link"
    async with db(home) as store:
        runs = await store.last_runs("graceful")
        assert [r.status for r in runs] == ["INTERRUPTED"]
        st = await store.chain_state("graceful")
        assert (st.round, st.next_link, st.rounds_counted) == (1, 1, 0)
        assert [(r.link, r.status) for r in await store.link_runs("graceful", 10)] == [
            ("worker", "done"), ("reviewer", "interrupted")]
    assert files.read_handoff().text == after_worker

    polls = botapi.arrived.count("getUpdates")
    second = serve_proc.start()
    await until_ready(botapi, second, polls)

    assert await until("the resumed run to end", lambda: settled_status(home, "graceful"), 60, proc=second) == "COMPLETED"
    assert files.read_handoff().text == after_worker + "- reviewer round 1\n"
    assert [c["link"] for c in read_log(serve_proc.claude_log)] == ["worker", "reviewer", "reviewer"]
    async with db(home) as store:
        assert [(r.link, r.status) for r in await store.link_runs("graceful", 10)] == [
            ("worker", "done"), ("reviewer", "interrupted"), ("reviewer", "done")]
        st = await store.chain_state("graceful")
        assert (st.rounds_counted, st.round) == (1, 2)
        runs = await store.last_runs("graceful")
        assert [(r.status, r.origin) for r in runs] == [("COMPLETED", "recovery"), ("INTERRUPTED", "telegram")]

    async def drained() -> tuple[list[Any], dict[int, str]] | None:
        rows, kinds = await delivery_record(home)
        done = rows and all(r["sent_at"] is not None for r in rows) and any(r["kind"] == "report" for r in rows)
        return (rows, kinds) if done else None

    rows, kinds = await until("the outbox to drain", drained, 30, proc=second)
    texts = [m.plain for m in botapi.messages(CHAT)]
    assert any("was interrupted" in t and "resumed where it was" in t for t in texts), texts
    assert delivered_exactly_once_in_order(botapi, rows, kinds) >= 3
