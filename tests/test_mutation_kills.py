"""Tests written to kill mutants that survived `scripts/mutation.sh` (see tests/MUTATION.md): each
pins a boundary or a branch the other tests left free."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine import handoff, routing
from engine.chains import (
    MAX_PROMPT_BYTES,
    ChainDef,
    GlobalDefaults,
    LinkDef,
    chain_path,
    load_chain,
)
from engine.errors import BadChainName, InvalidChain, UnknownChain
from engine.limits import RESET_MARGIN, next_attempt_at, parse_reset_text
from engine.policy import RetryDecision, Stop, Then, Tries, after_attempt
from engine.prompts import WIND_DOWN, build_prompt, format_duration, render
from engine.settings import DEFAULT_ALLOWED_TOOLS, DEFAULT_MODEL, DEFAULT_PERMISSION_MODE, Settings
from engine.stream import ErrorClass
from engine.tasks import FilePool

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # 11:00 in Berlin


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0.0s"), (9.94, "9.9s"), (10, "10s"), (59.9, "59s"),  # below a minute: tenths under 10 s
    (60, "1m"), (119, "1m"), (3599, "59m"), (3600, "1h00m"), (3661, "1h01m"),
    (-5, "0s"),  # a clock step backwards shows as nothing elapsed, not a negative time
])
def test_format_duration_boundaries(seconds: float, shown: str) -> None:
    """Kills the 8 survivors of format_duration (checked one by one, each applied by hand):
    `0 <= seconds < 60` -> `1 <=` / `0 <` / `<= 60` / `< 61`, `seconds < 10` -> `<= 10` / `< 11`,
    `max(0, ...)` -> `max(1, ...)`, and `if minutes` -> `if minutes or True`."""
    assert format_duration(seconds) == shown


# ---- policy.after_attempt: the whole decision, not only its `then` ------------------------------
# tests/test_pure.py's table checks `then` and `alert`; mutants that dropped the tries carried on,
# the Stop's reason or the warning survived it. Here every field of the decision is pinned.

_BASE: dict[str, object] = dict(link_name="w", model="m1", fallback_model="m2", is_command=False,
                                continue_session=False, stopping=False, stall_s=5.0, budget=10.0, cost=9.995)
_T = Tries(limit_waits=2)


@pytest.mark.parametrize(("cls", "text", "tries", "kw", "decision"), [
    (ErrorClass.OK, "", _T, {}, RetryDecision(Then.RETURN, _T)),
    (ErrorClass.KILLED, "", _T, {}, RetryDecision(Then.RETURN, _T)),
    (ErrorClass.BUDGET, "", _T, {}, RetryDecision(Then.STOP, _T, Stop("COMPLETED", "budget of $10.00 used ($9.99)"))),
    (ErrorClass.BUDGET, "", _T, {"budget": None, "cost": 0.5}, RetryDecision(Then.STOP, _T, Stop("COMPLETED", "budget of $0.00 used ($0.50)"))),
    (ErrorClass.OVERLOADED, "", _T, {"stopping": True}, RetryDecision(Then.RETURN, _T)),
    (ErrorClass.CRASHED, "No conversation found with session ID: x", _T, {"continue_session": True},
     RetryDecision(Then.RESUME_FRESH, Tries(limit_waits=2, resumed_fresh=True))),
    (ErrorClass.CRASHED, "no conversation found", _T, {"continue_session": False, "fallback_model": None},
     RetryDecision(Then.RETURN, _T)),
    (ErrorClass.RATE_LIMITED, "", _T, {}, RetryDecision(Then.WAIT_LIMIT, Tries(limit_waits=3))),
    (ErrorClass.RATE_LIMITED, "", Tries(limit_waits=47), {}, RetryDecision(Then.WAIT_LIMIT, Tries(limit_waits=48))),
    (ErrorClass.RATE_LIMITED, "", Tries(limit_waits=48), {},
     RetryDecision(Then.STOP, Tries(limit_waits=48), Stop("BLOCKED", "usage limit still reached after 48 waits"))),
    (ErrorClass.AUTH, "x" * 300, _T, {},
     RetryDecision(Then.STOP, _T, Stop("BLOCKED", "authentication failed: " + "x" * 200), alert="auth")),
    (ErrorClass.STALLED, "", _T, {"stall_s": 2.5},
     RetryDecision(Then.RETRY, Tries(limit_waits=2, stalled_once=True), warning="w stalled (no output for 2.5 s); retrying once")),
    (ErrorClass.OVERLOADED, "", _T, {},
     RetryDecision(Then.FALLBACK, _T, warning="w failed on m1 (overloaded); retrying on m2")),
    (ErrorClass.STALLED, "", Tries(stalled_once=True), {"is_command": True},
     RetryDecision(Then.RETURN, Tries(stalled_once=True), alert="stalled")),
    (ErrorClass.CRASHED, "", _T, {"is_command": True}, RetryDecision(Then.RETURN, _T)),
])
def test_after_attempt_whole_decision(cls: ErrorClass, text: str, tries: Tries, kw: dict[str, object],
                                      decision: RetryDecision) -> None:
    """Kills the after_attempt survivors (tries replaced by None, the Stop or warning dropped or
    reworded, `waits > MAX` made `>=`, `text[:200]` made `[:201]`): checked by hand with the
    tries of the OK row replaced by None (red) and `waits > MAX_LIMIT_WAITS` made `>=` (red)."""
    args = {**_BASE, **kw}
    assert after_attempt(cls, text, tries=tries, **args) == decision  # type: ignore[arg-type]


# ---- limits: the reset time in claude's message, and when to try again ----------------------------

@pytest.mark.parametrize(("text", "now", "expected"), [
    ("resets 1am", NOW, datetime(2026, 11, 25, 1, 0, tzinfo=BERLIN)),  # 1 is a valid 12-hour hour
    ("resets 12pm", NOW, datetime(2026, 11, 24, 12, 0, tzinfo=BERLIN)),  # noon
    ("resets 12am", NOW, datetime(2026, 11, 25, 0, 0, tzinfo=BERLIN)),  # midnight, not noon
    ("resets 0am", NOW, None),
    ("resets 10:59", NOW, datetime(2026, 11, 24, 10, 59, tzinfo=BERLIN) + (datetime(2026, 11, 25) - datetime(2026, 11, 24))),
    ("resets 23:59", NOW, datetime(2026, 11, 24, 23, 59, tzinfo=BERLIN)),
    ("resets 24:00", NOW, None), ("resets 25:00", NOW, None), ("resets 10:60", NOW, None),
    ("resets 3pm (Mars/Olympus_Mons)", NOW, datetime(2026, 11, 24, 15, 0, tzinfo=BERLIN)),  # unknown zone: the default
    ("resets November 27, 5:30pm", NOW, datetime(2026, 11, 27, 17, 30, tzinfo=BERLIN)),  # a month written out
    ("resets Feb 30, 5pm", NOW, None),  # no such day
    # A date more than 180 days back is next year's; exactly 180 days back is still this year's.
    ("resets May 28, 10am", NOW, datetime(2026, 5, 28, 10, 0, tzinfo=UTC)),
    ("resets May 27, 10pm", NOW, datetime(2027, 5, 27, 22, 0, tzinfo=UTC)),
    # The time now has seconds: the reset is on the minute; a reset at this very minute is tomorrow.
    ("resets 3pm", datetime(2026, 11, 24, 10, 0, 30, 5, tzinfo=UTC), datetime(2026, 11, 24, 15, 0, tzinfo=BERLIN)),
    ("resets 11am", NOW, datetime(2026, 11, 25, 11, 0, tzinfo=BERLIN)),
])
def test_reset_text_boundaries(text: str, now: datetime, expected: datetime | None) -> None:
    """Kills the parse_reset_text survivors: `1 <= hour <= 12` -> `2 <=`/`1 <`/`< 12`, `hour % 12`
    -> `% 13`, `hour > 23 or minute > 59` -> `and`/`> 24`/`>= 59`/`> 60`, the unknown zone's
    fallback -> None, `[:3]` -> `[:4]`, the month form's minute dropped, `< now - 180 days` ->
    `<=`/`181`, `year + 1` -> None/`- 1`/`+ 2`, `second=0`/`microsecond=0` dropped, `when <= now`
    -> `<`. Checked by hand: `% 12` -> `% 13` makes the 12am row red. Two default zones: the
    May rows use UTC, so 180 days back falls on a whole hour."""
    zone = UTC if "May" in text else BERLIN
    got = parse_reset_text(text, now, zone)
    assert got == expected
    if got is not None and expected is not None:
        assert (got.utcoffset(), got.second, got.microsecond) == (expected.utcoffset(), 0, 0)


BACKOFF_1 = timedelta(seconds=120)  # attempt 1: twice the base backoff (not the reset margin)


@pytest.mark.parametrize(("kw", "expected"), [
    # A reset at this very moment is not ahead: back off instead.
    ({"resets_at_epoch": NOW.timestamp()}, (NOW + BACKOFF_1, False)),
    ({"resets_at_epoch": NOW.timestamp() + 1}, (NOW + RESET_MARGIN + timedelta(seconds=1), True)),
    # The message's reset, in the default zone when it names none.
    ({"message": "limit reached, resets 3pm"}, (datetime(2026, 11, 25, 15, 1, tzinfo=TOKYO), True)),  # 19:00 there now
    ({"message": "resets 3pm (Europe/Berlin)"}, (datetime(2026, 11, 24, 15, 1, tzinfo=BERLIN), True)),
    ({"message": "resets Nov 24, 10am (UTC)"}, (NOW + BACKOFF_1, False)),  # exactly now
    ({"message": "resets Nov 23, 10am (UTC)"}, (NOW + BACKOFF_1, False)),  # a day past
    ({}, (NOW + BACKOFF_1, False)),
])
def test_next_attempt_whole_answer(kw: dict[str, object], expected: tuple[datetime, bool]) -> None:
    """Kills the next_attempt_at survivors: `when > now` -> `>=`, the message never parsed
    (`parsed = None`, `now`/`default_tz` -> None), `parsed > now` -> `>=`, `+ RESET_MARGIN` -> `-`,
    and either flag flipped. Checked by hand: the backoff's flag made True makes the last row red.
    Tokyo as the default zone, so a mutant that falls back to the machine's zone (UTC) is told
    apart."""
    got = next_attempt_at(now=NOW, attempt=1, default_tz=TOKYO, **kw)  # type: ignore[arg-type]
    assert got == expected
    assert got[0].utcoffset() is not None


# ---- handoff: the assignee, the headline, the operator note, the diff ------------------------------

@pytest.mark.parametrize(("text", "who"), [
    ("ASSIGNED: OPUS-X.", "opus-x"),  # trailing punctuation goes, letters (an X too) stay
    ("ASSIGNED: XWORKER;", "xworker"),
])
def test_assigned_strips_punctuation_only(text: str, who: str) -> None:
    """Kills `strip(".,;:")` -> `strip("XX.,;:XX")` (applied by hand: "opus-" comes back, red)."""
    assert handoff.assigned(text) == who


def test_headline_defaults_three_lines_and_300_characters() -> None:
    """Kills the defaults `max_lines=3` -> 4 and `max_chars=300` -> 301 (each applied by hand: red)."""
    assert handoff.headline("a\nb\n\nc\nd\ne") == "a\nb\nc"
    assert handoff.headline("w " * 150 + "x") == "w " * 149 + "w…"
    assert handoff.headline("y" * 300) == "y" * 300


@pytest.mark.parametrize(("text", "kept"), [
    ("done  \n\n", "done  "),  # only line ends go: trailing spaces of the last line stay
    ("FIX\n", "FIX"),  # letters at the end stay (an X too)
])
def test_operator_note_keeps_the_handoff_but_its_line_ends(text: str, kept: str) -> None:
    """Kills `text.rstrip("\\n")` -> `rstrip(None)` / `rstrip("XX\\nXX")` (applied by hand: red)."""
    note = handoff.operator_note(text, "yes", "ann", "2026-11-24T10:00")
    assert note == kept + "\n\n## Operator note (ann, 2026-11-24T10:00)\nyes\n"


def test_diff_is_a_unified_diff_with_two_lines_of_context() -> None:
    """Kills the 21 mutants of `handoff.diff` (no selected test reached it: only the CLI's
    `chain handoff --diff` test did): the labels, the context of 2 lines, the line ends kept,
    the join. Applied by hand: `n=context` -> `n=3`: red."""
    before = "".join(f"line {i}\n" for i in range(1, 9))
    after = before.replace("line 5\n", "line five\n")
    assert handoff.diff(before, after) == (
        "--- before\n+++ after\n@@ -3,5 +3,5 @@\n line 3\n line 4\n-line 5\n+line five\n line 6\n line 7\n"
    )
    assert handoff.diff(before, after, context=0) == "--- before\n+++ after\n@@ -5 +5 @@\n-line 5\n+line five\n"
    assert handoff.diff(before, before) == ""


# ---- prompts: unknown placeholders stay, the wind-down names its reason -----------------------------

def test_render_leaves_unknown_values_as_written() -> None:
    """Kills `values.get(name, m.group(0))` -> None / no default / `m.group(1)` (applied by hand: red)."""
    assert render("{ROUND} of {LINK} {other}", {"ROUND": "3"}) == "3 of {LINK} {other}"


def test_wind_down_names_its_reason() -> None:
    """Kills `WIND_DOWN.replace("{why}", ...)` -> `"XX{why}XX"` / `"{WHY}"` (applied by hand: red)."""
    text = build_prompt("go", {"HANDOFF": "h.md"}, until_full=False, wind_down_reason="2 rounds left")
    assert text == "go" + WIND_DOWN.replace("{why}", "2 rounds left").replace("{HANDOFF}", "h.md")
    assert "{why}" not in text and "(2 rounds left)" in text


# ---- cron: where describe gives up, and the trigger's pickled state --------------------------------

@pytest.mark.parametrize(("text", "description"), [
    ("0,30 8,12 * * *", "every day at 08:00, 08:30, 12:00, 12:30 (UTC)"),  # four times: listed
    ("0,30 8,12,18 * * *", "cron 0,30 8,12,18 * * * (UTC)"),  # six: the cron
    ("0 1,2,3,4,5 * * *", "cron 0 1,2,3,4,5 * * * (UTC)"),  # five: the cron
    ("0 9 1,15 * mon", "cron 0 9 1,15 * 1 (UTC)"),  # days of the month and a weekday: the cron
    ("* 9 * * *", "cron * 9 * * * (UTC)"),  # every minute of one hour is not "every minute"
    ("0 9-17 * * *", "cron 0 9-17 * * * (UTC)"),  # a range of hours is not "every N hours"
])
def test_describe_falls_back_to_the_cron(text: str, description: str) -> None:
    """Kills describe's `len(minutes) * len(hours) <= 4` -> `/`, `< 4`, `<= 5`; `dow == "*" and`
    -> `or`; `h == "*" and m == "*"` -> `or`; `m.isdigit() and h.startswith("*/")` -> `or`."""
    from engine.cron import describe, parse_schedule
    assert describe(parse_schedule(text, default_tz="UTC")) == description


def test_trigger_state_round_trip() -> None:
    """Kills `CronSpecTrigger.__getstate__`'s mutants (a key or the version changed): the state
    names the version, the expression, what was typed and the zone, and a copy fires alike."""
    import pickle

    from engine.cron import parse_schedule
    from engine.cron_trigger import CronSpecTrigger
    trigger = CronSpecTrigger(parse_schedule("weekdays 07:30", default_tz="Europe/Berlin"))
    assert trigger.__getstate__() == {"version": 1, "expression": "30 7 * * 1-5", "original": "weekdays 07:30",
                                      "tz": "Europe/Berlin"}
    copy = pickle.loads(pickle.dumps(trigger))
    assert (copy.spec, copy.get_next_fire_time(None, NOW)) == (trigger.spec, trigger.get_next_fire_time(None, NOW))


@pytest.mark.parametrize(("text", "message"), [
    ("every 7m", "every 7m: the minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), "
                 "so every hour looks the same. Example: every 30m"),
    ("every 5h", "every 5h: the hours must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24), "
                 "so every day looks the same. Example: every 6h"),
])
def test_every_errors_whole(text: str, message: str) -> None:
    """Kills the reworded second halves of `_every`'s two errors (only their start was asserted)."""
    from engine.cron import ScheduleError, parse_schedule
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, default_tz="UTC")
    assert str(info.value) == message


