"""The bot's pure parts, by table and property: rendering and splitting, callback data, argument
parsing, who may do what, pacing, log redaction."""

from __future__ import annotations

import asyncio
import html
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import callbacks as cb
from bot import logsafe, render
from bot.auth import Access
from bot.commands import UserError, handoff_args, log_args, schedule_id
from bot.pacer import Pacer
from engine.redact import Redactor
from engine.store import Store
from tests.fakes.botapi import ApiError, parsed_length

TOKEN = "123456:TEST-token-not-real-abcdefghijklmnopqrst"


def valid(text: str) -> bool:
    """Telegram (the strict fake) would take it: HTML well formed, within 4096 after parsing."""
    try:
        return 0 < parsed_length(text, "HTML") <= render.LIMIT
    except ApiError:
        return False


# ---- render ------------------------------------------------------------------------------------
def test_split_keeps_short_text_whole() -> None:
    assert render.split("<b>a</b>\nb") == ["<b>a</b>\nb"]


def test_split_cuts_at_line_ends_and_loses_nothing() -> None:
    text = "\n".join(f"✅ <b>chain-{i:03d}</b> COMPLETED · round {i} · {html.escape('<&>')}" for i in range(400))
    parts = render.split(text)
    assert len(parts) > 1 and all(valid(p) for p in parts)
    assert "\n".join(parts) == text


def test_split_keeps_a_pre_block_whole_and_closes_a_cut_one() -> None:
    block = "<pre>" + "\n".join("x" * 50 for _ in range(40)) + "</pre>"
    text = "head\n" + "\n".join("line" for _ in range(900)) + "\n" + block + "\ntail"
    parts = render.split(text)
    assert any(block in p for p in parts)
    huge = "<pre>" + "\n".join("y &amp; z" * 10 for _ in range(200)) + "</pre>"
    (cut,) = render.split(huge)
    assert valid(cut) and cut.endswith("…</pre>")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=3000), st.integers(min_value=20, max_value=600))
def test_truncate_always_leaves_valid_html(raw: str, limit: int) -> None:
    text = f"<b>{html.escape(raw, quote=False)}</b> <i>{html.escape(raw[::-1], quote=False)}</i>"
    cut = render.truncate(text, limit)
    assert len(cut) <= limit
    parsed_length(cut, "HTML")  # raises on broken HTML


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=60))
def test_split_of_escaped_lines_is_always_sendable(lines: list[str]) -> None:
    text = "\n".join(f"<b>{html.escape(line, quote=False)}</b>" for line in lines)
    for part in render.split(text):
        parsed_length(part, "HTML")
        assert len(part) <= render.LIMIT


def test_agent_text_is_escaped_in_notes_and_alerts() -> None:
    hostile = "<script>&amp; *bold* _it_ [x](y) </pre>"
    note = render.link_note("c", {"link": hostile, "error_class": "ok", "headline": hostile, "round": 1})
    alert = render.blocked_alert("c", {"question": hostile, "link": "w", "round": 2})
    for text in (note, alert):
        assert valid(text) and hostile in html.unescape(text.replace("<pre>", "").replace("</pre>", "", 1))


# ---- callbacks ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "args", "data"), [
    ("stop", (12,), "stop:12"), ("stopnow", (7,), "stopnow:7"), ("sdel", (12,), "sdel:12"), ("noop", (), "noop"),
    ("hand", ("a.b-c_d",), "hand:a.b-c_d"), ("start", ("x", 0), "start:x:0"),
    ("reset!", ("x" * 49, 3, "READY"), "reset!:" + "x" * 49 + ":3:READY"), ("reset!", ("x" * 50, 3, "READY"), None),
])
def test_callback_data_fits_in_64_bytes_or_is_left_out(kind: str, args: tuple[object, ...], data: str | None) -> None:
    assert cb.encode(kind, *args) == data
    if data is not None:
        press = cb.decode(data)
        assert press is not None and press.kind == kind


@pytest.mark.parametrize("data", [
    "rm:-rf", None, "", "stop:slow", "stopnow:", "stopnow:1x", "spause:abc", "spause:-1", "sdel:1:2",
    "start:alpha", "start:../x:1", "reset!:alpha", "reset!:alpha:1:ready", "hand:a b", "noop:x", "stat:" + "n" * 65,
])
def test_data_this_bot_never_made_is_ignored(data: str | None) -> None:
    """Each argument is checked for its kind's shape: a bad `spause:` id is an unknown button, not a
    usage message about /unschedule (broke: `_SHAPES` matched any argument: `spause:abc` decoded)."""
    assert cb.decode(data) is None
    with pytest.raises(ValueError):
        cb.encode("rm", "x")


