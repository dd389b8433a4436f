"""The terminal's plain-text views (engine/textview.py, pure), by table: the lines `status`,
`log`, the foreground live view and `chain validate` print for the cases the run tests do not
reach (an invalid chain, a skipped link, tasks, waits, a directory pool, pending approvals)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.chains import ChainDef
from engine.engine import ChainView
from engine.events import Event
from engine.store import ApprovalRow, LinkRunRow, RunRow
from engine.tasks import DirectoryPool
from llmauto import textview as tv

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

VIEW = ChainView(name="nightly", description="", status="READY", round=3, next_link="w", rounds_counted=2,
                 max_rounds=10, running_here=False, running_elsewhere=None, current_link=None,
                 current_link_since=None, current_tool=None, last_run=None, last_link=None, stop_reason=None)

ROW = LinkRunRow(id=7, run_id=1, chain="nightly", round=2, link_index=0, link="w", role="worker", model="sonnet",
                 status="done", error_class="ok", error_message=None, started_at="2026-12-03T11:00:00+00:00",
                 ended_at=None, duration_s=65.0, cost_usd=0.5, input_tokens=0, output_tokens=0, turns=3,
                 session_id=None, exit_code=0, pid=None, pid_start=None, current_tool=None, result_excerpt=None,
                 attempt=1)


def test_since_and_money() -> None:
    """Red with `if not iso` dropped (None would crash) or money's `< 1` made `<= 1`."""
    assert tv.since(None) == "-"
    assert tv.since("2026-12-03T11:58:00+00:00", NOW) == "2m"
    assert tv.since("2026-12-03T11:58:00+00:00") not in ("-", "")  # the real clock: some duration
    assert [tv.money(v) for v in (None, 0.5, 1.0, 12.345)] == ["$0.0000", "$0.5000", "$1.00", "$12.35"]


def test_status_line_and_detail_of_an_invalid_chain() -> None:
    """An invalid chain shows INVALID and the first line of its error, in both views. Red with
    the `if v.error` branch of status_line removed (the status word would show instead)."""
    bad = replace(VIEW, error="links: must not be empty\n  at line 3", description="a test chain")
    assert tv.status_line(bad) == f"{'nightly':<24} INVALID     links: must not be empty"
    detail = tv.status_detail(bad, next_fire="tomorrow 02:00").splitlines()
    assert detail[0] == "nightly: READY — a test chain"
    assert detail[1] == "definition: links: must not be empty"
    assert "next link: w" in detail and "next scheduled run: tomorrow 02:00" in detail


def test_status_detail_of_a_chain_running_elsewhere() -> None:
    """Red with the running line's `in this process` / owner swapped, or the current tool dropped."""
    v = replace(VIEW, status="RUNNING", running_elsewhere="pid 42 on host", current_link="w",
                current_link_since="2026-12-03T11:59:00+00:00", current_tool="Bash", stop_reason="old reason",
                last_link=ROW, last_run=RunRow(id=4, chain="nightly", status="RUNNING", origin="cli", chat_id=None,
                                               requested_by=None, started_at="2026-12-03T11:00:00+00:00",
                                               ended_at=None, stop_reason=None, cost_usd=0.5, links_run=2,
                                               passes=0, owner=None))
    lines = tv.status_detail(v).splitlines()
    assert "running: pid 42 on host" in lines
    assert any(line.startswith("current link: w for ") and line.endswith(", Bash") for line in lines)
    assert "last link: round 2 w [sonnet]: ok, 1m, $0.5000" in lines
    assert "last run: #4 RUNNING from cli, started 2026-12-03 11:00 UTC, 2 links, $0.5000" in lines
    assert not any(line.startswith("reason:") for line in lines)  # a running chain's old reason is stale
    assert tv.status_line(v).endswith("(pid 42 on host)")
    assert "(here)" in tv.status_line(replace(v, running_elsewhere=None, running_here=True))


@pytest.mark.parametrize(("kw", "text"), [
    ({}, "rounds done: 2 of 10"),
    ({"rounds_counted": 1}, "rounds done: 2 of 10 (1 counted toward max_rounds)"),
    ({"running_here": True, "max_rounds": 0}, "round: 3 (2 done)"),
    ({"running_here": True, "rounds_counted": 0}, "round: 3 of 10 (2 done, 0 counted toward max_rounds)"),
    ({"round": 0}, "rounds done: 0 of 10 (2 counted toward max_rounds)"),
])
def test_rounds_text(kw: dict[str, Any], text: str) -> None:
    """Red with `max(0, round - 1)` -> `round - 1` (the last row) or the `extra[2:]` slice changed."""
    assert tv.rounds_text(replace(VIEW, **kw)) == text


def test_link_lines_and_the_empty_log() -> None:
    """Red with the skipped branch of link_line removed, or log_lines' empty case."""
    assert tv.link_line(replace(ROW, status="skipped", error_message=None)) == "round 2 w skipped: not assigned"
    assert tv.link_line(replace(ROW, status="skipped", error_message="max_runs 1 reached")) == (
        "round 2 w skipped: max_runs 1 reached")
    failed = replace(ROW, error_class="auth", error_message="401", duration_s=None, model=None, refusals="Bash ×2")
    assert tv.link_line(failed) == "round 2 w: auth, running, $0.5000: 401 [refused: Bash ×2]"
    running = replace(ROW, status="running", error_class=None, duration_s=None, cost_usd=0.0)
    assert tv.link_line(running) == "round 2 w [sonnet]: running, $0.0000"  # said once, not "running, running"
    assert tv.log_lines([]) == "(no links run yet)"
    assert tv.log_lines([ROW]) == "#7     2026-12-03 11:00:00  round 2 w [sonnet]: ok, 1m, $0.5000"


