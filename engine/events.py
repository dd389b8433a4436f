"""Events: every state change of a run becomes one, stored first, then published.

The store assigns ids; `EventBus` hands them to in-process subscribers at once (the bot's notifier,
the CLI's live view). Other processes read them from the store by id (cursor), so nothing depends on
being in the process that ran the chain. `progress` events (current tool, turns) are published only,
never stored: they are frequent and only the latest matters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.records import Record

if TYPE_CHECKING:
    import asyncio  # imported where a subscriber needs a queue: a lean command publishes to nobody

# Stored kinds.
RUN_STARTED = "run_started"
RUN_FINISHED = "run_finished"
LINK_STARTED = "link_started"
LINK_FINISHED = "link_finished"
LINK_SKIPPED = "link_skipped"
ROUND_FINISHED = "round_finished"
BLOCKED = "blocked"
HANDOFF_PROBLEM = "handoff_problem"
WAITING_LIMIT = "waiting_limit"
PAUSED = "paused"
RESUMED = "resumed"
STOP_REQUESTED = "stop_requested"
OPERATOR_NOTE = "operator_note"
RECOVERED = "recovered"
WARNING = "warning"
SCHEDULE_FIRED = "schedule_fired"
SCHEDULE_SKIPPED = "schedule_skipped"
SCHEDULE_MISSED = "schedule_missed"
SCHEDULE_QUEUED = "schedule_queued"
# Published only.
PROGRESS = "progress"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Event(Record):
    id: int
    kind: str
    chain: str | None
    run_id: int | None
    ts: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(
            id=row["id"], kind=row["kind"], chain=row["chain"], run_id=row["run_id"],
            ts=row["ts"], data=json.loads(row["data"] or "{}"),
        )


class EventBus:
    """In-process fan-out. A slow subscriber loses progress events, never stored ones."""

    def __init__(self, max_queue: int = 10_000) -> None:
        self._subs: set[asyncio.Queue[Event]] = set()
        self._max_queue = max_queue

    def subscribe(self) -> asyncio.Queue[Event]:
        import asyncio

        queue: asyncio.Queue[Event] = asyncio.Queue(self._max_queue)
        self._subs.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subs.discard(queue)

    def publish(self, event: Event) -> None:
        if not self._subs:
            return
        import asyncio

        for queue in self._subs:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                if event.kind != PROGRESS:
                    # Make room: drop the oldest item (stored events can be re-read from the store).
                    queue.get_nowait()
                    queue.put_nowait(event)


# Stored kinds added later.
WAITING_SLOT = "waiting_slot"  # a link waits for a free agent slot (LLMAUTO_MAX_PARALLEL_LINKS)
TOOL_REFUSED = "tool_refused"  # claude refused one tool call of a link (its permission rules)
APPROVAL_REQUESTED = "approval_requested"  # a tool call waits for a person's answer (approve.ask)
APPROVAL_DECIDED = "approval_decided"  # ... and how it was decided (approved, denied, timed out, expired)
# Verdict routing and task pools (#13).
ROUTED = "routed"  # a link's verdict chose where the marble goes (data: link, verdict, target, note, ...)
TASK_STARTED = "task_started"  # a round took the pool's next open task (data: task_id, text, left)
TASK_DONE = "task_done"  # the round's task was ticked off
WORKER_LOST = "worker_lost"  # #15: a worker stopped sending heartbeats mid-link; the link is retried elsewhere
TASK_BLOCKED = "task_blocked"  # the round's task stays BLOCKED: marked and skipped from now on
