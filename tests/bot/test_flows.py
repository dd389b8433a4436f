"""The flows that matter at night: BLOCKED alerts answered by reply, strangers refused, Telegram
outages and restarts with nothing lost or doubled, many chains in one chat within flood limits."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.pacer import Pacer
from bot.serve import check, run_serve
from engine.errors import ConfigError
from tests.bot.conftest import CHAT, GROUP, OPERATOR, STRANGER, TOKEN, VIEWER, Served, append_line
from tests.conftest import make_settings, write_chain
from tests.fakes.botapi import FakeBotApi
from tests.faults.serve_rig import until

BLOCKING_AGENT = (
    "import os\n"
    "h = os.environ['LLMAUTO_HANDOFF']\n"
    "text = open(h).read() if os.path.exists(h) else ''\n"
    "if 'Operator note' in text:\n"
    "    open(h, 'a').write('\\n## Status: DONE\\nused the answer\\n')\n"
    "else:\n"
    "    open(h, 'a').write('\\n## Status: BLOCKED\\nQUESTION: Postgres or <SQLite> & why?\\n')\n"
)


async def test_blocked_alert_answered_by_reply_unblocks_the_chain(served: Served) -> None:
    write_chain(served.home, "asker", {"max_rounds": 3, "on_blocked": "wait", "links": [
        {"name": "agent", "command": [sys.executable, "-c", BLOCKING_AGENT]}]})
    await served.answer("/start_chain asker", "Started")
    alert = await served.api.wait_for_message(CHAT, "BLOCKED at agent")
    assert "Postgres or <SQLite> & why?" in alert.plain
    assert alert.data_of("Stop").startswith("stop:")  # bound to the run: stop:RUN
    await served.answer("SQLite, it is one file", "answer added to the handoff", reply_to=alert.message_id)
    final = await served.api.wait_for_message(CHAT, "asker COMPLETED")
    assert "max_rounds" in final.plain
    handoff = (served.home / "state" / "asker" / "handoff.md").read_text()
    assert "## Operator note (tg:111" in handoff and "SQLite, it is one file" in handoff and "used the answer" in handoff


async def test_strangers_are_refused_and_nothing_happens(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    write_chain(served.home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("x")}]})
    served.api.add_chat(STRANGER)
    refusal = await served.answer("/start_chain alpha", "not allowed", user=STRANGER)
    assert refusal.plain == "Sorry, you are not allowed to use this bot."
    # Another try: logged, not answered again (a stranger cannot spend the chat's flood budget).
    served.say("/status", user=STRANGER)
    await served.api.wait_for(lambda api: any("refused 'status' from user 333" in r.getMessage() for r in caplog.records))
    assert [m.plain for m in served.api.messages(STRANGER)] == ["Sorry, you are not allowed to use this bot."]
    assert not (served.home / "state" / "alpha").exists()
    assert any("refused 'start_chain' from user 333" in r.getMessage() for r in caplog.records)
    # In a group, the rule is per user: the operator may, the stranger may not.
    served.api.add_chat(GROUP, "supergroup")
    await served.answer("/start_chain alpha", "not allowed", user=STRANGER, chat=GROUP, chat_type="supergroup")
    started = await served.answer("/start_chain alpha", "Started", user=OPERATOR, chat=GROUP, chat_type="supergroup")
    # A stranger pressing the operator's buttons in the group gets nothing.
    served.api.press_button(user_id=STRANGER, chat_id=GROUP, message_id=started.message_id,
                               data=started.data_of("Stop"))
    await served.api.wait_for(lambda api: any(c.get("text") == "Sorry, you are not allowed to use this bot." for c in api.answered_callbacks))
    assert not any("Why stop" in m.plain for m in served.api.messages(GROUP))


async def test_viewers_may_read_but_not_act(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    write_chain(served.home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("x")}]})
    served.api.add_chat(VIEWER)
    status = await served.answer("/status", "Chains", user=VIEWER)
    assert "alpha" in status.plain
    await served.answer("/start_chain alpha", "not allowed", user=VIEWER)
    served.say("/stop_chain alpha now", user=VIEWER)
    await served.api.wait_for(lambda api: any("refused 'stop_chain' from user 222" in r.getMessage() for r in caplog.records))
    assert not (served.home / "state" / "alpha").exists()


async def test_telegram_outage_during_a_run_delays_but_loses_nothing(served: Served) -> None:
    write_chain(served.home, "night", {"max_rounds": 4, "links": [
        {"name": "w", "command": append_line("- step"), "telegram_update": True}]})
    await served.answer("/start_chain night", "Started")
    served.api.set_outage("connection")
    await served.engine.wait("night")  # the engine is unaffected by the outage
    served.api.set_outage("500")
    sends = ("sendMessage", "editMessageText", "sendDocument")
    await served.api.wait_for(lambda api: any(m in sends and code == 500 for m, code, _ in api.rejected), timeout=30)
    served.api.set_outage(None)
    final = await served.api.wait_for_message(CHAT, "night COMPLETED", timeout=30)
    texts = "\n".join(m.plain for m in served.api.messages(CHAT))
    rounds = [line for line in texts.splitlines() if line.startswith("✅ night · round")]
    assert rounds == [f"✅ night · round {r} · w (command)" for r in (1, 2, 3, 4)]  # in order, once each
    assert final.plain.count("COMPLETED") == 1
    report = await served.api.wait_for(lambda api: [m for m in api.messages(CHAT) if m.document])
    assert len(report) == 1


async def test_restart_with_queued_notifications_sends_each_once(home: Path, fake_api: FakeBotApi) -> None:
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url)
    write_chain(home, "queued", {"max_rounds": 3, "links": [
        {"name": "w", "command": append_line("- step"), "telegram_update": True}]})
    first = Served(fake_api, settings, home)
    await first.start()
    await first.answer("/start_chain queued", "Started")
    fake_api.set_outage("502")
    await first.engine.wait("queued")
    await first.shutdown()  # notifications still queued in the outbox
    assert not any("round 3" in m.plain for m in fake_api.messages(CHAT))
    fake_api.set_outage(None)
    second = Served(fake_api, settings, home)
    await second.start()
    try:
        await fake_api.wait_for_message(CHAT, "queued COMPLETED", timeout=30)
        await fake_api.wait_for(lambda api: [m for m in api.messages(CHAT) if m.document])
        texts = [line for m in fake_api.messages(CHAT) for line in m.plain.splitlines()]
        counts = Counter(t for t in texts if t.startswith("✅ queued · round"))
        assert counts == {f"✅ queued · round {r} · w (command)": 1 for r in (1, 2, 3)}
    finally:
        await second.shutdown()


async def test_twenty_chains_into_one_chat_within_flood_limits(home: Path) -> None:
    async with FakeBotApi(TOKEN, per_chat_interval_s=0.2, global_per_second=30) as api:
        api.add_chat(CHAT)
        settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                                 api_base_url=api.base_url, max_parallel_links=20)
        for i in range(20):
            write_chain(home, f"c{i:02d}", {"max_rounds": 2, "links": [
                {"name": "w", "command": append_line("- step"), "telegram_update": True}]})
        served = Served(api, settings, home)
        # 0.1 s above the fake's limit: a request held up on its way (a loaded machine) is no 429.
        await served.start(pacer=Pacer(per_chat_s=0.3, group_per_minute=19, global_per_second=25))
        try:
            for i in range(20):
                await served.engine.start_chain(f"c{i:02d}", origin="test")
            for i in range(20):
                await served.engine.wait(f"c{i:02d}")

            def all_in(api: FakeBotApi) -> bool:
                text = "\n".join(m.plain for m in api.messages(CHAT))
                return all(f"c{i:02d} COMPLETED" in text for i in range(20))

            await api.wait_for(all_in, timeout=90)
            lines = [line for m in api.messages(CHAT) for line in m.plain.splitlines()]
            notes = Counter(line for line in lines if " · round " in line and line.startswith("✅ c"))
            assert len(notes) == 40 and set(notes.values()) == {1}
            assert [r for r in api.rejected if r[1] == 429] == []
            assert served.parts["sender"].coalesced > 0
        finally:
            await served.shutdown()


async def test_token_never_in_logs_or_messages(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    write_chain(served.home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("x")}]})
    await served.answer("/start_chain alpha", "Started")
    await served.api.wait_for_message(CHAT, "COMPLETED")
    leaked = [r for r in caplog.records if TOKEN in r.getMessage()]
    assert leaked == []
    assert all(TOKEN not in m.text for m in served.api.messages())


def test_logsafe_redacts_httpx_style_urls() -> None:
    from bot.logsafe import RedactingFilter

    record = logging.LogRecord("httpx", logging.INFO, "x", 1, "HTTP Request: POST %s", (f"https://api.telegram.org/bot{TOKEN}/getMe",), None)
    RedactingFilter([TOKEN]).filter(record)
    assert TOKEN not in record.getMessage() and "[REDACTED]" in record.getMessage()


def test_serve_refuses_to_start_without_token_or_allow_list(home: Path) -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        check(make_settings(home))
    with pytest.raises(ConfigError, match="TELEGRAM_ALLOWED_USER_IDS is not set"):
        check(make_settings(home, telegram_token=TOKEN))
    from engine.cli import main

    assert main(["--home", str(home), "serve"]) == 2


async def test_scheduled_run_starts_and_reports_into_the_chat(served: Served) -> None:
    """The job that /schedule registered (its cron trigger, its arguments) fires and starts the run;
    only its next fire time is moved to a second from now, since 02:00 is hours away. Before, a
    DateTrigger job added by hand stood in for it. Checked: with `self._register(schedule_id,
    trigger)` in Scheduler.refresh removed, this fails (no job for schedule #1)."""
    from datetime import UTC, datetime, timedelta

    from engine.timer import _job_id

    write_chain(served.home, "nightly", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("x"), "telegram_update": True}]})
    await served.answer("/schedule nightly daily 02:00", "Schedule #1")
    scheduler = served.parts["scheduler"]
    await until("schedule #1 to be registered", lambda: scheduler.next_run_time(1))
    job = scheduler._aps.get_job(_job_id(1))
    job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=1))
    fired = await served.api.wait_for_message(CHAT, "started by schedule #1", timeout=20)
    assert "nightly" in fired.plain
    await served.api.wait_for_message(CHAT, "nightly COMPLETED", timeout=20)
    after = scheduler.next_run_time(1)  # the cron trigger goes on: the next 02:00
    assert after is not None and (after.hour, after.minute) == (2, 0) and after > datetime.now(UTC)