def test_fires_between_keeps_the_latest_1000_in_the_spec_zone() -> None:
    """Kills fires_between's default `limit=1000` -> 1001 and `astimezone(zone)` -> `astimezone(None)`
    (the machine's zone): a day of minutely fires is cut to its last 1000, each in Berlin time."""
    from engine.cron import fires_between, parse_schedule
    spec = parse_schedule("every minute", default_tz="Europe/Berlin")
    fires = fires_between(spec, NOW.replace(hour=0), NOW.replace(day=25, hour=0))
    assert len(fires) == 1000
    assert (fires[0], fires[-1]) == (datetime(2026, 11, 24, 8, 21, tzinfo=BERLIN), datetime(2026, 11, 25, 1, 0, tzinfo=BERLIN))
    assert {f.tzinfo for f in fires} == {BERLIN}


@pytest.mark.parametrize("call", ["fires_between", "most_recent_fire", "most_recent_fire not_before"])
def test_naive_times_are_refused_by_name(call: str) -> None:
    """Kills the argument names in `_utc(x, "until" / "before" / "not_before")` made None, "XX..XX"
    or upper case: the error names the argument a caller got wrong."""
    from engine import cron
    spec = cron.parse_schedule("every minute", default_tz="UTC")
    naive = datetime(2026, 11, 24, 10, 0)
    with pytest.raises(ValueError) as info:
        if call == "fires_between":
            cron.fires_between(spec, NOW, naive)
        elif call == "most_recent_fire":
            cron.most_recent_fire(spec, naive)
        else:
            cron.most_recent_fire(spec, NOW, naive)
    name = {"fires_between": "until", "most_recent_fire": "before"}.get(call, "not_before")
    assert str(info.value) == f"{name} must be an aware datetime, got {naive!r}"


