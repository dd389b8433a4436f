"""Tool permissions of claude links: what a refusal looks like, and how refusals are told.

claude in print mode cannot ask anyone: a tool call its permission rules do not allow is refused,
the refusal goes back to the model as an error `tool_result`, and the run still ends "success"
(exit 0). Unnoticed, a chain whose agents may not write their handoff looks green all night. The
runner therefore counts every refusal (`StreamParser` reads them from the stream and from the
result's `permission_denials`), and this module says what one is and how to show them.

Texts measured with the real CLI 2.1.197 (see shared CLAUDE_CLI.md):
- default mode: "This Bash command contains multiple operations. The following parts require
  approval: mkdir -p /x, echo hi" (one command: "... requires approval");
- dontAsk: "Permission to use Bash has been denied because Claude Code is running in don't ask mode. ...";
- a --disallowedTools rule: "Permission to use Bash with command rm -rf /x has been denied.";
- a file tool in default mode: "Claude requested permissions to write to P, but you haven't granted it yet.";
- a path in a Bash command: "mkdir in 'P' was blocked. For security, Claude Code may only create ...";
- `cd DIR && git ...`: "This command changes directory before running git, ... Approve only if you trust it.";
- the stdio protocol failing closed: "Tool permission request failed: ...".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.records import Record

_REFUSAL = re.compile(
    r"requires? approval|permission to use \S+.{0,200}? (?:has been|was) denied|don'?t ask mode"
    r"|permission (?:has been |was )?denied|tool permission (?:stream closed|request failed)"
    r"|requested permissions to \w+ .{0,300}? but you haven'?t granted it"
    r"|was blocked\. For security, Claude Code may only|Approve only if you trust it",
    re.IGNORECASE | re.DOTALL,
)
# The argument of a tool call that says what it wanted to do.
_TARGET_KEYS = ("command", "file_path", "path", "notebook_path", "url", "pattern", "query")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Refusal(Record):
    """One tool call claude refused: the tool, what it wanted (command or path), and why."""

    tool: str
    target: str | None = None
    tool_use_id: str | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "target": self.target, "message": self.message[:300]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Refusal:
        target = data.get("target")
        return cls(tool=str(data.get("tool") or "?"), target=str(target) if target else None,
                   message=str(data.get("message") or ""))


def is_refusal(text: str) -> bool:
    """Does an error tool_result say that a permission rule refused the call?"""
    return bool(_REFUSAL.search(text[:2000]))


def call_target(tool_input: Any, limit: int = 200) -> str | None:
    """The command or path a tool call names, on one line, kept short."""
    if not isinstance(tool_input, Mapping):
        return None
    for key in _TARGET_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            line = " ".join(value.split())
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return None


def summary(refusals: Iterable[Refusal], *, targets: int = 1, width: int = 60) -> str:
    """"Bash ×3 (mkdir -p /tmp/x …), Write (state/c/handoff.md)": each tool with how often it
    was refused and the first thing it wanted."""
    items = list(refusals)
    counts = Counter(r.tool for r in items)
    parts = []
    for tool, count in counts.most_common():
        shown = [r.target for r in items if r.tool == tool and r.target][:targets]
        what = ", ".join(t if len(t) <= width else t[: width - 1] + "…" for t in shown if t)
        parts.append(f"{tool}{f' ×{count}' if count > 1 else ''}" + (f" ({what})" if what else ""))
    return ", ".join(parts)
