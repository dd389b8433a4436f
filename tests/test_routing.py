"""Verdict routing, by table: verdict forms, route validation, decide(), reachability, diagram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.chains import load_chain
from engine.routing import (
    NO_ROUTES,
    HopKind,
    Problem,
    Route,
    Routes,
    Target,
    check_chain,
    decide,
    diagram,
    parse_routes,
    record,
    unreachable_links,
    verdict,
)
from engine.tasks import FilePool, parse_pool

WR = ["worker", "reviewer"]
REVIEW = {"NEEDS_FIX": "worker", "APPROVED": "next", "REJECTED": "stop"}


def routes(raw: dict[str, Any], names: list[str] = WR) -> Routes:
    parsed, problems = parse_routes(raw, names, "links[1].routes")
    assert problems == []
    return parsed


# ---- verdict() ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("VERDICT: NEEDS_FIX", "NEEDS_FIX"),
    ("verdict: approved", "APPROVED"),
    ("Verdict:APPROVED", "APPROVED"),
    ("## Verdict: APPROVED", "APPROVED"),
    ("# VERDICT: REJECTED", "REJECTED"),
    ("###### verdict : rejected", "REJECTED"),
    ("**Verdict:** REJECTED", "REJECTED"),
    ("**Verdict**: NEEDS_FIX", "NEEDS_FIX"),
    ("__Verdict__: NEEDS_FIX", "NEEDS_FIX"),
    ("Verdict: **APPROVED**", "APPROVED"),
    ("VERDICT: `APPROVED`", "APPROVED"),
    ("- VERDICT: APPROVED", "APPROVED"),
    ("* **Verdict:** approved", "APPROVED"),
    ("  VERDICT: APPROVED  ", "APPROVED"),
    ("VERDICT: APPROVED.", "APPROVED"),
    ("VERDICT: APPROVED!", "APPROVED"),
    ("VERDICT: needs-fix", "NEEDS_FIX"),
    ("VERDICT: NEEDS_FIX_", "NEEDS_FIX"),
    ("VERDICT: APPROVED (all tests pass)", "APPROVED"),
    ("VERDICT: APPROVED - tests green", "APPROVED"),
    ("VERDICT: NEEDS_FIX\nlater\nVERDICT: APPROVED", "APPROVED"),  # the last one wins
    ("## Verdict: APPROVED\n...\n**Verdict:** NEEDS_FIX\n", "NEEDS_FIX"),
    ("VERDICT: APPROVED|NEEDS_FIX|REJECTED", None),  # the template echoed back
    ("VERDICT: APPROVED | NEEDS_FIX | REJECTED", None),
    ("VERDICT: APPROVED / NEEDS_FIX", None),
    ("VERDICT: NEEDS_FIX\nVERDICT: APPROVED | NEEDS_FIX", "NEEDS_FIX"),  # a template line does not win
    ("VERDICT: <one of APPROVED, NEEDS_FIX, REJECTED>", None),  # the shipped prompts' template
    ("VERDICT:", None),
    ("VERDICT: ", None),
    ("VERDICT: 42", None),
    ("VERDICT:\nAPPROVED", None),  # the word must be on the verdict's line
    ("The verdict: APPROVED", None),  # only at the start of a line
    ("no verdict here", None),
    ("", None),
    ("VERDICTS: APPROVED", None),
    ("## Status: DONE\nASSIGNED: worker", None),
    ("## Status: DONE\r\nVERDICT: APPROVED\r\n", "APPROVED"),
])
def test_verdict_forms(text: str, expected: str | None) -> None:
    """Broke `found = word` (kept the first match): the last-one-wins rows went red; dropped the
    `after.startswith(("|", "/"))` skip: the template rows went red."""
    assert verdict(text) == expected


# ---- parse_routes() ------------------------------------------------------------------------------

def test_parse_routes_keeps_order_and_normalizes() -> None:
    parsed, problems = parse_routes(
        {"needs-fix": "worker", "APPROVED": "NEXT", "Rejected": "Stop", "ESCALATE": "blocked",
         "AGAIN": "restart", "*": "reviewer"},
        WR, "links[1].routes",
    )
    assert problems == []
    assert parsed.routes == (
        Route("NEEDS_FIX", "worker"), Route("APPROVED", "next"), Route("REJECTED", "stop"),
        Route("ESCALATE", "blocked"), Route("AGAIN", "restart"), Route("*", "reviewer"),
    )
    assert [r.kind for r in parsed.routes] == [
        Target.LINK, Target.NEXT, Target.STOP, Target.BLOCKED, Target.RESTART, Target.LINK,
    ]
    assert parsed.has_catch_all and parsed.verdicts[0] == "NEEDS_FIX"


@pytest.mark.parametrize("raw, expected", [
    (None, []),
    ({}, []),
    ([], ["links[1].routes: expected an object of VERDICT: target, got a list"]),
    ("worker", ["links[1].routes: expected an object of VERDICT: target, got a string ('worker')"]),
    ({"NEEDS_FIX": "workr"}, [
        "links[1].routes.NEEDS_FIX: unknown link 'workr' (did you mean 'worker'?); "
        "expected a link name (worker, reviewer) or next, restart, stop, blocked",
    ]),
    ({"NEEDS_FIX": "Worker"}, [
        "links[1].routes.NEEDS_FIX: unknown link 'Worker' (did you mean 'worker'?); "
        "expected a link name (worker, reviewer) or next, restart, stop, blocked",
    ]),
    ({"NEEDS_FIX": "deploy"}, [
        "links[1].routes.NEEDS_FIX: unknown link 'deploy'; "
        "expected a link name (worker, reviewer) or next, restart, stop, blocked",
    ]),
    ({"OK": 3}, ["links[1].routes.OK: expected a link name (worker, reviewer) or next, restart, stop, blocked, got a number (3)"]),
    ({"OK": ""}, ["links[1].routes.OK: expected a link name (worker, reviewer) or next, restart, stop, blocked, got a string ('')"]),
    ({"OK": None}, ["links[1].routes.OK: expected a link name (worker, reviewer) or next, restart, stop, blocked, got null"]),
    ({"needs fix": "worker"}, ["links[1].routes.needs fix: a verdict is one word (letters, digits, '_', '-'), or '*' for any other"]),
    ({"": "worker"}, ["links[1].routes.: a verdict is one word (letters, digits, '_', '-'), or '*' for any other"]),
    ({"1ST": "worker"}, ["links[1].routes.1ST: a verdict is one word (letters, digits, '_', '-'), or '*' for any other"]),
    ({"APPROVED": "next", "approved": "stop"}, ["links[1].routes.approved: the same verdict as 'APPROVED' (verdicts ignore case and '-'/'_')"]),
    ({"NEEDS_FIX": "worker", "needs-fix": "stop"}, ["links[1].routes.needs-fix: the same verdict as 'NEEDS_FIX' (verdicts ignore case and '-'/'_')"]),
])
def test_parse_routes_problems(raw: Any, expected: list[str]) -> None:
    """Broke the `if v in names` check (accepted any name): the unknown-link rows went red."""
    _, problems = parse_routes(raw, WR, "links[1].routes")
    assert [str(p) for p in problems] == expected


def test_a_link_named_like_a_keyword_is_ambiguous() -> None:
    _, problems = parse_routes({"DONE": "stop"}, ["worker", "stop"], "links[0].routes")
    assert problems == [Problem("links[0].routes.DONE", "'stop' is both a link name and a route keyword: rename the link")]


def test_valid_routes_survive_beside_bad_ones() -> None:
    parsed, problems = parse_routes({"A": "next", "B": "nowhere"}, WR, "links[1].routes")
    assert parsed.routes == (Route("A", "next"),) and len(problems) == 1


@pytest.mark.parametrize("word, expected", [
    ("NEEDS_FIX", Route("NEEDS_FIX", "worker")),
    ("needs-fix", Route("NEEDS_FIX", "worker")),
    ("APPROVED", Route("APPROVED", "next")),
    ("MAYBE", None),
    (None, None),
])
def test_routes_get(word: str | None, expected: Route | None) -> None:
    assert routes(REVIEW).get(word) == expected


def test_catch_all_takes_unknown_and_missing_verdicts() -> None:
    rs = routes({"APPROVED": "next", "*": "worker"})
    assert rs.get("MAYBE") == Route("*", "worker")
    assert rs.get(None) == Route("*", "worker")
    assert rs.get("approved") == Route("APPROVED", "next")


# ---- decide() ------------------------------------------------------------------------------------

WRD = ["worker", "reviewer", "deploy"]


@pytest.mark.parametrize("index, names, raw, word, bounces, expected", [
    # no routes, or a verdict without a route: go on as now
    (0, WR, {}, None, {}, (HopKind.GO, 1, False, 0, "")),
    (1, WR, {}, "APPROVED", {}, (HopKind.NEW_ROUND, 0, False, 0, "")),
    (1, WR, REVIEW, None, {}, (HopKind.NEW_ROUND, 0, False, 0, "")),
    (1, WR, REVIEW, "MAYBE", {}, (HopKind.NEW_ROUND, 0, False, 0, "")),
    (1, WRD, REVIEW, "MAYBE", {}, (HopKind.GO, 2, False, 0, "")),
    # next
    (1, WR, REVIEW, "APPROVED", {}, (HopKind.NEW_ROUND, 0, False, 0, "reviewer: APPROVED → next round")),
    (1, WRD, REVIEW, "APPROVED", {}, (HopKind.GO, 2, False, 0, "reviewer: APPROVED → on to deploy")),
    # back to a link: a bounce, counted
    (1, WR, REVIEW, "NEEDS_FIX", {}, (HopKind.GO, 0, True, 1, "reviewer: NEEDS_FIX → back to worker (1/3)")),
    (1, WR, REVIEW, "NEEDS_FIX", {"worker": 1}, (HopKind.GO, 0, True, 2, "reviewer: NEEDS_FIX → back to worker (2/3)")),
    (1, WR, REVIEW, "NEEDS_FIX", {"worker": 2}, (HopKind.GO, 0, True, 3, "reviewer: NEEDS_FIX → back to worker (3/3)")),
    (1, WR, REVIEW, "NEEDS_FIX", {"deploy": 7}, (HopKind.GO, 0, True, 1, "reviewer: NEEDS_FIX → back to worker (1/3)")),
    # the guard: bounce number max_bounces + 1 blocks
    (1, WR, REVIEW, "NEEDS_FIX", {"worker": 3}, (HopKind.BLOCKED, None, True, 4, "reviewer: NEEDS_FIX → back to worker: over 3 bounces, BLOCKED")),
    (1, WR, REVIEW, "NEEDS_FIX", {"worker": 9}, (HopKind.BLOCKED, None, True, 10, "reviewer: NEEDS_FIX → back to worker: over 3 bounces, BLOCKED")),
    # to itself: backwards, a bounce
    (1, WR, {"AGAIN": "reviewer"}, "AGAIN", {}, (HopKind.GO, 1, True, 1, "reviewer: AGAIN → back to reviewer (1/3)")),
    # to the named next link: not a bounce
    (0, WRD, {"OK": "reviewer"}, "OK", {}, (HopKind.GO, 1, False, 0, "worker: OK → on to reviewer")),
    # forward past the next link: a bounce
    (0, WRD, {"TRIVIAL": "deploy"}, "TRIVIAL", {}, (HopKind.GO, 2, True, 1, "worker: TRIVIAL → on to deploy (1/3)")),
    # restart: a new round at the first link, not a bounce
    (2, WRD, {"AGAIN": "restart"}, "AGAIN", {"worker": 3}, (HopKind.NEW_ROUND, 0, False, 0, "deploy: AGAIN → restart (new round)")),
    (1, WRD, {"AGAIN": "restart"}, "again", {}, (HopKind.NEW_ROUND, 0, False, 0, "reviewer: AGAIN → restart (new round)")),
    # stop / blocked
    (1, WR, REVIEW, "REJECTED", {}, (HopKind.STOP, None, False, 0, "reviewer: REJECTED → stop")),
    (1, WRD, {"HELP": "blocked"}, "HELP", {}, (HopKind.BLOCKED, None, False, 0, "reviewer: HELP → BLOCKED")),
    # catch-all, also for no verdict at all
    (1, WR, {"APPROVED": "next", "*": "worker"}, None, {}, (HopKind.GO, 0, True, 1, "reviewer: (no verdict) → back to worker (1/3)")),
    (1, WR, {"APPROVED": "next", "*": "worker"}, "MAYBE", {}, (HopKind.GO, 0, True, 1, "reviewer: MAYBE → back to worker (1/3)")),
])
def test_decide(index: int, names: list[str], raw: dict[str, str], word: str | None,
                bounces: dict[str, int], expected: tuple[HopKind, int | None, bool, int, str]) -> None:
    """Broke `if count > max_bounces` as `>=`: the (3/3) row went red; broke
    `if target == current_index + 1` (always a bounce): the named-next row went red; made
    restart a GO: the restart rows went red."""
    hop = decide(index, names, routes(raw, names), word, bounces, 3, round_no=4)
    assert (hop.kind, hop.next_index, hop.bounce, hop.bounce_count, hop.note) == expected
    assert hop.routed == (hop.note != "")
    assert (hop.guard is not None) == (hop.bounce and hop.kind is HopKind.BLOCKED)


@pytest.mark.parametrize("max_bounces, before, blocked", [
    (3, 2, False), (3, 3, True), (1, 0, False), (1, 1, True), (0, 0, True), (5, 4, False), (5, 5, True),
])
def test_guard_fires_exactly_past_max_bounces(max_bounces: int, before: int, blocked: bool) -> None:
    """Broke `count > max_bounces` as `count >= max_bounces`: the (3, 2), (1, 0), (5, 4) rows went red."""
    hop = decide(1, WR, routes(REVIEW), "NEEDS_FIX", {"worker": before}, max_bounces, round_no=4)
    assert (hop.kind is HopKind.BLOCKED) == blocked


def test_guard_message() -> None:
    hop = decide(1, WR, routes(REVIEW), "NEEDS_FIX", {"worker": 3}, 3, round_no=4)
    assert hop.guard == (
        "reviewer sent the work back 3 times in round 4 (to worker; max_bounces 3; the last verdict: NEEDS_FIX)"
    )
    assert hop.reason == hop.guard
    forward = decide(0, WRD, routes({"TRIVIAL": "deploy"}, WRD), "TRIVIAL", {"deploy": 2}, 2, round_no=7)
    assert forward.guard is not None and forward.guard.startswith("worker sent the work on 2 times in round 7")
    stop = decide(1, WR, routes(REVIEW), "REJECTED", {}, 3)
    assert stop.reason == "reviewer: REJECTED → stop" and stop.guard is None


def test_record_counts_bounces_per_target_and_resets_on_a_new_round() -> None:
    """Three NEEDS_FIX in a round go 1/3, 2/3, 3/3, the fourth blocks; a new round starts at 0.
    Broke `return {}` for NEW_ROUND in record(): the second round's first bounce read 4 and blocked."""
    rs = routes(REVIEW)
    bounces: dict[str, int] = {}
    notes = []
    for _ in range(4):
        hop = decide(1, WR, rs, "NEEDS_FIX", bounces, 3, round_no=2)
        notes.append(hop.kind is HopKind.BLOCKED or hop.note)
        bounces = record(bounces, hop)
    assert notes[:3] == [f"reviewer: NEEDS_FIX → back to worker ({n}/3)" for n in (1, 2, 3)]
    assert notes[3] is True and bounces == {"worker": 3}  # the refused hop is not counted
    bounces = record(bounces, decide(1, WR, rs, "APPROVED", bounces, 3))
    assert bounces == {}
    assert decide(1, WR, rs, "NEEDS_FIX", bounces, 3).note.endswith("(1/3)")


