"""Agents that wait for the test's go-ahead instead of sleeping a fixed time.

A fixed-length agent (`sleep 3`) races the test: on a slow machine the agent ends before the test
has done what it meant to do while it ran. A gated agent holds until the test creates a file, so
"while the agent runs" is a condition, not a guess. `holding_command` is a `command` link;
`GATED_CLAUDE` is a `claude` (set as CLAUDE_BIN with CLAUDE_GATE in the env) that holds, then
becomes the fake claude.
"""

from __future__ import annotations

import sys
from pathlib import Path

GATED_CLAUDE = Path(__file__).parent / "gated" / "claude"

_HOLD = (
    "import os, sys, time\n"
    "gate = sys.argv[1]\n"
    "open(gate + '.started', 'w').close()\n"
    "while not os.path.exists(gate): time.sleep(0.01)\n"
)


def holding_command(gate: Path) -> list[str]:
    """A command link that marks `gate`.started, then holds until `gate` exists."""
    return [sys.executable, "-c", _HOLD, str(gate)]


def started(gate: Path) -> bool:
    """Has an agent held by `gate` started?"""
    return gate.with_name(gate.name + ".started").exists()
