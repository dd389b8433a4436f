"""A real `llmauto serve` process SIGKILLed mid-link, then started again.

`serve` runs as a subprocess (`python -m engine serve`) against the fake Bot API on 127.0.0.1 (in
this test's loop) and the fake claude. The operator starts the chain from the chat; once the link
runs and a notification reached the chat, serve is killed with SIGKILL: no shutdown code runs.
The next serve must kill the orphaned claude process group, restore the handoff the interrupted
link started from, re-run that link, count no round twice, and deliver every notification exactly
once, in order (the fake Bot API's record against the outbox).
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


async def test_sigkill_serve_mid_link_then_restart(serve_proc: ServeProcess, botapi: FakeBotApi, home: Path) -> None:
    write_chain(home, "crash", {**LOOP, "max_rounds": 2})
    serve_proc.scenario_is({"links": {
        "worker": [{"handoff": "- worker round 1\n", "handoff_mode": "append"},
                   {"hang": True, "spawn_child": True},
                   {"handoff": "- worker round 2 after recovery\n", "handoff_mode": "append"}],
        "reviewer": [{"handoff": "- reviewer round 1\n", "handoff_mode": "append"},
                     {"handoff": "- reviewer round 2\n", "handoff_mode": "append"}],
    }})
    files = ChainFiles(home / "state", "crash")
    first = serve_proc.start()
    await until_ready(botapi, first, 0)
    botapi.user_message(user_id=OPERATOR, text="/start_chain crash")

    # Round 1 done, the worker of round 2 hangs with a child in its group; a note reached the chat.
    child_file = files.dir / "fake_child.pid"
    await until("the hanging round-2 worker", child_file.exists, proc=first)

    async def hung_link() -> Any:
        async with db(home) as store:
            running = await store.running_links("crash")
            return running[0] if running and running[0].pid else None

    link = await until("the running link's pid", hung_link, proc=first)
    assert (link.round, link.link) == (2, "worker")

    async def notified() -> bool:
        rows, _ = await delivery_record(home)
        return any(r["sent_at"] is not None for r in rows)

    await until("a notification sent to the chat", notified, proc=first)
    committed = files.read_handoff().text or ""
    assert committed.endswith("- worker round 1\n- reviewer round 1\n")
    async with db(home) as store:
        st = await store.chain_state("crash")
        assert (st.round, st.rounds_counted) == (2, 1)

    first.send_signal(signal.SIGKILL)
    await exited(first, 10)
    orphan, agent = int(child_file.read_text()), link.pid
    assert not gone(orphan) and not gone(agent), "the agent's group outlives serve: the case to handle"
    files.handoff.write_text("HALF-WRITTEN by the dying agent", encoding="utf-8")

    polls = botapi.arrived.count("getUpdates")
    second = serve_proc.start()
    await until_ready(botapi, second, polls)

    assert await until("the resumed run to end", lambda: settled_status(home, "crash"), 60, proc=second) == "COMPLETED"
    await until("the orphaned agent group to be killed", lambda: gone(orphan) and gone(agent), 10)
    assert files.read_handoff().text == committed + "- worker round 2 after recovery\n- reviewer round 2\n"

    async with db(home) as store:
        rows = await store.link_runs("crash", 20)
        assert [(r.round, r.link, r.status) for r in rows] == [
            (1, "worker", "done"), (1, "reviewer", "done"), (2, "worker", "interrupted"),
            (2, "worker", "done"), (2, "reviewer", "done")]
        st = await store.chain_state("crash")
        assert (st.rounds_counted, st.round) == (2, 3)
        runs = await store.last_runs("crash")
        assert [(r.status, r.origin) for r in runs] == [("COMPLETED", "recovery"), ("INTERRUPTED", "telegram")]
    calls = [c["link"] for c in read_log(serve_proc.claude_log)]
    assert calls == ["worker", "reviewer", "worker", "worker", "reviewer"]

    # Every notification once, in order: wait until the outbox is drained, then compare.
    async def drained() -> tuple[list[Any], dict[int, str]] | None:
        rows, kinds = await delivery_record(home)
        done = rows and all(r["sent_at"] is not None for r in rows) and any(r["kind"] == "report" for r in rows)
        return (rows, kinds) if done else None

    rows, kinds = await until("the outbox to drain", drained, 30, proc=second)
    texts = [m.plain for m in botapi.messages(CHAT)]
    assert any("was interrupted" in t and "resumed where it was" in t for t in texts), texts
    assert delivered_exactly_once_in_order(botapi, rows, kinds) >= 4