def test_trigger_edges() -> None:
    """Kills get_next_fire_time's `now - 1 µs` -> `- 2 µs` (a fire 1 µs before now came back),
    `next(fires, None)` -> `next(fires)` and `None if fire is None` -> `and False` (a spec that
    never fires raised instead of answering None), and the names in its `_utc` errors."""
    from engine.cron import ScheduleSpec, parse_schedule
    from engine.cron_trigger import CronSpecTrigger
    trigger = CronSpecTrigger(parse_schedule("0 9 * * *", default_tz="UTC"))
    nine = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, nine) == nine  # a fire at `now` counts
    assert trigger.get_next_fire_time(None, nine + timedelta(microseconds=1)) == nine + timedelta(days=1)
    never = CronSpecTrigger(ScheduleSpec("0 0 30 2 *", "0 0 30 2 *", "UTC"))  # parse_schedule refuses it
    assert never.get_next_fire_time(None, nine) is None
    naive = datetime(2026, 11, 24, 9, 0)
    for args, name in [((None, naive), "now"), ((naive, nine), "previous_fire_time")]:
        with pytest.raises(ValueError) as info:
            trigger.get_next_fire_time(*args)
        assert str(info.value) == f"{name} must be an aware datetime, got {naive!r}"


# ---- chains: whole answers of the loader ----------------------------------------------------------
# A link's prompt, env and tools as `load_chain` reads them, by table, with the *whole* answer:
# every problem's exact text (field path and reason) or the prompt's text, its source, the env and
# the tools. tests/test_chains.py checks that a problem's text *contains* a phrase; the mutation run
# (tests/MUTATION.md) left alive mutants of `_Loader.prompt_file`, `link_prompt`, `env_map` and
# `tools` that dropped the field path, emptied or reworded a reason, or changed a source label.

TOOLS = ("Read", "Edit", "Write", "Bash", "Glob", "Grep")  # the global default


def _answer(home: Path, link: dict[str, Any]) -> tuple[Any, ...]:
    (home / "prompts" / "big.md").write_text("x" * (MAX_PROMPT_BYTES + 1), encoding="utf-8")
    (home / "prompts" / "exact.md").write_text("y" * MAX_PROMPT_BYTES, encoding="utf-8")
    (home / "prompts" / "latin.md").write_bytes(b"caf\xe9")
    (home / "prompts" / "plan.txt").write_text("plan text", encoding="utf-8")
    (home / "notes.md").write_text("home note", encoding="utf-8")
    doc = {"links": [{"name": "w", "model": "m", **link}]}
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        chain = load_chain(home, "t")
    except InvalidChain as exc:
        return ("problems", *exc.problems)
    first = chain.links[0]
    return (first.prompt[:12], first.prompt_source, dict(first.env), first.allowed_tools, *chain.warnings)


P = "chains/t.json: links[0]."


