"""`llmauto worker [--queues A,B] [--max-links N] [--name NAME]` and `llmauto worker list` (#15).

The first runs links on this host until SIGTERM or SIGINT (running links are aborted and go back
to the queue); the second shows every worker: host, queues, links running, last heartbeat.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:  # imported when a worker command runs: every command builds this parser (#14)
    from engine.dist_settings import DistSettings
    from engine.settings import Settings


def add_parser(sub: Any) -> None:
    """Adds `worker` to the command table (argparse's, or cli's lean `_Subcommands`)."""
    p = sub.add_parser("worker", help="run links on this host for the distributed mode (or: worker list)")
    p.add_argument("action", nargs="?", choices=("list",), help="list: show the workers")
    p.add_argument("--queues", default="", help="comma-separated queues to serve (chains' runs_on; 'any' is the queue of chains "
                   "that name none; default: any)")
    p.add_argument("--max-links", type=int, default=2, help="links this worker runs at once (default 2)")
    p.add_argument("--name", help="this worker's name (default: the host name)")


def options(args: argparse.Namespace) -> tuple[str, tuple[str, ...], int]:
    from engine.chains import QUEUE_NAME
    from engine.worker import default_name

    queues = tuple(q.strip() for q in (args.queues or "").split(",") if q.strip())
    for queue in queues:
        if not QUEUE_NAME.fullmatch(queue):
            raise ConfigError(f"--queues: {queue!r} is not a queue name (letters, digits, - _ ., up to 64)")
    if args.max_links < 1:
        raise ConfigError(f"--max-links: must be at least 1, got {args.max_links}")
    return args.name or default_name(), queues, args.max_links


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from engine.dist_settings import DistSettings

    dist = DistSettings.from_settings(settings)
    if not dist.enabled:
        raise ConfigError("llmauto worker needs LLMAUTO_QUEUE_URL (or LLMAUTO_DATABASE_URL): a postgresql:// URL")
    if args.action == "list":
        return await cmd_list(dist)
    from engine.worker import LinkWorker, WorkerOptions

    name, queues, max_links = options(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = LinkWorker(settings, dist, WorkerOptions(name=name, queues=queues, max_links=max_links))
    await worker.run(stop)
    return 0


async def cmd_list(dist: DistSettings) -> int:
    from engine.queue_db import QueueDb
    from engine.worker import prepare

    assert dist.queue_url is not None
    async with QueueDb.open(dist.queue_url, max_size=1) as db:
        await prepare(db)
        rows = await db.workers()
    if not rows:
        print("no workers yet (start one with: llmauto worker)")
        return 0
    for w in rows:
        print(worker_line(w, lost_after_s=dist.lost_after_s))
    return 0


def worker_line(w: object, *, lost_after_s: float) -> str:
    from engine.queue_db import WorkerRow

    assert isinstance(w, WorkerRow)
    state = "stopped" if w.stopped else ("LOST" if w.age_s >= lost_after_s else "up")
    running = f"{w.running}/{w.max_links} running" + (f" ({w.running_links})" if w.running_links else "")
    return (f"{w.name:<16} {state:<7} host {w.host}  queues {','.join(w.queues)}  {running}  "
            f"last heartbeat {w.age_s:.0f} s ago")
