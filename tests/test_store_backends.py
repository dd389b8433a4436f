"""The store's operations on both backends (issue #15): the same calls, the same answers, on the
home's SQLite file and on a real PostgreSQL (tests/pg.py). The tour calls every public Store
method and checks, on PostgreSQL, that none was left out; the rest are what PostgreSQL must do
that SQLite did by itself (one writer at a time, `lastrowid`, `?` inside literals, ids past 2^31,
NUL characters, the schema bookkeeping, `data_version`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.outbox_store import NewMessage, OutboxStore
from engine.clock import ManualClock
from engine.errors import StoreError
from engine.loopless import run_loopless
from engine.migrations import MIGRATIONS
from engine.settings import Settings
from engine.store import ChainState, NewEvent, Store
from tests.backends import Backend, backend, public_methods, recorded, tracing

__all__ = ["backend"]  # the fixture, used by name

SECRET = "s3cret-value-xyz"
BIG_CHAT = -1002233445566  # a Telegram supergroup id: more than 32 bits


async def test_every_public_method_gives_the_same_answers(backend: Backend) -> None:
    """Every public Store method once, with what it must answer. On PostgreSQL, also that every
    public method ran (`recorded`): a method added to Store without a line here fails it.
    Broken once: `RETURNING id` dropped in engine/pg_sql.py (Translator._statement): begin_run's
    `run_id` was None (assert in Store.begin_run) on postgres only."""
    await _tour(backend)


def test_every_public_method_runs_without_an_event_loop(tmp_path: Path) -> None:
    """The same tour on a blocking SQLite store (what one-shot CLI commands use), driven by
    `run_loopless` with no event loop at all: every method completes without suspending, and
    answers as on the other backends.
    Broken once: `self._settle = settle` for every database in Store.__init__ (engine/store.py):
    the first transaction waited on a shielded future: NeedsEventLoop."""
    run_loopless(_tour(Backend("sqlite", tmp_path / "state" / "llmauto.db", None), blocking=True))


async def test_a_blocking_store_keeps_the_transactions_of_tasks_apart(tmp_path: Path) -> None:
    """A blocking store inside a running loop (a foreground `chain start`): a transaction whose
    body awaits something else lets no other task's transaction in on the same connection; both
    commit whole, one after the other.
    Broken once: the `elif _loop_running():` lock dropped from Store.__init__ (engine/store.py):
    the second task's BEGIN failed ("cannot start a transaction within a transaction")."""
    order: list[str] = []

    async def writer(store: Store, name: str) -> None:
        async with store.transaction() as db:
            order.append(f"{name} in")
            await db.execute("INSERT INTO cursors (name, event_id) VALUES (?, ?)", (name, 1))
            await asyncio.sleep(0)  # the other task runs meanwhile
            await db.execute("UPDATE cursors SET event_id = 2 WHERE name = ?", (name,))
            order.append(f"{name} out")

    async with Store.open(tmp_path / "state" / "llmauto.db", blocking=True) as store:
        await asyncio.gather(writer(store, "a"), writer(store, "b"))
        rows = await store.query("SELECT name, event_id FROM cursors ORDER BY name")
    assert [tuple(r) for r in rows] == [("a", 2), ("b", 2)]
    assert order == ["a in", "a out", "b in", "b out"]