@pytest.mark.parametrize(("link", "answer"), [
    ({"prompt": ""}, ("problems", P + "prompt: empty prompt")),
    ({"prompt": "   "}, ("problems", P + "prompt: empty prompt")),
    ({"prompt": ["x"]}, ("problems", P + "prompt: expected a prompt key, a file in prompts/, or text, got a list")),
    ({"prompt": "/etc/passwd"},
     ("problems", P + "prompt: '/etc/passwd': absolute paths are not allowed; use a path inside the home folder")),
    ({"prompt": "../x.md"}, ("problems", P + "prompt: '../x.md' leads outside the home folder")),
    ({"prompt": "big.md"}, ("problems", P + "prompt: 'big.md' is larger than 262,144 bytes")),
    ({"prompt": "exact.md"}, ("y" * 12, "prompts/exact.md", {}, TOOLS)),  # exactly the limit: read
    ({"prompt": "latin.md"}, ("problems", P + "prompt: 'latin.md' is not UTF-8 text")),
    ({"prompt": "plan"}, ("plan text", "prompts/plan.txt", {}, TOOLS)),
    ({"prompt": "notes"}, ("home note", "notes.md", {}, TOOLS)),  # in the home folder
    ({"prompt": "sub/../plan.txt"}, ("plan text", "sub/../plan.txt", {}, TOOLS)),  # '..' that stays inside: read
    ({"prompt": "missing.md"}, ("problems", P + "prompt: no prompt key or file 'missing.md'")),
    ({"prompt": "missing.txt"}, ("problems", P + "prompt: no prompt key or file 'missing.txt'")),
    ({"prompt": "sub/missing"}, ("problems", P + "prompt: no prompt key or file 'sub/missing'")),
    ({"prompt": "bareword"}, ("bareword", "inline", {}, TOOLS,
                              "chains/t.json: links[0].prompt: 'bareword' is used as the prompt text itself: there is "
                              "no prompts key 'bareword' and no file prompts/bareword, prompts/bareword.txt or "
                              "prompts/bareword.md")),
    ({"prompt": "two words"}, ("two words", "inline", {}, TOOLS)),
    ({"prompt": "p q", "env": ["A"]}, ("problems", P + "env: expected an object of NAME: value, got a list")),
    ({"prompt": "p q", "env": {"A": "1", "B C": "2", "D": 3}},
     ("problems", P + "env.B C: not a valid environment variable name", P + "env.D: expected a string, got a number (3)")),
    ({"prompt": "p q", "env": {"A": "1"}}, ("p q", "inline", {"A": "1"}, TOOLS)),
    ({"prompt": "p q", "allowed_tools": {"a": 1}},
     ("problems", P + "allowed_tools: expected a list of tool names or a space-separated string, got an object")),
    ({"prompt": "p q", "allowed_tools": [" Read ", "", "Edit"]}, ("p q", "inline", {}, ("Read", "Edit"))),
    ({"prompt": "p q", "allowed_tools": "Read  Edit"}, ("p q", "inline", {}, ("Read", "Edit"))),
])
def test_link_prompt_env_tools_whole_answer(home: Path, link: dict[str, Any], answer: tuple[Any, ...]) -> None:
    """Kills the survivors listed in tests/MUTATION.md under `chains` (field path -> None, reason ->
    None / dropped / "XX..XX" / upper case, `kind_of(value)` -> `kind_of(None)`, `> MAX_PROMPT_BYTES`
    -> `>=`, `"inline"` reworded, `".txt"` reworded). Checked by hand: `"empty prompt"` made
    `"EMPTY PROMPT"` turns the first two rows red; `st_size > MAX` made `>=` turns "exact.md" red."""
    assert _answer(home, link) == answer


GOOD = json.dumps({"links": [{"name": "w", "model": "m", "prompt": "p q"}]}).encode()


@pytest.mark.parametrize(("raw", "problem"), [
    (b"x" * (1024 * 1024 + 1), "file is 1,048,577 bytes, over the 1,048,576-byte limit"),
    (GOOD + b" " * (1024 * 1024 - len(GOOD)), None),  # exactly the limit: read
    ("\ufeff".encode() + GOOD, None),  # a byte order mark is allowed
    (b'{"links": "\xff"}', "not UTF-8 text (invalid byte at offset 11)"),
    (b"  \n", "the file is empty"),
    (b'{"links": NaN}', "invalid JSON: NaN is not allowed"),
    (b'{"links": [}', "line 1 column 12: invalid JSON: Expecting value"),
    (b"[" * 100000, "invalid JSON: nested too deeply"),
    (b"[]", "the top level must be an object, got a list"),
    (b'"text"', "the top level must be an object, got a string ('text')"),
])
def test_the_file_itself_whole_problem(home: Path, raw: bytes, problem: str | None) -> None:
    """Kills `_Loader._document`'s mutants that raised `InvalidChain(None)` instead of the problem,
    `size > MAX_CHAIN_BYTES` -> `>=`, `parse_constant=_reject_constant` -> None / dropped (NaN
    accepted), `_reject_constant`'s message -> None, and `kind_of(doc)` -> `kind_of(None)`.
    Checked by hand: `size > MAX_CHAIN_BYTES` made `>=` turns the second row red."""
    (home / "chains" / "t.json").write_bytes(raw)
    if problem is None:
        assert load_chain(home, "t").links[0].name == "w"
        return
    with pytest.raises(InvalidChain) as info:
        load_chain(home, "t")
    assert info.value.problems == ["chains/t.json: " + problem]


@pytest.mark.parametrize(("extra", "fields"), [
    ({}, ("", 3)),
    ({"description": "nightly"}, ("nightly", 3)),
    ({"shutdown": {"max_consecutive_blocks": 5}}, ("", 5)),  # the original's place for it
    ({"shutdown": {"max_consecutive_blocks": 5}, "max_consecutive_blocks": 0}, ("", 0)),  # the top level wins
])
def test_description_and_the_originals_shutdown_section(home: Path, extra: dict[str, Any],
                                                        fields: tuple[str, int]) -> None:
    """Kills `_Loader.load`'s `description ... or ""` -> `and ""` / default "XXXX" / `or "XXXX"`,
    and the `shutdown` section ignored (`isinstance(...) and False`, its key reworded, its value
    None). Checked by hand: `doc["shutdown"] if isinstance(...) and False` turns row 3 red."""
    doc = {"links": [{"name": "w", "model": "m", "prompt": "p q"}], **extra}
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    chain = load_chain(home, "t")
    assert (chain.description, chain.max_consecutive_blocks) == fields


def test_a_file_outside_the_home_is_named_by_its_path(home: Path, tmp_path: Path) -> None:
    """Kills `_Loader.__init__`'s `self.label = str(path)` -> None / `str(None)` (a file that
    `chain validate` checks before it is copied in)."""
    path = tmp_path / "elsewhere" / "cand.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"links": [{"name": "w", "model": "m", "prompt": "p q"}], "max_rounds": -1}),
                    encoding="utf-8")
    with pytest.raises(InvalidChain) as info:
        load_chain(home, str(path), allow_file=True)
    assert info.value.problems == [f"{path}: max_rounds: must be at least 0, got -1"]


def _approvals(home: Path, doc: dict[str, Any]) -> tuple[Any, ...]:
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        chain = load_chain(home, "t")
    except InvalidChain as exc:
        return ("problems", *exc.problems)
    return (*((link.name, tuple(map(str, link.approval.ask)), tuple(map(str, link.approval.deny)),
               link.approval.timeout_s, link.approval.on_timeout) for link in chain.links), *chain.warnings)


W = {"name": "w", "model": "m", "prompt": "p q"}
RULES = 'expected a list of rules such as "Bash(git push:*)"'


