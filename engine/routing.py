"""Verdict routing: where the marble goes after a link that passes judgement.

A link may declare `routes`, a map from a verdict word to a target, e.g. a reviewer's
`{"NEEDS_FIX": "worker", "APPROVED": "next", "REJECTED": "stop"}`. After the link the engine reads
the verdict from the handoff (`verdict()`), and `decide()` turns (where we are, the routes, the
verdict, the bounces so far) into a `Hop`. Everything here is pure: values in, a decision out, so
the whole table is tested without running a chain (like `engine/policy.py`).

Verdict forms (one line each, anywhere in the handoff; the key is case-insensitive):

    VERDICT: NEEDS_FIX
    ## Verdict: APPROVED          (any heading level; also `- VERDICT: X` in a list)
    **Verdict:** REJECTED         (also `**Verdict**: X`, `Verdict: **X**`, `Verdict: `X``)

The LAST such line wins (a handoff keeps older rounds' text above the newest verdict). The verdict
is the first word after the colon, upper-cased, with `-` read as `_` (`needs-fix` is `NEEDS_FIX`)
and trailing punctuation dropped (`APPROVED.`). A line whose word is followed by `|` or `/`
(`VERDICT: APPROVED | NEEDS_FIX`) is the prompt's template echoed back, not a verdict, and is
skipped. Route keys are normalized the same way.

Targets: a link name (jump there, same round), `next` (the following link; after the last one a
new round), `restart` (the first link, counting a new round), `stop` (the run ends STOPPED),
`blocked` (the chain goes BLOCKED with an alert). The key `*` is a catch-all: any other verdict, or
none. Without a catch-all, a verdict with no route (or no verdict) goes on as if there were no
routes, which is also why a chain without `*` routes cannot have an unreachable link.

Guard: a *bounce* is a routed hop backwards, or to a named link other than the next one. Bounces
are counted per target link per round; `max_bounces` (default 3) of them are allowed, and the hop
that would be one more makes the chain BLOCKED ("reviewer sent the work back 3 times in round 4").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from engine.describe import kind as kind_of
from engine.records import Record

DEFAULT_MAX_BOUNCES = 3
CATCH_ALL = "*"
CONDITIONAL_MODE = "conditional"  # the original's name for a loop whose links route


class Target(StrEnum):
    """The kinds of place a route can send the marble."""

    LINK = "link"
    NEXT = "next"
    RESTART = "restart"
    STOP = "stop"
    BLOCKED = "blocked"


KEYWORDS = frozenset({Target.NEXT, Target.RESTART, Target.STOP, Target.BLOCKED})

_VERDICT_LINE = re.compile(
    r"^[ \t]*(?:[-*+][ \t]+)?(?:\#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*verdict[ \t]*(?:\*\*|__)?[ \t]*:"
    r"[ \t]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_WORD = re.compile(r"[ \t*_`\"'\[(]*(?P<word>[A-Za-z][A-Za-z0-9_-]*)(?P<after>.*)$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def normalize_word(word: str) -> str:
    """A verdict or route key as compared: upper-case, `-` as `_`, no trailing `_`."""
    return word.strip().upper().replace("-", "_").rstrip("_")


def verdict(handoff_text: str) -> str | None:
    """The handoff's verdict (the last verdict line's word, normalized), or None."""
    found: str | None = None
    for m in _VERDICT_LINE.finditer(handoff_text):
        w = _WORD.match(m.group("rest"))
        if w is None:
            continue
        after = w.group("after").lstrip(" \t*_`\"')].,;:!")
        if after.startswith(("|", "/")):
            continue  # "APPROVED | NEEDS_FIX": the template, not a verdict
        word = normalize_word(w.group("word"))
        if word:
            found = word
    return found


# ---- the value types ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Route(Record):
    """One route of a link: on `verdict`, go to `target` (a keyword or a link name)."""

    verdict: str  # normalized, or "*"
    target: str  # as resolved: a keyword value, or the link's name

    @property
    def kind(self) -> Target:
        return Target(self.target) if self.target in KEYWORDS else Target.LINK


@dataclass(frozen=True, eq=False, repr=False)
class Routes(Record):
    """All routes of one link, in the order written. Empty: the link does not route."""

    routes: tuple[Route, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.routes)

    def get(self, verdict_word: str | None) -> Route | None:
        """The route for this verdict: its own, else the catch-all, else None."""
        if verdict_word is not None:
            word = normalize_word(verdict_word)
            for r in self.routes:
                if r.verdict == word:
                    return r
        for r in self.routes:
            if r.verdict == CATCH_ALL:
                return r
        return None

    @property
    def has_catch_all(self) -> bool:
        return any(r.verdict == CATCH_ALL for r in self.routes)

    @property
    def verdicts(self) -> tuple[str, ...]:
        return tuple(r.verdict for r in self.routes)


NO_ROUTES = Routes()


@dataclass(frozen=True, eq=False, repr=False)
class Problem(Record):
    """A validation problem: the field path (e.g. `links[2].routes.NEEDS_FIX`) and the reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def parse_routes(raw: Any, link_names: Sequence[str], field_path: str) -> tuple[Routes, list[Problem]]:
    """Validate a link's raw `routes` value (from JSON). `field_path` is e.g. `links[1].routes`.
    Returns the routes that are valid and every problem found; null or absent means no routes."""
    if raw is None:
        return NO_ROUTES, []
    if not isinstance(raw, dict):
        return NO_ROUTES, [Problem(field_path, f"expected an object of VERDICT: target, got {kind_of(raw)}")]
    names = list(link_names)
    problems: list[Problem] = []
    routes: list[Route] = []
    seen: dict[str, str] = {}
    for key, value in raw.items():
        where = f"{field_path}.{key}"
        k = str(key).strip()
        if k == CATCH_ALL:
            word = CATCH_ALL
        elif _KEY.match(k):
            word = normalize_word(k)
        else:
            problems.append(Problem(where, "a verdict is one word (letters, digits, '_', '-'), or '*' for any other"))
            continue
        if word in seen:
            problems.append(Problem(where, f"the same verdict as {seen[word]!r} (verdicts ignore case and '-'/'_')"))
            continue
        seen[word] = str(key)
        target, problem = _target(value, names)
        if problem is not None:
            problems.append(Problem(where, problem))
            continue
        assert target is not None
        routes.append(Route(word, target))
    return Routes(tuple(routes)), problems