async def _tour(backend: Backend, *, blocking: bool = False) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    async with backend.open(clock=clock, secrets=[SECRET], **({"blocking": True} if blocking else {})) as raw:
        s = tracing(raw, backend.name)
        assert s.stamp() == "2026-03-01T12:00:00.000+00:00"
        v0 = await s.data_version()
        assert await s.last_event_id() == 0
        evs = await s.add_events("c", None, [NewEvent("hello", {"token": SECRET, "n": 1})])
        assert evs[0].data == {"token": "[redacted]", "n": 1}
        assert [e.kind for e in await s.events_after(0)] == ["hello"]
        assert await s.last_event_id() == evs[0].id

        state = ChainState(chain="c", round=2)
        run_id, run_evs = await s.begin_run("c", origin="cli", chat_id=BIG_CHAT, requested_by="me", owner="o1",
                                            state=state, evs=[NewEvent("run_started", {})])
        assert isinstance(run_id, int) and run_evs[0].run_id == run_id
        assert (await s.chain_state("c")).status == "RUNNING"
        assert (await s.chain_state("none")).status == "READY"
        assert set(await s.all_chain_states()) == {"c"}
        assert [r.id for r in await s.open_runs()] == [run_id]
        run = await s.run(run_id)
        assert run is not None and run.chat_id == BIG_CHAT
        assert [r.id for r in await s.last_runs()] == [run_id] == [r.id for r in await s.last_runs("c")]

        link_id, _ = await s.start_link(run_id=run_id, chain="c", round_no=2, index=0, link="a", role="worker",
                                        model=None, attempt=1, evs=[NewEvent("link_started", {})])
        await s.set_link_process(link_id, 4242, "99")
        await s.set_link_progress(link_id, "Bash", 3)
        assert [(r.pid, r.current_tool, r.turns) for r in await s.running_links()] == [(4242, "Bash", 3)]
        assert [r.id for r in await s.running_links("c")] == [link_id]
        ov = await s.overview()
        assert ov.running["c"].id == link_id and ov.last_run["c"].id == run_id
        assert (await s.overview("c")).last_link["c"].id == link_id
        await s.finish_link(link_id, status="ended", model="opus", error_class="", error_message=f"x {SECRET}",
                            duration_s=2.5, cost_usd=0.25, input_tokens=10, output_tokens=20, turns=4,
                            session_id="sess", exit_code=0, excerpt="ok\x00nul")
        assert [r.id for r in await s.unfinished_links("c")] == [link_id]
        await s.commit_link(state=ChainState(chain="c", round=2, next_link=1), run_id=run_id, cost_delta=0.25,
                            ran=True, passes=1, handoff=(link_id, 2, "a", "# handoff\nv1\n"),
                            evs=[NewEvent("link_done", {})], link_run_id=link_id, outcome=("", "fine"),
                            refusals="Bash ×1")
        links = await s.link_runs("c")
        assert [(r.status, r.error_message, r.refusals, r.model) for r in links] == [("done", "fine", "Bash ×1", "opus")]
        assert links[0].result_excerpt in ("ok\x00nul", "ok\ufffdnul")  # PostgreSQL keeps no NUL in text
        assert (await s.run(run_id)).links_run == 1  # type: ignore[union-attr]
        assert await s.typical_link_seconds("c") == 2.5
        skipped = await s.skip_link(run_id=run_id, chain="c", round_no=2, index=1, link="b", role="worker",
                                    model=None, reason="not assigned")
        assert [r.status for r in await s.run_link_runs(run_id)] == ["done", "skipped"]
        await s.set_link_status(skipped, "running")
        await s.mark_link_interrupted(skipped)
        assert (await s.link_runs("c"))[-1].status == "interrupted"

        await s.save_handoff("c", run_id, None, 2, "(start)", "# handoff\nv1\n")  # the same text: a repeat
        await s.save_handoff("c", run_id, skipped, 3, "b", "# handoff\nv2\n")
        assert [v.content for v in await s.handoff_versions("c")] == ["# handoff\nv2\n", "# handoff\nv1\n"]
        assert (await s.run_final_handoff(run_id)).content == "# handoff\nv2\n"  # type: ignore[union-attr]
        assert (await s.handoff_after_round("c", 2)).content == "# handoff\nv1\n"  # type: ignore[union-attr]
        assert (await s.handoff_before("c", skipped)).content == "# handoff\nv1\n"  # type: ignore[union-attr]

        await s.set_session("c", "a", "sess-1", "/w")
        await s.set_session("c", "a", "sess-2", "/w")  # replaced
        assert await s.session("c", "a", "/w") == "sess-2" and await s.session("c", "a", "/other") is None
        await s.set_session("c", "a", None, "/w")
        assert await s.session("c", "a", "/w") is None

        assert await s.try_acquire_lease("c", owner="o1", host="h", pid=1, holder_dead=False, pid_start="7") is None
        held = await s.try_acquire_lease("c", owner="o2", host="h", pid=2, holder_dead=False)
        assert held is not None and held.owner == "o1"
        assert await s.try_acquire_lease("c", owner="o2", host="h", pid=2, holder_dead=True) is None
        clock.advance(5)
        await s.heartbeat("o2")
        lease = await s.lease("c")
        assert lease is not None and lease.heartbeat_at == "2026-03-01T12:00:05.000+00:00"
        assert [x.owner for x in await s.leases()] == ["o2"]
        await s.release_lease("c", "o2")
        assert await s.lease("c") is None

        first = await s.add_control("c", "pause", "why", "me")
        assert [c.id for c in await s.take_controls(["c", "d"])] == [first]
        assert await s.take_controls(["c"]) == [] and await s.take_controls([]) == []
        await s.add_control("c", "stop", None, None)
        await s.discard_controls("c")
        assert await s.take_controls(["c"]) == []

        approval_id, aevs = await s.add_approval(
            run_id=run_id, chain="c", link_run_id=link_id, round_no=2, link="a", tool="Bash",
            tool_input={"command": f"echo {SECRET}"}, description="d", suggestions=[{"x": 1}],
            event=lambda i: NewEvent("approval_asked", {"id": i}))
        assert aevs[0].data == {"id": approval_id}
        pending = await s.pending_approvals()
        assert [a.id for a in pending] == [approval_id] == [a.id for a in await s.pending_approvals("c")]
        assert pending[0].tool_input == {"command": "echo [redacted]"}
        assert await s.decide_approval(approval_id, status="approved", by="me", message=None,
                                       evs=[NewEvent("approval_decided", {})]) is not None
        assert await s.decide_approval(approval_id, status="denied", by="me", message=None) is None
        assert (await s.approval(approval_id)).status == "approved"  # type: ignore[union-attr]
        assert [a.status for a in await s.run_approvals(run_id)] == ["approved"]

        await s.set_chain_status("c", "PAUSED")
        assert (await s.chain_state("c")).status == "PAUSED"
        await s.put_chain_state(ChainState(chain="c", status="RUNNING", round=3), [NewEvent("state", {})], run_id)
        await s.mark_run_interrupted(run_id, [NewEvent("run_interrupted", {})])
        assert (await s.run(run_id)).status == "INTERRUPTED"  # type: ignore[union-attr]
        await s.finish_run(run_id, ChainState(chain="c"), status="STOPPED", reason="done", evs=[NewEvent("end", {})])
        assert [e.kind for e in await s.run_events(run_id)][-1] == "end"
        assert [e.kind for e in await s.chain_events("c", limit=2)] == ["run_interrupted", "end"]
        await s.reset_chain("c")
        assert await s.all_chain_states() == {}

        new_id = await s.execute("INSERT INTO cursors (name, event_id) VALUES (?, ?)", ("n", 5))
        assert new_id is not None or backend.name == "postgres"  # cursors has no id: nothing to return there
        assert [tuple(r) for r in await s.query("SELECT name, event_id FROM cursors WHERE name = ?", ("n",))] == [("n", 5)]
        async with s.transaction() as db:
            await db.execute("UPDATE cursors SET event_id = ? WHERE name = ?", (6, "n"))
        assert (await s.query("SELECT event_id FROM cursors"))[0]["event_id"] == 6
        assert await s.data_version() == v0 or backend.name == "postgres"  # SQLite: own commits do not count

        if not blocking:  # open_settings gives aiosqlite's store, which needs its loop
            async with Store.open_settings(_settings(backend)) as again:
                recorded[backend.name].add("open_settings")
                assert (await again.run(run_id)) is not None
        async with Store.open_for_cli(_settings(backend)) as again:  # blocking on SQLite only
            recorded[backend.name].add("open_for_cli")
            assert (await again.run(run_id)) is not None
    if backend.name == "postgres":
        assert public_methods() - recorded["postgres"] == set()