_RUNNING = cb.Current(last_run_id=2, chain_status="RUNNING", run_status="RUNNING")


@pytest.mark.parametrize(("data", "now", "stale"), [
    # Stop / Stop now: only while the run they were offered for runs.
    ("stopnow:2", _RUNNING, None),
    ("stopnow:1", cb.Current(last_run_id=2, chain_status="RUNNING", run_status="STOPPED"), "run #1, which has ended"),
    ("stop:1", cb.Current(last_run_id=2, chain_status="RUNNING", run_status="STOPPED"), "run #1, which has ended"),
    ("stop:2", cb.Current(last_run_id=2, chain_status="STOPPED", run_status="STOPPED"), "run #2, which has ended"),
    ("stop:2", cb.Current(last_run_id=3, chain_status="RUNNING", run_status="RUNNING"), "run #2, which has ended"),
    ("stopnow:9", cb.Current(last_run_id=None, chain_status=""), "not known"),
    # Start / Resume: only while the chain's last run is the one it was offered after.
    ("start:a:0", cb.Current(last_run_id=None, chain_status="READY"), None),
    ("start:a:4", cb.Current(last_run_id=4, chain_status="INTERRUPTED"), None),
    ("start:a:4", cb.Current(last_run_id=5, chain_status="COMPLETED"), "before run #5"),
    # Reset: only while the chain is at the run and status it was offered at.
    ("reset!:a:1:COMPLETED", cb.Current(last_run_id=1, chain_status="COMPLETED"), None),
    ("reset!:a:1:COMPLETED", cb.Current(last_run_id=2, chain_status="COMPLETED"), "out of date"),
    ("reset!:a:1:COMPLETED", cb.Current(last_run_id=1, chain_status="READY"), "out of date"),
    ("reset!:a:0:READY", cb.Current(last_run_id=None, chain_status="READY"), None),
    # Read-only buttons never go stale.
    ("hand:a", cb.Current(last_run_id=9, chain_status="FAILED"), None),
])
def test_whether_a_pressed_button_still_applies(data: str, now: cb.Current, stale: str | None) -> None:
    """The one decision "is this button still valid" (broke: `stale_reason` returning None for
    stop/stopnow whatever the run: the 'ended' rows go red)."""
    press = cb.decode(data)
    assert press is not None
    reason = cb.stale_reason(press, now)
    assert (reason is None) if stale is None else (reason is not None and stale in reason), reason


def test_buttons_that_do_not_fit_are_dropped_not_cut() -> None:
    name = "n" * 59  # "stat:NAME" is 64 bytes and fits, "start:NAME:RUN" would not
    assert cb.start_button("Start", name, 1) is None
    row = (cb.chain_buttons(name, 12) or [[]])[0]
    assert [b["data"] for b in row] == [f"hand:{name}", f"stat:{name}", "stop:12"]
    assert cb.picker([]) is None


# ---- commands and access -----------------------------------------------------------------------
@pytest.mark.parametrize(("args", "expected"), [
    (["a"], ("a", None, False)), (["a", "3"], ("a", 3, False)), (["a", "DIFF"], ("a", None, True)),
    (["a", "x"], None), (["a", "-1"], None), (["a", "1" * 10], None), (["a", "3", "4"], None), (["a", "٣"], None),
])
def test_handoff_arguments(args: list[str], expected: tuple[str, int | None, bool] | None) -> None:
    if expected is None:
        with pytest.raises(UserError, match="Usage: /handoff"):
            handoff_args(args)
    else:
        got = handoff_args(args)
        assert (got.chain, got.round_no, got.diff) == expected


@pytest.mark.parametrize(("args", "expected"), [
    (["a"], ("a", 10)), (["a", "3"], ("a", 3)), (["a", "0"], ("a", 1)), (["a", "999"], ("a", 50)),
    ([], None), (["a", "x"], None), (["a", "1", "2"], None),
])
def test_log_arguments(args: list[str], expected: tuple[str, int] | None) -> None:
    if expected is None:
        with pytest.raises(UserError, match="Usage: /log"):
            log_args(args)
    else:
        assert log_args(args) == expected


def test_schedule_ids() -> None:
    assert schedule_id("#7") == 7 and schedule_id("12") == 12
    for bad in ("x", "", "-1", "1e3", "9" * 12):
        with pytest.raises(UserError):
            schedule_id(bad)


@pytest.mark.parametrize(("user", "action", "allowed"), [
    (1, "stop_chain", True), (1, "reset", True), (2, "status", True), (2, "handoff", True), (2, "log", True),
    (2, "chains", True), (2, "help", True), (2, "stop_chain", False), (2, "answer", False), (2, "start_chain", False),
    (2, "schedule", False), (3, "status", False), (3, "help", False), (None, "status", False),
])
def test_who_may_do_what(user: int | None, action: str, allowed: bool) -> None:
    assert Access(frozenset({1}), frozenset({2})).may(user, action) is allowed


