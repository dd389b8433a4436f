"""A chain's task pool inside its run: the task of each round, taken at the round's start and
settled (done or blocked) when the round's links have said so.

`MarbleRun` asks `take` before each link and `settle` after a link whose evaluation set the round's
task outcome (`ChainState.task_outcome`, see `engine/evaluate.py`). The pool is read afresh at each
round's start, so a task added from the chat or the CLI meanwhile (`engine/chaintasks.py`, the pool
from outside its run) is taken in turn. Marking a task in the pool is idempotent (`taskpool.mark`),
so a crash between the mark and the committed state only repeats the mark; the state's `task_id`
lets a resumed run carry on with the task it had.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from engine import event_types as et
from engine import policy, taskpool
from engine.events import Event
from engine.states import ChainStatus
from engine.store import ChainState, Store
from engine.tasks import PoolDef, PoolError, PoolRead, Task, TaskState
from engine.tasks import placeholders as task_placeholders

NO_TASK = {"TASK": "", "TASK_ID": "", "TASKS_LEFT": "", "TASK_FILE": ""}


class RunTasks:
    """The round's task of one run of a chain; a chain without a `task_pool` never takes one, but
    still settles an outcome its state kept from a run when it had a pool (and says it was lost)."""

    def __init__(self, *, pool: PoolDef | None, workdir: Path, store: Store, run_id: Callable[[], int],
                 publish: Callable[[Sequence[Event]], None]) -> None:
        self.pool = pool
        self.workdir = workdir
        self.store = store
        self.run_id = run_id  # known once the run is recorded
        self.publish = publish
        self.current: tuple[Task, PoolRead] | None = None  # the round's task, as the pool was read

    def placeholders(self) -> dict[str, str]:
        """{TASK}, {TASK_ID}, {TASKS_LEFT} and {TASK_FILE} for the prompts; empty between tasks."""
        return task_placeholders(*self.current) if self.current else dict(NO_TASK)

    async def take(self, state: ChainState) -> tuple[ChainState, policy.Stop | None]:
        """At a round's start (or a resumed run's first link): a pending outcome written to the
        pool, then the pool read afresh and its next open task taken; none left: ALL_DONE."""
        if state.task_outcome:
            state = await self.settle(state)
        fresh_round = state.next_link == 0 and state.round_ran == 0  # not a bounce back to the first link
        if not fresh_round and self.current is not None:
            return state, None
        assert self.pool is not None, "take() is for a chain with a task_pool"
        try:
            read = taskpool.read_pool(self.pool, self.workdir)
        except PoolError as exc:
            return state, policy.Stop(ChainStatus.FAILED, f"task pool: {exc}")
        task = None
        if not fresh_round and state.task_id:  # resumed mid-round: the same task
            task = next((t for t in read.tasks if t.id == state.task_id), None)
        task = task or next((t for t in read.open), None)
        if task is None:
            return state, policy.Stop(ChainStatus.ALL_DONE, "task list done")
        self.current = (task, read)
        if task.id != state.task_id or fresh_round:
            state = replace(state, task_id=task.id)
            self.publish(await self.store.put_chain_state(state, [et.TaskStarted(
                task_id=task.id, text=task.text[:500], left=len(read.open), round=state.round,
            ).new()], run_id=self.run_id()))
        return state, None

    async def settle(self, state: ChainState) -> ChainState:
        """Write the round's task outcome to the pool ([x] or done/, [!] or blocked/); marking is
        idempotent, so a crash before the state below is committed only repeats it."""
        outcome, task_id = TaskState(state.task_outcome), state.task_id
        text = self.current[0].text if self.current and self.current[0].id == task_id else ""
        problem = None
        try:
            found = taskpool.mark(self.pool, self.workdir, task_id, outcome) if task_id and self.pool else False
            if not found:
                problem = "the task is no longer in the pool (removed or reworded)"
        except (PoolError, OSError) as exc:
            problem = str(exc)
        kind = et.TaskDone if outcome is TaskState.DONE else et.TaskBlocked
        told = kind(task_id=task_id, text=text[:500], round=state.round - 1, problem=problem)
        state = replace(state, task_outcome="", task_id=None)
        self.current = None
        self.publish(await self.store.put_chain_state(state, [told.new()], run_id=self.run_id()))
        return state
