"""Pure pieces, by table: settings parsing, limit reset times, stream parsing, handoff protocol."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine import handoff as hp
from engine.errors import ConfigError
from engine.limits import next_attempt_at, parse_reset_text
from engine.policy import Then, Tries, after_attempt
from engine.prompts import build_prompt, format_duration, render
from engine.settings import Settings, parse_dotenv
from engine.stream import ErrorClass, StreamParser

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # 11:00 in Berlin


def test_dotenv_parsing() -> None:
    text = '# c\nA=1\nexport B="two words"\nC=\'x#y\'\nD=plain # comment\nnot a line\n=nokey\nE=\n'
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "x#y", "D": "plain", "E": ""}


def test_settings_precedence_and_errors(home: Path) -> None:
    (home / ".env").write_text("TELEGRAM_ALLOWED_USER_IDS=1, 2\nCLAUDE_BIN=from-dotenv\n", encoding="utf-8")
    (home / ".env").chmod(0o600)
    s = Settings.load({"LLMAUTO_HOME": str(home), "CLAUDE_BIN": "from-env"})
    assert (s.allowed_user_ids, s.claude_bin, s.home) == (frozenset({1, 2}), "from-env", home.resolve())
    with pytest.raises(ConfigError, match="TELEGRAM_ALLOWED_USER_IDS: 'bob' is not a numeric Telegram user id"):
        Settings.load({"LLMAUTO_HOME": str(home), "TELEGRAM_ALLOWED_USER_IDS": "1,bob"})
    with pytest.raises(ConfigError, match="LLMAUTO_MAX_PARALLEL_LINKS: must be at least 1"):
        Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_MAX_PARALLEL_LINKS": "0"})
    with pytest.raises(ConfigError, match="LLMAUTO_TIMEZONE: unknown time zone"):
        Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_TIMEZONE": "Nowhere/Land"})
    assert Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_TIMEZONE": "europe/BERLIN"}).timezone == "Europe/Berlin"


@pytest.mark.parametrize("text, expected", [
    ("You've hit your session limit · resets 3pm (Europe/Berlin)", datetime(2026, 11, 24, 15, 0, tzinfo=BERLIN)),
    ("usage limit reached, resets 9am", datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)),
    ("limit reached ∙ resets 11:30pm (America/New_York)", datetime(2026, 11, 24, 23, 30, tzinfo=ZoneInfo("America/New_York"))),
    ("weekly limit reached · resets Nov 27, 5pm", datetime(2026, 11, 27, 17, 0, tzinfo=BERLIN)),
    ("resets at 14:45", datetime(2026, 11, 24, 14, 45, tzinfo=BERLIN)),
    ("API Error: Request rejected (429)", None),
    ("resets 13pm", None),
])
def test_reset_times_from_messages(text: str, expected: datetime | None) -> None:
    assert parse_reset_text(text, NOW, BERLIN) == expected


def test_next_attempt_prefers_reset_then_backs_off() -> None:
    when, known = next_attempt_at(now=NOW, attempt=0, resets_at_epoch=NOW.timestamp() + 600, default_tz=BERLIN)
    assert known and (when - NOW).total_seconds() == 660
    backoff = [(next_attempt_at(now=NOW, attempt=a, default_tz=BERLIN)[0] - NOW).total_seconds() for a in range(8)]
    assert backoff == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def _feed(lines: list[dict[str, object]], exit_code: int = 0) -> tuple[StreamParser, ErrorClass, str]:
    parser = StreamParser()
    for line in lines:
        parser.feed(json.dumps(line))
    result = parser.finish(exit_code, duration_s=1.0)
    return parser, result.error_class, result.error_message


def _result(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"type": "result", "subtype": "success", "is_error": False, "result": "ok", "session_id": "s"}
    base.update(kw)
    return base


@pytest.mark.parametrize("lines, exit_code, expected", [
    ([_result()], 0, ErrorClass.OK),
    ([_result(is_error=True, api_error_status=529, result="API Error: 529 Overloaded")], 1, ErrorClass.OVERLOADED),
    ([_result(is_error=True, api_error_status=429, result="API Error: Request rejected (429)")], 1, ErrorClass.RATE_LIMITED),
    ([{"type": "assistant", "error": "rate_limit", "message": {"id": "m", "content": []}},
      _result(is_error=True, result="You've hit your session limit · resets 3pm")], 1, ErrorClass.RATE_LIMITED),
    ([_result(is_error=True, api_error_status=401, result="Failed to authenticate. API Error: 401")], 1, ErrorClass.AUTH),
    ([_result(is_error=True, result="Invalid API key · Fix external API key")], 1, ErrorClass.AUTH),
    ([_result(is_error=True, result="Not logged in · Please run /login")], 1, ErrorClass.AUTH),
    ([_result(is_error=True, api_error_status=404, result="There's an issue with the selected model")], 1, ErrorClass.NOT_FOUND),
    ([_result(is_error=True, api_error_status=500, result="API Error: 500")], 1, ErrorClass.API_ERROR),
    ([{"type": "result", "subtype": "error_max_turns", "is_error": True, "session_id": "s"}], 1, ErrorClass.API_ERROR),
    ([], 0, ErrorClass.CRASHED),
    ([{"type": "system", "subtype": "init", "session_id": "s"}], 143, ErrorClass.CRASHED),
    ([_result()], 2, ErrorClass.CRASHED),
])
def test_stream_classification(lines: list[dict[str, object]], exit_code: int, expected: ErrorClass) -> None:
    assert _feed(lines, exit_code)[1] is expected


def test_stream_progress_and_totals() -> None:
    parser = StreamParser()
    init = parser.feed(json.dumps({"type": "system", "subtype": "init", "session_id": "abc", "model": "claude-sonnet-4-6"}))
    tool = parser.feed(json.dumps({"type": "assistant", "message": {"id": "m1", "content": [
        {"type": "tool_use", "name": "Edit", "input": {"file_path": "/x/y.py", "old_string": "a"}}]}}))
    retry = parser.feed(json.dumps({"type": "system", "subtype": "api_retry", "attempt": 2, "max_retries": 10, "error_status": 529, "error": "overloaded"}))
    assert parser.feed("not json at all") is not None
    parser.feed(json.dumps(_result(total_cost_usd=0.5, num_turns=3, usage={"input_tokens": 10, "output_tokens": 4},
                                   modelUsage={"claude-sonnet-4-6": {}}, permission_denials=[{"tool_name": "Bash"}])))
    assert init is not None and init.kind == "init"
    assert tool is not None and (tool.tool, tool.target, tool.turns) == ("Edit", "/x/y.py", 1)
    assert retry is not None and retry.detail == "API retry 2/10 (529 overloaded)"
    result = parser.finish(0, duration_s=2.0)
    assert (result.session_id, result.cost_usd, result.turns, result.input_tokens, result.model) == ("s", 0.5, 3, 10, "claude-sonnet-4-6")
    assert result.permission_denials == ("Bash",)


@pytest.mark.parametrize("text, assigned, blocked, question", [
    ("plan\nASSIGNED: sonnet-worker\n", "sonnet-worker", False, None),
    ("**ASSIGNED:** `opus`\nASSIGNED: sonnet.\n", "sonnet", False, None),
    ("## Status: BLOCKED\nQUESTION: which database?\n", None, True, "which database?"),
    ("## Status: DONE\nBLOCKED earlier, now fine\n", None, True, None),
    ("## Status: PARTIAL\nall good\n", None, False, None),
    ("Status: blocked\n", None, True, None),
])
def test_handoff_protocol(text: str, assigned: str | None, blocked: bool, question: str | None) -> None:
    assert (hp.assigned(text), hp.is_blocked(text), hp.question(text)) == (assigned, blocked, question)


@pytest.mark.parametrize("assignee, name, model, match", [
    ("sonnet", "sonnet-worker", "claude-sonnet-4-6", True),
    ("opus", "sonnet-worker", "claude-sonnet-4-6", False),
    ("opus-worker", "opus-worker", "opus", True),
    ("claude-sonnet-4-6", "w", "claude-sonnet-4-6", True),
    ("worker", "opus-worker", "opus", True),
    ("sonnet-worker", "opus-worker", "opus", False),
])
def test_assignment_matching(assignee: str, name: str, model: str, match: bool) -> None:
    assert hp.matches_assignment(assignee, link_name=name, model=model) is match


def test_prompt_rendering_keeps_unknown_braces() -> None:
    assert render("{CHAIN} {json} {ROUND}", {"CHAIN": "c", "ROUND": "2"}) == "c {json} 2"
    text = build_prompt("do {LINK}", {"LINK": "w", "HANDOFF": "/h"}, until_full=True, wind_down_reason="last round")
    assert text.startswith("do w") and "context window" in text and "WIND-DOWN" in text and "/h" in text
    assert [format_duration(s) for s in (None, 5.25, 59, 61, 3600 * 2 + 60 * 5)] == ["unlimited", "5.2s", "59s", "1m", "2h05m"]


# ---- the retry decision after an attempt (policy.after_attempt) ----------------------------------


def _decide(cls: ErrorClass, text: str = "", tries: Tries | None = None, **kw: object) -> object:
    base: dict[str, object] = dict(link_name="w", model="m1", fallback_model="m2", is_command=False,
                                   continue_session=False, stopping=False, tries=tries or Tries(), stall_s=5.0,
                                   budget=10.0, cost=10.0)
    base.update(kw)
    return after_attempt(cls, text, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls, text, tries, kw, then, alert", [
    (ErrorClass.OK, "", Tries(), {}, Then.RETURN, None),
    (ErrorClass.KILLED, "", Tries(), {}, Then.RETURN, None),
    (ErrorClass.BUDGET, "", Tries(), {}, Then.STOP, None),
    (ErrorClass.OVERLOADED, "", Tries(), {"stopping": True}, Then.RETURN, None),
    (ErrorClass.CRASHED, "No conversation found with session ID: x", Tries(), {"continue_session": True}, Then.RESUME_FRESH, None),
    (ErrorClass.CRASHED, "No conversation found", Tries(resumed_fresh=True), {"continue_session": True, "fallback_model": None}, Then.RETURN, None),
    (ErrorClass.RATE_LIMITED, "", Tries(), {}, Then.WAIT_LIMIT, None),
    (ErrorClass.RATE_LIMITED, "", Tries(limit_waits=48), {}, Then.STOP, None),
    (ErrorClass.AUTH, "401", Tries(), {}, Then.STOP, "auth"),
    (ErrorClass.STALLED, "", Tries(), {}, Then.RETRY, None),
    (ErrorClass.STALLED, "", Tries(stalled_once=True), {}, Then.FALLBACK, None),
    (ErrorClass.STALLED, "", Tries(stalled_once=True), {"fallback_model": None}, Then.RETURN, "stalled"),
    (ErrorClass.OVERLOADED, "", Tries(), {}, Then.FALLBACK, None),
    (ErrorClass.OVERLOADED, "", Tries(), {"model": "m2"}, Then.RETURN, None),
    (ErrorClass.OVERLOADED, "", Tries(), {"is_command": True}, Then.RETURN, None),
    (ErrorClass.API_ERROR, "", Tries(), {"fallback_model": None}, Then.RETURN, None),
])
def test_after_an_attempt_the_loop_is_told_what_next(
    cls: ErrorClass, text: str, tries: Tries, kw: dict[str, object], then: Then, alert: str | None,
) -> None:
    """Checked by breaking policy.after_attempt: the stalled-once guard removed (a stall retried
    forever, row 11 red); the stopping check moved after the fallback (row 4 red)."""
    decision = _decide(cls, text, tries, **kw)
    assert (decision.then, decision.alert) == (then, alert)  # type: ignore[attr-defined]


def test_the_usage_limit_waits_are_counted_and_capped() -> None:
    d = _decide(ErrorClass.RATE_LIMITED, tries=Tries(limit_waits=3))
    assert d.then is Then.WAIT_LIMIT and d.tries.limit_waits == 4  # type: ignore[attr-defined]
    stop = _decide(ErrorClass.RATE_LIMITED, tries=Tries(limit_waits=48)).stop  # type: ignore[attr-defined]
    assert (stop.status, stop.reason) == ("BLOCKED", "usage limit still reached after 48 waits")
