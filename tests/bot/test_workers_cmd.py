"""`/workers` and the workers in `/status` (issue #15), with `serve --with-worker` on a real
PostgreSQL: serve enqueues the link, its own worker runs it, the chat sees the worker."""

from __future__ import annotations

import socket
from pathlib import Path

from bot.render import workers_text
from engine.queue_db import WorkerRow
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, VIEWER, append_line, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi


async def test_serve_with_worker_runs_links_and_shows_its_worker(home: Path, fake_api: FakeBotApi, pg_url: str) -> None:
    """Broken once each: `workers=workers` dropped from BotHandlers in serve.py → /workers answers
    "No workers" (red); the `+ workers` of cmd_status removed → /status has no Workers block (red)."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}),
                             viewer_user_ids=frozenset({VIEWER}), chat_id=CHAT, api_base_url=fake_api.base_url,
                             environ={"LLMAUTO_QUEUE_URL": pg_url, "LLMAUTO_WORKER_HEARTBEAT_S": "0.5",
                                      "LLMAUTO_WORKER_LOST_AFTER_S": "5"})
    write_chain(home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("ran remotely")}]})
    async with serving(fake_api, settings, with_worker=True) as served:
        await served.answer("/start_chain alpha", "Started")
        await fake_api.wait_for_message(CHAT, "alpha COMPLETED:")
        name = socket.gethostname().split(".")[0]
        workers = await served.answer("/workers", "Workers")
        assert name in workers.plain and "queues any" in workers.plain and "(up)" in workers.plain
        status = await served.answer("/status", "Workers")
        assert name in status.plain
    assert (home / "state" / "alpha" / "handoff.md").read_text().endswith("ran remotely\n")


def test_workers_text_tells_up_lost_and_stopped() -> None:
    """Broken once: `w.age_s >= lost_after_s` → `w.age_s > 10 * lost_after_s` in workers_text →
    the silent worker shows up (red)."""
    def row(name: str, age: float, stopped: bool = False) -> WorkerRow:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        return WorkerRow(name=name, host="h", queues=("any",), max_links=2, running=1, running_links="c/w",
                         started_at=now, heartbeat_at=now, stopped=stopped, age_s=age)

    text = workers_text([row("a", 1), row("b", 30), row("c", 1, stopped=True)], lost_after_s=20)
    assert "🟢 <b>a</b> (up)" in text and "🔴 <b>b</b> (lost)" in text and "⚪ <b>c</b> (stopped)" in text
    assert "1/2 running: c/w" in text
    assert "none yet" in workers_text([], lost_after_s=20)
