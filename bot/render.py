"""Messages as HTML text, pure. Everything an agent or a user wrote is escaped, so no handoff can
break a message; long content goes into documents; text is kept within Telegram's 4096 characters."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine import event_types as et
from engine import viewmodel as vm
from engine.engine import ChainView
from engine.event_types import (
    ApprovalDecided,
    ApprovalRequested,
    Blocked,
    LinkFinished,
)
from engine.permissions import Refusal
from engine.permissions import summary as refusal_summary
from engine.prompts import format_duration
from engine.states import ICONS, ChainStatus
from engine.store import LinkRunRow

if TYPE_CHECKING:
    from engine.queue_db import WorkerRow  # psycopg: only the distributed extra installs it

LIMIT = 4096
CAPTION_LIMIT = 1024
HANDOFF_INLINE = 3000  # a longer handoff is sent as a .md document with an excerpt
_TAG = re.compile(r"<(/?)([a-z-]+)[^>]*>")  # our own tags: agent text is escaped, so holds none


def esc(text: object) -> str:
    return html.escape(str(text), quote=False)


def visible(text: object) -> str:
    """The text with every invisible or reordering character (controls such as NUL, format
    characters such as U+202E RIGHT-TO-LEFT OVERRIDE, separators, unassigned code points) shown as
    `\\u202e`-style escapes, so that echoing input back can neither hide nor disguise anything.
    Newlines and tabs stay."""
    out = []
    for ch in str(text):
        if ch in "\n\t" or unicodedata.category(ch)[0] not in "CZ" or ch == " ":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def shown(text: object, limit: int | None = None) -> str:
    """User or agent text echoed in a message: invisible characters made visible, then escaped;
    with `limit`, at most that many characters as sent (escapes count, "…" marks a cut), cut
    between characters, never inside an entity such as `&lt;` or an escape such as `\\u202e`."""
    seen = esc(visible(text))
    if limit is None or len(seen) <= limit:
        return seen
    out: list[str] = []
    size = 0
    for ch in str(text):  # whole characters: an escape such as \u202e is never cut either
        piece = esc(visible(ch))
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


money = vm.money


def dur(seconds: object) -> str:
    return format_duration(float(seconds)) if isinstance(seconds, int | float) else "-"


def ago(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "-"
    return dur(((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds())


def excerpt(text: str, max_lines: int = 12, max_chars: int = 700) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()][:max_lines]
    out = "\n".join(lines)
    return out if len(out) <= max_chars else out[: max_chars - 1] + "…"


def truncate(text: str, limit: int = LIMIT) -> str:
    """Cut to `limit` characters without leaving half an HTML entity or tag behind, closing the
    tags the cut leaves open."""
    if len(text) <= limit:
        return text
    room = limit - 1
    while True:
        cut = text[:room]
        amp, semi = cut.rfind("&"), cut.rfind(";")
        if amp > semi:
            cut = cut[:amp]
        lt, gt = cut.rfind("<"), cut.rfind(">")
        if lt > gt:
            cut = cut[:lt]
        stack: list[str] = []
        for match in _TAG.finditer(cut):
            if match.group(1):
                if stack:
                    stack.pop()
            else:
                stack.append(match.group(2))
        closers = "".join(f"</{tag}>" for tag in reversed(stack))
        if len(cut) + 1 + len(closers) <= limit or room <= 0:
            return cut + "…" + closers
        room -= len(closers)


def split(text: str, limit: int = LIMIT) -> list[str]:
    """Cut a long HTML message into messages of at most `limit` characters, at line ends where no
    tag is open (a <pre> block stays whole unless it alone is too long: then it is truncated)."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    depth = 0
    block: list[str] = []  # lines of an open tag, kept together
    for line in text.split("\n"):
        block.append(line)
        for match in _TAG.finditer(line):
            depth += -1 if match.group(1) else 1
        if depth > 0:
            continue
        chunk = "\n".join(block)
        block = []
        if current and size + 1 + len(chunk) > limit:
            parts.append("\n".join(current))
            current, size = [], 0
        size = size + 1 + len(chunk) if current else len(chunk)
        current.append(chunk)
    if block:
        current.append("\n".join(block))
    if current:
        parts.append("\n".join(current))
    return [p if len(p) <= limit else truncate(p, limit) for p in parts if p.strip()]