def test_every_button_maps_to_a_known_permission() -> None:
    access = Access(frozenset({1}), frozenset({2}))
    readable = {kind for kind, action in cb.ACTIONS.items() if access.may(2, action)}
    assert readable == {"hand", "stat", "noop"}


# ---- pacing ------------------------------------------------------------------------------------
def test_pacer_table() -> None:
    p = Pacer(per_chat_s=1.0, group_per_minute=3, global_per_second=100)
    p.record(5, now=0.0)
    assert p.delay(5, now=0.5) == pytest.approx(0.5) and p.delay(6, now=0.5) == 0.0
    for t in (0.0, 2.0, 4.0):
        p.record(-9, now=t)
    assert p.delay(-9, now=10.0) == pytest.approx(50.0)  # 20/min-style group budget spent
    p.backoff(5, 30.0)
    assert p.delay(5) == pytest.approx(30.0, abs=0.1)


async def test_a_chat_waiting_for_its_turn_never_holds_up_another() -> None:
    pacer = Pacer(per_chat_s=0.5, group_per_minute=100, global_per_second=100)
    await pacer.acquire(1)
    waiting = asyncio.create_task(pacer.acquire(1))  # must wait about 0.5 s
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pacer.acquire(2)
    assert loop.time() - started < 0.1 and not waiting.done()
    await waiting


# ---- log redaction -----------------------------------------------------------------------------
def test_protect_redacts_every_record_whatever_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("httpx")
    before = logging.getLogRecordFactory()
    with logsafe.protect([TOKEN]):
        assert logger.getEffectiveLevel() == logging.WARNING  # httpx request lines are not logged
        logger.setLevel(logging.DEBUG)  # even if someone turns them back on:
        logger.info("HTTP Request: POST %s", f"http://127.0.0.1/bot{TOKEN}/getMe")
        try:
            raise RuntimeError(f"connect to /bot{TOKEN}/sendMessage failed")
        except RuntimeError:
            logging.getLogger("bot").exception("send failed")
        logging.getLogger("bot").warning("odd %s %s", TOKEN)  # wrong argument count
    assert logging.getLogRecordFactory() is before and logger.level == logging.NOTSET
    text = caplog.text
    assert TOKEN not in text and text.count(logsafe.MASK) >= 3
    assert "connect to /bot[REDACTED]/sendMessage failed" in text


def test_install_puts_a_filter_on_handlers() -> None:
    record = logging.LogRecord("httpx", logging.INFO, "x", 1, "HTTP Request: POST %s", (f"https://api.telegram.org/bot{TOKEN}/getMe",), None)
    logsafe.RedactingFilter([TOKEN]).filter(record)
    assert TOKEN not in record.getMessage() and "[REDACTED]" in record.getMessage()


# ---- a reply Telegram cannot take now goes to the outbox ----------------------------------------
class _DownBot:
    """Stands in for telegram.Bot while Telegram is unreachable."""

    def __init__(self) -> None:
        self.calls = 0

    async def send_message(self, *args: object, **kwargs: object) -> None:
        from telegram.error import TimedOut

        self.calls += 1
        raise TimedOut("Timed out")


async def test_a_reply_that_cannot_be_sent_waits_in_the_outbox(store: Store) -> None:
    from types import SimpleNamespace

    from telegram import Update

    from bot.handlers import BotHandlers
    from bot.outbox_store import OutboxStore

    bot = _DownBot()
    update = Update.de_json({"update_id": 1, "message": {
        "message_id": 5, "date": 0, "chat": {"id": 42, "type": "private"}, "from": {"id": 1, "is_bot": False, "first_name": "A"},
        "text": "/stop_chain x why"}}, bot)  # type: ignore[arg-type]
    outbox = OutboxStore(store)
    wake = asyncio.Event()

    async def refresh() -> None:
        return None

    handlers = BotHandlers(SimpleNamespace(settings=None), None, outbox, Pacer(per_chat_s=0),  # type: ignore[arg-type]
                           Access(frozenset({1}), frozenset()), refresh, wake, redact=Redactor(()))
    assert await handlers.reply(update, "⏹ x: stopping", chain="x", buttons=cb.chain_buttons("x")) is None
    (row,) = await outbox.pending()
    assert (row.chat_id, row.kind, row.chain, row.text) == (42, "reply", "x", "⏹ x: stopping")
    assert row.buttons == cb.chain_buttons("x") and wake.is_set() and bot.calls == 1