def _target(value: Any, names: list[str]) -> tuple[str | None, str | None]:
    """The target a route value names, or why it names none."""
    choices = f"a link name ({', '.join(names)}) or next, restart, stop, blocked"
    if not isinstance(value, str) or not value.strip():
        return None, f"expected {choices}, got {kind_of(value)}"
    v = value.strip()
    if v.lower() in KEYWORDS:
        if v.lower() in (n.lower() for n in names):
            return None, f"{v!r} is both a link name and a route keyword: rename the link"
        return v.lower(), None
    if v in names:
        return v, None
    import difflib  # only a wrong name needs the suggestion; a large module to import (#14)

    hint = difflib.get_close_matches(v, names, n=1)
    lower = [n for n in names if n.lower() == v.lower()]
    if lower:
        hint = lower
    why = f"unknown link {v!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    return None, f"{why}; expected {choices}"


# ---- deciding the next hop ------------------------------------------------------------------------


class HopKind(StrEnum):
    GO = "go"  # run links[next_index] in the same round
    NEW_ROUND = "new_round"  # the round ends; the next one starts at links[0]
    STOP = "stop"  # the run ends STOPPED
    BLOCKED = "blocked"  # the chain goes BLOCKED with an alert (a `blocked` route or the guard)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Hop(Record):
    """Where the marble goes after a link, and what to tell a person about it."""

    kind: HopKind
    next_index: int | None  # GO: the link to run; NEW_ROUND: 0; STOP/BLOCKED: None
    verdict: str | None  # the verdict read (None: none was written)
    route: Route | None = None  # the route taken; None: went on as without routes
    bounce: bool = False  # backwards, or to a named link other than the next
    bounce_target: str | None = None  # the link name bounces are counted for
    bounce_count: int = 0  # this bounce's number in the round (1-based) when `bounce`
    max_bounces: int = DEFAULT_MAX_BOUNCES
    guard: str | None = None  # the guard fired: why the chain is BLOCKED
    note: str = ""  # "reviewer: NEEDS_FIX → back to worker (2/3)"; "" without a route

    @property
    def routed(self) -> bool:
        """A route decided this hop (an event, a note); False: the chain went on as without routes."""
        return self.route is not None

    @property
    def reason(self) -> str:
        """Why the run stops or blocks, for the run's end or the alert."""
        return self.guard or self.note


