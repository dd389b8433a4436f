"""Secrets never leak: after a real run (fake claude, command links, a failing link), neither the
state files, the database, the captured logs nor the agents' environment hold the bot token."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from bot.outbox_store import NewMessage, OutboxStore
from engine.engine import Engine
from engine.settings import Settings
from engine.store import NewEvent, Store
from tests.conftest import make_settings, write_chain
from tests.helpers import Cli

TOKEN = "123456:TEST-secret-token-for-tests-only-XYZ"  # shaped like a token, but no real one
API_KEY = "sk-ant-secret-key-for-tests-0000"

DUMP_ENV = "import os, json; print(json.dumps(dict(os.environ)))"
# Also keeps what the agent saw outside the home (the store redacts it from what it records).
DUMP_ENV_TO = "import os, json, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ))); print(json.dumps(dict(os.environ)))"


async def test_no_secret_reaches_agents_files_db_or_logs(home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(home, telegram_token=TOKEN, environ={
        "TELEGRAM_BOT_TOKEN": TOKEN, "ANTHROPIC_API_KEY": API_KEY, "FAKE_CLAUDE_PYTHON": sys.executable,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"),
    })
    seen = tmp_path / "agent-env.json"
    write_chain(home, "leak", {"max_rounds": 1, "links": [
        {"name": "dump", "command": [sys.executable, "-c", DUMP_ENV_TO, str(seen)]},
        {"name": "agent", "model": "claude-sonnet-4-6", "prompt": "work"},
        {"name": "boom", "command": [sys.executable, "-c", "import os; raise SystemExit(os.environ.get('TELEGRAM_BOT_TOKEN', 'none'))"]},
    ]})
    async with Store.open(settings.db_path, secrets=settings.secrets()) as store, Engine(settings, store) as engine:
        await engine.start_chain("leak", origin="test")
        await asyncio.wait_for(engine.wait("leak"), 30)
        rows = await store.link_runs("leak")
    assert TOKEN not in (rows[0].result_excerpt or "") and TOKEN not in seen.read_text()
    assert API_KEY in seen.read_text()  # the agents do get what they need
    assert API_KEY not in (rows[0].result_excerpt or "")  # but the store does not keep it
    assert '"ANTHROPIC_API_KEY": "[redacted]"' in (rows[0].result_excerpt or "")
    assert rows[2].error_message == "exit code 1: none"
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in caplog.text


async def test_env_allow_list_restricts_what_agents_see(home: Path) -> None:
    settings = make_settings(home, environ={"ANTHROPIC_API_KEY": API_KEY, "GH_TOKEN": "ghp_secret", "KEEP": "1"})
    write_chain(home, "allow", {"max_rounds": 1, "env_allow": ["ANTHROPIC_API_KEY"],
                                "links": [{"name": "dump", "command": [sys.executable, "-c", DUMP_ENV]}]})
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        await engine.start_chain("allow", origin="test")
        await asyncio.wait_for(engine.wait("allow"), 30)
        seen = (await store.link_runs("allow"))[0].result_excerpt or ""
    assert API_KEY in seen and "ghp_secret" not in seen and '"KEEP"' not in seen
    assert '"LLMAUTO_CHAIN": "allow"' in seen


def test_world_readable_env_file_is_warned_about(home: Path) -> None:
    env_file = home / ".env"
    env_file.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ALLOWED_USER_IDS=1,2\n", encoding="utf-8")
    os.chmod(env_file, 0o644)
    loaded = Settings.load({"LLMAUTO_HOME": str(home)})
    assert loaded.telegram_token == TOKEN
    assert any("readable by other users" in w and "chmod 600" in w for w in loaded.warnings)
    assert TOKEN not in repr(loaded)
    os.chmod(env_file, stat.S_IRUSR | stat.S_IWUSR)
    assert Settings.load({"LLMAUTO_HOME": str(home)}).warnings == ()


# An agent that found the secrets and echoes them into the handoff, its answer and its errors.
ECHO = (
    "import os, sys; key = os.environ['ANTHROPIC_API_KEY']; "
    "open(os.environ['LLMAUTO_HANDOFF'], 'a').write(f'key {key}\\n'); print('the key is', key); "
    "sys.stderr.write(f'failed with {key}\\n'); raise SystemExit(3)"
)


async def test_secrets_an_agent_echoes_never_reach_the_database(cli: Cli, home: Path) -> None:
    """A real `chain start`: the fake claude writes the bot token into the handoff and its answer, a
    command echoes the API key into the handoff, stdout and its error. Afterwards no byte of the
    database (main file, WAL, shared memory) nor of the engine's state files holds either; what
    the store kept says [redacted] instead. (handoff.md itself is the agents' own file: it keeps
    what they wrote.)"""
    cli.env.update(TELEGRAM_BOT_TOKEN=TOKEN, ANTHROPIC_API_KEY=API_KEY)
    write_chain(home, "echo", {"max_rounds": 1, "links": [
        {"name": "agent", "model": "claude-sonnet-4-6", "prompt": "work"},
        {"name": "echo", "command": [sys.executable, "-c", ECHO]},
    ]})
    cli.scenario_is({"links": {"agent": {
        "handoff": f"# Plan\nfound the bot token {TOKEN}\n", "result": f"the token is {TOKEN}"}}})
    state = home / "state"
    assert cli.run("chain", "list").returncode == 0  # creates the database
    # A reader holds the database open, so the CLI's WAL is still there to read when it exits
    # (the last connection to close checkpoints and deletes it).
    keeper = sqlite3.connect(state / "llmauto.db")
    try:
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchone()
        out = cli.run("chain", "start", "echo")
        assert out.returncode == 0, out.stderr
        handoff = (home / "state" / "echo" / "handoff.md").read_text()
        assert TOKEN in handoff and API_KEY in handoff  # the agents' own file, as they wrote it
        db_files = [p for p in state.iterdir() if p.name.startswith("llmauto.db")]
        assert {p.name for p in db_files} >= {"llmauto.db", "llmauto.db-wal"}
        assert (state / "llmauto.db-wal").stat().st_size > 0
        for path in [*db_files, *(p for p in state.rglob("*") if p.is_file() and p.name != "handoff.md")]:
            raw = path.read_bytes()
            assert TOKEN.encode() not in raw and API_KEY.encode() not in raw, path
    finally:
        keeper.close()
    async with Store.open(state / "llmauto.db") as store:
        agent, echo = (await store.link_runs("echo"))[:2]
        assert agent.result_excerpt == "the token is [redacted]"
        assert echo.result_excerpt == "the key is [redacted]"
        assert echo.error_message == "exit code 3: failed with [redacted]"
        versions = await store.handoff_versions("echo", 5)
        assert "found the bot token [redacted]" in versions[0].content
        assert "key [redacted]" in versions[0].content
    for which in ("1", None):  # the version after round 1, and the file as it is now
        shown = cli.run("chain", "handoff", "echo", *([which] if which else []))
        assert shown.returncode == 0, shown.stderr
        assert "found the bot token [redacted]" in shown.stdout and TOKEN not in shown.stdout
        assert API_KEY not in shown.stdout


async def test_every_write_of_the_store_is_scrubbed(settings: Settings) -> None:
    """Events (nested, keys too) and the outbox, written through the store: redacted, also in
    the event handed back for publishing."""
    async with Store.open(settings.db_path, secrets=(TOKEN, API_KEY, "")) as store:
        [event] = await store.add_events("c", None, [NewEvent("warning", {
            "message": f"x {TOKEN} y", "nested": [{"k": API_KEY}], TOKEN: 1, "n": 2})])
        assert event.data == {"message": "x [redacted] y", "nested": [{"k": "[redacted]"}], "[redacted]": 1, "n": 2}
        assert (await store.events_after(0))[-1].data == event.data
        outbox = OutboxStore(store)
        await outbox.enqueue_now([NewMessage(chat_id=1, kind="reply", text=f"<b>{TOKEN}</b>", document=API_KEY)])
        [row] = await outbox.pending()
        assert (row.text, row.document) == ("<b>[redacted]</b>", "[redacted]")
    raw = b"".join(p.read_bytes() for p in settings.state_dir.iterdir() if p.name.startswith("llmauto.db"))
    assert TOKEN.encode() not in raw and API_KEY.encode() not in raw


# Issue #12, items 1 and 2: a token cut by a headline, and the forms of a secret the old redactor
# let through. The bot id is public, so the part after the colon is the whole secret.
WRAP_TOKEN = "7012345678:AAH.fake-secret-part-of-the-test-token_x9"
WRAP_PART = WRAP_TOKEN.split(":", 1)[1]
FILE_KEY = "sk-proj-fake-openai-key-from-the-env-file-0123"
WRITE = "import os, sys; open(os.environ['LLMAUTO_HANDOFF'], sys.argv[2]).write(open(sys.argv[1]).read())"


def _runs(secret: str, n: int = 12) -> list[str]:
    return [secret[i:i + n] for i in range(len(secret) - n + 1)]


def _leaks(data: str | bytes) -> list[str]:
    """Every run of 12 characters of the test secrets that `data` holds."""
    found = []
    for run in _runs(WRAP_TOKEN) + _runs(FILE_KEY):
        if (run.encode() if isinstance(data, bytes) else run) in data:
            found.append(run)
    return found


async def test_a_cut_wrapped_or_encoded_secret_leaves_no_part_in_the_database_or_the_cli(cli: Cli, home: Path, tmp_path: Path) -> None:
    """A real `chain start` whose links write, into the handoff: 260 characters and then the bot
    token on the line a headline cuts at 300 (the old headline kept 38 of the token's characters
    in events.data), the token's secret part alone, its URL-encoded form, the token and an API
    key from .env each broken across two lines. Afterwards no 12 consecutive characters of either
    secret are in any byte of the database, nor in what `chain handoff`, `handoff 1` and
    `handoff diff` print. Fails on the old redactor (whole raw forms only) and the old headline
    (cut first)."""
    env_file = home / ".env"
    env_file.write_text(f"TELEGRAM_BOT_TOKEN={WRAP_TOKEN}\nOPENAI_API_KEY={FILE_KEY}\n", encoding="utf-8")
    os.chmod(env_file, 0o600)
    first = tmp_path / "first.md"
    first.write_text("w" * 260 + " " + WRAP_TOKEN + "\n\n" + f"part {WRAP_PART}\n", encoding="utf-8")
    second = tmp_path / "second.md"
    second.write_text(
        f"url bot{WRAP_TOKEN.replace(':', '%3A')}/getMe\n"
        f"wrapped {WRAP_TOKEN[:25]}\n    {WRAP_TOKEN[25:]}\n"
        f"key {FILE_KEY[:10]}\n{FILE_KEY[10:]}\n", encoding="utf-8")
    write_chain(home, "cut", {"max_rounds": 1, "links": [
        {"name": "first", "command": [sys.executable, "-c", WRITE, str(first), "w"]},
        {"name": "second", "command": [sys.executable, "-c", WRITE, str(second), "a"]},
    ]})
    out = cli.run("chain", "start", "cut")
    assert out.returncode == 0, out.stderr
    state = home / "state"
    for path in state.iterdir():
        if path.name.startswith("llmauto.db"):
            assert _leaks(path.read_bytes()) == [], path
    async with Store.open(state / "llmauto.db") as store:
        headlines = [e.data["headline"] for e in await store.chain_events("cut") if e.kind == "link_finished"]
    assert headlines and all(_leaks(h) == [] for h in headlines)
    assert headlines[0].startswith("w" * 260)  # redacted first, then cut: what is left fits
    for which in ([], ["1"], ["diff"]):
        shown = cli.run("chain", "handoff", "cut", *which)
        assert shown.returncode == 0, shown.stderr
        assert _leaks(shown.stdout) == [], (which, shown.stdout)
        assert "[redacted]" in shown.stdout
