"""The claude CLI contract: the argv of one headless call, the prompt as stream-json input, the
budget flag, and the environment an agent gets. Measured facts live in shared CLAUDE_CLI.md; the
runner (engine/runner.py) only spawns and watches what this module describes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def claude_argv(
    claude_bin: str,
    *,
    model: str | None,
    permission_mode: str | None,
    allowed_tools: Sequence[str] | None,
    fallback_model: str | None = None,
    resume: str | None = None,
    session_id: str | None = None,
    ask: bool = False,
    disallowed_tools: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The argv of one headless claude call (prompt on stdin). With `ask`, claude hands the tool
    calls its rules do not settle to the runner (stdio permission protocol, stream-json input)."""
    argv = [claude_bin, "-p", "--output-format", "stream-json", "--verbose"]
    if ask:
        argv += ["--input-format", "stream-json", "--permission-prompt-tool", "stdio"]
    if model:
        argv += ["--model", model]
    if fallback_model and fallback_model != model:
        argv += ["--fallback-model", fallback_model]
    if permission_mode:
        argv += ["--permission-mode", permission_mode]
    if allowed_tools:
        argv += ["--allowedTools", " ".join(allowed_tools)]
    if disallowed_tools:
        argv += ["--disallowedTools", " ".join(disallowed_tools)]
    if resume:
        argv += ["--resume", resume]
    elif session_id:
        argv += ["--session-id", session_id]
    return tuple(argv)


def budget_arg(usd: float) -> str:
    """A dollar amount for --max-budget-usd: plain decimal, to the hundredth of a cent."""
    return f"{max(usd, 0.0001):.4f}".rstrip("0").rstrip(".")


def with_budget(argv: Sequence[str], usd: float) -> tuple[str, ...]:
    """A claude argv with `--max-budget-usd usd` (replacing one already there)."""
    out = list(argv)
    if "--max-budget-usd" in out:
        at = out.index("--max-budget-usd")
        del out[at : at + 2]
    # Right after -p & co., before any variadic option (--allowedTools) could swallow it.
    at = out.index("--verbose") + 1 if "--verbose" in out else len(out)
    out[at:at] = ["--max-budget-usd", budget_arg(usd)]
    return tuple(out)


def user_message(prompt: str) -> bytes:
    """The prompt as claude's stream-json input expects it (one line)."""
    line = {"type": "user", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": None, "session_id": ""}
    return (json.dumps(line) + "\n").encode()


# Variables never handed to agents unless a chain's env_allow names them.
# The store's and the queue's URLs may hold their database password.
_WITHHELD_PREFIXES = ("TELEGRAM_", "LLMAUTO_DATABASE_URL", "LLMAUTO_QUEUE_URL")
_ALWAYS_PASSED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "TERM")


def agent_env(
    parent: Mapping[str, str],
    *,
    env_allow: Sequence[str] | None,
    link_env: Mapping[str, str],
    llmauto_vars: Mapping[str, str],
) -> dict[str, str]:
    """The environment of one link: the parent's (or its allow-listed part) without the bot's
    secrets or `CLAUDECODE`, plus the link's own `env`, plus the LLMAUTO_* variables."""
    if env_allow is None:
        env = {k: v for k, v in parent.items() if not k.startswith(_WITHHELD_PREFIXES)}
    else:
        allowed = set(env_allow) | set(_ALWAYS_PASSED)
        env = {k: v for k, v in parent.items() if k in allowed}
    env.pop("CLAUDECODE", None)
    env.update(link_env)
    env.update(llmauto_vars)
    return env
