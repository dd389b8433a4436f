"""`llmauto pipe`: one claude call, the answer on stdout (errors on stderr, exit code 1)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from engine.claude_cli import agent_env, claude_argv
from engine.runner import Invocation, SubprocessRunner
from engine.settings import Settings
from engine.stream import Progress


async def pipe(settings: Settings, prompt: str, *, model: str | None, timeout_s: float) -> int:
    inv = Invocation(
        argv=claude_argv(settings.claude_bin, model=model, permission_mode=None, allowed_tools=None),
        stdin=prompt, cwd=Path.cwd(),
        env=agent_env(settings.environ, env_allow=None, link_env={}, llmauto_vars={}),
        timeout_s=timeout_s, stall_s=None,
    )

    def quiet(_: Progress) -> None:
        return None

    result = await SubprocessRunner().run(inv, on_progress=quiet, on_spawn=lambda pid: None, kill=asyncio.Event())
    if not result.ok:
        print(f"error: claude failed ({result.error_class}): {result.error_message}", file=sys.stderr)
        return 1
    print(result.text)
    return 0