@pytest.mark.parametrize(("doc", "answer"), [
    ({"links": [W], "approve": {"ask": ["Bash(git push:*)"], "deny": "Write", "timeout_minutes": 5,
                                "on_timeout": "stop_chain", "extra": 1}},
     (("w", ("Bash(git push:*)",), ("Write",), 300.0, "stop_chain"),
      "chains/t.json: approve.extra: unknown field (ignored)")),
    ({"links": [W, {**W, "name": "v", "approve": {"ask": "Edit"}}], "approve": {"ask": ["Bash"]}},
     (("w", ("Bash",), (), 1800.0, "deny"), ("v", ("Edit",), (), 1800.0, "deny"))),  # the link's own wins
    ({"links": [W]}, (("w", (), (), 1800.0, "deny"),)),
    ({"links": [W], "approve": ["Bash"]},
     ("problems", "chains/t.json: approve: expected an object with ask, deny, timeout_minutes, on_timeout, got a list")),
    ({"links": [{**W, "approve": {"ask": 5, "deny": [3], "timeout_minutes": 0, "on_timeout": "maybe"}}]},
     ("problems", f"chains/t.json: links[0].approve.ask: {RULES}", f"chains/t.json: links[0].approve.deny: {RULES}",
      "chains/t.json: links[0].approve.timeout_minutes: must be greater than 0, got 0",
      "chains/t.json: links[0].approve.on_timeout: expected one of deny, stop_chain, got 'maybe'")),
])
def test_approve_whole_answer(home: Path, doc: dict[str, Any], answer: tuple[Any, ...]) -> None:
    """Kills `_Loader.approve`'s mutants: no selected test reached a chain's `approve` (only the
    end-to-end approval tests did), so its key, field paths, messages, defaults (30 minutes,
    "deny") and the unknown-field warning all survived. Checked by hand: `where = path + "approve"`
    made `path + "APPROVE"` turns rows 1, 4 and 5 red."""
    assert _approvals(home, doc) == answer


def test_every_chain_field_carried(home: Path) -> None:
    """Kills `_Loader.load`'s mutants that dropped a field from the ChainDef or replaced it by None
    (`path`, `description`, `max_cost_usd`, `env_allow`, `runtime_hours`, the blocked wait's
    minutes -> seconds, `version`'s str()), which only the defaults' test saw, and there the
    default is what None falls back to. Checked by hand: `max_cost_usd=None` turns it red."""
    doc = {"links": [W], "description": "d", "max_rounds": 7, "runtime_hours": 1.5, "max_cost_usd": 2.5,
           "blocked_wait_minutes": 45, "on_blocked": "wait", "max_consecutive_blocks": 2, "version": 2,
           "env_allow": ["PATH"]}
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    c = load_chain(home, "t")
    assert (c.path, c.description, c.max_rounds, c.runtime_hours, c.max_cost_usd, c.blocked_wait_s, c.on_blocked,
            c.max_consecutive_blocks, c.version, c.env_allow) == (
        home / "chains" / "t.json", "d", 7, 1.5, 2.5, 2700.0, "wait", 2, "2", ("PATH",))
    (home / "chains" / "t.json").write_text(json.dumps({**doc, "version": True}), encoding="utf-8")
    with pytest.raises(InvalidChain) as info:
        load_chain(home, "t")
    assert info.value.problems == ["chains/t.json: version: expected a string or a number, got a boolean (true)"]


# ---- chains: the whole ChainDef, field by field --------------------------------------------------
# One table over `load_chain`: each row a chain file and the *whole* ChainDef it loads to (BASE with
# the row's changes, warnings included) or the exact list of problems. It reaches the original
# llmauto's fields (`chain_name`, `version`, `task_pools`, `shutdown`, `telegram`), the loader's
# defaults, the routes' warnings, `opus_deep_limit`, the prompts section's files and `runs_on`,
# which the tables above leave free (tests/MUTATION.md, chains).

LINK = LinkDef(name="w", model="m", prompt="p q", permission_mode=DEFAULT_PERMISSION_MODE,
               allowed_tools=DEFAULT_ALLOWED_TOOLS)
T = "chains/t.json: "
UNREACHABLE = T + "links: 'v' is unreachable: no route or fall-through leads to it"
ONCE = T + "links[0].routes: mode 'once' never loops back: 'next' after the last link ends the run"
V = {"name": "v", "model": "m", "prompt": "p q"}


def _base(home: Path) -> ChainDef:
    """What `{"links": [W]}` loads to, written out (not loaded), so a changed default shows."""
    return ChainDef(name="t", path=home / "chains" / "t.json", max_rounds=100, blocked_wait_s=21600.0, links=(LINK,))


def _whole(home: Path, doc: dict[str, Any]) -> Any:
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        return load_chain(home, "t")
    except InvalidChain as exc:
        return ("problems", *exc.problems)


@pytest.mark.parametrize(("doc", "changes"), [
    ({}, {}),
    # The original's fields.
    ({"chain_name": "t", "version": "1.2", "task_pools": []},
     {"version": "1.2", "warnings": (T + "task_pools: not used by llmauto (the original never read it either)",)}),
    ({"chain_name": "other", "version": 3},
     {"version": "3", "warnings": (T + "chain_name: 'other' differs from the file name; the chain is called 't'",)}),
    ({"chain_name": 5, "version": [1]}, ("problems", T + "chain_name: expected a string, got a number (5)",
                                         T + "version: expected a string or a number, got a list")),
    ({"shutdown": 3}, ("problems", T + "shutdown: expected an object, got a number (3)")),
    ({"shutdown": {"odd": 1, "max_consecutive_blocks": 0, "stop_file": "STOP"}},
     {"max_consecutive_blocks": 0, "warnings": (T + "shutdown.odd: unknown field (ignored)",
                                                T + "shutdown.stop_file: ignored: the stop file is state/t/STOP")}),
    ({"shutdown": {"max_consecutive_blocks": -1}},
     ("problems", T + "shutdown.max_consecutive_blocks: must be at least 0, got -1")),
    ({"telegram": "on"}, ("problems", T + "telegram: expected an object, got a string ('on')")),
    ({"telegram": {"odd": 1, "enabled": False, "update_every_n_links": 1, "bot_token_env": "X", "chat_id": 5}},
     {"notify_every_n_links": 1, "warnings": (
         T + "telegram.odd: unknown field (ignored)",
         T + "telegram.bot_token_env: ignored: the bot's token and chat come from .env (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID)",
         T + "telegram.chat_id: ignored: the bot's token and chat come from .env (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID)")}),
    ({"telegram": {"bot_token_env": "", "chat_id": None}}, {}),  # empty: nothing to ignore
    ({"telegram": {"enabled": "yes", "update_every_n_links": 0}},
     ("problems", T + "telegram.enabled: expected true or false, got a string ('yes')",
      T + "telegram.update_every_n_links: must be at least 1, got 0")),
    # The loader's own values and defaults.
    ({"mode": "once", "max_rounds": 0}, {"mode": "once", "max_rounds": 0}),
    ({"mode": "conditional"}, {"conditional": True, "warnings": (
        T + "mode: 'conditional' but no link declares routes (it runs as a plain loop)",)}),
    ({"runs_on": "build.box-1_" + "a" * 52}, {"runs_on": "build.box-1_" + "a" * 52}),  # 64 characters
    ({"runs_on": "a" * 65}, ("problems", T + "runs_on: expected a queue name (letters, digits, - _ ., up to 64), got '"
                             + "a" * 65 + "'")),
    ({"runs_on": "-x"}, ("problems", T + "runs_on: expected a queue name (letters, digits, - _ ., up to 64), got '-x'")),
    # Routes.
    ({"links": [{**W, "routes": {"*": "stop"}}, V]},
     {"links": (replace(LINK, routes=routing.Routes((routing.Route("*", "stop"),))), replace(LINK, name="v")),
      "warnings": (UNREACHABLE,)}),
    ({"mode": "once", "links": [{**W, "routes": {"*": "next"}}]},
     {"mode": "once", "links": (replace(LINK, routes=routing.Routes((routing.Route("*", "next"),))),),
      "warnings": (ONCE,)}),
    ({"mode": "deadend", "links": [{**W, "routes": {"*": "next"}}]},
     {"mode": "deadend", "links": (replace(LINK, routes=routing.Routes((routing.Route("*", "next"),))),),
      "warnings": (ONCE.replace("'once'", "'deadend'"),)}),
    ({"links": [{**W, "routes": {"*": "nowhere"}}, 5]}, ("problems", T + "links[1]: expected an object, got a number (5)")),
    ({"links": 5}, ("problems", T + "links: expected a non-empty list of links, got a number (5)")),
    ({"links": None}, ("problems", T + "links: expected a non-empty list of links")),
    # opus_deep_limit: 0 is a limit (never run), not "none".
    ({"opus_deep_limit": 0, "links": [W, {**V, "name": "opus-deep"}, {**V, "name": "opus-deep-2", "max_runs": 4}]},
     {"links": (LINK, replace(LINK, name="opus-deep", max_runs=0), replace(LINK, name="opus-deep-2", max_runs=4)),
      "warnings": (T + "opus_deep_limit: applied as links[1].max_runs = 0: opus-deep runs at most 0 time(s) per run, "
                       "then is skipped and the controller is told",)}),
    ({"opus_deep_limit": 2}, {"warnings": (T + "opus_deep_limit: no link named opus-deep: ignored",)}),
    ({"opus_deep_limit": 2, "links": [{**W, "name": "opus-deep-x"}]},  # a name that starts with opus-deep
     {"links": (replace(LINK, name="opus-deep-x", max_runs=2),),
      "warnings": (T + "opus_deep_limit: applied as links[0].max_runs = 2: opus-deep-x runs at most 2 time(s) per run, "
                       "then is skipped and the controller is told",)}),
])
def test_the_whole_chain(home: Path, doc: dict[str, Any], changes: Any) -> None:
    """Kills the survivors of `original_fields`, `telegram`, `load` (the mode dropped, `max_rounds
    or 0` -> `or 1`, `version`'s test made always true, the shutdown section's path and minimum),
    `routes` (the once/deadend warning, `or` -> `and`, `partition(": ")` reworded), `opus_deep_limit`
    (`minimum=0` -> 1) and the new `runs_on`. Checked by hand: the stop_file warning's field path
    made "SHUTDOWN.STOP_FILE" turns row 6 red; `QUEUE_NAME`'s `{0,63}` made `{0,64}` turns the
    65-character row red; `startswith("opus-deep")` made "OPUS-DEEP" turns the opus-deep-x row red."""
    got = _whole(home, {"links": [W], **doc})
    if isinstance(changes, tuple):
        assert got == changes
    else:
        assert got == replace(_base(home), **changes)


