"""The `llmauto schedule add | after | list | remove | pause | resume` commands: argparse's
namespace in, lines on stdout out. The rules themselves live in engine/schedule_book.py; this
module only reads arguments and prints, so the book stays free of terminal concerns."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from engine.errors import ScheduleError
from engine.schedule_book import Schedule, ScheduleBook, format_fire, parse_iso
from engine.settings import Settings
from engine.store import Store


async def cli(settings: Settings, action: str, args: argparse.Namespace) -> int:
    """add | after | list | remove | pause | resume; usage errors raise (main() exits 2)."""
    async with Store.open_for_cli(settings) as store:
        book = ScheduleBook(store, settings)
        if action == "add":
            text = " ".join(args.cron)
            schedule, times = await book.add_cron(
                args.name, text, tz=args.tz, overlap=args.overlap, created_by=_user())
            print(f"schedule #{schedule.id}: {schedule.chain} {schedule.description()}, overlap {schedule.overlap}")
            print("next: " + ", ".join(format_fire(t, schedule.tz) for t in times))
        elif action == "after":
            schedule = await book.add_after(args.name, args.after, only_all_done=args.only_all_done, created_by=_user())
            print(f"schedule #{schedule.id}: {schedule.chain} runs {schedule.description()}")
        elif action == "list":
            schedules = await book.list()
            if not schedules:
                print("no schedules (add one: llmauto schedule add NAME \"0 2 * * *\")")
            now = datetime.now(UTC)
            for schedule in schedules:
                print(list_line(book, schedule, now))
        elif action in ("remove", "pause", "resume"):
            if action == "remove":
                schedule = await book.remove(args.id)
                verb = "removed"
            else:
                schedule = await book.set_enabled(args.id, action == "resume")
                verb = "paused" if action == "pause" else "resumed"
            print(f"schedule #{schedule.id} ({schedule.chain}, {schedule.description()}) {verb}")
        else:
            raise ScheduleError(f"unknown schedule action {action!r}")
    return 0


def list_line(book: ScheduleBook, schedule: Schedule, now: datetime) -> str:
    """One schedule in one line: id, chain, rule (with its zone), state, overlap, next and last fire."""
    parts = [f"#{schedule.id}", schedule.chain]
    if schedule.kind == "cron" and schedule.expression:
        parts.append(schedule.expression)
    parts.append(schedule.description())  # with the zone
    parts.append("enabled" if schedule.enabled else "paused")
    parts.append(f"overlap {schedule.overlap}")
    if schedule.enabled and schedule.kind == "cron":
        times = book.next_fires(schedule, now, 1)
        parts.append(f"next {format_fire(times[0], schedule.tz)}" if times else "next never")
    if schedule.last_fire:
        last = format_fire(parse_iso(schedule.last_fire), schedule.tz)
        parts.append(f"last {last}: {schedule.last_outcome or '?'}")
    else:
        parts.append("never fired")
    return "  ".join(parts)


def _user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"