# ---- views -------------------------------------------------------------------------------------
STATUS_ICON = ICONS  # kept for callers of the old name; the icons live with the status words


def status_compact(views: Sequence[ChainView]) -> str:
    if not views:
        return "No chains yet. Put a chain definition in <code>chains/NAME.json</code>."
    lines = ["<b>Chains</b>"]
    for v in views:
        icon = vm.icon(v.status)
        if v.error:
            lines.append(f"❗ <b>{esc(v.name)}</b> invalid: {esc(vm.definition_problem(v.error)[:160])}")
            continue
        running = v.running_here or v.running_elsewhere
        rounds = (f"round {v.round}" if running else f"{vm.rounds_done(v.round)} rounds done") + (
            f"/{v.max_rounds}" if v.max_rounds else "")
        current = f" · {esc(v.current_link)} {ago(v.current_link_since)}" if v.current_link else ""
        lines.append(f"{icon} <b>{esc(v.name)}</b> {esc(v.status)} · {rounds}{current}")
    return "\n".join(lines)  # may be long: replies are split at line ends


def status_detail(v: ChainView, next_fire: str | None = None) -> str:
    lines = [f"{vm.icon(v.status)} <b>{esc(v.name)}</b>: {esc(v.status)}"]
    if v.description:
        lines.append(f"<i>{esc(v.description[:300])}</i>")
    if v.error:
        lines.append(f"❗ definition: {esc(v.error[:1500])}")
    rn = vm.rounds(v.round, v.max_rounds, v.rounds_counted, running=bool(v.running_here or v.running_elsewhere))
    if rn.running:
        lines.append(f"Round {rn.current}{rn.of} ({rn.done} done" + (f", {rn.counted_note}" if rn.counted_note else "") + ")")
    else:
        lines.append(f"Rounds done: {rn.done}{rn.of}" + (f" ({rn.counted_note})" if rn.counted_note else ""))
    if v.current_link:
        tool = f" · {esc(v.current_tool)}" if v.current_tool else ""
        lines.append(f"Now: <b>{esc(v.current_link)}</b> for {ago(v.current_link_since)}{tool}")
    elif v.next_link:
        lines.append(f"Next link: {esc(v.next_link)}")
    if v.running_elsewhere:
        lines.append(f"Running in another process ({esc(v.running_elsewhere)})")
    if v.last_link is not None:
        lines.append("Last link: " + link_line(v.last_link))
    if v.last_run is not None:
        r = v.last_run
        lines.append(f"Run #{r.id} ({esc(r.origin)}): {r.links_run} links, cost so far {money(r.cost_usd)}")
    if v.stop_reason and v.status != ChainStatus.RUNNING:
        lines.append(f"Reason: {esc(v.stop_reason)}")
    if next_fire:
        lines.append(f"Next scheduled run: {esc(next_fire)}")
    return truncate("\n".join(lines))


def link_line(row: LinkRunRow) -> str:
    if row.status == "skipped":
        return f"r{row.round} {esc(row.link)}: skipped"
    end = vm.row_end(row)
    took = dur(row.duration_s) if row.duration_s is not None else "running"
    err = f" — {esc(end.error[:150])}" if end.error else ""
    refused = f" · refused {esc(end.refused[:150])}" if end.refused else ""
    said = " · ".join([*(esc(word) for word in vm.outcome_and_time(end, took)), money(row.cost_usd)])
    return f"r{row.round} <b>{esc(row.link)}</b> {said}{err}{refused}"


