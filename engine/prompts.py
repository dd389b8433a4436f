"""Prompt rendering: placeholders, the context-limit instruction, the wind-down instruction.

Only the known `{NAME}` placeholders are replaced; any other braces (code, JSON in prompts) are left
as they are, which `str.format` could not do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDERS = (
    "HOME", "BASH_HOME", "CHAIN", "STATE_DIR", "HANDOFF", "ROUND", "LINK",
    "ROUNDS_LEFT", "TIME_LEFT", "DEADLINE",
    # A chain with a task_pool (#13): the round's task, its id, the open tasks (this one included),
    # the pool's file (a directory pool: the task's own file). Empty without a pool.
    "TASK", "TASK_ID", "TASKS_LEFT", "TASK_FILE",
)
_PATTERN = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

UNTIL_FULL = (
    "\n\n---\nWork until your context window is nearly full. Before it runs out, stop starting new "
    "work, write a complete, self-contained handoff to {HANDOFF} (what is done, what is next, how to "
    "continue), and end your turn."
)
WIND_DOWN = (
    "\n\n---\nWIND-DOWN: this chain is about to reach its limit ({why}). Do not start anything new. "
    "Finish or cleanly park the current step, leave the work in a consistent state, and write a "
    "complete handoff to {HANDOFF} that lets the next run continue from here."
)


def render(template: str, values: Mapping[str, str]) -> str:
    return _PATTERN.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unlimited"
    if 0 <= seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def build_prompt(
    template: str,
    values: Mapping[str, str],
    *,
    until_full: bool,
    wind_down_reason: str | None,
) -> str:
    text = template
    if until_full:
        text += UNTIL_FULL
    if wind_down_reason:
        text += WIND_DOWN.replace("{why}", wind_down_reason)
    return render(text, values)
