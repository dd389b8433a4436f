"""Two real `llmauto serve` processes on one bot token (the README's "two serve processes" row):
Telegram (here the fake Bot API, which answers 409 to the earlier of two long polls, as Telegram
does) cuts one off; that one stops with a clear message and polls no more; the other serves on."""

from __future__ import annotations

from pathlib import Path

from tests.bot.conftest import CHAT, OPERATOR
from tests.fakes.botapi import FakeBotApi
from tests.faults.serve_rig import ServeProcess, exited, until


async def test_two_serve_processes_one_token_the_one_cut_off_stops_the_other_serves(
        home: Path, serve_proc: ServeProcess, botapi: FakeBotApi) -> None:
    """Checked: with bot/poller.py's `run` retrying a 409 like a network error (`except
    InvalidToken: raise` only), this fails: the first process never exits."""
    first = serve_proc.start()
    await until("the first serve to poll", lambda: "getUpdates" in botapi.arrived, proc=first)
    second = serve_proc.start()
    assert await exited(first, 30) != 0
    assert "another process is polling this bot token" in serve_proc.stderr(0)
    assert "Traceback" not in serve_proc.stderr(0)
    conflicts = [r for r in botapi.rejected if r[1] == 409]
    asked = botapi.user_message(user_id=OPERATOR, text="/help")
    await botapi.wait_for_message(CHAT, "marble runs", after=asked["message_id"], timeout=30)
    assert second.poll() is None  # the other one still serves ...
    assert [r for r in botapi.rejected if r[1] == 409] == conflicts  # ... and nobody was cut off again
