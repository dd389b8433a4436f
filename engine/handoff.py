"""What the handoff says: pure parsing of the agents' protocol.

Agents write `ASSIGNED: <worker>` (controller), `## Status: DONE | PARTIAL | BLOCKED`, and
`QUESTION: ...` when they need a human. The engine reads these to decide skips and BLOCKED rounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.redact import cut
from engine.states import ChainStatus

_ASSIGNED = re.compile(r"^\s*(?:[-*]\s*)?\**ASSIGNED\**\s*:\s*\**\s*([^\s*`]+)", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"^\s*#*\s*\**status\**\s*:\s*\**\s*([A-Za-z_]+)", re.IGNORECASE | re.MULTILINE)
_QUESTION = re.compile(r"^\s*\**QUESTION\**\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_BARE_BLOCKED = re.compile(r"^\s*#*\s*BLOCKED\b", re.MULTILINE)


def assigned(text: str) -> str | None:
    """The worker the handoff assigns (the last `ASSIGNED:` line), lower-cased."""
    found = _ASSIGNED.findall(text)
    return found[-1].strip().strip(".,;:").lower() if found else None


def status_word(text: str) -> str | None:
    found = _STATUS.findall(text)
    return found[-1].upper() if found else None


def is_blocked(text: str) -> bool:
    return status_word(text) == ChainStatus.BLOCKED or bool(_BARE_BLOCKED.search(text))


def question(text: str) -> str | None:
    """The agent's question to the human, if it asked one."""
    found = _QUESTION.findall(text)
    return str(found[-1]).strip() if found else None


def headline(text: str, max_lines: int = 3, max_chars: int = 300, *, redact: Callable[[str], str] | None = None) -> str:
    """The first meaningful lines of a handoff, for a notification. Redacted (when given a
    redactor) before it is cut, and never cut inside a long word: a cut first would hand the
    redactor only part of a secret."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = "\n".join(lines[:max_lines])
    if redact is not None:
        out = redact(out)
    return cut(out, max_chars)


def matches_assignment(assignee: str, *, link_name: str, model: str | None) -> bool:
    """Does `ASSIGNED: assignee` mean this link? By link name or model, loosely."""
    a = assignee.lower()
    names = {link_name.lower()}
    if model:
        names.add(model.lower())
    if a in names:
        return True
    # "ASSIGNED: sonnet" matches a worker on model "claude-sonnet-4-6" or named "sonnet-worker".
    return any(re.search(rf"(?<![a-z0-9]){re.escape(a)}(?![a-z0-9])", n) for n in names)


# C0 controls but tab and newline, and DEL: a NUL makes the reader refuse the whole handoff.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Bidi embeddings, overrides and isolates: they make a text read on screen otherwise than an agent
# reads it ("Trojan Source"). Kept visible as <U+202E>, not dropped: the note loses nothing.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


def clean_person_text(text: str) -> str:
    """A text a person (or the chat) puts into a handoff, made safe to write there: line ends
    normalised to \\n, other control characters removed, bidi controls written out as <U+XXXX>."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    return _BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def operator_note(text: str, note: str, who: str, when_iso: str) -> str:
    """The handoff with a person's answer appended as an operator note. Every answer path comes
    through here (the chat, the CLI, another process's control), so the note and the name are
    cleaned here (`clean_person_text`)."""
    who_clean = " ".join(clean_person_text(who).split())
    block = f"\n\n## Operator note ({who_clean}, {when_iso})\n{clean_person_text(note).strip()}\n"
    return text.rstrip("\n") + block


def diff(before: str, after: str, context: int = 2) -> str:
    """A unified diff of two handoff versions."""
    import difflib  # a large module few commands need (#14)

    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            "before", "after", n=context,
        )
    )