def test_record_is_pure() -> None:
    before = {"worker": 1}
    after = record(before, decide(1, WR, routes(REVIEW), "NEEDS_FIX", before, 3))
    assert before == {"worker": 1} and after == {"worker": 2}


# ---- reachability and the diagram ----------------------------------------------------------------

@pytest.mark.parametrize("names, raw, unreachable", [
    (WR, {}, []),
    (WR, {"reviewer": REVIEW}, []),
    (WRD, {"reviewer": {"NEEDS_FIX": "worker"}}, []),  # deploy: reached by an unrouted verdict
    (WRD, {"reviewer": {"APPROVED": "restart", "*": "worker"}}, ["deploy"]),
    (WRD, {"reviewer": {"APPROVED": "next", "*": "worker"}}, []),
    (WRD, {"worker": {"*": "deploy"}}, ["reviewer"]),
    (WRD, {"worker": {"*": "stop"}}, ["reviewer", "deploy"]),
    (WRD, {"worker": {"GO": "blocked", "*": "restart"}}, ["reviewer", "deploy"]),
    (["a", "b", "c", "d"], {"a": {"*": "c"}, "c": {"X": "b", "*": "stop"}}, ["d"]),
])
def test_unreachable_links(names: list[str], raw: dict[str, dict[str, str]], unreachable: list[str]) -> None:
    """Broke `if not routes.has_catch_all: out.add(after)` (always added): the catch-all rows went red."""
    by_link = {name: routes(r, names) for name, r in raw.items()}
    assert unreachable_links(names, by_link) == unreachable


