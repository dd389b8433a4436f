"""The `llmauto` command line. Exit codes: 0 success, 1 failure at run time, 2 bad usage or input.

Heavy modules (the engine, aiosqlite, the bot) are imported inside the commands that need them, so
`llmauto --help` stays fast. Errors become text in exactly one place: `main()`.

The one-shot commands (everything but `chain start`, `pipe`, `worker` and `serve`) run without an
event loop on the home's SQLite file: their store is blocking (`Store.open_for_cli`) and
`engine.loopless` drives their coroutines, so they never import asyncio (#14). On PostgreSQL they
run under `asyncio.run`, as the others always do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import (
    BadChainName,
    ChainError,
    ConfigError,
    InvalidChain,
    LlmautoError,
    ScheduleError,
    UnknownChain,
)
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.engine import Engine

USAGE_ERRORS = (ChainError, ConfigError, ScheduleError, InvalidChain, BadChainName, UnknownChain)


def build_parser(only: tuple[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line. With `only=(COMMAND, ACTION)`, the parser of that one subcommand and no
    other: see `parser_for`. If that path does not exist, the whole parser."""
    if only is not None:
        found: list[str] = []
        lean = _build_parser(only, found)
        if found == list(only):
            return lean
    return _build_parser(None, [])


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """A parser that parses `argv` as the whole one does. Building all 26 parsers costs about 9 ms
    (each looks its gettext translations up on disk), so a command line that starts `COMMAND
    ACTION` gets only the parsers it goes through: with no option before them, argparse takes
    exactly that path and never looks at the other subcommands. Anything else (help, options
    first, a typo) gets the whole parser and its messages."""
    if len(argv) >= 2 and not argv[0].startswith("-") and not argv[1].startswith("-"):
        return build_parser((argv[0], argv[1]))
    return build_parser()