def _settings(backend: Backend) -> Settings:
    settings = Settings(home=backend.path.parent.parent, database_url=backend.url)
    assert settings.db_path == backend.path
    return settings


async def test_a_failed_transaction_leaves_nothing_and_the_next_one_works(backend: Backend) -> None:
    """All or nothing, and the connection usable after. Broken once: Store.transaction's rollback
    on error removed: the row stayed (SQLite) or the next BEGIN failed inside the open one (PG)."""
    async with backend.open() as s:
        with pytest.raises(RuntimeError):
            async with s.transaction() as db:
                await db.execute("INSERT INTO cursors (name, event_id) VALUES (?, ?)", ("gone", 1))
                raise RuntimeError("boom")
        assert await s.query("SELECT * FROM cursors") == []
        await s.add_events("c", None, [NewEvent("ok", {})])
        assert [e.kind for e in await s.chain_events("c")] == ["ok"]


async def test_question_marks_and_percents_inside_literals_are_text(backend: Backend) -> None:
    """`?` inside a quoted literal is not a placeholder, and `%` is not psycopg's. Broken once:
    `and not quoted` removed in pg_sql.placeholders: the literal '?' became '%s' (wrong count)."""
    async with backend.open() as s:
        await s.execute("INSERT INTO cursors (name, event_id) VALUES (?, ?)", ("a?b%", 1))
        rows = await s.query("SELECT name FROM cursors WHERE name LIKE 'a?b%' AND name <> '?' AND event_id = ?", (1,))
        assert [r["name"] for r in rows] == ["a?b%"]