def test_check_chain_warnings() -> None:
    rs = {"reviewer": routes({"APPROVED": "restart", "*": "worker"}, WRD)}
    assert check_chain(WRD, rs, "conditional") == [
        "links: 'deploy' is unreachable: no route or fall-through leads to it",
    ]
    assert check_chain(WR, {}, "conditional") == [
        "mode: 'conditional' but no link declares routes (it runs as a plain loop)",
    ]
    assert check_chain(WR, {}, "loop") == []


def test_diagram_of_a_review_loop() -> None:
    """The brief's example, with the fall-through shown. Broke the `pad` width: red."""
    assert diagram(WR, {"reviewer": routes(REVIEW)}, "conditional") == (
        "worker → reviewer ─┬─ NEEDS_FIX → worker\n"
        "                   ├─ APPROVED → (next round)\n"
        "                   ├─ REJECTED → stop\n"
        "                   └─ (other) → (next round)"
    )


@pytest.mark.parametrize("names, raw, mode, expected", [
    (WR, {}, "loop", "worker → reviewer → (next round)"),
    (WR, {}, "once", "worker → reviewer → (end)"),
    (["solo"], {}, "deadend", "solo → (end)"),
    (WRD, {"reviewer": {"APPROVED": "next", "*": "worker"}}, "loop",
     "worker → reviewer ─┬─ APPROVED → deploy\n"
     "                   └─ (other) → worker\n"
     "deploy → (next round)"),
    (WRD, {"reviewer": {"*": "restart"}}, "loop",
     "worker → reviewer ─── (other) → (restart: new round)\n"
     "deploy → (next round)"),
    (WRD, {"worker": {"HELP": "blocked"}, "deploy": {"FAILED": "worker"}}, "once",
     "worker ─┬─ HELP → BLOCKED\n"
     "        └─ (other) → reviewer\n"
     "reviewer → deploy ─┬─ FAILED → worker\n"
     "                   └─ (other) → (end)"),
])
def test_diagram(names: list[str], raw: dict[str, dict[str, str]], mode: str, expected: str) -> None:
    by_link = {name: routes(r, names) for name, r in raw.items()}
    assert diagram(names, by_link, mode) == expected