def _build_parser(only: tuple[str, str] | None, found: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmauto", description="Marble runs: chains of claude agents, steered from Telegram.",
                                formatter_class=_Formatter)
    p.add_argument("--home", help="the llmauto home folder (default: $LLMAUTO_HOME or the current directory)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = _Subcommands(p.add_subparsers(dest="command", metavar="COMMAND"), only, 0, found)

    s = sub.add_parser("serve", help="run the Telegram bot, the engine and the scheduler (the main job)")
    s.add_argument("--with-worker", action="store_true",
                   help="distributed mode: also run links on this host (a worker for the 'any' queue)")
    from llmauto import worker_cli

    worker_cli.add_parser(sub)

    chain = _Subcommands(sub.add_parser("chain", help="list, run and steer chains").add_subparsers(
        dest="action", metavar="ACTION"), only, 1, found)
    chain.add_parser("list", help="the chains and their state")
    s = chain.add_parser("status", help="one chain in detail, or all in short")
    s.add_argument("name", nargs="?")
    s = chain.add_parser("start", help="run a chain (in the foreground, with live progress)")
    s.add_argument("name")
    s.add_argument("--bg", action="store_true", help="detach: keep running after the terminal closes")
    s = chain.add_parser("stop", help="stop a chain after its current link (or --now)")
    s.add_argument("name")
    s.add_argument("reason", nargs="*")
    s.add_argument("--now", action="store_true", help="kill the running link at once")
    for verb, text in (("pause", "start no new link until resumed"), ("resume", "carry on after a pause"),
                       ("reset", "start the chain over (round 1, fresh handoff)")):
        chain.add_parser(verb, help=text).add_argument("name")
    s = chain.add_parser("log", help="the last N link runs")
    s.add_argument("name")
    s.add_argument("n", nargs="?", type=int, default=10)
    s = chain.add_parser("handoff", help="the current handoff (or after round N, or the last change)")
    s.add_argument("name")
    s.add_argument("which", nargs="?", help="a round number, or 'diff'")
    s = chain.add_parser("validate", help="check a chain definition")
    s.add_argument("name_or_file")
    s = chain.add_parser("answer", help="answer a BLOCKED chain: the text goes into its handoff")
    s.add_argument("name")
    s.add_argument("text", nargs="+")
    chain.add_parser("tasks", help="the tasks of a chain's task pool: open, done, blocked").add_argument("name")
    s = chain.add_parser("task", help="add a task to a chain's task pool")
    s.add_argument("name")
    s.add_argument("text", nargs="+")
    s = chain.add_parser("approve", help="let a tool call that waits for approval run")
    s.add_argument("name")
    s.add_argument("id", nargs="?", help="the request's number (see chain status); needed when several wait")
    s.add_argument("--always", action="store_true", help="also allow such calls for the rest of the run")
    s = chain.add_parser("deny", help="refuse a tool call that waits for approval; the reason goes to the agent")
    s.add_argument("name")
    s.add_argument("id", nargs="?", help="the request's number (see chain status); needed when several wait")
    s.add_argument("reason", nargs="*")

    s = sub.add_parser("pipe", help="one claude call; the answer on stdout")
    s.add_argument("prompt", nargs="*")
    s.add_argument("-f", "--file", help="read the prompt from a file ('-' for stdin)")
    s.add_argument("--model")
    s.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")

    sched = _Subcommands(sub.add_parser("schedule", help="cron schedules of chains").add_subparsers(
        dest="action", metavar="ACTION"), only, 1, found)
    s = sched.add_parser("add", help='add a schedule: NAME "CRON" (e.g. "0 2 * * *", "daily 02:00")')
    s.add_argument("name")
    s.add_argument("cron", nargs="+")
    s.add_argument("--tz")
    s.add_argument("--overlap", choices=("skip", "queue"), default="skip")
    s = sched.add_parser("after", help="run NAME whenever chain AFTER finishes")
    s.add_argument("name")
    s.add_argument("after")
    s.add_argument("--only-all-done", action="store_true", help="only when AFTER ended ALL_DONE")
    sched.add_parser("list", help="the schedules and their next fire times")
    for verb in ("remove", "pause", "resume"):
        sched.add_parser(verb, help=f"{verb} a schedule").add_argument("id", type=int)
    return p


class _Skipped:
    """Stands in for a subcommand's parser that `build_parser(only=...)` leaves out: it takes the
    declarations and drops them."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_subparsers(self, *args: Any, **kwargs: Any) -> _Skipped:
        return self

    def add_parser(self, *args: Any, **kwargs: Any) -> _Skipped:
        return self


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized as it sizes itself but without importing shutil (and with it
    bz2, lzma, fnmatch) for every command: argparse builds one at each add_argument (#14)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2 if width is None else width)


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Subcommands:
    """A subcommand table that, given `only`, builds the parser of `only[level]` alone; `found`
    collects the names it built, so `build_parser` knows whether the whole path exists."""

    def __init__(self, table: Any, only: tuple[str, str] | None, level: int, found: list[str]) -> None:
        self.table, self.only, self.level, self.found = table, only, level, found

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("formatter_class", _Formatter)
        if self.only is None:
            return self.table.add_parser(name, **kwargs)
        if name != self.only[self.level] or isinstance(self.table, _Skipped):
            return _Skipped()
        self.found.append(name)
        return self.table.add_parser(name, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = parser_for(argv)
    args = parser.parse_args(argv)
    if args.command is None or (args.command in ("chain", "schedule") and args.action is None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        environ = dict(os.environ)
        if args.home:
            environ["LLMAUTO_HOME"] = args.home
        settings = Settings.load(environ)
        for warning in settings.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.command == "serve":
            from llmauto.serve import serve

            return serve(settings, with_worker=args.with_worker)
        key = (args.command, getattr(args, "action", None))
        handler = COMMANDS[key]
        if key not in NEEDS_EVENT_LOOP:
            from engine.store import cli_store_blocks

            if cli_store_blocks(settings):
                from engine.loopless import run_loopless

                return run_loopless(handler(settings, args))
        import asyncio

        return asyncio.run(handler(settings, args))
    except USAGE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LlmautoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`llmauto chain log NAME | head -1`): it has what it wanted.
        _discard_stdout()
        return 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is still buffered
    does not fail on the closed pipe once more (and print a traceback)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


# ---- commands ------------------------------------------------------------------------------
Handler = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


async def _with_engine(settings: Settings, body: Callable[[Engine], Coroutine[Any, Any, int]]) -> int:
    from engine.engine import Engine
    from engine.store import Store

    async with Store.open_for_cli(settings) as store:
        engine = Engine(settings, store)  # not entered: a one-shot command runs no chain, polls nothing
        try:
            return await body(engine)
        finally:
            await engine.aclose()


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from llmauto.textview import status_line

    async def body(engine: Engine) -> int:
        views = await engine.views()
        if not views:
            print(f"no chains in {settings.chains_dir}")
        width = max([24, *(len(v.name) + 1 for v in views)])
        for v in views:
            print(status_line(v, width))
        return 0

    return await _with_engine(settings, body)


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    if args.name is None:
        return await cmd_list(settings, args)
    from llmauto.textview import status_detail

    async def body(engine: Engine) -> int:
        from engine.schedule_book import next_fire_for_chain

        view = await engine.view(args.name)
        print(status_detail(view, await next_fire_for_chain(engine.store, args.name, settings)))
        from llmauto.textview import approval_lines

        for line in approval_lines(await engine.pending_approvals(args.name)):
            print(line)
        return 0

    return await _with_engine(settings, body)


async def cmd_start(settings: Settings, args: argparse.Namespace) -> int:
    if args.bg:
        from llmauto.background import start_detached

        return await start_detached(settings, args.name)
    from llmauto.foreground import run_foreground

    return await run_foreground(settings, args.name)


async def cmd_stop(settings: Settings, args: argparse.Namespace) -> int:
    async def body(engine: Engine) -> int:
        print(await engine.stop_chain(args.name, " ".join(args.reason), now=args.now, by=_user()))
        return 0

    return await _with_engine(settings, body)


def _steer(method: str) -> Handler:
    async def handler(settings: Settings, args: argparse.Namespace) -> int:
        async def body(engine: Engine) -> int:
            engine.load(args.name)
            print(await getattr(engine, method)(args.name, by=_user()))
            return 0

        return await _with_engine(settings, body)

    return handler


async def cmd_answer(settings: Settings, args: argparse.Namespace) -> int:
    async def body(engine: Engine) -> int:
        engine.load(args.name)
        print(await engine.answer(args.name, " ".join(args.text), by=_user()))
        return 0

    return await _with_engine(settings, body)


async def cmd_tasks(settings: Settings, args: argparse.Namespace) -> int:
    from engine.chains import load_chain
    from engine.chaintasks import read_tasks
    from engine.tasks import listing

    print(listing(read_tasks(load_chain(settings.home, args.name, settings=settings), settings.home), max_each=100_000))
    return 0


async def cmd_task(settings: Settings, args: argparse.Namespace) -> int:
    from engine.chains import load_chain
    from engine.chaintasks import add_task
    from engine.tasks import PoolError, clean_task_text

    text = " ".join(args.text)
    try:
        clean_task_text(text)  # empty or too long: bad input (exit 2), not a failure of the pool
    except PoolError as exc:
        raise ConfigError(f"task: {exc}") from None
    added = add_task(load_chain(settings.home, args.name, settings=settings), settings.home, text)
    print(f"added {added.task.id}: {added.task.text} ({len(added.pool.open)} open)")
    return 0


def _approval_args(args: argparse.Namespace) -> tuple[int | None, list[str]]:
    """`ID` is optional: a first word that is not a number (#12 or 12) starts the reason."""
    words = list(getattr(args, "reason", []) or [])
    if args.id is None:
        return None, words
    raw = args.id.removeprefix("#")
    if raw.isdigit():
        return int(raw), words
    return None, [args.id, *words]


async def cmd_approve(settings: Settings, args: argparse.Namespace) -> int:
    approval_id, _ = _approval_args(args)
    if args.id is not None and approval_id is None:
        raise ConfigError(f"approve: expected a request number, got {args.id!r}")

    async def body(engine: Engine) -> int:
        print(await engine.decide_approval(args.name, approval_id, approve=True, by=_user(), always=args.always))
        return 0

    return await _with_engine(settings, body)


async def cmd_deny(settings: Settings, args: argparse.Namespace) -> int:
    approval_id, words = _approval_args(args)

    async def body(engine: Engine) -> int:
        print(await engine.decide_approval(args.name, approval_id, approve=False, by=_user(), message=" ".join(words)))
        return 0

    return await _with_engine(settings, body)


async def cmd_reset(settings: Settings, args: argparse.Namespace) -> int:
    async def body(engine: Engine) -> int:
        print(await engine.reset_chain(args.name))
        return 0

    return await _with_engine(settings, body)


async def cmd_log(settings: Settings, args: argparse.Namespace) -> int:
    from llmauto.textview import log_lines

    async def body(engine: Engine) -> int:
        print(log_lines(await engine.log(args.name, max(1, args.n))))
        return 0

    return await _with_engine(settings, body)


async def cmd_handoff(settings: Settings, args: argparse.Namespace) -> int:
    async def body(engine: Engine) -> int:
        if args.which == "diff":
            print(await engine.handoff_diff(args.name))
            return 0
        round_no = None
        if args.which is not None:
            if not args.which.isdigit():
                raise ConfigError(f"handoff: expected a round number or 'diff', got {args.which!r}")
            round_no = int(args.which)
        title, text = await engine.handoff_text(args.name, round_no)
        print(f"# {title}\n", file=sys.stderr)
        print(text)
        return 0

    return await _with_engine(settings, body)


async def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    from engine.chains import load_chain

    chain = load_chain(settings.home, args.name_or_file, allow_file=True, settings=settings)
    for warning in chain.warnings:
        print(f"warning: {warning}")
    from llmauto.textview import chain_summary

    print(chain_summary(chain, is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
                        sandbox=settings.environ.get("IS_SANDBOX") == "1"))
    return 0


async def cmd_pipe(settings: Settings, args: argparse.Namespace) -> int:
    from llmauto.pipe import pipe

    if args.file:
        prompt = _read_prompt_file(args.file)
        if args.prompt:
            prompt = " ".join(args.prompt) + "\n\n" + prompt
    elif args.prompt:
        prompt = " ".join(args.prompt)
    elif not sys.stdin.isatty():
        prompt = sys.stdin.read()
    else:
        raise ConfigError("pipe: give a prompt, -f FILE, or text on stdin")
    if not prompt.strip():
        raise ConfigError("pipe: the prompt is empty")
    return await pipe(settings, prompt, model=args.model, timeout_s=args.timeout)


def _read_prompt_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"pipe: cannot read {path}: {exc}") from exc


def _user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from llmauto.worker_cli import cmd_worker

    return await cmd_worker(settings, args)


def _schedule(action: str) -> Handler:
    async def handler(settings: Settings, args: argparse.Namespace) -> int:
        from llmauto import schedule_cli

        return await schedule_cli.cli(settings, action, args)

    return handler


COMMANDS: dict[tuple[str, str | None], Handler] = {
    ("chain", "list"): cmd_list,
    ("chain", "status"): cmd_status,
    ("chain", "start"): cmd_start,
    ("chain", "stop"): cmd_stop,
    ("chain", "pause"): _steer("pause_chain"),
    ("chain", "resume"): _steer("resume_chain"),
    ("chain", "reset"): cmd_reset,
    ("chain", "log"): cmd_log,
    ("chain", "handoff"): cmd_handoff,
    ("chain", "validate"): cmd_validate,
    ("chain", "answer"): cmd_answer,
    ("chain", "tasks"): cmd_tasks,
    ("chain", "task"): cmd_task,
    ("chain", "approve"): cmd_approve,
    ("chain", "deny"): cmd_deny,
    ("pipe", None): cmd_pipe,
    ("worker", None): _worker,
    ("worker", "list"): _worker,
    **{("schedule", a): _schedule(a) for a in ("add", "after", "list", "remove", "pause", "resume")},
}
# Commands that run chains or agents (subprocesses, timers, a worker's queue): asyncio.run. The
# others are one-shot and run without an event loop on SQLite (see the module docstring).
NEEDS_EVENT_LOOP = frozenset({("chain", "start"), ("pipe", None), ("worker", None), ("worker", "list")})
