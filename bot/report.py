"""The run report: a Markdown document sent when a run ends (rounds, links, outcomes, time and
cost per link and per role, BLOCKED events, the stop reason, the final handoff).

The handoff shown is the run's own last version from the store's history, not the chain's
current one: the report may be built after a later run has changed it (the notifier catching up
after a restart). It goes in a code fence longer than any run of backticks inside it, so that
the handoff arrives verbatim."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from engine import event_types as et
from engine import events as ev
from engine.permissions import summary
from engine.prompts import format_duration
from engine.store import Store
from engine.viewmodel import money, rounds_done

APPROVAL_WORDS = {"approved": "approved", "denied": "denied", "timed_out": "unanswered (denied)",
                  "expired": "expired"}


async def build_report(store: Store, run_id: int) -> tuple[str, str, str] | None:
    """(file name, Markdown, caption) for a finished run, or None when the run is unknown."""
    run = await store.run(run_id)
    if run is None:
        return None
    links = await store.run_link_runs(run_id)
    events = await store.run_events(run_id)
    ran = [r for r in links if r.status != "skipped"]
    lines = [
        f"# {run.chain}: run #{run.id} report", "",
        f"- outcome: **{run.status}** — {run.stop_reason or ''}",
        f"- started: {run.started_at[:19].replace('T', ' ')} UTC from {run.origin}"
        + (f" by {run.requested_by}" if run.requested_by else ""),
        f"- ended: {(run.ended_at or '')[:19].replace('T', ' ')} UTC",
        f"- rounds done: {rounds_line(events)}",
        f"- links run: {len(ran)} (skipped: {len(links) - len(ran)}), total cost ${run.cost_usd:.4f}",
        "", "## Links", "", "| round | link | role | model | outcome | time | cost | tokens in/out |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in links:
        took = format_duration(r.duration_s) if r.duration_s is not None else "-"
        outcome = "skipped" if r.status == "skipped" else (r.error_class or r.status)
        lines.append(f"| {r.round} | {r.link} | {r.role} | {r.model or '-'} | {outcome} | {took} | ${r.cost_usd:.4f} | "
                     f"{r.input_tokens}/{r.output_tokens} |")
    per_role: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in ran:
        per_role[r.role][0] += 1
        per_role[r.role][1] += r.duration_s or 0.0
        per_role[r.role][2] += r.cost_usd
    lines += ["", "## Per role", "", "| role | links | time | cost |", "|---|---|---|---|"]
    for role, (n, secs, cost) in sorted(per_role.items()):
        lines.append(f"| {role} | {int(n)} | {format_duration(secs)} | ${cost:.4f} |")
    refused = [et.ToolRefused.from_data(e.data) for e in events if e.kind == ev.TOOL_REFUSED]
    if refused:
        told = summary(r.refusal() for r in refused)
        lines.insert(7, f"- tool calls claude refused: {len(refused)} ({told})")
        lines += ["", "## Refused tool calls", ""]
        lines += [f"- round {r.round}, {r.link}: {r.tool}" + (f" `{r.target}`" if r.target else "") for r in refused]
    decided = [et.ApprovalDecided.from_data(e.data) for e in events if e.kind == ev.APPROVAL_DECIDED]
    if decided:
        count = Counter(d.status for d in decided)
        people = sorted({str(d.by) for d in decided if d.status in ("approved", "denied")})
        told = ", ".join(f"{n} {APPROVAL_WORDS.get(k, k)}" for k, n in count.items())
        lines.insert(7, f"- tool calls asked on the phone: {told}" + (f", by {', '.join(people)}" if people else ""))
        lines += ["", "## Approvals", ""]
        lines += [f"- #{d.id} {d.link}: {d.tool} — {d.status}" + (f" by {d.by}" if d.by else "")
                  + (f" ({d.message})" if d.message and d.status != "approved" else "")
                  for d in decided]
    lines += routing_lines(events)
    blocked = [et.Blocked.from_data(e.data) for e in events if e.kind == ev.BLOCKED]
    if blocked:
        lines += ["", "## BLOCKED", ""]
        lines += [f"- round {b.round}, {b.link}: {b.question}" for b in blocked]
    problems = [e for e in events if e.kind in (ev.HANDOFF_PROBLEM, ev.WARNING, ev.WAITING_LIMIT, ev.RECOVERED)]
    if problems:
        lines += ["", "## Incidents", ""]
        lines += [f"- {e.ts[:19].replace('T', ' ')} {e.kind}: {e.data.get('problem') or e.data.get('message') or e.data.get('until') or ''}"
                  for e in problems]
    final = await store.run_final_handoff(run.id)
    if final is not None:
        mark = fence(final.content)
        lines += ["", "## Final handoff", "", mark, final.content.rstrip("\n"), mark]
    caption = f"{run.chain}: run #{run.id} {run.status}, {len(ran)} links, {money(run.cost_usd)}"
    return f"report-{run.chain}-run{run.id}.md", "\n".join(lines) + "\n", caption


def fence(content: str) -> str:
    """A backtick fence longer than any run of backticks in `content` (CommonMark)."""
    longest = max((len(m) for m in re.findall(r"`+", content)), default=0)
    return "`" * max(3, longest + 1)


def rounds_line(events: list[ev.Event]) -> str:
    """"2 / 5": the rounds done as round_counter.txt counts them (completed rounds) / max_rounds,
    from the run's own events; rounds that count toward max_rounds (not all-failed) are added
    when they differ."""
    started = next((et.RunStarted.from_data(e.data) for e in events if e.kind == ev.RUN_STARTED), None)
    finished = next((et.RunFinished.from_data(e.data) for e in reversed(events) if e.kind == ev.RUN_FINISHED), None)
    next_round = finished.round if finished else None
    done = rounds_done(next_round) if next_round is not None else None
    counted = finished.rounds_counted if finished else None
    total = started.max_rounds if started else None
    extra = f" ({counted} counted toward max_rounds)" if counted is not None and counted != done else ""
    return f"{done if done is not None else '?'} / {total if total else 'unlimited'}{extra}"


def routing_lines(events: list[ev.Event]) -> list[str]:
    """#13: the run's routed hops and its tasks (done, and BLOCKED ones marked and skipped)."""
    out: list[str] = []
    hops = [e for e in events if e.kind == ev.ROUTED]
    if hops:
        out += ["", "## Routed hops", ""]
        out += [f"- round {hop.round}: {hop.note}" for hop in (et.Routed.from_data(e.data) for e in hops)]
    for kind, title in ((ev.TASK_DONE, "Tasks done"), (ev.TASK_BLOCKED, "Tasks BLOCKED (marked, skipped next time)")):
        tasks = [e for e in events if e.kind == kind]
        if tasks:
            out += ["", f"## {title}", ""]
            out += [f"- {e.data.get('task_id')}: {e.data.get('text')}" + (f" ({e.data.get('problem')})" if e.data.get("problem") else "")
                    for e in tasks]
    return out
