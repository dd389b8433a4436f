"""The round's task inside a run (engine/run_tasks.py), against a real pool file and a real store:
the task taken at a round's start, kept when a round bounces back to its first link, settled with
the outcome, and an outcome kept from a run when the chain still had a pool settled without one.

`tests/test_routing_e2e.py::test_a_todo_list_to_all_done` runs the same through a whole chain on the
real claude CLI; these pin each step and the edges a whole run does not reach.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import event_types as et
from engine import taskpool
from engine.events import Event
from engine.run_tasks import RunTasks
from engine.states import ChainStatus
from engine.store import Store
from engine.tasks import FilePool, PoolDef

POOL = FilePool(path="todo.md")


def tasks_of(store: Store, workdir: Path, pool: PoolDef | None, published: list[Event]) -> RunTasks:
    return RunTasks(pool=pool, workdir=workdir, store=store, run_id=lambda: 0, publish=published.extend)


async def test_a_round_takes_the_next_open_task_and_settles_it(store: Store, tmp_path: Path) -> None:
    """Red with settle's mark skipped (the pool keeps `[ ] one`) or with take reading a bounce back
    to the first link as a fresh round (a second TaskStarted)."""
    (tmp_path / "todo.md").write_text("- [x] zero\n- [ ] one\n- [ ] two\n")
    published: list[Event] = []
    tasks = tasks_of(store, tmp_path, POOL, published)
    state = await store.chain_state("c")
    state, stop = await tasks.take(state)
    assert stop is None and state.task_id is not None
    assert tasks.placeholders()["TASK"] == "one" and tasks.placeholders()["TASKS_LEFT"] == "2"
    bounced, stop = await tasks.take(replace(state, round_ran=1))  # the round came back to its first link
    assert stop is None and bounced.task_id == state.task_id
    assert [e.kind for e in published] == [et.TaskStarted.KIND]
    state = await tasks.settle(replace(state, round=2, task_outcome="done"))
    assert (state.task_id, state.task_outcome) == (None, "")
    assert (tmp_path / "todo.md").read_text() == "- [x] zero\n- [x] one\n- [ ] two\n"
    assert published[-1].kind == et.TaskDone.KIND and published[-1].data["text"] == "one"
    assert "problem" not in published[-1].data
    assert tasks.placeholders() == {"TASK": "", "TASK_ID": "", "TASKS_LEFT": "", "TASK_FILE": ""}
    assert (await store.chain_state("c")).task_id is None  # committed, not only returned


async def test_a_run_resumed_mid_round_carries_on_with_its_task_without_announcing_it(store: Store, tmp_path: Path) -> None:
    """The process died in round 2 after its first link, working on the second task; the next
    start takes that task again, though an earlier one is open, and announces nothing. Red with
    take announcing every task it takes, or taking the first open task instead."""
    (tmp_path / "todo.md").write_text("- [ ] one\n- [ ] two\n")
    two = taskpool.read_pool(POOL, tmp_path).open[1]
    published: list[Event] = []
    resumed = replace(await store.chain_state("c"), round=2, next_link=1, round_ran=1, task_id=two.id)
    state, stop = await tasks_of(store, tmp_path, POOL, published).take(resumed)
    assert stop is None and state.task_id == two.id and published == []


async def test_a_start_with_an_outcome_still_to_write_settles_it_before_taking_the_next(store: Store, tmp_path: Path) -> None:
    """A run stopped after the round that finished task one but before its outcome reached the pool:
    the next start marks it first, then takes task two. Red with take skipping a pending outcome
    (task one would be taken again)."""
    (tmp_path / "todo.md").write_text("- [ ] one\n- [ ] two\n")
    one = taskpool.read_pool(POOL, tmp_path).open[0]
    published: list[Event] = []
    pending = replace(await store.chain_state("c"), round=2, task_id=one.id, task_outcome="done")
    tasks = tasks_of(store, tmp_path, POOL, published)
    state, stop = await tasks.take(pending)
    assert stop is None and tasks.placeholders()["TASK"] == "two" and state.task_outcome == ""
    assert [e.kind for e in published] == [et.TaskDone.KIND, et.TaskStarted.KIND]
    assert (tmp_path / "todo.md").read_text() == "- [x] one\n- [ ] two\n"


async def test_a_pool_that_cannot_be_marked_is_told_and_the_round_goes_on(store: Store, tmp_path: Path) -> None:
    """The pool file vanished during the round: the outcome is told with the reason, and the state
    is cleared so the next round reads the pool afresh (and fails there, with its reason)."""
    (tmp_path / "todo.md").write_text("- [ ] one\n")
    published: list[Event] = []
    tasks = tasks_of(store, tmp_path, POOL, published)
    state, _ = await tasks.take(await store.chain_state("c"))
    (tmp_path / "todo.md").unlink()
    state = await tasks.settle(replace(state, round=2, task_outcome="done"))
    assert (state.task_id, state.task_outcome) == (None, "")
    assert published[-1].kind == et.TaskDone.KIND and "todo.md" in published[-1].data["problem"]


async def test_no_open_task_left_ends_the_chain_all_done(store: Store, tmp_path: Path) -> None:
    (tmp_path / "todo.md").write_text("- [x] zero\n- [!] stuck\n")
    _, stop = await tasks_of(store, tmp_path, POOL, []).take(await store.chain_state("c"))
    assert stop is not None and (stop.status, stop.reason) == (ChainStatus.ALL_DONE, "task list done")


async def test_an_unreadable_pool_fails_the_chain_with_the_reason(store: Store, tmp_path: Path) -> None:
    _, stop = await tasks_of(store, tmp_path, POOL, []).take(await store.chain_state("c"))
    assert stop is not None and stop.status == ChainStatus.FAILED
    assert stop.reason.startswith("task pool: ") and "todo.md" in stop.reason


async def test_an_outcome_kept_from_when_the_chain_had_a_pool_is_settled_and_told_lost(store: Store, tmp_path: Path) -> None:
    """A run stopped after a round marked its task, then `task_pool` was taken out of the chain: the
    next run settles the kept outcome without a pool to mark and says so. Red with settle marking
    whatever the pool (taskpool.mark of None raises)."""
    published: list[Event] = []
    kept = replace(await store.chain_state("c"), round=3, task_id="t1", task_outcome="blocked")
    state = await tasks_of(store, tmp_path, None, published).settle(kept)
    assert (state.task_id, state.task_outcome) == (None, "")
    assert [e.kind for e in published] == [et.TaskBlocked.KIND]
    assert published[0].data["problem"] == "the task is no longer in the pool (removed or reworded)"
    assert published[0].data["round"] == 2