def log_text(chain: str, rows: Sequence[LinkRunRow]) -> str:
    if not rows:
        return f"<b>{esc(chain)}</b>: no links run yet."
    lines = [f"<b>{esc(chain)}</b>: last {len(rows)} links"] + [link_line(r) for r in rows]
    return "\n".join(lines)  # may be long: replies are split at line ends


def handoff_message(title: str, text: str) -> tuple[str, str | None]:
    """(message, document text or None): short handoffs inline, long ones as a document. "Short"
    is measured on the message as sent, escaped: 3,000 `<` are 12,000 characters of `&lt;`."""
    inline = f"<b>{esc(title)}</b>\n<pre>{esc(text)}</pre>"
    if len(text) <= HANDOFF_INLINE and len(inline) <= LIMIT:
        return inline, None
    return truncate(f"<b>{esc(title)}</b> ({len(text):,} characters, attached)\n<pre>{esc(excerpt(text, 8, 600))}</pre>",
                    CAPTION_LIMIT), text


def diff_message(chain: str, diff: str) -> tuple[str, str | None]:
    inline = f"<b>{esc(chain)}</b>: what the last link changed\n<pre>{esc(diff)}</pre>"
    if len(diff) <= HANDOFF_INLINE and len(inline) <= LIMIT:
        return inline, None
    return f"<b>{esc(chain)}</b>: what the last link changed (attached)", diff


# ---- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Asking:
    """A tool call waiting for a person's approval, as the card shows it."""

    id: int
    tool: str
    command: str
    since_mono: float


@dataclass(frozen=True, kw_only=True)
class Card:
    """What the progress card shows of one run; `bot/notify.py` folds the run's events into it
    (a new value per event) and `card` below renders it. Times are the notifier's monotonic clock."""

    chain: str | None
    round: int | None = 1
    max_rounds: int | None = None
    cost: float = 0.0
    path: tuple[str, ...] = ()  # the round's links so far (a chain whose links route)
    routed: bool = False
    hop_mark: str | None = None  # the bounce count the last hop left for the next link ("(2/3)")
    link: str | None = None
    model: str | None = None
    link_started_mono: float | None = None
    tool: str | None = None
    turns: int | None = None
    refused: tuple[Refusal, ...] = ()
    waiting_slots: bool = False
    slots: int | None = None  # all of them in use, when known
    waiting_answer: str | None = None  # the link whose BLOCKED alert waits for an answer
    waiting_round: int | None = None
    waiting_since_mono: float | None = None
    approvals: tuple[Asking, ...] = ()
    finished: bool = False
    status: str | None = None


def card(state: Card, now_mono: float) -> str:
    """The progress card of a running chain."""
    chain = esc(state.chain)
    if state.finished:
        done = vm.rounds_done(state.round)
        return (f"{vm.icon(state.status, '■')} <b>{chain}</b> {esc(state.status)} · "
                f"{done} round{'' if done == 1 else 's'} done · {money(state.cost)}")
    shown_round = state.waiting_round if state.waiting_answer and state.waiting_round else state.round
    lines = [f"▶️ <b>{chain}</b> · round {shown_round}" + (f"/{state.max_rounds}" if state.max_rounds else "")]
    if state.path and state.routed:  # a chain whose links route: where the marble went this round
        lines.append(f"Path: {esc(path_text(state.path))}")
    if state.waiting_answer:
        lines.append(f"⛔ BLOCKED at <b>{esc(state.waiting_answer)}</b>: waits for your answer (reply to the alert) · "
                     f"{_since(state.waiting_since_mono, now_mono)}")
    elif state.link:
        elapsed = _since(state.link_started_mono, now_mono)
        if state.waiting_slots:
            cap = f" (all {state.slots} in use)" if state.slots is not None else ""
            lines.append(f"Link: <b>{esc(state.link)}</b> waits for a free agent slot{cap} · {elapsed}")
        else:
            lines.append(f"Link: <b>{esc(state.link)}</b> ({esc(state.model or 'command')}) · {elapsed}")
    if state.tool:
        lines.append(f"Tool: {esc(state.tool[:120])}" + (f" · turn {state.turns}" if state.turns else ""))
    if state.refused:
        lines.append(f"⚠️ claude was refused {esc(refusal_summary(state.refused))}")
    if state.approvals:
        first = state.approvals[0]
        what = f"{first.tool} {first.command}".strip()
        more = f" (+{len(state.approvals) - 1} more)" if len(state.approvals) > 1 else ""
        lines.append(f"✋ waiting for your approval: {esc(what[:100])}{'…' if len(what) > 100 else ''} "
                     f"({_since(first.since_mono, now_mono)}){more}")
    lines.append(f"Cost so far: {money(state.cost)}")
    return "\n".join(lines)