def decide(
    current_index: int,
    links: Sequence[str],
    routes: Routes,
    verdict_word: str | None,
    bounces_this_round: Mapping[str, int],
    max_bounces: int = DEFAULT_MAX_BOUNCES,
    *,
    round_no: int = 1,
) -> Hop:
    """The hop after links[current_index] (`links` are the chain's link names, in order).
    `bounces_this_round` maps a target link name to the bounces to it so far in this round
    (`record()` keeps it); `round_no` only words the guard's message."""
    name = links[current_index]
    verdict_word = normalize_word(verdict_word) or None if verdict_word is not None else None
    route = routes.get(verdict_word)
    shown = verdict_word or "(no verdict)"
    if route is None:
        return _onwards(current_index, links, verdict_word, None, "")
    kind = route.kind
    if kind is Target.NEXT:
        hop = _onwards(current_index, links, verdict_word, route, "")
        where = "next round" if hop.kind is HopKind.NEW_ROUND else f"on to {links[hop.next_index or 0]}"
        return _with_note(hop, f"{name}: {shown} → {where}")
    if kind is Target.RESTART:
        return Hop(kind=HopKind.NEW_ROUND, next_index=0, verdict=verdict_word, route=route,
                   max_bounces=max_bounces, note=f"{name}: {shown} → restart (new round)")
    if kind is Target.STOP:
        return Hop(kind=HopKind.STOP, next_index=None, verdict=verdict_word, route=route,
                   max_bounces=max_bounces, note=f"{name}: {shown} → stop")
    if kind is Target.BLOCKED:
        return Hop(kind=HopKind.BLOCKED, next_index=None, verdict=verdict_word, route=route,
                   max_bounces=max_bounces, note=f"{name}: {shown} → BLOCKED")
    target = links.index(route.target)
    if target == current_index + 1:
        return Hop(kind=HopKind.GO, next_index=target, verdict=verdict_word, route=route,
                   max_bounces=max_bounces, note=f"{name}: {shown} → on to {route.target}")
    count = bounces_this_round.get(route.target, 0) + 1
    direction = "back to" if target <= current_index else "on to"
    if count > max_bounces:
        sent = "back" if target <= current_index else "on"
        guard = (f"{name} sent the work {sent} {max_bounces} times in round {round_no} "
                 f"(to {route.target}; max_bounces {max_bounces}; the last verdict: {shown})")
        return Hop(kind=HopKind.BLOCKED, next_index=None, verdict=verdict_word, route=route, bounce=True,
                   bounce_target=route.target, bounce_count=count, max_bounces=max_bounces, guard=guard,
                   note=f"{name}: {shown} → {direction} {route.target}: over {max_bounces} bounces, BLOCKED")
    return Hop(kind=HopKind.GO, next_index=target, verdict=verdict_word, route=route, bounce=True,
               bounce_target=route.target, bounce_count=count, max_bounces=max_bounces,
               note=f"{name}: {shown} → {direction} {route.target} ({count}/{max_bounces})")


def _onwards(current_index: int, links: Sequence[str], verdict_word: str | None, route: Route | None, note: str) -> Hop:
    if current_index + 1 < len(links):
        return Hop(kind=HopKind.GO, next_index=current_index + 1, verdict=verdict_word, route=route, note=note)
    return Hop(kind=HopKind.NEW_ROUND, next_index=0, verdict=verdict_word, route=route, note=note)


