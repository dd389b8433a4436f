"""A crash while a tool call waits for approval (#11 durability): the foreground `chain start`
holding the request is SIGKILLed. The fake claude's stdin closes, so it fails closed (the call
never runs); the next start finds the request still pending in the store, marks it expired (an
`approval_decided` event the bot turns into an edit of the question), and the link runs again and
asks anew. Checked by breaking engine.leases.recover (no `expire_approvals` call): the old request
stays pending (red)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from engine import events as ev
from engine.store import Store
from tests.conftest import write_chain
from tests.helpers import Cli


async def test_a_request_pending_at_a_crash_expires_and_the_link_asks_again(cli: Cli, home: Path) -> None:
    write_chain(home, "ship", {"mode": "once", "approve": {"ask": ["Bash(touch:*)"]},
                               "links": [{"name": "pusher", "model": "claude-sonnet-4-6", "prompt": "Push it."}]})
    cli.scenario_is({"default": {"tools": [{"name": "Bash", "input": {"command": "touch shipped.txt"}, "exec": True}]}})
    runner = cli.spawn("chain", "start", "ship")
    db = home / "state" / "llmauto.db"
    while not db.exists():
        await asyncio.sleep(0.02)
    async with Store.open(db) as store:
        while not await store.pending_approvals("ship"):
            await asyncio.sleep(0.05)
        first = (await store.pending_approvals("ship"))[0]
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=10)
        assert (first.tool, first.tool_input["command"]) == ("Bash", "touch shipped.txt")

        again = cli.spawn("chain", "start", "ship")
        while True:
            pending = await store.pending_approvals("ship")
            if pending and pending[0].id != first.id:
                break
            await asyncio.sleep(0.05)
        old = await store.approval(first.id)
        assert old is not None and (old.status, old.decided_by) == ("expired", "llmauto")
        assert "interrupted" in (old.message or "")
        events = [e for e in await store.events_after(0, 1000) if e.kind == ev.APPROVAL_DECIDED]
        assert [(e.data["id"], e.data["status"]) for e in events] == [(first.id, "expired")]
        assert not (home / "shipped.txt").exists()  # the agent failed closed: nothing ran
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
