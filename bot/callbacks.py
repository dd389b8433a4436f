"""Inline buttons and their callback data, pure.

Callback data is `KIND:ARG` (at most 64 bytes, Telegram's limit): `start:CHAIN`, `stop:CHAIN` (asks
for a reason), `stopnow:CHAIN` (kills the running link), `hand:CHAIN`, `stat:CHAIN`, `reset!:CHAIN`
(the confirmed reset), `spause:ID`, `sresume:ID`, `sdel:ID` (schedules) and `noop` (Cancel). A
button whose data would not fit is left out rather than cut (a cut name would act on another chain).
Buttons are kept as plain dicts so that the outbox can store them as JSON.
"""

from __future__ import annotations

MAX_DATA_BYTES = 64

# Button kind -> the command whose permission it needs (see bot.auth).
ACTIONS: dict[str, str] = {
    "start": "start_chain", "stop": "stop_chain", "stopnow": "stop_chain", "hand": "handoff", "stat": "status",
    "reset!": "reset", "spause": "schedule", "sresume": "schedule", "sdel": "unschedule", "noop": "noop",
}

Button = dict[str, str]
Buttons = list[list[Button]]


def encode(kind: str, arg: object = "") -> str | None:
    """The callback data, or None when it would exceed 64 bytes."""
    if kind not in ACTIONS:
        raise ValueError(f"unknown button kind {kind!r}")
    data = f"{kind}:{arg}" if str(arg) else kind
    return data if len(data.encode()) <= MAX_DATA_BYTES else None


def decode(data: str | None) -> tuple[str, str] | None:
    """(kind, arg), or None for data this bot never made."""
    kind, _, arg = (data or "").partition(":")
    return (kind, arg) if kind in ACTIONS else None


def button(text: str, kind: str, arg: object = "") -> Button | None:
    data = encode(kind, arg)
    return None if data is None else {"text": text, "data": data}


def row(*buttons: Button | None) -> list[Button]:
    return [b for b in buttons if b is not None]


def keyboard(*rows: list[Button]) -> Buttons | None:
    kept = [r for r in rows if r]
    return kept or None


def chain_buttons(chain: str, *, stop: bool = True) -> Buttons | None:
    """Handoff / Status / Stop under a chain's message."""
    return keyboard(row(button("Handoff", "hand", chain), button("Status", "stat", chain),
                        button("Stop", "stop", chain) if stop else None))


def alert_buttons(chain: str) -> Buttons | None:
    """Under a BLOCKED alert: Stop, Handoff (the answer is a reply, not a button)."""
    return keyboard(row(button("Stop", "stop", chain), button("Handoff", "hand", chain)))


def picker(names: list[str], kind: str, per_row: int = 2) -> Buttons | None:
    """One button per chain (e.g. `/start_chain` without a name)."""
    buttons = [b for b in (button(n, kind, n) for n in names) if b is not None]
    return keyboard(*(buttons[i:i + per_row] for i in range(0, len(buttons), per_row)))