def _since(mono: float | None, now_mono: float) -> str:
    return dur(now_mono - mono) if mono is not None else "-"


def path_text(path: Sequence[str], keep: int = 12) -> str:
    """The round's path, its last `keep` steps ("… → reviewer (NEEDS_FIX) → worker (3/3)")."""
    shown = [str(p)[:60] for p in path[-keep:]]
    return " → ".join((["…"] if len(path) > keep else []) + shown)


def link_note(chain: str, data: LinkFinished | Mapping[str, Any]) -> str:
    d = LinkFinished.of(data)
    end = vm.link_end(d)
    who = f"{esc(d.link)} ({esc(d.model or ('command' if d.command else 'default'))})"
    lines = [f"{'✅' if end.ok else '❌'} <b>{esc(chain)}</b> · round {d.round} · {who}",
             f"{dur(d.duration_s)} · {money(d.cost_usd)} · {esc(end.outcome)}"
             + (f" after {d.attempts} attempts" if d.attempts > 1 else "")]
    if end.error:
        lines.append(f"<i>{esc(end.error[:300])}</i>")
    if end.refused:
        lines.append(f"⚠️ claude was refused {esc(end.refused)}")
    elif end.denied_tools:
        lines.append("Denied tools: " + esc(", ".join(end.denied_tools)))
    if end.hop:  # #13: "reviewer: NEEDS_FIX → back to worker (2/3)"
        lines.append(f"↪ {esc(end.hop)}")
    if d.headline:
        lines.append(f"<pre>{esc(d.headline[:600])}</pre>")
    return "\n".join(lines)


def blocked_alert(chain: str, data: Blocked | Mapping[str, Any]) -> str:
    d = Blocked.of(data)
    question = d.question or "(no question given)"
    if d.kind == "denied":
        return (f"🚫 <b>{esc(chain)}</b>: {esc(d.link)} could not act (round {d.round})\n"
                f"<blockquote>{esc(question[:1500])}</blockquote>\n"
                f"Change <code>{esc(d.field or 'defaults.allowed_tools')}</code> and restart the chain; "
                "it carries on meanwhile, and links that change nothing count as failed.")
    wait = "The chain waits for your answer." if d.policy == "wait" else "The chain carries on meanwhile."
    return (f"⛔ <b>{esc(chain)}</b> is BLOCKED at {esc(d.link)} (round {d.round})\n"
            f"<blockquote>{esc(question[:1500])}</blockquote>\n"
            f"<b>Reply to this message</b> to answer: your reply goes into the handoff. {wait}")