async def test_outbox_round_trip(backend: Backend) -> None:
    """The bot's outbox SQL (INSERT OR IGNORE / OR REPLACE, `? = ?`, LIKE 'card:%') on both.
    Broken once: ON CONFLICT DO NOTHING dropped in pg_sql: init_cursor's second call raised a
    unique violation on postgres."""
    async with backend.open() as s:
        out = OutboxStore(s)
        await out.init_cursor("notify", 3)
        await out.init_cursor("notify", 9)
        assert await out.cursor("notify") == 3
        await out.enqueue("notify", 7, [NewMessage(chat_id=BIG_CHAT, kind="card", text="t1", card_key="card:1", run_id=None)])
        await out.enqueue_now([NewMessage(chat_id=BIG_CHAT, kind="card", text="t2", card_key="card:1")])
        pending = await out.pending()
        assert [(p.text, p.chat_id) for p in pending] == [("t2", BIG_CHAT)] and await out.pending_count() == 1
        assert await out.cursor("notify") == 7
        await out.retry_later([pending[0].id], 1.0, "later")
        assert (await out.pending())[0].attempts == 1
        await out.mark_sent(pending, 555, kind="card", chain="c", run_id=None, card_key="card:1")
        await out.mark_sent(pending, 555, kind="card", chain="c", run_id=None, card_key="card:1")  # replaced
        assert await out.pending_count() == 0 and await out.card_message("card:1") == 555
        assert not await out.card_possibly_created("card:1") and not await out.replies_waiting(BIG_CHAT)
        await out.remember(BIG_CHAT, 556, kind="reply", chain="c")
        msg = await out.message(BIG_CHAT, 556)
        assert msg is not None and msg.kind == "reply"
        assert await out.stale_cards() == []


