"""Messages no flow of the suite happened to send (issue #16: every module covered), by table:
each text a person would see in these cases, checked against the strict fake Bot API's HTML parser
so that none of them would be refused by Telegram. Pure: `bot/render.py` takes values, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot import render
from engine import events as ev
from engine.engine import ChainView
from engine.permissions import Refusal
from engine.store import LinkRunRow
from tests.fakes.botapi import ApiError, parsed_length

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def sendable(text: str) -> str:
    """The text, after checking Telegram would take it (well-formed HTML, within 4096)."""
    try:
        assert 0 < parsed_length(text, "HTML") <= render.LIMIT, len(text)
    except ApiError as exc:  # pragma: no cover (only on a failure)
        raise AssertionError(f"Telegram would refuse {text!r}: {exc.description}") from exc
    return text


def view(**over: Any) -> ChainView:
    base: dict[str, Any] = dict(name="alpha", description="", status="READY", round=1, next_link=None,
                                rounds_counted=0, max_rounds=0, running_here=False, running_elsewhere=None,
                                current_link=None, current_link_since=None, current_tool=None, last_run=None,
                                last_link=None, stop_reason=None, error=None)
    return ChainView(**(base | over))


def link_row(**over: Any) -> LinkRunRow:
    base: dict[str, Any] = dict(
        id=1, run_id=1, chain="alpha", round=2, link_index=0, link="worker", role="worker", model=None,
        status="ok", error_class="ok", error_message=None, started_at="2026-12-03T11:00:00+00:00", ended_at=None,
        duration_s=3.0, cost_usd=0.5, input_tokens=0, output_tokens=0, turns=0, session_id=None, exit_code=0,
        pid=None, pid_start=None, current_tool=None, result_excerpt=None, attempt=1)
    fields = LinkRunRow.__dataclass_fields__
    return LinkRunRow(**{k: v for k, v in (base | over).items() if k in fields}, **{
        k: None for k in fields if k not in base and k not in over})


def test_an_invalid_chain_is_named_with_its_first_problem_and_how_many_more() -> None:
    """Red with status_compact's `continue` after the invalid line removed (the chain is then also
    listed as if valid) or the error shown raw (its first line is only "invalid chain:")."""
    error = "invalid chain:\n  chains/alpha.json: links[0].model: not a <string>\n  chains/alpha.json: links[1]: no prompt"
    text = sendable(render.status_compact([view(error=error), view(name="beta")]))
    assert "❗ <b>alpha</b> invalid: links[0].model: not a &lt;string&gt; (+1 more)" in text
    assert text.count("alpha") == 1 and "beta</b> READY" in text


def test_the_detail_of_a_chain_run_elsewhere_with_a_broken_file_and_a_schedule() -> None:
    """Red with any of status_detail's three lines dropped: the definition error, the other
    process, the next scheduled run."""
    text = sendable(render.status_detail(view(error="links: <empty>", running_elsewhere="pid 42 on box"),
                                         next_fire="2026-12-04 02:00 UTC"))
    assert "❗ definition: links: &lt;empty&gt;" in text
    assert "Running in another process (pid 42 on box)" in text
    assert "Next scheduled run: 2026-12-04 02:00 UTC" in text


def test_log_lines_for_no_links_a_skipped_one_and_one_still_running() -> None:
    """Red with log_text's empty case or link_line's skipped case removed (a skipped link would
    show as ok with a cost), or a running link shown with a duration."""
    assert sendable(render.log_text("a<b", [])) == "<b>a&lt;b</b>: no links run yet."
    text = sendable(render.log_text("alpha", [link_row(status="skipped", error_class=None),
                                              link_row(round=3, duration_s=None)]))
    assert "r2 worker: skipped" in text and "r3 <b>worker</b> ok · running" in text
    running = sendable(render.log_text("alpha", [link_row(status="running", error_class=None, duration_s=None)]))
    assert "r2 <b>worker</b> running · $" in running and "running · running" not in running


def test_a_long_diff_is_attached_not_inlined() -> None:
    """Red with diff_message's length check inverted or its attachment dropped."""
    short, none = render.diff_message("alpha", "-a\n+b")
    assert none is None and "<pre>-a\n+b</pre>" in sendable(short)
    diff = "+" + "x" * 5000
    text, attached = render.diff_message("alpha", diff)
    assert attached == diff and sendable(text) == "<b>alpha</b>: what the last link changed (attached)"


def test_a_card_tells_of_refused_tool_calls() -> None:
    """Red with the card's refused line dropped."""
    state = render.Card(chain="alpha", round=1, link="worker", link_started_mono=1.0,
                        refused=(Refusal(tool="Bash", target="rm -rf <x>"),))
    text = sendable(render.card(state, 3.0))
    assert "⚠️ claude was refused" in text and "Bash" in text


