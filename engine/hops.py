"""Verdict routing and task pools inside a run: the pure glue between `engine/routing.py`,
`engine/tasks.py` and the marble loop (`engine/marble.py`).

The loop asks two questions here after a link: where does the marble go (`hop_after`), and, when
the round is over, what became of the round's task (`task_outcome`). Both are pure: the chain, the
link, the handoff before and after it, and the chain's persisted counters in, a decision out. The
bounce counts and the round's path live in `ChainState` (columns of m009) and are committed with
the chain's position in the same transaction as the link's outcome, so a resumed run continues at
the routed link and never counts a hop twice.
"""

from __future__ import annotations

import json

from engine import routing
from engine.chains import ChainDef, LinkDef
from engine.event_types import Routed
from engine.routing import Hop, HopKind, Target
from engine.store import ChainState
from engine.tasks import TaskState

PATH_SEP = " → "
MAX_PATH_LINKS = 40  # the round's path keeps its last links; a bounce guard ends longer rounds anyway


def bounces(state: ChainState) -> dict[str, int]:
    """The bounces of the current round per target link, as persisted (bad JSON: none)."""
    try:
        raw = json.loads(state.round_bounces) if state.round_bounces else {}
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, dict) else {}


def dump_bounces(counts: dict[str, int]) -> str:
    return json.dumps(counts, sort_keys=True) if counts else ""


def path_after(path: str, link: str) -> str:
    """The round's path with `link` appended ("worker → reviewer → worker")."""
    names = [*(path.split(PATH_SEP) if path else []), link]
    return PATH_SEP.join(names[-MAX_PATH_LINKS:])


def read_verdict(before: str | None, after: str | None) -> str | None:
    """The verdict the link wrote: read from what it added when it appended to the handoff (an
    older round's verdict above must not route this one), else from the whole new handoff. An
    unchanged handoff has no verdict: the link said nothing."""
    if after is None or after == before:
        return None
    if before and after.startswith(before):
        return routing.verdict(after[len(before):])
    return routing.verdict(after)


def hop_after(chain: ChainDef, index: int, link: LinkDef, state: ChainState, before: str | None, after: str | None) -> Hop:
    """Where the marble goes after links[index], which routes (`link.routes` is not empty)."""
    return routing.decide(
        index, [lk.name for lk in chain.links], link.routes, read_verdict(before, after), bounces(state),
        chain.max_bounces, round_no=state.round,
    )


def routed_event(hop: Hop, link: str, round_no: int) -> Routed:
    """The `routed` event (what the log, the report and the card read)."""
    return Routed(
        link=link, round=round_no, verdict=hop.verdict, target=hop.route.target if hop.route else None,
        kind=hop.kind.value, bounce=hop.bounce, count=hop.bounce_count, max=hop.max_bounces,
        note=hop.note, guard=hop.guard,
    )


def task_outcome(chain: ChainDef, last: LinkDef, hop: Hop | None, *, blocked: bool, failed: bool) -> TaskState | None:
    """What the round's task becomes when the round ends after `last` (None: it stays open and
    the next round takes it again). Blocked: BLOCKED (marked, skipped from now on). Done: the last
    link ended without BLOCKED and did not fail, and, if that link routes, its verdict was an
    accepting one (routed `next`); a rejected, restarted or unrouted verdict leaves it open."""
    if blocked:
        return TaskState.BLOCKED
    if failed:
        return None
    if last.routes:
        accepted = hop is not None and hop.route is not None and hop.route.kind is Target.NEXT
        return TaskState.DONE if accepted else None
    return TaskState.DONE


def ends_round(hop: Hop | None) -> bool:
    return hop is not None and hop.kind is not HopKind.GO
