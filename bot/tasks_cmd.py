"""`/task NAME TEXT` and `/tasks NAME`: add a task to a chain's pool from the phone, and see the
pool (open, done, blocked). The arguments are parsed here (pure, `UserError` with the usage);
the pool is read and written by `engine/chaintasks.py` in a worker thread (file I/O must not hold
up the bot's loop); errors the engine raises (unknown chain, invalid chain, no task_pool, a pool
that cannot be read, an empty task) reach the user through the handlers' one error funnel."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot import render
from bot.commands import MAX_ARG_CHARS, UserError, chain_arg
from engine import chaintasks
from engine.engine import Engine
from engine.tasks import counts, listing

TASK_USAGE = "Usage: /task NAME TEXT — e.g. <code>/task nightly fix the login redirect</code>"
TASKS_USAGE = "Usage: /tasks NAME"
MAX_TASK_CHARS = MAX_ARG_CHARS  # what a chat command carries; the pool itself takes up to 4,000
LIST_ALL = 100_000  # tasks per state in the attached document: all of them


@dataclass(frozen=True)
class Answer:
    chain: str
    text: str  # HTML
    document: tuple[str, str] | None = None  # (file name, text)


def task_args(args: list[str]) -> tuple[str, str]:
    """`NAME TEXT...`: the chain and the task's text (its words joined by single spaces)."""
    if not args:
        raise UserError(TASK_USAGE)
    name = chain_arg(args[0])
    text = " ".join(args[1:]).strip()
    if not text:
        raise UserError(f"The task is empty. {TASK_USAGE}")
    if len(text) > MAX_TASK_CHARS:
        raise UserError(f"That task is {len(text):,} characters, over the {MAX_TASK_CHARS:,} limit.")
    return name, text


def tasks_args(args: list[str]) -> str:
    if len(args) != 1:
        raise UserError(TASKS_USAGE)
    return chain_arg(args[0])


async def add(engine: Engine, args: list[str]) -> Answer:
    """Append the task; the answer names it and says how many are open now."""
    name, text = task_args(args)
    chain = engine.load(name)
    added = await asyncio.to_thread(chaintasks.add_task, chain, engine.settings.home, text)
    n_open = len(added.pool.open)
    return Answer(name, f"➕ Added to <b>{render.esc(name)}</b>: <code>{render.esc(added.task.id)}</code> "
                        f"{render.shown(added.task.text[:300])}\n"
                        f"{n_open} open task{'' if n_open == 1 else 's'}.")


async def show(engine: Engine, args: list[str]) -> Answer:
    """The pool's open, done and blocked tasks; a long list as a document, like /handoff."""
    name = tasks_args(args)
    chain = engine.load(name)
    read = await asyncio.to_thread(chaintasks.read_tasks, chain, engine.settings.home)
    n = counts(read)
    title = f"{name}: tasks ({', '.join(f'{v} {k}' for k, v in n.items())})"
    text, doc = render.handoff_message(title, listing(read, max_each=LIST_ALL) if read.tasks or read.problems
                                       else "no tasks: the pool is empty")
    return Answer(name, text, (f"{name}-tasks.txt", doc) if doc else None)