def test_a_note_names_denied_tools_and_the_hop() -> None:
    """Red with link_note's denied-tools line or its hop line dropped."""
    text = sendable(render.link_note("alpha", {"link": "worker", "round": 1, "error_class": "failed",
                                               "error": "x", "permission_denials": ["Bash", "Write"],
                                               "hop": "reviewer: NEEDS_FIX → back to worker (2/3)"}))
    assert "Denied tools: Bash, Write" in text
    assert "↪ reviewer: NEEDS_FIX → back to worker (2/3)" in text


@pytest.mark.parametrize(("kind", "data", "expected"), [
    ("handoff_problem", {"problem": "handoff.md emptied", "link": "w", "restored": True},
     "⚠️ <b>alpha</b>: handoff.md emptied (after w). The last good handoff was put back."),
    ("handoff_problem", {"problem": "too big", "link": "w"}, "⚠️ <b>alpha</b>: too big (after w)."),
    ("recovered", {"round": 3, "agents_killed": ["w", "r"]},
     "♻️ <b>alpha</b> recovered after a crash: it goes on from round 3. Killed the orphaned agent of w, r."),
    ("recovered", {"round": 3}, "♻️ <b>alpha</b> recovered after a crash: it goes on from round 3."),
    ("schedule_skipped", {"reason": "a <paused> chain"}, "⏭ <b>alpha</b>: scheduled run skipped: a &lt;paused&gt; chain"),
    ("waiting_limit", {"link": "w", "until": 17}, "⏳ <b>alpha</b> hit a usage limit at w; retrying at ? (reset time unknown: backing off)"),
    ("waiting_limit", {"link": "w", "until": "soon", "reset_known": True}, "⏳ <b>alpha</b> hit a usage limit at w; retrying at soon"),
    ("schedule_missed", {"missed": 2, "more": True, "first": "2026-12-03T02:00:00+00:00"},
     "⌛ <b>alpha</b>: at least 2 scheduled run(s) missed while llmauto was down (first: 2026-12-03 02:00 UTC)"),
    (ev.LINK_STARTED, {}, None),
])
def test_event_notices(kind: str, data: dict[str, Any], expected: str | None) -> None:
    """Red with any of these notices' branches in event_text changed: the restored handoff, the
    killed orphans, the skipped schedule, a retry time that is not a time (`?`) or not ISO (kept
    as written)."""
    text = render.event_text("alpha", kind, data)
    assert text == expected
    if text is not None:
        sendable(text)


def test_approval_questions_show_long_commands_folded_and_none_without_a_block() -> None:
    """Red with _call_block's empty case removed (an empty <pre> Telegram refuses) or the long
    case not cut at 3000 characters."""
    base = {"id": 7, "round": 1, "link": "w", "tool": "Bash", "timeout_s": 60.0}
    bare = sendable(render.approval_question("alpha", 1, base | {"command": ""}))
    assert "<pre>" not in bare and "<blockquote" not in bare and "asks to use <b>Bash</b>:\n" in bare
    long = sendable(render.approval_question("alpha", 1, base | {"command": "echo " + "y" * 5000}))
    assert "<blockquote expandable>echo " in long and "y" * 2994 + "…</blockquote>" in long
    assert "y" * 2995 not in long


def test_times_that_cannot_be_read_are_shown_as_written() -> None:
    """Red with short_local_time's fallback removed (a bad zone or date raises)."""
    assert render.short_local_time("2026-12-03T19:42:00+00:00", "Nowhere/Atlantis") == "2026-12-03T19:42"
    assert render.short_local_time("not a time at all", None) == "not a time at al"
    assert render.short_local_time("2026-12-03T19:42:00+00:00", "UTC") == "19:42 UTC"


def test_split_keeps_an_unclosed_block_at_the_end() -> None:
    """Red with split's `if block:` tail dropped: the lines of a block never closed are lost (here
    they go with the text before them, cut to the limit with the block closed)."""
    text = "a" * 3000 + "\n" + "<pre>" + "\n" + "b" * 1200
    [part] = render.split(text)
    assert sendable(part).startswith("a" * 3000 + "\n<pre>\nbbb") and part.endswith("</pre>")


def test_an_age_without_a_time_is_a_dash() -> None:
    """Red with ago's missing-time case removed (fromisoformat(None) raises)."""
    assert render.ago(None, NOW) == "-" and render.ago("", NOW) == "-"
    assert render.ago("2026-12-03T11:59:00+00:00", NOW) == render.dur(60.0)


def test_a_capped_echo_never_cuts_an_entity_and_says_it_was_cut() -> None:
    """Red with shown's cap counting the text before escaping (40 `<` are 160 characters sent) or
    cutting the escaped string (a dangling `&l`, which Telegram refuses to parse)."""
    assert render.shown("<" * 40, limit=20) == "&lt;" * 4 + "…"
    assert render.shown("ab", limit=20) == "ab"
    assert render.shown("\u202e" * 5, limit=15) == "\\u202e" * 2 + "…"
