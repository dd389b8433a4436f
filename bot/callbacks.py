"""Inline buttons, their callback data, and whether a pressed one still applies: pure.

Callback data (at most 64 bytes, Telegram's limit) says what a button does *and what it was
offered for*, so that a button pressed later cannot act on a run it was never about:

- `stop:RUN` (asks for a reason) and `stopnow:RUN` (kills the running link): the run it stops;
  its chain is found through the store. Pressed after that run ended, it does nothing.
- `start:CHAIN:RUN` (the chain's last run when offered, 0 for none): pressed after another run of
  the chain began, it does nothing (a "Resume" from last night does not start a second run).
- `reset!:CHAIN:RUN:STATUS` (the confirmed reset): the chain's last run and status when the
  confirmation was offered; any change since makes it void.
- `hand:CHAIN`, `stat:CHAIN` (read only), `spause:ID`, `sresume:ID`, `sdel:ID` (schedules), `noop`.

`decode` accepts only data of those shapes (anything else was not made by this bot), and
`stale_reason` is the one place that decides whether a bound button still applies. A button whose
data would not fit is left out rather than cut (a cut name would act on another chain). Buttons are
plain dicts so that the outbox can store them as JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.states import RunStatus

MAX_DATA_BYTES = 64

# Button kind -> the command whose permission it needs (see bot.auth).
ACTIONS: dict[str, str] = {
    "start": "start_chain", "stop": "stop_chain", "stopnow": "stop_chain", "hand": "handoff", "stat": "status",
    "reset!": "reset", "spause": "schedule", "sresume": "schedule", "sdel": "unschedule", "noop": "noop",
    # A tool call waiting for approval (engine/approval_desk.py): owners only, never viewers.
    "apr": "approve", "dny": "approve", "dnyw": "approve", "alw": "approve",
}
APPROVAL_KINDS = frozenset({"apr", "dny", "dnyw", "alw"})
# Buttons whose message has done its job once one of them is pressed: the keyboard is removed.
ONE_SHOT = frozenset({"start", "stopnow", "reset!", "noop", "apr", "dny", "alw"})

_CHAIN = r"[A-Za-z0-9_.-]{1,64}"
_ID = r"[0-9]{1,12}"
_SHAPES: dict[str, re.Pattern[str]] = {
    "start": re.compile(rf"(?P<chain>{_CHAIN}):(?P<run>{_ID})"),
    "stop": re.compile(rf"(?P<run>{_ID})"),
    "stopnow": re.compile(rf"(?P<run>{_ID})"),
    "hand": re.compile(rf"(?P<chain>{_CHAIN})"),
    "stat": re.compile(rf"(?P<chain>{_CHAIN})"),
    "reset!": re.compile(rf"(?P<chain>{_CHAIN}):(?P<run>{_ID}):(?P<status>[A-Z_]{{1,16}})"),
    "spause": re.compile(rf"(?P<sid>{_ID})"),
    "sresume": re.compile(rf"(?P<sid>{_ID})"),
    "sdel": re.compile(rf"(?P<sid>{_ID})"),
    "noop": re.compile(""),
    **{kind: re.compile(rf"(?P<aid>{_ID})") for kind in ("apr", "dny", "dnyw", "alw")},
}

Button = dict[str, str]
Buttons = list[list[Button]]


@dataclass(frozen=True, kw_only=True)
class Press:
    """A decoded button: its kind and what it was offered for."""

    kind: str
    chain: str | None = None
    run_id: int | None = None  # stop/stopnow: the run; start/reset!: the chain's last run then (0: none)
    status: str | None = None  # reset!: the chain's status then
    schedule_id: int | None = None
    approval_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class Current:
    """What the store says now, for `stale_reason`."""

    last_run_id: int | None  # the chain's last run
    chain_status: str  # the chain's status
    run_status: str | None = None  # stop/stopnow: the status of the button's run (None: no such run)


def encode(kind: str, *args: object) -> str | None:
    """The callback data, or None when it would exceed 64 bytes."""
    if kind not in ACTIONS:
        raise ValueError(f"unknown button kind {kind!r}")
    data = ":".join([kind, *(str(a) for a in args)]) if args else kind
    return data if len(data.encode()) <= MAX_DATA_BYTES else None


def decode(data: str | None) -> Press | None:
    """The press, or None for data this bot never made (unknown kind, or a malformed argument)."""
    kind, _, arg = (data or "").partition(":")
    shape = _SHAPES.get(kind)
    match = shape.fullmatch(arg) if shape is not None else None
    if match is None or len((data or "").encode()) > MAX_DATA_BYTES:
        return None
    g = match.groupdict()
    return Press(kind=kind, chain=g.get("chain"), run_id=int(g["run"]) if g.get("run") else None,
                 status=g.get("status"), schedule_id=int(g["sid"]) if g.get("sid") else None,
                 approval_id=int(g["aid"]) if g.get("aid") else None)


def stale_reason(press: Press, now: Current) -> str | None:
    """None when a pressed button still applies; otherwise the answer for the person who pressed
    it (the button then does nothing). Only bound kinds can be stale."""
    run = press.run_id
    if press.kind in ("stop", "stopnow"):
        if now.run_status is None:
            return f"This button is from run #{run}, which is not known here."
        if now.run_status != RunStatus.RUNNING or now.last_run_id != run:
            return f"This button is from run #{run}, which has ended."
        return None
    if press.kind == "start":
        if (now.last_run_id or 0) != run:
            return (f"This button is from before run #{now.last_run_id} of {press.chain}, which has been started "
                    "since: nothing done.")
        return None
    if press.kind == "reset!":
        if (now.last_run_id or 0) != run or now.chain_status != press.status:
            was = f"run #{run}, {press.status}" if run else f"{press.status}, never run"
            return (f"This confirmation is out of date: {press.chain} was at {was} when it was offered, and is at "
                    f"run #{now.last_run_id}, {now.chain_status} now. Send /reset {press.chain} again.")
        return None
    return None


def button(text: str, kind: str, *args: object) -> Button | None:
    data = encode(kind, *args)
    return None if data is None else {"text": text, "data": data}


def row(*buttons: Button | None) -> list[Button]:
    return [b for b in buttons if b is not None]


def keyboard(*rows: list[Button]) -> Buttons | None:
    kept = [r for r in rows if r]
    return kept or None


def chain_buttons(chain: str, run_id: int | None = None) -> Buttons | None:
    """Handoff / Status under a chain's message, and Stop when it is about a running run."""
    return keyboard(row(button("Handoff", "hand", chain), button("Status", "stat", chain),
                        button("Stop", "stop", run_id) if run_id is not None else None))