def test_no_routes_is_falsy() -> None:
    assert not NO_ROUTES and not Routes() and routes(REVIEW)


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, diagram_text, pool", [
    ("review-until-approved",
     "worker → reviewer ─┬─ NEEDS_FIX → worker\n"
     "                   ├─ APPROVED → (next round)\n"
     "                   ├─ REJECTED → stop\n"
     "                   └─ (other) → (next round)", None),
    ("todo-night",
     "worker → reviewer ─┬─ NEEDS_FIX → worker\n"
     "                   ├─ APPROVED → (next round)\n"
     "                   ├─ REJECTED → BLOCKED\n"
     "                   └─ (other) → (next round)", FilePool(path="TODO.md")),
])
def test_shipped_routing_chains(name: str, diagram_text: str, pool: FilePool | None, tmp_path: Path) -> None:
    """The two example chains load without a warning (copied into a home with a TODO.md: a missing
    pool file is an error), their routes and pool are valid, and their prompts ask for the verdict
    form we parse."""
    import shutil

    shutil.copytree(ROOT / "chains", tmp_path / "chains")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "TODO.md").write_text("- [ ] one\n", encoding="utf-8")
    chain = load_chain(tmp_path, name)
    assert chain.warnings == ()
    assert chain.task_pool == pool
    assert chain.routes["reviewer"] and not chain.routes["worker"]
    doc = json.loads((ROOT / "chains" / f"{name}.json").read_text(encoding="utf-8"))
    names = [link["name"] for link in doc["links"]]
    by_link = {}
    for i, link in enumerate(doc["links"]):
        parsed, problems = parse_routes(link.get("routes"), names, f"links[{i}].routes")
        assert problems == []
        by_link[link["name"]] = parsed
    assert diagram(names, by_link, doc["mode"]) == diagram_text
    assert check_chain(names, by_link, doc["mode"]) == []
    assert parse_pool(doc.get("task_pool")) == (pool, [])
    reviewer = chain.links[-1].prompt
    assert "VERDICT: <one of APPROVED, NEEDS_FIX, REJECTED>" in reviewer and verdict(reviewer) is None
    if pool is not None:
        assert all("{TASK}" in link.prompt and "{TASK_ID}" in link.prompt for link in chain.links)
