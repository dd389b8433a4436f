"""Whole runs with the store on PostgreSQL (issue #15): the CLI as users run it, with
`LLMAUTO_DATABASE_URL` set, and `serve` sending through the outbox. The store's operations one by
one are in tests/test_store_backends.py; these check that the processes find and share the server,
and that the home's SQLite file is never created meanwhile."""

from __future__ import annotations

import sys

import pytest

from bot.outbox_store import NewMessage
from tests.bot.conftest import CHAT, OPERATOR, TOKEN, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi
from tests.helpers import Cli

pytestmark = pytest.mark.postgres

LOOP = {
    "description": "two links",
    "max_rounds": 1,
    "links": [
        {"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work on {HANDOFF}"},
        {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": "review {HANDOFF}"},
    ],
}


def test_a_chain_runs_resets_and_is_scheduled_on_postgres(cli: Cli, pg_url: str) -> None:
    """chain start (the fake claude), status, log, reset, schedule add/list: all on the server,
    no SQLite file in the home. Broken once: `url=settings.database_url` dropped from
    Store.open_settings: the CLI wrote state/llmauto.db and the second home saw nothing."""
    cli.env["LLMAUTO_DATABASE_URL"] = pg_url
    write_chain(cli.home, "pg", LOOP)
    cli.scenario_is({})
    out = cli.run("chain", "start", "pg")
    assert out.returncode == 0, out.stderr
    status = cli.run("chain", "status", "pg").stdout
    assert "pg: COMPLETED" in status and "rounds done: 1 of 1" in status
    assert cli.run("chain", "log", "pg", "10").stdout.count("worker") == 1
    assert "reset" in cli.run("chain", "reset", "pg").stdout
    assert "pg: READY" in cli.run("chain", "status", "pg").stdout
    added = cli.run("schedule", "add", "pg", "0 2 * * *")
    assert added.returncode == 0, added.stderr
    assert "0 2 * * *" in cli.run("schedule", "list").stdout
    assert not (cli.home / "state" / "llmauto.db").exists()


def test_a_bad_or_unreachable_database_url_is_a_clear_error(cli: Cli) -> None:
    """Exit 2 for a URL that is not PostgreSQL's, 1 for a server that does not answer; the message
    names LLMAUTO_DATABASE_URL and never the password. Broken once: the ConfigError check in
    Settings.load removed: the mysql URL reached psycopg's connect (exit 1, not 2)."""
    write_chain(cli.home, "pg", LOOP)
    cli.env["LLMAUTO_DATABASE_URL"] = "mysql://me:hunter2-secret@db/x"
    bad = cli.run("chain", "status", "pg")
    assert bad.returncode == 2 and "LLMAUTO_DATABASE_URL" in bad.stderr and "hunter2" not in bad.stderr + bad.stdout
    cli.env["LLMAUTO_DATABASE_URL"] = "postgresql://me:hunter2-secret@127.0.0.1:1/x?connect_timeout=2"
    down = cli.run("chain", "status", "pg")
    assert down.returncode == 1 and "LLMAUTO_DATABASE_URL" in down.stderr and "Traceback" not in down.stderr
    assert "hunter2" not in down.stderr + down.stdout and "me:***@127.0.0.1:1" in down.stderr


async def test_serve_on_postgres_runs_a_chain_and_sends_through_the_outbox(pg_url: str, tmp_path: object) -> None:
    """`serve` with the store on the server: /start_chain runs a chain, its end reaches the chat,
    a queued outbox row is sent. Broken once: `url=settings.database_url` dropped from
    Store.open_settings: serve made state/llmauto.db (the last assert)."""
    from pathlib import Path

    home = Path(str(tmp_path)) / "home"
    for sub in ("chains", "prompts", "state"):
        (home / sub).mkdir(parents=True)
    code = "import os; open(os.environ['LLMAUTO_HANDOFF'], 'a').write('x\\n')"
    write_chain(home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", code]}]})
    async with FakeBotApi(TOKEN) as api:
        api.add_chat(CHAT)
        settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                                 api_base_url=api.base_url, database_url=pg_url)
        async with serving(api, settings) as served:
            await served.answer("/start_chain alpha", "Started")
            await api.wait_for_message(CHAT, "alpha COMPLETED")
            sender = served.parts["sender"]
            await sender.outbox.enqueue_now([NewMessage(chat_id=CHAT, kind="note", text="queued on postgres")])
            sender.wake.set()
            await api.wait_for_message(CHAT, "queued on postgres")
    assert not (home / "state" / "llmauto.db").exists()
