"""The README's usage-limit row says "the chat is told when it retries": a real (in-process)
`serve`, a real fake `claude` that reports the account's usage limit, and the notice arriving at
the fake Bot API with the retry time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.bot.conftest import CHAT, OPERATOR, TOKEN, Served, serving
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi
from tests.fakes.claude_env import write_scenario


async def test_the_chat_is_told_when_a_usage_limited_link_retries(home: Path, fake_api: FakeBotApi, tmp_path: Path) -> None:
    """Checked: with the `waiting_limit` branch of bot/render.py's `event_text` returning None,
    this fails (no notice reaches the chat)."""
    reset = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    scenario = write_scenario(tmp_path / "scenario.json", {
        "links": {"worker": [{"error": "rate_limited", "resets_at": int(reset.timestamp())}]}})
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url,
                             environ={"FAKE_CLAUDE_SCENARIO": scenario, "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg")})
    write_chain(home, "lim", {"max_rounds": 1, "links": [
        {"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work"}]})
    async with serving(fake_api, settings) as served:
        await run_into_the_limit(served, reset)


async def run_into_the_limit(served: Served, reset: datetime) -> None:
    await served.engine.start_chain("lim", origin="test")
    notice = await served.api.wait_for_message(CHAT, "hit a usage limit", timeout=30)
    retry_at = reset + timedelta(minutes=1)  # the engine adds a minute past the reset
    assert notice.plain == f"⏳ lim hit a usage limit at worker; retrying at {retry_at:%Y-%m-%d %H:%M} UTC"
    assert (await served.engine.view("lim")).status == "WAITING"
    await served.engine.stop_chain("lim", "test over")
    await served.engine.wait("lim")