def event_text(chain: str | None, kind: str, d: Mapping[str, Any]) -> str | None:
    """Short notices for the chat; None for events that only update the card."""
    c = f"<b>{esc(chain)}</b>"
    e = et.typed(kind, d)
    if isinstance(e, et.RunFinished):
        by = f" by {esc(e.by)}" if e.by else ""
        return f"{vm.icon(e.status, '■')} {c} {esc(e.status)}{by}: {esc(e.reason)} · run cost {money(e.cost_usd)}"
    if isinstance(e, et.WaitingLimit):
        known = "" if e.reset_known else " (reset time unknown: backing off)"
        return f"⏳ {c} hit a usage limit at {esc(e.link)}; retrying at {esc(_short_time(e.until))}{known}"
    if isinstance(e, et.HandoffProblem):
        restored = " The last good handoff was put back." if e.restored else ""
        return f"⚠️ {c}: {esc(e.problem)} (after {esc(e.link)}).{restored}"
    if isinstance(e, et.WarningEvent):
        return f"⚠️ {c}: {esc(e.message)}"
    if isinstance(e, et.Recovered):
        killed = f" Killed the orphaned agent of {esc(', '.join(e.agents_killed))}." if e.agents_killed else ""
        return f"♻️ {c} recovered after a crash: it goes on from round {e.round}.{killed}"
    if isinstance(e, et.WorkerLost):
        where = f"retrying on {esc(e.retry_on)}" if e.retry_on else "retrying on the next free worker"
        return f"🛰 {c}: worker {esc(e.worker)} lost during {esc(e.link)}; {where}"
    if isinstance(e, et.Paused):
        return f"⏸ {c} paused: no new link starts until /resume."
    if isinstance(e, et.Resumed):
        return f"▶️ {c} resumed."
    if isinstance(e, et.OperatorNote):
        return f"📝 {c}: note from {esc(e.by)} added to the handoff."
    if isinstance(e, et.ScheduleFired):
        return f"⏰ {c} started by schedule #{e.schedule_id} ({esc(e.original or e.expression or '')})"
    if isinstance(e, et.ScheduleSkipped):
        return f"⏭ {c}: scheduled run skipped: {esc(e.reason)}"
    if isinstance(e, et.ScheduleQueued):
        return f"⏳ {c} is still running; the scheduled run starts when it ends"
    if isinstance(e, et.ScheduleMissed):
        at_least = "at least " if e.more else ""
        return f"⌛ {c}: {at_least}{esc(e.missed)} scheduled run(s) missed while llmauto was down" + (
            f" (first: {esc(_short_time(e.first))})" if e.first else "")
    return None


def _short_time(iso: object) -> str:
    if not isinstance(iso, str) or not iso:  # unknown (a typed event's missing time is "")
        return "?"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return iso


def coalesce(texts: Sequence[str], limit: int = LIMIT) -> list[list[int]]:
    """Group consecutive notes into messages of at most `limit` characters (by index)."""
    groups: list[list[int]] = []
    size = 0
    for i, text in enumerate(texts):
        extra = len(text) + (2 if groups and groups[-1] else 0)
        if groups and size + extra <= limit:
            groups[-1].append(i)
            size += extra
        else:
            groups.append([i])
            size = len(text)
    return groups


HELP = """<b>llmauto</b>: marble runs of claude agents.

/start_chain NAME — start a chain (no name: pick one)
/stop_chain NAME [REASON] — stop after the current link (reply to any chain message with /stop_chain REASON)
/status [NAME] — one chain in detail, or all
/handoff NAME [N|diff] — the handoff (after round N, or the last change)
/log NAME [N] — the last N links
/chains — the chains
/pause NAME, /resume NAME — hold or carry on
/reset NAME — start over at round 1 (asks first)
/schedule NAME CRON — e.g. <code>/schedule nightly 0 2 * * *</code> or <code>daily 02:00 tz=Europe/Berlin</code>
/schedules, /unschedule ID — list and remove schedules
/task NAME TEXT — add a task to a chain's task pool; /tasks NAME — its tasks

Reply to a ⛔ BLOCKED alert to answer the agent."""


# ---- approvals ---------------------------------------------------------------------------------
APPROVAL_INLINE = 300  # a longer command is shown as a collapsed block


def _call_block(command: str) -> str:
    if not command:
        return ""
    if len(command) <= APPROVAL_INLINE and "\n" not in command:
        return f"\n<pre>{esc(command)}</pre>"
    shown = command if len(command) <= 3000 else command[:2999] + "…"
    return f"\n<blockquote expandable>{esc(shown)}</blockquote>"