async def test_the_migrations_run_once_and_record_the_same_version(backend: Backend) -> None:
    """Opening twice keeps the data and the schema version is the number of migrations, on both.
    Broken once: set_schema_version's UPDATE removed in db_postgres: the second open re-ran m001
    (relation "chain_state" already exists)."""
    async with backend.open() as s:
        await s.add_events("c", None, [NewEvent("kept", {})])
        assert await s._db.schema_version() == len(MIGRATIONS)
    async with backend.open() as s:
        assert [e.kind for e in await s.chain_events("c")] == ["kept"]
        assert await s._db.schema_version() == len(MIGRATIONS)


async def test_data_version_changes_when_another_connection_commits(backend: Backend) -> None:
    """The timer's "anything new?" sees another process's commit. Broken once: the counter UPDATE
    removed from PostgresDatabase.commit: the version stayed the same on postgres."""
    async with backend.open() as watcher, backend.open() as writer:
        before = await watcher.data_version()
        assert await watcher.data_version() == before
        await writer.add_events("c", None, [NewEvent("x", {})])
        assert await watcher.data_version() != before


async def test_two_connections_never_both_take_a_lease(backend: Backend) -> None:
    """Lease taking is read-then-write: with two connections racing, exactly one gets each chain.
    Broken once: the advisory lock removed from PostgresDatabase.begin: both took the lease."""
    async with backend.open() as a, backend.open() as b:
        for chain in [f"c{i}" for i in range(15)]:
            results = await asyncio.gather(
                a.try_acquire_lease(chain, owner="A", host="h", pid=1, holder_dead=False),
                b.try_acquire_lease(chain, owner="B", host="h", pid=2, holder_dead=False),
            )
            assert sorted(r is None for r in results) == [False, True], chain  # one took it, one was told
            holder = await a.lease(chain)
            loser = next(r for r in results if r is not None)
            assert holder is not None and loser.owner == holder.owner


async def test_two_connections_never_both_take_a_control_or_an_outbox_claim(backend: Backend) -> None:
    """take_controls from two processes: each control goes to exactly one of them; two schedule
    claims of one slot: one wins. Broken once: the advisory lock removed from
    PostgresDatabase.begin: the same control was taken twice."""
    from engine.schedule_book import ScheduleBook

    async with backend.open() as a, backend.open() as b:
        ids: list[int] = []
        taken: list[int] = []
        for i in range(15):
            ids.append(await a.add_control("c", "answer", str(i), None))
            got = await asyncio.gather(a.take_controls(["c"]), b.take_controls(["c"]))
            taken += [c.id for batch in got for c in batch]
        assert sorted(taken) == ids  # each taken once, none lost
        settings = Settings(home=backend.path.parent.parent)
        sid = await a.execute("INSERT INTO schedules (chain, kind, expression, enabled, created_at) "
                              "VALUES ('c', 'cron', '* * * * *', 1, 'x')")
        assert sid is not None
        when = datetime(2026, 1, 1, tzinfo=UTC)
        won = await asyncio.gather(*(ScheduleBook(x, settings).claim(sid, when) for x in (a, b, a, b)))
        assert sum(w is not None for w in won) == 1


async def test_a_bad_or_unreachable_url_is_a_clear_error_without_the_password(tmp_path: object) -> None:
    """A URL that is not PostgreSQL's, or a server that is not there: StoreError naming
    LLMAUTO_DATABASE_URL, the password masked. Broken once: dburl.mask returned the URL as given:
    the password showed in the message."""
    path = Path(str(tmp_path)) / "db"
    for url in ("mysql://u:pw-hidden-1@h/db", "postgresql://u:pw-hidden-1@127.0.0.1:1/db?connect_timeout=2"):
        with pytest.raises(StoreError) as err:
            async with Store.open(path, url=url):
                pass
        assert "LLMAUTO_DATABASE_URL" in str(err.value) and "pw-hidden-1" not in str(err.value)
        assert "***" in str(err.value)


