"""Helpers for tests that run `claude`: the fake one (tests/fakes/bin/claude) or the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "INIT_KEYS",
    "MAX_TURNS_RESULT_KEYS",
    "MODEL_USAGE_KEYS",
    "REAL_CLAUDE_MISSING",
    "RESULT_KEYS",
    "USAGE_KEYS",
    "fake_claude_bin",
    "fake_claude_dir",
    "fake_env",
    "offline_env",
    "read_log",
    "real_claude_bin",
    "write_scenario",
]

FAKES_DIR = Path(__file__).resolve().parent
REPO_ROOT = FAKES_DIR.parent.parent

# Shapes measured on the real CLI 2.1.197; the fake produces them and both test files check them.
# Keys of the result object (success and API errors; a success may add ttft_ms & co.).
RESULT_KEYS = frozenset(
    {
        "type", "subtype", "is_error", "api_error_status", "duration_ms", "duration_api_ms",
        "num_turns", "result", "stop_reason", "session_id", "total_cost_usd", "usage",
        "modelUsage", "permission_denials", "terminal_reason", "fast_mode_state", "uuid",
    }
)  # fmt: skip
# --max-turns ending: no "result", no "api_error_status", plus "errors".
MAX_TURNS_RESULT_KEYS = (RESULT_KEYS - {"result", "api_error_status"}) | {"errors"}
USAGE_KEYS = frozenset(
    {"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}
)
MODEL_USAGE_KEYS = frozenset({"inputTokens", "outputTokens", "costUSD"})
INIT_KEYS = frozenset({"type", "subtype", "cwd", "session_id", "tools", "model", "permissionMode"})

REAL_CLAUDE_MISSING = (
    "real Claude Code CLI not installed "
    "(npm install --prefix .cache/claude-cli @anthropic-ai/claude-code)"
)


def _runnable(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_file() and os.access(p, os.X_OK)


def real_claude_bin() -> str | None:
    """The real CLI: $LLMAUTO_REAL_CLAUDE, else <repo>/.cache/claude-cli, else /tmp/claudecli."""
    env = os.environ.get("LLMAUTO_REAL_CLAUDE")
    if env:
        found = env if _runnable(env) else shutil.which(env)
        return str(found) if found else None
    for candidate in (
        REPO_ROOT / ".cache" / "claude-cli" / "node_modules" / ".bin" / "claude",
        Path("/tmp/claudecli/node_modules/.bin/claude"),
    ):
        if _runnable(candidate):
            return str(candidate)
    return None


def fake_claude_bin() -> str:
    """Absolute path of the fake `claude` shim (a `#!/bin/sh` script running fake_claude.py)."""
    return str(FAKES_DIR / "bin" / "claude")


def fake_claude_dir() -> str:
    """The directory holding the shim: prepend it to PATH to make `claude` the fake."""
    return str(FAKES_DIR / "bin")


def fake_env(
    config_dir: str | os.PathLike[str],
    *,
    scenario: str | os.PathLike[str] | None = None,
    log: str | os.PathLike[str] | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """An environment in which `claude` is the fake: its bin dir first on PATH, a private
    CLAUDE_CONFIG_DIR, this interpreter to run it, and optional scenario / invocation log."""
    env = dict(os.environ if base is None else base)
    for key in ("FAKE_CLAUDE_SCENARIO", "FAKE_CLAUDE_LOG"):
        env.pop(key, None)
    env["PATH"] = fake_claude_dir() + os.pathsep + env.get("PATH", "")
    env["CLAUDE_CONFIG_DIR"] = str(config_dir)
    env["FAKE_CLAUDE_PYTHON"] = sys.executable
    if scenario is not None:
        env["FAKE_CLAUDE_SCENARIO"] = str(scenario)
    if log is not None:
        env["FAKE_CLAUDE_LOG"] = str(log)
    return env


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The fake's invocation log (FAKE_CLAUDE_LOG): one dict per call, oldest first."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def offline_env(
    base_url: str,
    config_dir: str | os.PathLike[str],
    *,
    max_retries: int = 0,
    base: dict[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """The environment to run the real CLI fully offline against a loopback mock API.

    Starts from ``base`` (default: a copy of os.environ) minus anything that could point the CLI
    at a real account or another endpoint. ``max_retries`` becomes CLAUDE_CODE_MAX_RETRIES (the
    CLI's default of 10 retries over ~3 minutes would make error tests crawl); IS_SANDBOX=1 lets
    bypassPermissions run as root; ``home`` replaces HOME.
    """
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith(("ANTHROPIC_", "CLAUDE_", "CLAUDECODE")) or key in {
            "AWS_BEARER_TOKEN_BEDROCK",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        }:
            del env[key]
    env.update(
        {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-test",
            "CLAUDE_CONFIG_DIR": str(config_dir),
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
            "IS_SANDBOX": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    if home is not None:
        env["HOME"] = str(home)
    return env


def write_scenario(path: str | os.PathLike[str], scenario: dict[str, Any]) -> str:
    """Write a fake-claude scenario file (and reset its call counters); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(scenario, indent=2), encoding="utf-8")
    tmp.replace(p)
    counts = p.with_name(p.name + ".counts.json")
    if counts.exists():
        counts.unlink()
    return str(p)