def test_an_approve_without_ask_is_no_problem(home: Path) -> None:
    """Kills `approve`'s `raw.get("ask", [])` -> `raw.get("ask", None)` / `raw.get("ask")` (a missing
    `ask` became "expected a list of rules"). Checked by hand: `[]` made None turns it red. What the
    deny-only rules then do is not pinned here: `ApprovalRules` is false without `ask`, so the loader
    and engine/link.py drop them (reported as a bug, tests/MUTATION.md)."""
    chain = _whole(home, {"links": [W], "approve": {"deny": ["Write"]}})
    assert isinstance(chain, ChainDef)
    assert chain.warnings == ()


def _fields(home: Path, doc: dict[str, Any]) -> Any:
    """The whole ChainDef of `doc` loaded in Berlin time (a folder `wd` and a prompt file ready)."""
    (home / "wd").mkdir(exist_ok=True)
    (home / "wd" / "TODO.md").write_text("- [ ] one\n", encoding="utf-8")  # a task pool in the workdir only
    (home / "prompts" / "plan.txt").write_text("plan ✓", encoding="utf-8")
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        return load_chain(home, "t", tz=BERLIN)
    except InvalidChain as exc:
        return ("problems", *exc.problems)


MODES = "acceptEdits, auto, bypassPermissions, default, dontAsk, plan"


@pytest.mark.parametrize(("doc", "changes"), [
    ({"description": 5, "mode": 5, "on_blocked": "never"},
     ("problems", T + "description: expected a string, got a number (5)", T + "mode: expected a string, got a number (5)",
      T + "on_blocked: expected one of continue, wait, got 'never'")),
    ({"mode": "sometimes"}, ("problems", T + "mode: expected one of loop, once, deadend, conditional, got 'sometimes'")),
    ({"mode": "deadend", "max_rounds": 2.0, "max_bounces": 1, "runtime_hours": 0, "description": None},
     {"mode": "deadend", "max_rounds": 2, "max_bounces": 1}),
    ({"max_rounds": None, "max_cost_usd": 0.01, "blocked_wait_minutes": 0.5, "on_blocked": "wait"},
     {"max_cost_usd": 0.01, "blocked_wait_s": 30.0, "on_blocked": "wait"}),
    ({"max_rounds": 2.5, "max_bounces": 0, "runtime_hours": -0.5, "max_cost_usd": 0, "blocked_wait_minutes": True},
     ("problems", T + "max_bounces: must be at least 1, got 0", T + "max_rounds: expected a whole number, got a number (2.5)",
      T + "runtime_hours: must be at least 0, got -0.5", T + "max_cost_usd: must be greater than 0, got 0",
      T + "blocked_wait_minutes: expected a number, got a boolean (true)")),
    ({"max_rounds": True, "runtime_hours": "x", "max_consecutive_blocks": -1},
     ("problems", T + "max_rounds: expected a whole number, got a boolean (true)",
      T + "runtime_hours: expected a number, got a string ('x')", T + "max_consecutive_blocks: must be at least 0, got -1")),
    # The deadline: a date is midnight in the chain's zone; a time without a zone is in it too.
    ({"deadline": " 2026-12-01 "}, {"deadline": datetime(2026, 12, 1, 0, 0, tzinfo=BERLIN)}),
    ({"deadline": "2026-12-01T18:00"}, {"deadline": datetime(2026, 12, 1, 18, 0, tzinfo=BERLIN)}),
    ({"deadline": "2026-12-01T18:00+09:00"}, {"deadline": datetime(2026, 12, 1, 9, 0, tzinfo=UTC)}),
    ({"deadline": "  "}, {}),
    ({"deadline": "soon"},
     ("problems", T + "deadline: expected an ISO date or datetime (2026-12-01 or 2026-12-01T18:00), got 'soon'")),
    ({"deadline": "2026-13-01"},
     ("problems", T + "deadline: expected an ISO date or datetime (2026-12-01 or 2026-12-01T18:00), got '2026-13-01'")),
    # The workdir: relative to the home folder.
    ({"workdir": "wd"}, {"workdir": "HOME/wd"}),
    ({"workdir": " "}, {}),
    ({"workdir": "wd", "task_pool": {"type": "file", "path": "TODO.md"}},  # the pool is read in the workdir
     {"workdir": "HOME/wd", "task_pool": FilePool(path="TODO.md", format="checkbox")}),
    ({"workdir": "missing"}, ("problems", T + "workdir: 'missing' is not a directory")),
    ({"workdir": "chains/t.json"}, ("problems", T + "workdir: 'chains/t.json' is not a directory")),
    # Notes per link.
    ({"notify": "every_link"}, {"notify_every_link": True}),
    ({"notify": "links", "notify_every_link": True}, {"notify_every_link": True}),
    ({"notify": "links"}, {}),
    ({"notify": None, "notify_every_link": None}, {}),
    ({"notify": "x", "notify_every_link": 1},
     ("problems", T + "notify_every_link: expected true or false, got a number (1)",
      T + "notify: expected one of links, every_link, got 'x'")),
    # Which variables agents see.
    ({"env_allow": ["PATH", "_X1"]}, {"env_allow": ("PATH", "_X1")}),
    ({"env_allow": []}, {"env_allow": ()}),
    ({"env_allow": ["PATH", "1X"]}, ("problems", T + "env_allow: expected a list of environment variable names")),
    ({"env_allow": "PATH"}, ("problems", T + "env_allow: expected a list of environment variable names")),
    ({"env_allow": [5]}, ("problems", T + "env_allow: expected a list of environment variable names")),
    ({"odd": 1, "_note": "a comment", "runs_on": None}, {"warnings": (T + "odd: unknown field (ignored)",)}),
    ({"runs_on": 5}, ("problems", T + "runs_on: expected a string, got a number (5)")),
])
def test_the_chain_fields_whole(home: Path, doc: dict[str, Any], changes: Any) -> None:
    """Kills the mutants of the field checks (`string`, `choice`, `integer`, `number`, `deadline`,
    `workdir`, `notify`, `env_names`) and of `load`'s calls to them: each reason and field path whole,
    each boundary on both sides. Checked by hand: `if value < minimum` made `<=` turns row 3 (`max_bounces: 1`)
    red; the deadline's `time(0, 0)` made `time(0, 1)` turns the first deadline row red; `task_pool(doc,
    workdir)` made `task_pool(doc, None)` turns the task-pool row red."""
    got = _fields(home, {"links": [W], **doc})
    if isinstance(changes, tuple):
        assert got == changes
    else:
        changes = {k: (home / "wd").resolve() if v == "HOME/wd" else v for k, v in changes.items()}
        assert got == replace(_base(home), **changes)