def ev(event_kind: str, **data: Any) -> Event:
    return Event(id=1, kind=event_kind, chain="nightly", run_id=4, ts="2026-12-03T11:00:00+00:00", data=data)


@pytest.mark.parametrize(("event", "line"), [
    (ev("run_started", round=1, link="w", resumed=True, permissions=[{"link": "w", "permissions": "default"}, "x"]),
     "▶ nightly: run #4 from round 1, link w (resumed)\n    w: default"),
    (ev("link_started", round=2, link="w", command=True), "  round 2 · w [command] started"),  # as link.py stores it
    (ev("link_started", round=2, link="w", attempt=2), "  round 2 · w [default model] started (attempt 2)"),
    (ev("link_finished", link="w", error_class="denied", error="no", duration_s=5, refusals="Bash", cost_usd=0.1),
     "  ✗ w: denied, 5.0s, $0.1000: no"),
    (ev("link_finished", link="w", error_class="ok", duration_s=5, refusals="Bash", command=True),
     "  ✓ w: ok, 5.0s (claude was refused Bash)"),
    (ev("link_skipped", link="w", assigned="max_runs 1 reached"), "  · w skipped (max_runs 1 reached)"),
    (ev("link_skipped", link="w", assigned="reviewer"), "  · w skipped (ASSIGNED: reviewer)"),
    (ev("routed", note="w → r (FAIL)"), "  ↪ w → r (FAIL)"),
    (ev("task_started", text="fix it", left=3), "  ☐ task: fix it (3 open)"),
    (ev("task_done", text="fix it"), "  ☐ task done: fix it"),
    (ev("task_blocked", text="fix it", problem="no access"), "  ☐ task BLOCKED (marked, skipped): fix it ! no access"),
    (ev("tool_refused", link="w", tool="Bash", target="rm -rf /"), "  ! w: claude refused Bash (rm -rf /)"),
    (ev("tool_refused", link="w", tool="Write"), "  ! w: claude refused Write"),
    (ev("round_finished", round=2, counted=True), "  round 2 done"),
    (ev("round_finished", round=2, counted=False), "  round 2 done (every link failed: not counted)"),
    (ev("blocked", link="w", question="which db?"), "  ! BLOCKED at w: which db?"),
    (ev("waiting_limit", until="15:00", reset_known=True), "  … usage limit: waiting until 15:00"),
    (ev("waiting_limit", until="15:00"), "  … usage limit: waiting until 15:00 (backoff)"),
    (ev("waiting_slot", link="w", slots=2), "  … w waits for a free agent slot (all 2 in use)"),
    (ev("handoff_problem", problem="no status line"), "  ! no status line"),
    (ev("warning", message="retrying once"), "  ! retrying once"),
    (ev("run_finished", status="COMPLETED", reason="max_rounds (1) reached", cost_usd=2.5),
     "■ nightly: COMPLETED — max_rounds (1) reached (run cost $2.50)"),
    (ev("stop_requested", reason="by ann"), "  stop requested: by ann"),
    (ev("operator_note", text="hi"), "  operator note: hi"),
    (ev("paused"), "  paused: "),
    (ev("progress", link="w"), None),
])
def test_event_lines(event: Event, line: str | None) -> None:
    """Red with any kind's branch removed (its row gets None) or a mark swapped (✓/✗)."""
    assert tv.event_line(event) == line


def test_progress_lines() -> None:
    """A command's output line has no turn count or cost. Red with the `kind == "output"` branch removed."""
    out = ev("progress", kind="output", link="w", detail="x" * 200)
    assert tv.progress_line(out, 5.0, 0.0) == "    w 5.0s · " + "x" * 90
    tool = ev("progress", link="w", turns=4, tool="Bash", target="ls")
    assert tv.progress_line(tool, 61.0, 0.25) == "    w 1m · turn 4 · Bash ls · run $0.2500"


def test_chain_summary_of_a_once_chain_with_a_directory_pool(tmp_path: Path) -> None:
    """Red with the DirectoryPool branch of flow_lines removed, or the runtime/deadline/budget
    parts of the limits dropped."""
    chain = ChainDef(name="c", path=tmp_path / "c.json", mode="once", runtime_hours=1.5,
                     deadline=datetime(2026, 12, 4, 6, 0, tzinfo=UTC), max_cost_usd=3.0,
                     task_pool=DirectoryPool(path="inbox", pattern="*.md"))
    text = tv.chain_summary(chain)
    assert text.splitlines()[0] == "c: valid — once, 1.5 h, until 2026-12-04T06:00+00:00, $3, 0 links:"
    assert text.splitlines()[-1] == "task pool: directory inbox (*.md, one task per file)"


def test_approval_lines() -> None:
    """Red with the `describe` of the tool input or the approve/deny hint dropped."""
    row = ApprovalRow(id=5, run_id=4, chain="nightly", link_run_id=None, round=1, link="w", tool="Bash",
                      input='{"command": "rm -rf build"}', description=None, suggestions=None, status="pending",
                      decided_by=None, decided_at=None, message=None, created_at="2026-12-03T11:59:00+00:00")
    (line,) = tv.approval_lines([row], NOW)
    assert line.startswith("waiting for approval #5: w wants Bash rm -rf build (for 1m)")
    assert line.endswith("llmauto chain approve nightly 5 | deny nightly 5 REASON")