def _with_note(hop: Hop, note: str) -> Hop:
    return replace(hop, note=note)


def record(bounces_this_round: Mapping[str, int], hop: Hop) -> dict[str, int]:
    """The bounce counts after `hop` (a new dict); a new round starts them at zero again."""
    if hop.kind is HopKind.NEW_ROUND:
        return {}
    out = dict(bounces_this_round)
    if hop.bounce and hop.bounce_target is not None and hop.kind is HopKind.GO:
        out[hop.bounce_target] = hop.bounce_count
    return out


# ---- validation helpers and the diagram -----------------------------------------------------------


def successors(index: int, links: Sequence[str], routes: Routes) -> set[int]:
    """Indexes the marble can go to after links[index] (a new round is index 0)."""
    after = index + 1 if index + 1 < len(links) else 0
    out: set[int] = set()
    if not routes.has_catch_all:
        out.add(after)  # an unrouted verdict goes on
    for r in routes.routes:
        kind = r.kind
        if kind is Target.NEXT:
            out.add(after)
        elif kind is Target.RESTART:
            out.add(0)
        elif kind is Target.LINK:
            out.add(links.index(r.target))
    return out


def unreachable_links(links: Sequence[str], routes: Mapping[str, Routes]) -> list[str]:
    """Links no path from the first link reaches (only possible with `*` catch-all routes), in
    chain order; `routes` maps a link name to its routes (absent: none)."""
    if not links:
        return []
    seen = {0}
    todo = [0]
    while todo:
        i = todo.pop()
        for j in successors(i, links, routes.get(links[i], NO_ROUTES)):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return [name for i, name in enumerate(links) if i not in seen]


def diagram(links: Sequence[str], routes: Mapping[str, Routes], mode: str = "loop") -> str:
    """The flow as a few lines of text, for `chain validate`:

        worker → reviewer ─┬─ APPROVED → (next round)
                           ├─ NEEDS_FIX → worker
                           └─ (other) → (next round)

    Runs of links without routes are joined by arrows; each routing link ends its line and lists
    its branches, `(other)` being where a verdict without a route (or none) goes."""
    end = "(next round)" if mode in ("loop", CONDITIONAL_MODE) else "(end)"

    def where(i: int) -> str:
        return links[i + 1] if i + 1 < len(links) else end

    def shown(i: int, r: Route) -> str:
        kind = r.kind
        if kind is Target.NEXT:
            return where(i)
        if kind is Target.RESTART:
            return "(restart: new round)"
        if kind is Target.STOP:
            return "stop"
        if kind is Target.BLOCKED:
            return "BLOCKED"
        return r.target

    lines: list[str] = []
    segment: list[str] = []
    for i, name in enumerate(links):
        segment.append(name)
        rs = routes.get(name, NO_ROUTES)
        if not rs and i + 1 < len(links):
            continue
        head = " → ".join(segment)
        segment = []
        if not rs:
            lines.append(f"{head} → {end}")
            continue
        branches = [f"{'(other)' if r.verdict == CATCH_ALL else r.verdict} → {shown(i, r)}" for r in rs.routes]
        if not rs.has_catch_all:
            branches.append(f"(other) → {where(i)}")
        pad = " " * (len(head) + 2)
        for k, branch in enumerate(branches):
            if k == 0:
                lines.append(f"{head} {'─┬─' if len(branches) > 1 else '───'} {branch}")
            else:
                lines.append(f"{pad}{'└─' if k == len(branches) - 1 else '├─'} {branch}")
    return "\n".join(lines)


def check_chain(links: Sequence[str], routes: Mapping[str, Routes], mode: str) -> list[str]:
    """Warnings about a whole chain's routing: unreachable links, a conditional chain that does
    not route, routes in a mode that never loops back."""
    out = [f"links: {name!r} is unreachable: no route or fall-through leads to it" for name in unreachable_links(links, routes)]
    routing = any(routes.get(n, NO_ROUTES) for n in links)
    if mode == CONDITIONAL_MODE and not routing:
        out.append("mode: 'conditional' but no link declares routes (it runs as a plain loop)")
    return out
