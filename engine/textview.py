"""Plain-text views for the terminal: chain status, link logs, live progress lines. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from engine.engine import ChainView
from engine.events import Event
from engine.prompts import format_duration
from engine.store import LinkRunRow


def since(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "-"
    then = datetime.fromisoformat(iso)
    seconds = ((now or datetime.now(UTC)) - then).total_seconds()
    return format_duration(seconds)


def money(value: float | None) -> str:
    return f"${value or 0:.4f}" if (value or 0) < 1 else f"${value:.2f}"


def status_line(v: ChainView) -> str:
    where = " (here)" if v.running_here else (f" ({v.running_elsewhere})" if v.running_elsewhere else "")
    rounds = f"round {v.round}" + (f"/{v.max_rounds}" if v.max_rounds else "")
    extra = f", {v.current_link} for {since(v.current_link_since)}" if v.current_link else ""
    if v.error:
        return f"{v.name:<24} INVALID  {v.error.splitlines()[0]}"
    return f"{v.name:<24} {v.status:<11} {rounds}{extra}{where}"


def status_detail(v: ChainView, next_fire: str | None = None) -> str:
    lines = [f"{v.name}: {v.status}" + (f" — {v.description}" if v.description else "")]
    if v.error:
        lines.append(f"definition: {v.error}")
    lines.append(f"round: {v.round}" + (f" of {v.max_rounds}" if v.max_rounds else "") + f" ({v.rounds_counted} counted)")
    if v.running_here or v.running_elsewhere:
        lines.append("running: " + ("in this process" if v.running_here else str(v.running_elsewhere)))
    if v.current_link:
        tool = f", {v.current_tool}" if v.current_tool else ""
        lines.append(f"current link: {v.current_link} for {since(v.current_link_since)}{tool}")
    elif v.next_link:
        lines.append(f"next link: {v.next_link}")
    if v.last_link is not None:
        lines.append("last link: " + link_line(v.last_link))
    if v.last_run is not None:
        r = v.last_run
        lines.append(
            f"last run: #{r.id} {r.status} from {r.origin}, started {r.started_at[:16].replace('T', ' ')} UTC, "
            f"{r.links_run} links, {money(r.cost_usd)}"
        )
    if v.stop_reason and v.status not in ("RUNNING",):
        lines.append(f"reason: {v.stop_reason}")
    if next_fire:
        lines.append(f"next scheduled run: {next_fire}")
    return "\n".join(lines)


def link_line(row: LinkRunRow) -> str:
    if row.status == "skipped":
        return f"round {row.round} {row.link}: skipped ({row.error_message or 'not assigned'})"
    outcome = row.error_class or row.status
    took = format_duration(row.duration_s) if row.duration_s is not None else "running"
    model = f" [{row.model}]" if row.model else ""
    err = f": {row.error_message}" if row.error_message and outcome != "ok" else ""
    return f"round {row.round} {row.link}{model}: {outcome}, {took}, {money(row.cost_usd)}{err}"


def log_lines(rows: Sequence[LinkRunRow]) -> str:
    if not rows:
        return "(no links run yet)"
    return "\n".join(f"#{r.id:<5} {r.started_at[:19].replace('T', ' ')}  {link_line(r)}" for r in rows)


def event_line(event: Event) -> str | None:
    """One line of the foreground live view, or None for events not worth a line."""
    d = event.data
    k = event.kind
    if k == "run_started":
        return f"▶ {event.chain}: run #{event.run_id} from round {d.get('round')}, link {d.get('link')}" + (" (resumed)" if d.get("resumed") else "")
    if k == "link_started":
        who = "command" if d.get("command") else (d.get("model") or "default model")
        retry = f" (attempt {d.get('attempt')})" if (d.get("attempt") or 1) > 1 else ""
        return f"  round {d.get('round')} · {d.get('link')} [{who}] started{retry}"
    if k == "link_finished":
        cost = f", {money(d.get('cost_usd'))}" if not d.get("command") else ""
        err = f": {d.get('error')}" if d.get("error_class") != "ok" and d.get("error") else ""
        mark = "✓" if d.get("error_class") == "ok" else "✗"
        return f"  {mark} {d.get('link')}: {d.get('error_class')}, {format_duration(d.get('duration_s'))}{cost}{err}"
    if k == "link_skipped":
        return f"  · {d.get('link')} skipped (ASSIGNED: {d.get('assigned')})"
    if k == "round_finished":
        return f"  round {d.get('round')} done" + ("" if d.get("counted") else " (every link failed: not counted)")
    if k == "blocked":
        return f"  ! BLOCKED at {d.get('link')}: {d.get('question')}"
    if k == "waiting_limit":
        return f"  … usage limit: waiting until {d.get('until')}" + ("" if d.get("reset_known") else " (backoff)")
    if k == "waiting_slot":
        return f"  … {d.get('link')} waits for a free agent slot (all {d.get('slots')} in use)"
    if k in ("handoff_problem", "warning"):
        return f"  ! {d.get('problem') or d.get('message')}"
    if k == "run_finished":
        return f"■ {event.chain}: {d.get('status')} — {d.get('reason')} (run cost {money(d.get('cost_usd'))})"
    if k in ("paused", "resumed", "stop_requested", "operator_note", "recovered"):
        return f"  {k.replace('_', ' ')}" + (f": {d.get('reason') or d.get('text') or d.get('link') or ''}")
    return None


def progress_line(event: Event, elapsed_s: float, cost: float) -> str:
    d = event.data
    tool = f"{d.get('tool')} {d.get('target') or ''}".strip() if d.get("tool") else (d.get("detail") or "")
    if d.get("kind") == "output":  # a command link's own output line
        return f"    {d.get('link')} {format_duration(elapsed_s)} · {tool[:90]}"
    return f"    {d.get('link')} {format_duration(elapsed_s)} · turn {d.get('turns')} · {tool[:70]} · {money(cost)}"