TOOL_ROW = ("Read",)


@pytest.mark.parametrize(("doc", "links"), [
    # The chain's defaults, under a link that names nothing.
    ({"defaults": {"odd": 1, "permission_mode": "plan", "allowed_tools": ["Read"], "timeout_seconds": 60,
                   "stall_seconds": 30, "env": {"A": "1"}, "model": " big ", "fallback_model": " small "},
      "links": [{"name": "w", "prompt": "p q", "env": {"B": "2"}}]},
     ((replace(LINK, model="big", fallback_model="small", permission_mode="plan", allowed_tools=TOOL_ROW,
               tools_source="defaults.allowed_tools", timeout_s=60.0, stall_s=30.0, env={"A": "1", "B": "2"}),),
      T + "defaults.odd: unknown field (ignored)")),
    # The link beats the defaults.
    ({"defaults": {"permission_mode": "plan", "allowed_tools": "Read", "timeout_seconds": 60, "stall_seconds": 30,
                   "env": {"A": "1"}, "model": "big", "fallback_model": "small"},
      "links": [{"name": "w", "prompt": "p q", "model": "m", "fallback_model": "f", "permission_mode": "auto",
                 "allowed_tools": ["Edit"], "timeout_seconds": 5, "stall_seconds": 6, "env": {"A": "2"}, "role": "controller",
                 "continue": True, "until_full": True, "telegram_update": True, "description": "d", "max_runs": 0}]},
     ((replace(LINK, fallback_model="f", permission_mode="auto", allowed_tools=("Edit",), tools_source="links[0].allowed_tools",
               timeout_s=5.0, stall_s=6.0, env={"A": "2"}, role="controller", continue_session=True, until_full=True,
               telegram_update=True, description="d", max_runs=0),),)),
    ({"defaults": {"model": "  ", "fallback_model": "", "permission_mode": None}, "links": [{"name": "w", "prompt": "p q"}]},
     ((replace(LINK, model=DEFAULT_MODEL),),)),
    ({"defaults": 5}, ("problems", T + "defaults: expected an object, got a number (5)")),
    ({"defaults": {"permission_mode": "x", "timeout_seconds": 0, "stall_seconds": -1, "env": [], "model": 5,
                   "fallback_model": 6, "allowed_tools": 7}},
     ("problems", T + f"defaults.permission_mode: expected one of {MODES}, got 'x'",
      T + "defaults.allowed_tools: expected a list of tool names or a space-separated string, got a number (7)",
      T + "defaults.timeout_seconds: must be greater than 0, got 0", T + "defaults.stall_seconds: must be greater than 0, got -1",
      T + "defaults.env: expected an object of NAME: value, got a list", T + "defaults.model: expected a string, got a number (5)",
      T + "defaults.fallback_model: expected a string, got a number (6)")),
    # A command link: no model, no prompt, no approval.
    ({"approve": {"ask": ["Bash"]}, "links": [{"name": "c", "command": ["echo", "hi"], "odd": 1, "task_pool": {}}]},
     ((replace(LINK, name="c", model=None, command=("echo", "hi"), prompt="", prompt_source="command"),),
      T + "links[0].odd: unknown field (ignored)",
      T + "links[0].task_pool: not used by llmauto (the original never read it either)",
      T + "links[0].approve: a command link asks nobody: ignored")),
    ({"links": [{"name": "w", "model": "m", "command": ["x"], "prompt": "p q"}, {"name": "v", "model": " ", "prompt": "p q"},
                {"name": "u", "command": []}, {"name": "s", "command": [" "]}, {"name": "r", "command": "ls"}]},
     ("problems", T + "links[0]: give a model or a command, not both", T + "links[1].model: empty model name",
      T + "links[2].command: expected a non-empty list of strings (argv)", T + "links[2].prompt: required for a model link",
      T + "links[3].command: the program name is empty", T + "links[3].prompt: required for a model link",
      T + "links[4].command: expected a non-empty list of strings (argv)", T + "links[4].prompt: required for a model link")),
    ({"links": [5, {"prompt": "p q"}, {"name": 5}, {"name": "a b", "prompt": "p q"}, {"name": "w", "role": "boss"},
                {"name": "n", "name2": 1, "prompt": "p q", "permission_mode": "x", "timeout_seconds": 0, "max_runs": -1}]},
     ("problems", T + "links[0]: expected an object, got a number (5)", T + "links[1].name: required",
      T + "links[2].name: expected a string, got a number (5)", T + "links[3].name: 'a b': use letters, digits, '_', '.', '-'",
      T + "links[4].role: expected one of worker, reviewer, controller, got 'boss'", T + "links[4].prompt: required for a model link",
      T + f"links[5].permission_mode: expected one of {MODES}, got 'x'", T + "links[5].timeout_seconds: must be greater than 0, got 0",
      T + "links[5].max_runs: must be at least 0, got -1")),
    ({"links": [{"name": "w", "model": "m", "prompt": "p q", "role": 5, "fallback_model": 5, "telegram_update": 5,
                 "description": 5}]},
     ("problems", T + "links[0].role: expected a string, got a number (5)",
      T + "links[0].fallback_model: expected a string, got a number (5)",
      T + "links[0].telegram_update: expected true or false, got a number (5)",
      T + "links[0].description: expected a string, got a number (5)")),
    ({"links": [{"name": "w", "model": "m", "prompt": "p q", "permission_mode": "bypassPermissions", "approve": {"ask": ["Bash"]}}]},
     ("problems", T + "links[0].permission_mode: bypassPermissions with approve: claude never asks under "
                      "bypassPermissions, so no call would reach the phone")),
    ({"defaults": {"permission_mode": "bypassPermissions"}, "approve": {"ask": ["Bash"]}},
     ("problems", T + "links[0].permission_mode: bypassPermissions with approve: claude never asks under "
                      "bypassPermissions, so no call would reach the phone")),
])
def test_defaults_and_links_whole(home: Path, doc: dict[str, Any], links: tuple[Any, ...]) -> None:
    """Kills the mutants of `defaults`, `links` and `command`: precedence (link, then defaults, then
    the home's), each field carried, every reason and field path whole. Checked by hand: `tools_source
    = "defaults.allowed_tools"` made "DEFAULTS.ALLOWED_TOOLS" turns row 1 red; `model.strip()` in
    `defaults` made `model` turns row 1 red."""
    got = _fields(home, {"links": [W], **doc})
    if links[0] == "problems":
        assert got == links
    else:
        chain_links, *warnings = links
        assert got == replace(_base(home), links=chain_links, warnings=tuple(warnings))