def approval_question(chain: str, run_id: int | None, data: ApprovalRequested | Mapping[str, Any]) -> str:
    """The question on the phone: which chain, run, round and link wants to do what, and why."""
    d = ApprovalRequested.of(data)
    reason = f"\nReason: <i>{esc(d.reason[:500])}</i>" if d.reason else ""
    then = "the chain stops" if d.on_timeout == "stop_chain" else "it is denied"
    return (f"✋ <b>{esc(chain)}</b> · run #{run_id} · round {d.round} · <b>{esc(d.link)}</b> "
            f"asks to use <b>{esc(d.tool)}</b>:{_call_block(d.command)}{reason}\n"
            f"Request #{d.id}. No answer within {dur(d.timeout_s)}: {then}.")


DECIDED_ICON = {"approved": "✅", "denied": "❌", "timed_out": "⌛", "expired": "⌛"}


def approval_decided(chain: str, run_id: int | None, request: Mapping[str, Any],
                     data: ApprovalDecided | Mapping[str, Any], when: str) -> str:
    """The question once answered: what was asked, who decided what and when (no buttons)."""
    d = ApprovalDecided.of(data)
    status = d.status
    what = {"approved": "Approved", "denied": "Denied", "timed_out": "No answer in time: denied",
            "expired": "This request has expired"}.get(status, status)
    by = f" by {esc(d.by)}" if status in ("approved", "denied") and d.by else ""
    always = " (allowed for the rest of the run)" if d.always else ""
    message = f"\n<i>{esc(d.message[:300])}</i>" if d.message and status != "approved" else ""
    return (f"{DECIDED_ICON.get(status, '•')} <b>{esc(chain)}</b> · run #{run_id} · <b>{esc(request.get('link'))}</b> "
            f"· {esc(request.get('tool'))}{_call_block(str(request.get('command') or ''))}\n"
            f"<b>{what}</b>{by}{always} · {esc(when)}{message}")


def short_local_time(iso: str, zone: str | None) -> str:
    """"19:42 UTC": an event's time (stored in UTC) in the home's zone."""
    from zoneinfo import ZoneInfo

    try:
        when = datetime.fromisoformat(iso)
        local = when.astimezone(ZoneInfo(zone)) if zone else when.astimezone()
    except (ValueError, KeyError):
        return iso[:16]
    return local.strftime("%H:%M %Z").strip()


def approvals_waiting(rows: Sequence[Any], now: datetime | None = None) -> str:
    """Tool calls waiting for a person, for /status (the buttons are on each request's message)."""
    if not rows:
        return ""
    from engine.approvals import describe

    lines = ["", "<b>Waiting for your approval</b>"]
    for r in rows[:20]:
        what = describe(r.tool, r.tool_input)
        lines.append(f"✋ #{r.id} <b>{esc(r.chain)}</b> · {esc(r.link)}: {esc(r.tool)} {esc(what[:80])}"
                     + ("…" if len(what) > 80 else "") + f" ({ago(r.created_at, now)})")
    return "\n".join(lines)


def workers_text(workers: Sequence[WorkerRow], *, lost_after_s: float) -> str:
    """#15: `/workers` and the end of `/status` in the distributed mode."""
    if not workers:
        return "🛰 <b>Workers</b>: none yet (start one with <code>llmauto worker</code>)."
    lines = ["🛰 <b>Workers</b>"]
    for w in workers:
        state = "stopped" if w.stopped else ("lost" if w.age_s >= lost_after_s else "up")
        icon = {"up": "🟢", "lost": "🔴"}.get(state, "⚪")
        running = f"{w.running}/{w.max_links} running" + (f": {esc(w.running_links)}" if w.running_links else "")
        lines.append(f"{icon} <b>{esc(w.name)}</b> ({esc(state)}) on {esc(w.host)} · queues {esc(','.join(w.queues))} · "
                     f"{running} · heartbeat {w.age_s:.0f} s ago")
    return "\n".join(lines)
