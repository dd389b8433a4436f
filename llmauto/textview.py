"""Plain-text views for the terminal: chain status, link logs, live progress lines. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from engine import routing
from engine import viewmodel as vm
from engine.chains import ChainDef
from engine.engine import ChainView
from engine.events import Event
from engine.prompts import format_duration
from engine.states import ChainStatus
from engine.store import ApprovalRow, LinkRunRow


def since(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "-"
    then = datetime.fromisoformat(iso)
    seconds = ((now or datetime.now(UTC)) - then).total_seconds()
    return format_duration(seconds)


money = vm.money


def status_line(v: ChainView, width: int = 24) -> str:
    """One chain in `chain list`; `width`: the name column's (the longest name's, at least 24)."""
    where = " (here)" if v.running_here else (f" ({v.running_elsewhere})" if v.running_elsewhere else "")
    running = bool(v.running_here or v.running_elsewhere)
    rounds = (f"round {v.round}" if running else f"{vm.rounds_done(v.round)} rounds done") + (
        f"/{v.max_rounds}" if v.max_rounds else "")
    extra = f", {v.current_link} for {since(v.current_link_since)}" if v.current_link else ""
    if v.error:
        return f"{v.name:<{width}} {'INVALID':<11} {vm.definition_problem(v.error)}"
    return f"{v.name:<{width}} {v.status:<11} {rounds}{extra}{where}"


def status_detail(v: ChainView, next_fire: str | None = None) -> str:
    lines = [f"{v.name}: {v.status}" + (f" — {v.description}" if v.description else "")]
    if v.error:
        lines.append(f"definition: {v.error}")
    lines.append(rounds_text(v))
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
    if v.stop_reason and v.status != ChainStatus.RUNNING:
        lines.append(f"reason: {v.stop_reason}")
    if next_fire:
        lines.append(f"next scheduled run: {next_fire}")
    return "\n".join(lines)


def rounds_text(v: ChainView) -> str:
    """The rounds as round_counter.txt counts them (completed rounds), and the current one while
    the chain runs: "round 3 of 10 (2 done)" or "rounds done: 2 of 10"."""
    r = vm.rounds(v.round, v.max_rounds, v.rounds_counted, running=bool(v.running_here or v.running_elsewhere))
    if r.running:
        return f"round: {r.current}{r.of} ({r.done} done" + (f", {r.counted_note}" if r.counted_note else "") + ")"
    return f"rounds done: {r.done}{r.of}" + (f" ({r.counted_note})" if r.counted_note else "")


def link_line(row: LinkRunRow) -> str:
    if row.status == "skipped":
        return f"round {row.round} {row.link} skipped: {row.error_message or 'not assigned'}"
    end = vm.row_end(row)
    took = format_duration(row.duration_s) if row.duration_s is not None else "running"
    model = f" [{row.model}]" if row.model else ""
    err = f": {end.error}" if end.error else ""
    refused = f" [refused: {end.refused}]" if end.refused else ""
    said = ", ".join([*vm.outcome_and_time(end, took), money(row.cost_usd)])
    return f"round {row.round} {row.link}{model}: {said}{err}{refused}"


def log_lines(rows: Sequence[LinkRunRow]) -> str:
    if not rows:
        return "(no links run yet)"
    return "\n".join(f"#{r.id:<5} {r.started_at[:19].replace('T', ' ')}  {link_line(r)}" for r in rows)


def event_line(event: Event) -> str | None:
    """One line of the foreground live view, or None for events not worth a line."""
    from engine import event_types as et  # the live view only: `status` skips it (#14)

    e = et.typed(event.kind, event.data)
    if isinstance(e, et.RunStarted):
        head = f"▶ {event.chain}: run #{event.run_id} from round {e.round}, link {e.link}" + (
            " (resumed)" if e.resumed else "")
        return "\n".join([head, *(f"    {p.link}: {p.permissions}" for p in e.permissions)])
    if isinstance(e, et.LinkStarted):
        who = "command" if e.command else (e.model or "default model")
        retry = f" (attempt {e.attempt})" if e.attempt > 1 else ""
        return f"  round {e.round} · {e.link} [{who}] started{retry}"
    if isinstance(e, et.LinkFinished):
        end = vm.link_end(e)
        cost = f", {money(e.cost_usd)}" if not e.command else ""
        err = f": {end.error}" if end.error else ""
        refused = f" (claude was refused {end.refused})" if end.refused else ""
        took = format_duration(e.duration_s or 0)
        return f"  {'✓' if end.ok else '✗'} {e.link}: {end.outcome}, {took}{cost}{err}{refused}"
    if isinstance(e, et.LinkSkipped):
        return f"  · {e.link} skipped ({e.why})"
    if isinstance(e, et.Routed):
        return f"  ↪ {e.note}"
    if isinstance(e, et.TaskStarted):
        return f"  ☐ task: {e.text} ({e.left} open)"
    if isinstance(e, et.TaskDone):  # and TaskBlocked
        what = "task BLOCKED (marked, skipped)" if isinstance(e, et.TaskBlocked) else "task done"
        return f"  ☐ {what}: {e.text}" + (f" ! {e.problem}" if e.problem else "")
    if isinstance(e, et.ToolRefused):
        return f"  ! {e.link}: claude refused {e.tool}" + (f" ({e.target})" if e.target else "")
    if isinstance(e, et.RoundFinished):
        return f"  round {e.round} done" + ("" if e.counted else " (every link failed: not counted)")
    if isinstance(e, et.Blocked):
        return f"  ! BLOCKED at {e.link}: {e.question}"
    if isinstance(e, et.WaitingLimit):
        return f"  … usage limit: waiting until {e.until}" + ("" if e.reset_known else " (backoff)")
    if isinstance(e, et.WaitingSlot):
        return f"  … {e.link} waits for a free agent slot (all {e.slots} in use)"
    if isinstance(e, et.HandoffProblem):
        return f"  ! {e.problem}"
    if isinstance(e, et.WarningEvent):
        return f"  ! {e.message}"
    if isinstance(e, et.RunFinished):
        return f"■ {event.chain}: {e.status} — {e.reason} (run cost {money(e.cost_usd)})"
    if isinstance(e, et.StopRequested):
        return _plain_note(event.kind, e.reason)
    if isinstance(e, et.OperatorNote):
        return _plain_note(event.kind, e.text)
    if isinstance(e, et.Recovered):
        return _plain_note(event.kind, e.link)
    if isinstance(e, et.Paused | et.Resumed):
        return _plain_note(event.kind, None)
    return None


def _plain_note(kind: str, what: str | None) -> str:
    """"  stop requested: tests are red", "  paused: ": the kind in words and what it is about."""
    return f"  {kind.replace('_', ' ')}: {what or ''}"


def progress_line(event: Event, elapsed_s: float, cost: float) -> str:
    from engine import event_types as et  # the live view only

    p = et.LiveProgress.from_data(event.data)
    tool = f"{p.tool} {p.target or ''}".strip() if p.tool else (p.detail or "")
    if p.kind == "output":  # a command link's own output line
        return f"    {p.link} {format_duration(elapsed_s)} · {tool[:90]}"
    return f"    {p.link} {format_duration(elapsed_s)} · turn {p.turns} · {tool[:70]} · run {money(cost)}"  # the run's, so far


def chain_summary(chain: ChainDef, *, is_root: bool = False, sandbox: bool = False) -> str:
    """What `chain validate` prints for a valid chain: its limits, and each link with its model,
    prompt and effective permissions (what claude will let it do)."""
    limits: list[str] = ["conditional" if chain.conditional else chain.mode]
    if chain.mode == "loop":
        limits.append(f"max {chain.max_rounds} rounds" if chain.max_rounds else "unlimited rounds")
    if chain.runtime_hours:
        limits.append(f"{chain.runtime_hours:g} h")
    if chain.deadline:
        limits.append(f"until {chain.deadline.isoformat(timespec='minutes')}")
    if chain.max_cost_usd:
        limits.append(f"${chain.max_cost_usd:g}")
    if chain.runs_on:
        limits.append(f"runs on {chain.runs_on}")
    lines = [f"{chain.name}: valid — {', '.join(limits)}, {len(chain.links)} links:"]
    for i, link in enumerate(chain.links):
        what = "command " + " ".join(link.command) if link.command is not None else str(link.model)
        extras = [x for x in (
            "continue" if link.continue_session else "", "until_full" if link.until_full else "",
            f"max_runs {link.max_runs}" if link.max_runs is not None else "",
            f"fallback {link.fallback_model}" if link.fallback_model else "") if x]
        lines.append(f"  {i + 1}. {link.name} ({link.role}, {what}" + (f", {', '.join(extras)}" if extras else "") + ")")
        if link.command is None:
            lines.append(f"     prompt: {link.prompt_source}")
        lines.append(f"     permissions: {link.permissions()}")
        if link.permission_mode == "bypassPermissions" and is_root and not sandbox:
            lines.append("     ! bypassPermissions as root: claude refuses to start unless IS_SANDBOX=1 is set")
    return "\n".join(lines + flow_lines(chain))


def flow_lines(chain: ChainDef) -> list[str]:
    """The flow as a small text diagram when links route (#13), the bounce limit, and the task pool."""
    out: list[str] = []
    if chain.routing:
        out.append(f"flow (max_bounces {chain.max_bounces} per link and round):")
        out += ["  " + line for line in routing.diagram([lk.name for lk in chain.links], chain.routes, chain.mode).splitlines()]
    pool = chain.task_pool
    if pool is not None:
        from engine.tasks import DirectoryPool

        shape = f"directory {pool.path} ({pool.pattern}, one task per file)" if isinstance(pool, DirectoryPool) else (
            f"file {pool.path} (one task per " + ("'- [ ]' checkbox)" if pool.format == "checkbox" else "non-empty line)"))
        out.append(f"task pool: {shape}")
    return out


def approval_lines(rows: Sequence[ApprovalRow], now: datetime | None = None) -> list[str]:
    """Tool calls waiting for a person: `chain approve NAME ID` / `chain deny NAME ID REASON`."""
    from engine.approvals import describe

    out = []
    for r in rows:
        what = describe(r.tool, r.tool_input)
        out.append(f"waiting for approval #{r.id}: {r.link} wants {r.tool} {what[:200]}".rstrip()
                   + f" (for {since(r.created_at, now)}) — llmauto chain approve {r.chain} {r.id} | deny {r.chain} {r.id} REASON")
    return out