def alert_buttons(chain: str, run_id: int | None) -> Buttons | None:
    """Under a BLOCKED alert: Stop (that run), Handoff (the answer is a reply, not a button)."""
    return keyboard(row(button("Stop", "stop", run_id) if run_id is not None else None, button("Handoff", "hand", chain)))


def approval_buttons(approval_id: int, *, always: bool) -> Buttons | None:
    """Under a tool call waiting for approval: Approve / Deny, Deny and say why / Always allow."""
    return keyboard(row(button("✅ Approve", "apr", approval_id), button("❌ Deny", "dny", approval_id)),
                    row(button("✍️ Deny and say why", "dnyw", approval_id),
                        button("♾ Always allow this in this run", "alw", approval_id) if always else None))


def start_button(text: str, chain: str, last_run_id: int | None) -> Button | None:
    """Start (or resume) `chain`, valid while its last run is still `last_run_id`."""
    return button(text, "start", chain, last_run_id or 0)


def picker(choices: list[tuple[str, Button | None]], per_row: int = 2) -> Buttons | None:
    """One button per chain (e.g. `/start_chain` without a name); (label, button) pairs."""
    buttons = [b for _, b in choices if b is not None]
    return keyboard(*(buttons[i:i + per_row] for i in range(0, len(buttons), per_row)))

