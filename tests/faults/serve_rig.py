"""A real `llmauto serve` process for the fault tests: started against the fake Bot API on 127.0.0.1
(in the test's loop) and the fake claude, killed or stopped by real signals, and the checks that
every notification reached the chat exactly once and in order."""

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

from engine.store import Store
from tests.conftest import FAKE_CLAUDE, ROOT
from tests.fakes.botapi import FakeBotApi
from tests.fakes.claude_env import read_log, write_scenario

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


async def until(what: str, check: Callable[[], Any], timeout: float = 30.0, *,
                proc: subprocess.Popen[Any] | None = None) -> Any:
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


async def exited(proc: subprocess.Popen[Any], timeout: float = 60.0) -> int:
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
    """serve polls Telegram: a getUpdates of its own *arrived* (the log of finished requests would
    see the first long poll only when it times out, with nothing to deliver)."""
    await until("serve to poll Telegram", lambda: api.arrived.count("getUpdates") > polls_before, proc=proc)


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




async def settled_status(home: Path, chain: str) -> str | None:
    """The chain's status once its run has ended (None while it runs, waits or is being resumed)."""
    async with db(home) as store:
        st = await store.chain_state(chain)
        return st.status if st.status not in ("RUNNING", "READY", "INTERRUPTED") else None
