"""Typed events (engine/event_types.py): the stored JSON keeps the shape the hand-built dicts had,
and rows written before (or odd ones) still read."""

from __future__ import annotations

from typing import Any

import pytest

from engine import event_types as et
from engine import events as ev

# The key sets the engine stored before the events were typed (engine/marble.py, approval_desk.py, hops.py).
LINK_FINISHED_KEYS = {
    "link", "role", "model", "round", "error_class", "error", "duration_s", "cost_usd", "input_tokens",
    "output_tokens", "turns", "attempts", "headline", "notify", "permission_denials", "run_cost_usd", "refused",
    "refusals", "tool_calls", "blocked", "command", "hop", "verdict"}
CUT_OFF_KEYS = {"link", "role", "round", "error_class", "error", "duration_s", "cost_usd", "attempts", "notify",
                "rerun", "command", "run_cost_usd", "headline", "blocked"}


def test_link_finished_keeps_its_two_stored_shapes() -> None:
    """Checked: with `del data["rerun"]` removed from LinkFinished.to_data, the first assert fails
    (a finished link gained a `rerun` key); with the RERUN_KEYS branch removed, the second."""
    assert set(et.LinkFinished(link="w", error_class="ok").to_data()) == LINK_FINISHED_KEYS
    assert set(et.LinkFinished(link="w", error_class="killed", rerun=True).to_data()) == CUT_OFF_KEYS


@pytest.mark.parametrize(("event", "keys"), [
    (et.Blocked(link="w", round=1, kind="auth", question="q"), {"link", "round", "kind", "question"}),
    (et.Blocked(link="w", round=1, kind="agent", question="q", policy="wait"), {"link", "round", "kind", "question", "policy"}),
    (et.Blocked(link="w", round=1, kind="denied", question="q", policy="continue", tools=("Bash",), field="allowed_tools"),
     {"link", "round", "kind", "question", "policy", "tools", "field"}),
    (et.ApprovalDecided(id=1, link="w", tool="Bash", status="expired", by="llmauto", message="m"),
     {"id", "link", "tool", "status", "by", "message"}),
    (et.ApprovalDecided(id=1, link="w", tool="Bash", status="approved", by="ann", always=False),
     {"id", "link", "tool", "status", "by", "message", "always"}),
    (et.Routed(link="r", round=2, kind="go", note="n"),
     {"link", "round", "verdict", "target", "kind", "bounce", "count", "max", "note", "guard"}),
    (et.RunFinished(status="STOPPED"),
     {"status", "run_status", "reason", "by", "cost_usd", "round", "rounds_counted", "chat_id", "origin"}),
])
def test_optional_keys_are_left_out_as_before(event: et.StoredEvent, keys: set[str]) -> None:
    """An auth alert never had a `policy` key, an expired approval no `always`. Checked: with the
    `f.name in self.OPTIONAL` test in StoredEvent.to_data removed, the auth and expired rows fail."""
    assert set(event.to_data()) == keys


def test_run_started_permissions_are_stored_as_a_list_of_objects_and_read_back() -> None:
    """Checked: with `_plain` returning tuples as they are, the stored value is a tuple of
    LinkPermissions instead of a list of objects and this fails."""
    started = et.RunStarted(round=3, link="w", origin="cli", links=2, max_rounds=5,
                            permissions=(et.LinkPermissions(link="w", permissions="dontAsk: Read"),))
    data = started.to_data()
    assert data["permissions"] == [{"link": "w", "permissions": "dontAsk: Read"}]
    assert et.RunStarted.from_data(data) == started
    assert started.new().kind == ev.RUN_STARTED


def test_old_and_odd_rows_read_with_defaults() -> None:
    """A row written before a key existed, a key of the wrong type and an unknown key read like
    `.get()` read them: the default, never an exception. Checked: with `if fits:` in from_data
    turned into an unconditional assignment, `round="3"` comes through as a string and this fails."""
    odd: dict[str, Any] = {"link": "w", "round": "3", "cost_usd": 2, "notify": 1, "permission_denials": ["Bash", 4],
                           "new_key_from_the_future": True}
    read = et.LinkFinished.from_data(odd)
    assert (read.link, read.round, read.cost_usd, read.notify) == ("w", None, 2.0, False)
    assert read.permission_denials == ("Bash",)
    assert et.LinkFinished.from_data({}) == et.LinkFinished()
    assert et.RunStarted.from_data({"permissions": ["not an object", {"link": "w"}]}).permissions == (
        et.LinkPermissions(link="w"),)


