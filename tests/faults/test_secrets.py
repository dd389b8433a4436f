"""Secrets never leak: after a real run (fake claude, command links, a failing link), neither the
state files, the database, the captured logs nor the agents' environment hold the bot token."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.settings import Settings
from engine.store import Store
from tests.conftest import make_settings, write_chain

TOKEN = "123456789:AAH-secret-token-for-tests-only-XYZ"
API_KEY = "sk-ant-secret-key-for-tests-0000"

DUMP_ENV = "import os, json; print(json.dumps(dict(os.environ)))"


async def test_no_secret_reaches_agents_files_db_or_logs(home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(home, telegram_token=TOKEN, environ={
        "TELEGRAM_BOT_TOKEN": TOKEN, "ANTHROPIC_API_KEY": API_KEY, "FAKE_CLAUDE_PYTHON": sys.executable,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"),
    })
    write_chain(home, "leak", {"max_rounds": 1, "links": [
        {"name": "dump", "command": [sys.executable, "-c", DUMP_ENV]},
        {"name": "agent", "model": "claude-sonnet-4-6", "prompt": "work"},
        {"name": "boom", "command": [sys.executable, "-c", "import os; raise SystemExit(os.environ.get('TELEGRAM_BOT_TOKEN', 'none'))"]},
    ]})
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        await engine.start_chain("leak", origin="test")
        await asyncio.wait_for(engine.wait("leak"), 30)
        rows = await store.link_runs("leak")
    assert TOKEN not in (rows[0].result_excerpt or "")
    assert API_KEY in (rows[0].result_excerpt or "")  # the agents do get what they need
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