async def test_run_serve_without_telegram_keeps_the_engine_working(home: Path) -> None:
    """Telegram unreachable at start: serve keeps trying to connect; chains still run meanwhile."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url="http://127.0.0.1:9/bot")
    write_chain(home, "offline", {"max_rounds": 1, "links": [{"name": "w", "command": append_line("x")}]})
    stop = asyncio.Event()
    engines: list[object] = []
    got_engine = asyncio.Event()

    def keep(engine: object) -> None:
        engines.append(engine)
        got_engine.set()

    task = asyncio.create_task(run_serve(settings, stop, poll_timeout_s=1, on_engine=keep))
    await asyncio.wait_for(got_engine.wait(), 20)
    engine = engines[0]
    await engine.start_chain("offline", origin="test")  # type: ignore[attr-defined]
    outcome = await asyncio.wait_for(engine.wait("offline"), 30)  # type: ignore[attr-defined]
    assert outcome.status == "COMPLETED"
    assert not task.done()  # still trying to reach Telegram
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_serve_resumes_an_interrupted_chain_or_asks_first(home: Path, fake_api: FakeBotApi) -> None:
    import dataclasses

    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url)
    write_chain(home, "cut", {"max_rounds": 2, "links": [{"name": "w", "command": ["python3", "-c", "import time; time.sleep(30)"]}]})
    first = Served(fake_api, settings, home)
    await first.start()
    await first.answer("/start_chain cut", "Started")
    await fake_api.wait_for(lambda api: any("Link: w" in m.plain for m in api.messages(CHAT)))
    await first.shutdown()  # kills the link; the run is INTERRUPTED
    asking = Served(fake_api, dataclasses.replace(settings, recovery="ask"), home)
    await asking.start()
    try:
        question = await fake_api.wait_for_message(CHAT, "was interrupted")
        assert not asking.engine.is_running_here("cut")
        fake_api.press_button(user_id=OPERATOR, chat_id=CHAT, message_id=question.message_id,
                                data=question.data_of("Resume"))
        await fake_api.wait_for_message(CHAT, "Started cut", after=question.message_id)
        assert asking.engine.is_running_here("cut")
    finally:
        await asking.shutdown()
    auto = Served(fake_api, settings, home)
    await auto.start()
    try:
        assert auto.engine.is_running_here("cut")  # resumed by itself, and says so
        await fake_api.wait_for_message(CHAT, "cut was interrupted (crash or shutdown); resumed where it was")
        rows = await auto.engine.store.link_runs("cut")
        assert [r.status for r in rows[:2]] == ["interrupted", "interrupted"]
    finally:
        await auto.shutdown()
