"""A real `llmauto serve` process SIGKILLed mid-link, then started again.

`serve` runs as a subprocess (`python -m engine serve`) against the fake Bot API on 127.0.0.1 (in
this test's loop) and the fake claude. The operator starts the chain from the chat; once the link
runs and a notification reached the chat, serve is killed with SIGKILL: no shutdown code runs.
The next serve must kill the orphaned claude process group, restore the handoff the interrupted
link started from, re-run that link, count no round twice, and deliver every notification exactly
once, in order (the fake Bot API's record against the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import FAKE_CLAUDE, ROOT, write_chain
from tests.fakes.botapi import FakeBotApi
from tests.fakes.claude_env import read_log, write_scenario
from tests.helpers import gone
from tests.test_cli import LOOP

TOKEN = "123456:TEST-token-not-real-abcdefghijklmnopqrst"
OPERATOR = 111
CHAT = 111


class ServeProcess:
    """`python -m engine serve` for one home, talking to the fake Bot API; output goes to files
    (a pipe nobody reads would block a chatty serve)."""

    def __init__(self, home: Path, tmp: Path, api: FakeBotApi) -> None:
        self.home = home
        self.tmp = tmp
        self.scenario = tmp / "scenario.json"
        self.claude_log = tmp / "claude.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "LLMAUTO_", "FAKE_"))},
            "LLMAUTO_HOME": str(home), "CLAUDE_BIN": str(FAKE_CLAUDE), "LLMAUTO_TIMEZONE": "UTC",
            "CLAUDE_CONFIG_DIR": str(tmp / "claude-config"), "FAKE_CLAUDE_SCENARIO": str(self.scenario),
            "FAKE_CLAUDE_LOG": str(self.claude_log), "FAKE_CLAUDE_PYTHON": sys.executable,
            "PYTHONPATH": str(ROOT), "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_ALLOWED_USER_IDS": str(OPERATOR), "TELEGRAM_CHAT_ID": str(CHAT),
            "TELEGRAM_API_BASE_URL": api.base_url, "LLMAUTO_RECOVERY": "auto",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def scenario_is(self, doc: dict[str, Any]) -> None:
        write_scenario(self.scenario, doc)

    def start(self) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        with open(self.tmp / f"serve{n}.out", "wb") as out, open(self.tmp / f"serve{n}.err", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], env=self.env, cwd=self.home,
                                    stdout=out, stderr=err)
        self.procs.append(proc)
        return proc

    def stderr(self, n: int) -> str:
        return (self.tmp / f"serve{n}.err").read_text(errors="replace")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for call in read_log(self.claude_log):  # a failed test may leave a hanging agent group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(call["pgid"]), signal.SIGKILL)


@pytest.fixture
async def botapi() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as api:
        api.add_chat(CHAT)
        yield api


@pytest.fixture
async def serve_proc(home: Path, tmp_path: Path, botapi: FakeBotApi) -> AsyncIterator[ServeProcess]:
    s = ServeProcess(home, tmp_path, botapi)
    try:
        yield s
    finally:
        s.cleanup()
        await close_db(home)


async def until(what: str, check: Callable[[], Any], timeout: float = 30.0, *,
                proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `timeout`, or at
    once when `proc` exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"serve exited ({proc.returncode}) while waiting for {what}")
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def exited(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """Wait for the process to end without blocking the loop (the fake Bot API lives in it: a
    blocking wait would make serve's last requests time out)."""
    await until(f"serve (pid {proc.pid}) to exit", lambda: proc.poll() is not None, timeout)
    return proc.returncode


_STORES: dict[Path, tuple[contextlib.AsyncExitStack, Store]] = {}


@contextlib.asynccontextmanager
async def db(home: Path) -> AsyncIterator[Store]:
    """The test's one connection to the home's database, opened on first use and kept until the
    test ends: polling reads on it, instead of opening the database every 50 ms."""
    if home not in _STORES:
        stack = contextlib.AsyncExitStack()
        _STORES[home] = (stack, await stack.enter_async_context(Store.open(home / "state" / "llmauto.db")))
    yield _STORES[home][1]


async def close_db(home: Path) -> None:
    if home in _STORES:
        await _STORES.pop(home)[0].aclose()


async def until_ready(api: FakeBotApi, proc: subprocess.Popen[bytes], polls_before: int) -> None:
    """serve polls Telegram (getUpdates): its bot is up."""
    await until("serve to poll Telegram", lambda: len(api.requests("getUpdates")) > polls_before, proc=proc)


async def delivery_record(home: Path) -> tuple[list[Any], dict[int, str]]:
    """The outbox rows, and the kind of every message the bot recorded sending (`messages`)."""
    async with db(home) as store:
        rows = await store.query("SELECT id, kind, text, card_key, sent_at, message_id, coalesced_into "
                                 "FROM outbox ORDER BY id")
        kinds = {r["message_id"]: r["kind"] for r in await store.query(
            "SELECT message_id, kind FROM messages WHERE chat_id = ?", (CHAT,))}
    return rows, kinds


def delivered_exactly_once_in_order(api: FakeBotApi, rows: list[Any], kinds: dict[int, str]) -> int:
    """Each notification the chat got is one outbox row (or a batch coalesced into it), sent once;
    notes, alerts and reports arrived in outbox order; no outbox row is left unsent. The other messages in the chat are
    the bot's direct answers to commands. Returns the number of notification messages."""
    sent = api.messages(CHAT)
    unsent = [r["id"] for r in rows if r["sent_at"] is None]
    assert not unsent, f"outbox rows never delivered: {unsent}"
    first_row: dict[int, int] = {}  # message id -> the outbox row that created it (later card rows edit it)
    for r in rows:
        if r["coalesced_into"] is None and r["message_id"] is not None:
            first_row.setdefault(r["message_id"], r["id"])
    got = [m.message_id for m in sent]
    assert len(got) == len(set(got))
    notifications = [mid for mid in got if mid in first_row]
    answers = [m for m in sent if m.message_id not in first_row]
    assert all(kinds.get(m.message_id) == "reply" for m in answers), [(m.message_id, m.plain[:60]) for m in answers]
    assert set(notifications) == set(first_row), "an outbox row points at a message the chat never got"
    # Progress cards are one message edited in place (its row is replaced while unsent), and run
    # reports are batched into one document after the notes (bot/outbox.py): the notes and alerts
    # keep their order, and the reports theirs.
    for wanted in (lambda kind: kind not in ("card", "report"), lambda kind: kind == "report"):
        ordered = [mid for mid in notifications if wanted(kinds.get(mid))]
        assert sorted(ordered, key=lambda mid: first_row[mid]) == ordered, f"notifications out of order: {ordered}"
    texts = [m.text for m in sent if m.message_id in first_row and kinds.get(m.message_id) != "card"]
    dupes = {t for t in texts if texts.count(t) > 1}
    assert not dupes, f"a notification arrived twice: {dupes}"
    return len(notifications)


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

    polls = len(botapi.requests("getUpdates"))
    second = serve_proc.start()
    await until_ready(botapi, second, polls)

    async def finished() -> str | None:
        async with db(home) as store:
            st = await store.chain_state("crash")
            return st.status if st.status not in ("RUNNING", "READY", "INTERRUPTED") else None

    assert await until("the resumed run to end", finished, 60, proc=second) == "COMPLETED"
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