def test_row_json_is_the_same_on_both() -> None:
    """PgRow reads like sqlite3.Row (by index, by name, `dict(row)`). Broken once: the str branch
    of PgRow.__getitem__ removed: row["a"] raised TypeError."""
    from engine.db_postgres import PgRow

    row = PgRow((1, "x"))
    row._names = {"a": 0, "b": 1}
    assert (row[0], row["b"], dict(row), json.dumps(list(row))) == (1, "x", {"a": 1, "b": "x"}, '[1, "x"]')


def test_the_sqlite_path_never_imports_psycopg(tmp_path: object) -> None:
    """Issue #14 times the CLI's start: opening the SQLite store must not load psycopg. Broken
    once: `import psycopg` added at engine/db_sqlite.py's top: psycopg was in sys.modules."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys, pathlib\n"
        "from engine.store import Store\n"
        "async def main():\n"
        f"    async with Store.open(pathlib.Path({str(tmp_path)!r}) / 'x.db') as s:\n"
        "        await s.last_event_id()\n"
        "asyncio.run(main())\n"
        "print('psycopg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("url", "masked", "password"), [
    ("postgresql://me:p%40ss-word-1@db:5432/llm", "postgresql://me:***@db:5432/llm", "p@ss-word-1"),
    ("postgres://db/llm?user=me&password=long-secret-2", "postgres://db/llm?user=me&password=***", "long-secret-2"),
    ("postgresql:///llm?host=/run/pg", "postgresql:///llm?host=/run/pg", None),
])
def test_the_url_is_told_without_its_password_and_the_password_is_a_secret(url: str, masked: str, password: str | None) -> None:
    """The password, in the netloc or the query, is masked in every text and joins the settings'
    secrets (with the whole URL), so the redactor takes it out of logs and the database. Broken
    once: the `found += [...]` line removed from Settings.secrets: the password was not a secret."""
    from engine import dburl

    assert dburl.mask(url) == masked and dburl.password(url) == password and dburl.check(url) is None
    settings = Settings.load({"LLMAUTO_DATABASE_URL": url, "LLMAUTO_ENV_FILE": "none"}, home=Path("/tmp"))
    assert settings.database_url == url and url not in repr(settings)
    assert (password in settings.secrets()) is (password is not None)
    if password is not None:
        assert url in settings.secrets()


def test_agents_never_get_the_database_url() -> None:
    """The store's URL may hold its password: agents do not get it (unless a chain's env_allow
    names it). Broken once: "LLMAUTO_DATABASE_URL" removed from claude_cli._WITHHELD_PREFIXES."""
    from engine.claude_cli import agent_env

    parent = {"PATH": "/bin", "LLMAUTO_DATABASE_URL": "postgresql://me:pw@db/x",
              "LLMAUTO_QUEUE_URL": "postgresql://me:pw@queue/x"}
    env = agent_env(parent, env_allow=None, link_env={}, llmauto_vars={"LLMAUTO_LINK": "w"})
    assert "LLMAUTO_DATABASE_URL" not in env and env["LLMAUTO_LINK"] == "w"
    assert "LLMAUTO_QUEUE_URL" not in env  # broken once: "LLMAUTO_QUEUE_URL" removed from the prefixes


def test_the_queue_urls_password_is_a_secret() -> None:
    """The distributed mode's LLMAUTO_QUEUE_URL may hold another password than the store's: it is
    a secret too, so the redactor takes it out of logs, messages and the store. Broken once: the
    queue URL left out of Settings.secrets' loop: the password was not a secret."""
    url = "postgresql://me:queue-pass-123@queue.example/llm"
    settings = Settings.load({"LLMAUTO_QUEUE_URL": url, "LLMAUTO_ENV_FILE": "none"}, home=Path("/tmp"))
    assert "queue-pass-123" in settings.secrets() and url in settings.secrets()