@pytest.mark.parametrize(("prompts", "answer"), [
    ({"a": "text A", "b": {"type": "ref", "key": "a"}, "c": {"type": "inline", "content": "C", "text": "T"}, "d": {"text": "D"},
      "e": {"type": "template", "template": "E"}, "f": {"type": "file", "path": "plan.txt"},
      "g": {"type": "file", "path": "prompts/plan.txt"}},
     (("text A", "prompts.b"), ("C", "prompts.c"), ("D", "prompts.d"), ("E", "prompts.e"), ("plan ✓", "prompts.f"),
      ("plan ✓", "prompts.g"))),
    ({"x": {"type": "ref", "key": "y"}, "z": {"type": "ref", "key": 5}},
     ("problems", T + "prompts.x.key: no prompt key 'y'", T + "prompts.z.key: no prompt key 5")),
    ({"x": {"type": "ref", "key": "y"}, "y": {"type": "ref", "key": "x"}},
     ("problems", T + "prompts.x: cycle of prompt references x -> y -> x",
      T + "prompts.y: cycle of prompt references y -> x -> y")),
    ({"x": {"type": "inline", "content": 5}, "y": {"type": "inline"}, "z": {"text": 5, "template": "t"}},
     ("problems", T + "prompts.x.content: expected a string", T + "prompts.y.content: expected a string",
      T + "prompts.z.text: expected a string")),
    ({"x": {"type": "weird"}, "y": 5},
     ("problems", T + "prompts.x.type: expected file, inline or ref, got 'weird'",
      T + "prompts.y: expected text or an object, got a number (5)")),
    ({"x": {"type": "file", "path": 5}, "y": {"type": "file", "path": " "}, "z": {"type": "file"},
      "v": {"type": "file", "path": "nope.md"}, "u": {"type": "file", "path": "/etc/hostname"}},
     ("problems", T + "prompts.x.path: expected a file path", T + "prompts.y.path: expected a file path",
      T + "prompts.z.path: expected a file path", T + "prompts.v.path: no prompt file 'nope.md' in prompts/ or the home folder",
      T + "prompts.u.path: '/etc/hostname': absolute paths are not allowed; use a path inside the home folder")),
    (5, ("problems", T + "prompts: expected an object of key: prompt, got a number (5)")),
])
def test_the_prompts_section_whole(home: Path, prompts: Any, answer: tuple[Any, ...]) -> None:
    """Kills the mutants of `prompts` (each kind of entry, refs and their cycle, each reason) and of
    `prompt_file` reached through it (`"expected a file path"` reworded or its field path dropped,
    `or` -> `and`, the file read as UTF-8). Checked by hand: `kind in ("inline", "template")` made
    `("inline",)` turns row 1 red, and `("content", ...)` made `("CONTENT", ...)` too."""
    keys = [k for k in (prompts if isinstance(prompts, dict) else {}) if isinstance(prompts[k], dict | str)]
    links = [{"name": f"l{i}", "model": "m", "prompt": k} for i, k in enumerate(keys) if k != "a"] or [W]
    got = _fields(home, {"prompts": prompts, "links": links})
    if answer[0] == "problems":
        assert got == answer
    else:
        assert tuple((link.prompt, link.prompt_source) for link in got.links) == answer
        assert got.warnings == ()


def test_names_and_paths_whole(home: Path, tmp_path: Path) -> None:
    """Kills the mutants of `_check_name`, `chain_path` and `load_chain`: the exact refusals, the
    symlink that leads outside chains/, a file path only with `allow_file`, the settings' defaults.
    Checked by hand: `name.startswith(".")` made `name.startswith("..")` turns it red, and so does
    chain_path's `!= chains and` made `or` (the symlink one folder down)."""
    (home / "chains" / "t.json").write_text(json.dumps({"links": [{"name": "w", "prompt": "p q"}]}), encoding="utf-8")
    for bad in ("", ".", "..", ".hidden", "a/b", "a b"):
        with pytest.raises(BadChainName) as info:
            load_chain(home, bad)
        assert str(info.value) == f"bad chain name {bad!r}: use letters, digits, '_', '.', '-' (not starting with '.')"
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"links": [W]}), encoding="utf-8")
    (home / "chains" / "evil.json").symlink_to(outside)
    chains = (home / "chains").resolve()
    with pytest.raises(BadChainName) as info:
        load_chain(home, "evil")
    assert str(info.value) == f"chain 'evil' resolves outside {chains} (to {outside.resolve()})"
    assert chain_path(home, "t") == chains / "t.json"
    (home / "chains" / "sub").mkdir()
    (home / "chains" / "sub" / "real.json").write_text(json.dumps({"links": [W]}), encoding="utf-8")
    (home / "chains" / "deep.json").symlink_to(home / "chains" / "sub" / "real.json")
    assert chain_path(home, "deep") == chains / "deep.json"  # inside chains/, one folder down: allowed
    for name, allow in (("nope", False), ("t.json", False), ("t.json", True), (str(tmp_path / "missing.json"), True)):
        with pytest.raises(UnknownChain) as unknown:
            load_chain(home, name, allow_file=allow)  # "t.json" names no file in the current folder
        assert str(unknown.value) == f"unknown chain {name!r} (chains: deep, evil, t)"
    with pytest.raises(BadChainName):
        load_chain(home, str(outside))  # a path is a name unless allow_file
    assert load_chain(home, str(outside), allow_file=True).name == "outside"
    settings = Settings(home=home, permission_mode="plan", allowed_tools=("Read",), default_model="big")
    link = load_chain(home, "t", settings=settings).links[0]
    assert (link.model, link.permission_mode, link.allowed_tools) == ("big", "plan", ("Read",))
    link = load_chain(home, "t", settings=settings, global_defaults=GlobalDefaults(model="given")).links[0]
    assert (link.model, link.permission_mode) == ("given", DEFAULT_PERMISSION_MODE)