@pytest.mark.parametrize("event", [
    et.LinkFinished(link="w", role="worker", model="m", round=2, error_class="ok", duration_s=1.5, cost_usd=0.25,
                    input_tokens=3, output_tokens=4, turns=5, attempts=1, headline="h", notify=True,
                    permission_denials=("Write",), run_cost_usd=1.0, refused=1, refusals="Write", tool_calls=7,
                    hop="n", verdict="OK"),
    et.ToolRefused(link="w", round=1, tool="Bash", target="rm -rf /", message="no"),
    et.ApprovalRequested(id=4, link="w", round=1, tool="Bash", command="ls", reason="r", timeout_s=60.0,
                         on_timeout="stop_chain", always=True),
    et.Blocked(link="w", round=1, kind="denied", question="q", policy="continue", tools=("Bash",), field="f"),
])
def test_round_trip(event: et.StoredEvent) -> None:
    assert type(event).from_data(event.to_data()) == event
    assert type(event).of(event.to_data()) == event and type(event).of(event) is event


def test_every_kind_has_its_typed_value() -> None:
    """Every kind named in engine/events.py reads as its own class through `typed`. Checked by
    leaving `RoundFinished` out of `BY_KIND`: red (its kind reads as None)."""
    kinds = {getattr(ev, n) for n in dir(ev) if n.isupper() and isinstance(getattr(ev, n), str)}
    assert kinds == set(et.BY_KIND)
    for kind in kinds:
        value = et.typed(kind, {})
        assert value is not None and kind == value.KIND
    assert et.typed("from_a_newer_version", {"x": 1}) is None


# The dicts the engine stored before these kinds were typed (marble, timer, leases, engine), key for key.
OLD_ROWS: list[tuple[str, dict[str, Any]]] = [
    (ev.LINK_SKIPPED, {"link": "w", "round": 2, "assigned": "reviewer"}),
    (ev.ROUND_FINISHED, {"round": 2, "counted": True, "blocked": False, "links_run": 2, "links_failed": 0}),
    (ev.HANDOFF_PROBLEM, {"link": "w", "problem": "handoff.md is missing", "restored": True}),
    (ev.WAITING_LIMIT, {"link": "w", "until": "2026-12-03T15:00:00+00:00", "seconds": 60, "reset_known": False,
                        "message": "limit", "attempt": 2}),
    (ev.TASK_STARTED, {"task_id": "t1", "text": "fix it", "left": 3, "round": 1}),
    (ev.TASK_DONE, {"task_id": "t1", "text": "fix it", "round": 1}),
    (ev.TASK_BLOCKED, {"task_id": "t1", "text": "fix it", "round": 1, "problem": "gone"}),
    (ev.OPERATOR_NOTE, {"by": "ann", "text": "use sqlite", "round": 3}),
    (ev.WARNING, {"message": "retrying", "link": "w"}),
    (ev.WARNING, {"message": "unknown field x"}),
    (ev.PAUSED, {"by": None}),
    (ev.RESUMED, {}),
    (ev.RECOVERED, {"link": "w", "round": 2, "agents_killed": ["w"], "handoff_restored": True}),
    (ev.SCHEDULE_MISSED, {"schedule_id": 1, "chain": "c", "kind": "cron", "expression": "0 2 * * *", "original": "0 2 * * *",
                          "tz": "UTC", "after_chain": None, "chat_id": 5, "run_id": None, "scheduled_for": "2026-12-03T02:00:00+00:00",
                          "missed": 3, "more": False, "first": "2026-12-03T02:00:00+00:00", "until": "2026-12-03T05:00:00+00:00",
                          "reason": "down", "grace_s": 60.0}),
    (ev.SCHEDULE_SKIPPED, {"schedule_id": 1, "chain": "c", "kind": "after", "expression": "", "original": "after b",
                           "tz": None, "after_chain": "b", "chat_id": None, "run_id": None, "scheduled_for": "x",
                           "after_run_id": 4, "after_status": "FAILED", "reason": "b ended FAILED"}),
]


@pytest.mark.parametrize(("kind", "data"), OLD_ROWS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(OLD_ROWS)])
def test_old_rows_read_and_store_the_same_json(kind: str, data: dict[str, Any]) -> None:
    """A row written as a dict reads as its typed value and writes back key for key. Checked by
    dropping "problem" from TaskDone.OPTIONAL (the TASK_DONE row gains `problem: null`: red) and by
    renaming WaitingLimit.reset_known (red)."""
    value = et.typed(kind, data)
    assert value is not None and value.to_data() == data
