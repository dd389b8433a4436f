"""The fake `claude` (tests/fakes/fake_claude.py) behaves like the real CLI's formats and failures.

Every test runs the fake as a real subprocess through its shim (tests/fakes/bin/claude). The shapes
asserted here are the ones measured on the real CLI 2.1.197 (tests/test_real_claude_cli.py checks
the real CLI against the same constants).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.anthropic_api import MockAnthropic, Reply, agent_responder
from tests.fakes.claude_env import (
    INIT_KEYS,
    MAX_TURNS_RESULT_KEYS,
    MODEL_USAGE_KEYS,
    RESULT_KEYS,
    USAGE_KEYS,
    fake_claude_bin,
    fake_env,
    read_log,
    write_scenario,
)

SJ = ["--output-format", "stream-json", "--verbose"]
# the original llmauto's permission flags: without them the fake (like the real CLI) refuses Write
GRANT = ["--permission-mode", "dontAsk", "--allowedTools", "Read,Edit,Write,Bash,Glob,Grep"]
MODEL = "claude-sonnet-4-6"


class Fake:
    """Runs the fake in a private cwd / config dir with an optional scenario and a call log."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cwd = tmp / "work"
        self.cwd.mkdir()
        self.config = tmp / "config"
        self.state = tmp / "state"
        self.state.mkdir()
        self.handoff = self.state / "handoff.md"
        self.scenario_path = tmp / "scenario.json"
        self.log_path = tmp / "calls.jsonl"
        self.env = fake_env(self.config, log=self.log_path)
        self.env.update(
            {
                "LLMAUTO_CHAIN": "demo",
                "LLMAUTO_LINK": "worker",
                "LLMAUTO_ROUND": "3",
                "LLMAUTO_HANDOFF": str(self.handoff),
                "LLMAUTO_STATE_DIR": str(self.state),
                "IS_SANDBOX": "1",
            }
        )
        self.env.pop("CLAUDE_CODE_MAX_RETRIES", None)
        self.env.pop("ANTHROPIC_BASE_URL", None)

    def scenario(self, scenario: dict[str, Any]) -> None:
        write_scenario(self.scenario_path, scenario)
        self.env["FAKE_CLAUDE_SCENARIO"] = str(self.scenario_path)

    def behave(self, **behaviour: Any) -> None:
        self.scenario({"default": behaviour})

    def run(
        self,
        *args: str,
        prompt: str | None = "do the work",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [fake_claude_bin(), "-p", *args],
            input=prompt,
            stdin=None if prompt is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=cwd or self.cwd,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )

    def json(
        self, *args: str, **kw: Any
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        proc = self.run("--output-format", "json", "--model", MODEL, *args, **kw)
        return proc, json.loads(proc.stdout)

    def stream(
        self, *args: str, **kw: Any
    ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        proc = self.run(*SJ, "--model", MODEL, *args, **kw)
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        return proc, lines

    def project_dir(self, cwd: Path | None = None) -> Path:
        return self.config / "projects" / re.sub(r"[^a-zA-Z0-9]", "-", str(cwd or self.cwd))

    def log(self) -> list[dict[str, Any]]:
        return read_log(self.log_path)


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def tool_uses(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        block
        for line in lines
        if line["type"] == "assistant"
        for block in line["message"]["content"]
        if block["type"] == "tool_use"
    ]


def assert_result_shape(obj: dict[str, Any]) -> None:
    assert obj["type"] == "result"
    assert set(obj) == RESULT_KEYS
    assert set(obj["usage"]) >= USAGE_KEYS
    for usage in obj["modelUsage"].values():
        assert set(usage) >= MODEL_USAGE_KEYS
    uuid.UUID(obj["session_id"])


# --- flags -------------------------------------------------------------------------------------


def test_version_and_help(fake: Fake) -> None:
    proc = subprocess.run(
        [fake_claude_bin(), "--version"], capture_output=True, text=True, env=fake.env, timeout=10
    )
    assert proc.returncode == 0
    assert proc.stdout == "2.1.197 (Claude Code)\n"
    proc = subprocess.run(
        [fake_claude_bin(), "--help"], capture_output=True, text=True, env=fake.env, timeout=10
    )
    assert proc.returncode == 0
    assert "--output-format" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "error: unknown option '--bogus'"),
        (["--output-format"], "error: option '--output-format <format>' argument missing"),
        (
            ["--output-format", "xml"],
            "error: option '--output-format <format>' argument 'xml' is invalid. "
            "Allowed choices are text, json, stream-json.",
        ),
        (
            ["--permission-mode", "foo"],
            "error: option '--permission-mode <mode>' argument 'foo' is invalid. Allowed choices "
            "are acceptEdits, auto, bypassPermissions, default, dontAsk, plan.",
        ),
        (
            ["--output-format", "stream-json"],
            "Error: When using --print, --output-format=stream-json requires --verbose",
        ),
        (["--session-id", "nope"], "Error: Invalid session ID. Must be a valid UUID."),
    ],
)
def test_usage_errors_like_the_real_cli(fake: Fake, args: list[str], message: str) -> None:
    proc = fake.run(*args)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == message
    assert fake.log()[-1]["early_error"] == message


def test_variadic_allowed_tools_swallows_a_positional_prompt(fake: Fake) -> None:
    # commander semantics, measured on the real CLI: `--allowedTools Bash "prompt"` eats the prompt
    proc = fake.run("--allowedTools", "Bash", "the prompt", prompt=None)
    assert proc.returncode == 1
    assert "Input must be provided either through stdin or as a prompt argument" in proc.stderr
    proc = fake.run("--allowedTools", "Bash Read", "--model", MODEL, prompt="from stdin")
    assert proc.returncode == 0
    call = fake.log()[-1]
    assert call["allowed_tools"] == ["Bash", "Read"]
    assert call["prompt"] == "from stdin"


def test_prompt_from_argument_and_stdin(fake: Fake) -> None:
    assert fake.run("positional", prompt=None).returncode == 0
    assert fake.log()[-1]["prompt"] == "positional"
    assert fake.run("positional", prompt="piped").returncode == 0
    assert fake.log()[-1]["prompt"] == "positional\npiped"


def test_skip_permissions_refused_as_root_without_is_sandbox(fake: Fake) -> None:
    env = {k: v for k, v in fake.env.items() if k != "IS_SANDBOX"}
    fake.env = env
    proc = fake.run("--dangerously-skip-permissions")
    if os.geteuid() == 0:
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for "
            "security reasons"
        )
        proc = fake.run("--permission-mode", "bypassPermissions")
        assert proc.returncode == 1
    else:
        assert proc.returncode == 0
    fake.env["IS_SANDBOX"] = "1"
    proc, lines = fake.stream("--dangerously-skip-permissions")
    assert proc.returncode == 0
    assert lines[0]["permissionMode"] == "bypassPermissions"


# --- output formats ----------------------------------------------------------------------------


def test_text_output_is_just_the_result(fake: Fake) -> None:
    proc = fake.run()
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_json_output_shape(fake: Fake) -> None:
    fake.behave(
        result="done in round {round} by {link}", cost=0.25, input_tokens=7, output_tokens=3
    )
    proc, obj = fake.json()
    assert proc.returncode == 0
    assert_result_shape(obj)
    assert obj["subtype"] == "success"
    assert obj["is_error"] is False
    assert obj["api_error_status"] is None
    assert obj["result"] == "done in round 3 by worker"
    assert obj["total_cost_usd"] == 0.25
    assert obj["usage"]["input_tokens"] == 7
    assert obj["modelUsage"][MODEL] == {
        "inputTokens": 7,
        "outputTokens": 3,
        "cacheReadInputTokens": 0,
        "cacheCreationInputTokens": 0,
        "webSearchRequests": 0,
        "costUSD": 0.25,
        "contextWindow": 200000,
        "maxOutputTokens": 32000,
    }
    assert obj["terminal_reason"] == "completed"
    assert obj["stop_reason"] == "end_turn"
    assert obj["num_turns"] == 1


def test_stream_json_shape(fake: Fake) -> None:
    fake.handoff.write_text("# previous\n", encoding="utf-8")
    fake.behave(
        handoff="# next\n",
        tools=["Bash", "Grep"],
        permission_denials=["WebFetch"],
        result="finished",
    )
    proc, lines = fake.stream("--permission-mode", "acceptEdits", "--allowedTools", "Read,Write")
    assert proc.returncode == 0
    init, *middle, result = lines
    assert set(init) >= INIT_KEYS
    assert (init["type"], init["subtype"]) == ("system", "init")
    assert init["cwd"] == str(fake.cwd)
    assert init["model"] == MODEL
    assert init["permissionMode"] == "acceptEdits"
    assert "Bash" in init["tools"]
    assert all(line["session_id"] == init["session_id"] for line in lines)
    for line in middle:
        assert line["type"] in ("assistant", "user")
        assert len(line["message"]["content"]) == 1  # one content block per line
    assert [t["name"] for t in tool_uses(lines)] == ["Bash", "Grep", "Read", "Write"]
    # every tool_use is answered by a tool_result with its id
    results = [
        block["tool_use_id"]
        for line in middle
        if line["type"] == "user"
        for block in line["message"]["content"]
    ]
    assert results == [t["id"] for t in tool_uses(lines)]
    # a text block and a tool_use block of one message share the message id
    read_idx = next(
        i
        for i, line in enumerate(middle)
        if line["type"] == "assistant" and line["message"]["content"][0].get("name") == "Read"
    )
    assert middle[read_idx - 1]["message"]["content"][0]["type"] == "text"
    assert middle[read_idx - 1]["message"]["id"] == middle[read_idx]["message"]["id"]
    assert middle[-1]["message"]["content"] == [{"type": "text", "text": "finished"}]
    assert_result_shape(result)
    assert result["result"] == "finished"
    assert result["num_turns"] == 5  # Bash, Grep, Read, Write, final answer
    assert result["permission_denials"][0]["tool_name"] == "WebFetch"


# --- the agent's effects -----------------------------------------------------------------------


def test_handoff_replace_and_append(fake: Fake) -> None:
    fake.scenario(
        {
            "links": {
                "worker": [
                    {"handoff": "round {round}: first\n"},
                    {"handoff": "round {round}: second\n", "handoff_mode": "append"},
                ]
            }
        }
    )
    proc, lines = fake.stream(*GRANT)
    assert proc.returncode == 0
    assert fake.handoff.read_text() == "round 3: first\n"
    assert [t["name"] for t in tool_uses(lines)] == ["Write"]  # new file: nothing to read
    assert tool_uses(lines)[0]["input"]["file_path"] == str(fake.handoff)
    proc, lines = fake.stream(*GRANT)
    assert fake.handoff.read_text() == "round 3: first\nround 3: second\n"
    # an existing file is read before it is written, as the real Write tool demands
    assert [t["name"] for t in tool_uses(lines)] == ["Read", "Write"]


def test_status_and_files(fake: Fake) -> None:
    (fake.cwd / "existing.txt").write_text("old\n")
    fake.behave(
        status="BLOCKED",
        files={
            "notes/a.txt": "A {link}",
            "existing.txt": "new\n",
            str(fake.tmp / "abs.txt"): "abs",
        },
    )
    proc, lines = fake.stream(*GRANT)
    assert proc.returncode == 0
    assert (fake.state / "status.txt").read_text().strip() == "BLOCKED"
    assert (fake.cwd / "notes" / "a.txt").read_text() == "A worker"
    assert (fake.cwd / "existing.txt").read_text() == "new\n"
    assert (fake.tmp / "abs.txt").read_text() == "abs"
    writes = [t["input"]["file_path"] for t in tool_uses(lines) if t["name"] == "Write"]
    assert str(fake.state / "status.txt") in writes
    assert str(fake.cwd / "notes" / "a.txt") in writes


# --- errors ------------------------------------------------------------------------------------

ERRORS = {
    # kind: (api_error_status, start of result text, assistant "error" field)
    "rate_limited": (429, "API Error: Request rejected (429) · ", "rate_limit"),
    "overloaded": (529, "API Error: 529 Overloaded.", "server_error"),
    "auth": (401, "Failed to authenticate. API Error: 401 ", "authentication_failed"),
    "invalid_api_key": (401, "Invalid API key · Fix external API key", "authentication_failed"),
    "api_error": (500, "API Error: 500 ", "server_error"),
    "not_found": (404, f"There's an issue with the selected model ({MODEL}).", "model_not_found"),
    "connection_refused": (None, "API Error: Unable to connect to API (ConnectionRefused)", "server_error"),
    "not_logged_in": (None, "Not logged in · Please run /login", "authentication_failed"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_api_errors(fake: Fake, kind: str) -> None:
    status, text, field = ERRORS[kind]
    fake.behave(error=kind)
    proc, obj = fake.json()
    assert proc.returncode == 1
    assert_result_shape(obj)
    assert obj["is_error"] is True
    assert obj["subtype"] == "success"  # judge by is_error, not subtype
    assert obj["api_error_status"] == status
    assert obj["result"].startswith(text)
    assert obj["total_cost_usd"] == 0

    proc, lines = fake.stream()
    assert proc.returncode == 1
    assert [line["type"] for line in lines] == ["system", "assistant", "result"]
    assert lines[1]["error"] == field
    assert lines[1]["message"]["model"] == "<synthetic>"
    assert lines[1]["message"]["content"][0]["text"] == lines[2]["result"]

    proc = fake.run("--model", MODEL)  # text mode prints the error text on stdout
    assert proc.returncode == 1
    assert proc.stdout.startswith(text)


def test_rate_limit_with_reset(fake: Fake) -> None:
    resets_at = int(time.time()) + 3600
    fake.behave(error="rate_limited", resets="3pm (Europe/Berlin)", resets_at=resets_at)
    proc, lines = fake.stream()
    assert proc.returncode == 1
    event = next(line for line in lines if line["type"] == "rate_limit_event")
    assert event["rate_limit_info"]["status"] == "rejected"
    assert event["rate_limit_info"]["resetsAt"] == resets_at
    assert lines[-1]["api_error_status"] == 429
    assert lines[-1]["result"] == "You've hit your session limit · resets 3pm (Europe/Berlin)"
    assert lines[-2]["error"] == "rate_limit"


def test_max_turns(fake: Fake) -> None:
    fake.behave(error="max_turns")
    proc, obj = fake.json("--max-turns", "2")
    assert proc.returncode == 1
    assert set(obj) == MAX_TURNS_RESULT_KEYS
    assert obj["subtype"] == "error_max_turns"
    assert obj["is_error"] is True
    assert "result" not in obj
    assert obj["errors"] == ["Reached maximum number of turns (2)"]
    proc = fake.run()
    assert (proc.returncode, proc.stdout) == (1, "Error: Reached max turns (1)\n")
    # --max-turns is honoured against the scripted tool turns too
    fake.behave(tools=["Bash", "Bash"])
    proc, obj = fake.json("--max-turns", "1")
    assert (proc.returncode, obj["subtype"]) == (1, "error_max_turns")


def test_max_budget(fake: Fake) -> None:
    fake.behave(cost=1.5)
    proc, obj = fake.json("--max-budget-usd", "0.5")
    assert proc.returncode == 1
    assert set(obj) == MAX_TURNS_RESULT_KEYS - {"terminal_reason"}
    assert obj["subtype"] == "error_max_budget_usd"


def test_crash_empty_and_exit_code(fake: Fake) -> None:
    fake.behave(error="crash")
    proc, lines = fake.stream()
    assert proc.returncode == 3
    assert "Traceback (most recent call last)" in proc.stderr
    assert all(line["type"] != "result" for line in lines)
    fake.behave(error="empty")
    for fmt in ("text", "json", "stream-json"):
        proc = fake.run("--output-format", fmt, "--verbose")
        assert (proc.returncode, proc.stdout) == (0, "")
    fake.behave(exit_code=7, stderr="something odd")
    proc = fake.run()
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "ok\n", "something odd\n")


def test_retries_lines(fake: Fake) -> None:
    fake.behave(retries=3)
    proc, lines = fake.stream()
    assert proc.returncode == 0
    retries = [line for line in lines if line.get("subtype") == "api_retry"]
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    for r in retries:
        assert (r["error_status"], r["error"], r["max_retries"]) == (529, "overloaded", 10)
        assert r["retry_delay_ms"] > 0
    assert lines[-1]["is_error"] is False


def test_fail_models_and_fallback(fake: Fake) -> None:
    fake.behave(fail_models={MODEL: "overloaded"})
    proc, obj = fake.json()
    assert (proc.returncode, obj["api_error_status"]) == (1, 529)
    proc, obj = fake.json("--model", "claude-haiku-4-5")  # the later --model wins
    assert (proc.returncode, obj["is_error"]) == (0, False)
    # the CLI's own --fallback-model switches after 3 attempts on 529 ...
    proc, lines = fake.stream("--fallback-model", "claude-haiku-4-5")
    assert proc.returncode == 0
    kinds = [(line["type"], line.get("subtype")) for line in lines]
    assert kinds.count(("system", "api_retry")) == 2
    switch = next(line for line in lines if line.get("subtype") == "model_fallback")
    assert (switch["original_model"], switch["fallback_model"]) == (MODEL, "claude-haiku-4-5")
    assert switch["trigger"] == "overloaded"
    assert list(lines[-1]["modelUsage"]) == ["claude-haiku-4-5"]
    # ... but not when CLAUDE_CODE_MAX_RETRIES < 3 (measured), and never on 429
    proc, lines = fake.stream(
        "--fallback-model", "claude-haiku-4-5", env={"CLAUDE_CODE_MAX_RETRIES": "0"}
    )
    assert (proc.returncode, lines[-1]["api_error_status"]) == (1, 529)
    fake.behave(fail_models={MODEL: "rate_limited"})
    proc, lines = fake.stream("--fallback-model", "claude-haiku-4-5")
    assert (proc.returncode, lines[-1]["api_error_status"]) == (1, 429)
    # 404 switches at once
    fake.behave(fail_models={MODEL: "not_found"})
    proc, lines = fake.stream("--fallback-model", "claude-haiku-4-5")
    assert proc.returncode == 0
    switch = next(line for line in lines if line.get("subtype") == "model_fallback")
    assert switch["trigger"] == "model_not_found"
    assert not any(line.get("subtype") == "api_retry" for line in lines)


# --- sessions ----------------------------------------------------------------------------------


def test_sessions_and_resume(fake: Fake) -> None:
    fake.behave(result="prompts before this one: {prior_prompts}")
    proc, first = fake.json()
    sid = first["session_id"]
    assert (fake.project_dir() / f"{sid}.jsonl").is_file()
    assert first["result"] == "prompts before this one: 0"
    assert fake.log()[-1]["resumed"] is False

    proc, second = fake.json("--resume", sid)
    assert proc.returncode == 0
    assert second["session_id"] == sid  # a resumed run keeps the id
    assert second["result"] == "prompts before this one: 1"
    assert fake.log()[-1]["resumed"] is True

    proc, lines = fake.stream("--resume", sid)
    assert lines[0]["session_id"] == sid
    assert lines[-1]["result"] == "prompts before this one: 2"

    # -c continues the most recent session of this directory
    proc, obj = fake.json("-c")
    assert obj["session_id"] == sid

    # --fork-session keeps the history under a new id
    proc, forked = fake.json("--resume", sid, "--fork-session")
    assert forked["session_id"] != sid
    assert forked["result"] == "prompts before this one: 4"


def test_resume_failures(fake: Fake) -> None:
    proc, obj = fake.json()
    sid = obj["session_id"]
    unknown = str(uuid.uuid4())
    proc = fake.run("--resume", unknown)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.strip() == f"No conversation found with session ID: {unknown}"
    # sessions belong to their working directory
    other = fake.tmp / "elsewhere"
    other.mkdir()
    proc = fake.run("--resume", sid, cwd=other)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"No conversation found with session ID: {sid}"
    proc = fake.run("--resume", "not-a-uuid")
    assert proc.returncode == 1
    assert 'Provided value "not-a-uuid" is not a UUID' in proc.stderr
    proc = fake.run("--resume")
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: --resume requires a valid session ID")
    # failures before the "API" do not consume the scenario queue
    assert all(call["call"] is None for call in fake.log()[1:])


def test_session_id(fake: Fake) -> None:
    sid = str(uuid.uuid4())
    proc, obj = fake.json("--session-id", sid)
    assert (proc.returncode, obj["session_id"]) == (0, sid)
    proc = fake.run("--session-id", sid)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"Error: Session ID {sid} is already in use."
    other = fake.tmp / "elsewhere"
    other.mkdir()
    assert fake.run("--session-id", sid, cwd=other).returncode == 0  # only this cwd counts
    proc = fake.run("--session-id", str(uuid.uuid4()), "--resume", sid)
    assert proc.returncode == 1
    assert "--session-id can only be used with --continue or --resume" in proc.stderr
    proc, obj = fake.json("--no-session-persistence")
    assert not (fake.project_dir() / f"{obj['session_id']}.jsonl").exists()


def test_failed_run_is_still_resumable(fake: Fake) -> None:
    # measured: after an API error the session file exists and --resume works
    fake.scenario({"links": {"worker": [{"error": "overloaded"}]}})
    proc, obj = fake.json()
    assert proc.returncode == 1
    proc, again = fake.json("--resume", obj["session_id"])
    assert (proc.returncode, again["is_error"]) == (0, False)


# --- scenario queue and log --------------------------------------------------------------------


def test_per_link_queue_then_default(fake: Fake) -> None:
    fake.scenario(
        {
            "default": {"result": "default"},
            "links": {
                "worker": [{"result": "w1"}, {"result": "w2"}],
                "reviewer": [{"result": "r1"}],
                "judge": {"result": "always"},
            },
        }
    )

    def result(link: str) -> str:
        return fake.run(env={"LLMAUTO_LINK": link}).stdout.strip()

    assert [result("worker") for _ in range(3)] == ["w1", "w2", "default"]
    assert [result("reviewer") for _ in range(2)] == ["r1", "default"]
    assert [result("judge") for _ in range(2)] == ["always", "always"]
    counts = json.loads(Path(f"{fake.scenario_path}.counts.json").read_text())
    assert counts == {"worker": 3, "reviewer": 2, "judge": 2}
    # write_scenario resets the counters
    write_scenario(fake.scenario_path, {"links": {"worker": [{"result": "again"}]}})
    assert result("worker") == "again"


def test_concurrent_calls_take_distinct_entries(fake: Fake) -> None:
    n = 8
    fake.scenario({"links": {"worker": [{"result": f"r{i}"} for i in range(n)]}})
    with ThreadPoolExecutor(n) as pool:
        outs = list(pool.map(lambda _: fake.run().stdout.strip(), range(n)))
    assert sorted(outs) == sorted(f"r{i}" for i in range(n))


def test_no_scenario_means_ok(fake: Fake) -> None:
    fake.env.pop("FAKE_CLAUDE_SCENARIO", None)
    proc, obj = fake.json()
    assert (proc.returncode, obj["result"]) == (0, "ok")


def test_invocation_log(fake: Fake) -> None:
    fake.env["FAKE_CLAUDE_EXTRA"] = "x"
    proc = fake.run("--model", MODEL, prompt="the prompt")
    assert proc.returncode == 0
    (call,) = fake.log()
    assert call["argv"] == ["-p", "--model", MODEL]
    assert call["stdin"] == "the prompt"
    assert call["cwd"] == str(fake.cwd)
    assert call["model"] == MODEL
    assert call["link"] == "worker"
    assert call["round"] == "3"
    assert call["resumed"] is False
    uuid.UUID(call["session_id"])
    assert call["env"]["LLMAUTO_CHAIN"] == "demo"
    assert call["env"]["FAKE_CLAUDE_EXTRA"] == "x"
    assert "PATH" in call["env_keys"]
    assert call["env_keys"] == sorted(call["env_keys"])
    assert call["pid"] > 0 and call["pgid"] > 0
    assert abs(call["started"] - time.time()) < 30


# --- time, signals, children -------------------------------------------------------------------


def test_sleep_with_heartbeats(fake: Fake) -> None:
    fake.behave(sleep=0.5, heartbeat_s=0.15)
    started = time.monotonic()
    _proc, lines = fake.stream()
    assert time.monotonic() - started >= 0.5
    texts = [
        line["message"]["content"][0]["text"]
        for line in lines
        if line["type"] == "assistant" and line["message"]["content"][0]["type"] == "text"
    ]
    assert texts[0] == "Working on it."
    assert sum(t.startswith("Still working") for t in texts) >= 2
    assert lines[-1]["result"] == "ok"


def _popen(fake: Fake, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [fake_claude_bin(), "-p", *SJ, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=fake.cwd,
        env=fake.env,
        start_new_session=True,
    )


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # an unreaped zombie counts as gone
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def test_hang_then_sigterm_exits_143(fake: Fake) -> None:
    fake.behave(hang=True)
    proc = _popen(fake, "do it")
    try:
        assert proc.stdout is not None
        init = json.loads(proc.stdout.readline())
        assert init["subtype"] == "init"
        assert fake.log()[-1]["pid"] == proc.pid  # logged before hanging
        proc.terminate()
        assert proc.wait(timeout=5) == 143
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_ignore_sigterm_needs_sigkill_and_child_dies_with_the_group(fake: Fake) -> None:
    fake.behave(hang=True, ignore_sigterm=True, spawn_child=True)
    proc = _popen(fake, "do it")
    child_pid = 0
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["subtype"] == "init"
        child_pid = int((fake.state / "fake_child.pid").read_text())
        assert os.getpgid(child_pid) == proc.pid  # same process group as the fake
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.3)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=5) == -signal.SIGKILL
        assert _gone(child_pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_spawn_child_outlives_a_plain_kill(fake: Fake) -> None:
    # what an engine that kills only the pid would leave behind
    fake.behave(hang=True, spawn_child=True)
    proc = _popen(fake, "do it")
    child_pid = 0
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        child_pid = int((fake.state / "fake_child.pid").read_text())
        proc.kill()
        proc.wait(timeout=5)
        os.kill(child_pid, 0)  # still alive: an orphan
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert _gone(child_pid)


async def test_with_asyncio_subprocess(fake: Fake) -> None:
    fake.behave(hang=True)
    proc = await asyncio.create_subprocess_exec(
        fake_claude_bin(),
        "-p",
        *SJ,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=fake.cwd,
        env=fake.env,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"a prompt on stdin")
        proc.stdin.close()
        line = await asyncio.wait_for(proc.stdout.readline(), 5)
        assert json.loads(line)["subtype"] == "init"
        assert fake.log()[-1]["stdin"] == "a prompt on stdin"
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 5)


# --- the mock Anthropic API (for the real CLI; checked here without it) -------------------------


def _post(
    url: str, body: dict[str, Any], path: str = "/v1/messages?beta=true"
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"content-type": "application/json", "x-api-key": "sk-test"}
        conn.request("POST", path, json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


MAIN_TURN = {
    "model": MODEL,
    "stream": True,
    "max_tokens": 32000,
    "system": [{"type": "text", "text": "You are an interactive agent that helps users."}],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": "hi"}],
}


def test_mock_api_streams_an_agent_conversation() -> None:
    with MockAnthropic(agent_responder("echo hi", "finished")) as api:
        status, headers, raw = _post(api.base_url, MAIN_TURN)
        assert status == 200
        assert headers["content-type"] == "text/event-stream"
        events = _sse_events(raw)
        names = [name for name, _ in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        start = next(data for name, data in events if name == "content_block_start")
        assert start["content_block"]["name"] == "Bash"
        partial = "".join(
            data["delta"]["partial_json"]
            for name, data in events
            if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta"
        )
        assert json.loads(partial)["command"] == "echo hi"
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

        tool_id = start["content_block"]["id"]
        second = {
            **MAIN_TURN,
            "messages": [
                *MAIN_TURN["messages"],
                {"role": "assistant", "content": [start["content_block"]]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "hi"}],
                },
            ],
        }
        _status, _headers, raw = _post(api.base_url, second)
        text = "".join(
            data["delta"]["text"]
            for name, data in _sse_events(raw)
            if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
        )
        assert text == "finished"
        # a non-streaming request gets one JSON message
        _status, _headers, raw = _post(api.base_url, {**second, "stream": False})
        assert json.loads(raw)["content"] == [{"type": "text", "text": "finished"}]

        requests = api.message_requests()
        assert len(requests) == 3
        assert "x-api-key" not in requests[0].headers


def test_mock_api_errors_side_requests_and_other_paths() -> None:
    script = [Reply.rate_limited(resets_at=2_000_000_000), Reply.overloaded(), Reply.text("third")]
    with MockAnthropic(script) as api:
        status, headers, raw = _post(api.base_url, MAIN_TURN)
        assert status == 429
        assert headers["anthropic-ratelimit-unified-status"] == "rejected"
        assert headers["anthropic-ratelimit-unified-reset"] == "2000000000"
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        # a side request (no tools, another system prompt) does not consume the queue
        side = {
            "model": "claude-haiku-4-5",
            "stream": True,
            "max_tokens": 512,
            "system": "Generate a short title.",
            "messages": [{"role": "user", "content": "x"}],
        }
        status, _headers, _raw = _post(api.base_url, side)
        assert status == 200
        status, _headers, raw = _post(api.base_url, MAIN_TURN)
        assert status == 529
        assert json.loads(raw) | {"request_id": None} == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": None,
        }
        status, _headers, raw = _post(api.base_url, MAIN_TURN, "/v1/messages/count_tokens")
        assert status == 200 and json.loads(raw)["input_tokens"] > 0
        status, _headers, _raw = _post(api.base_url, {}, "/api/unknown")
        assert status == 404
        assert [r.side for r in api.message_requests(include_side=True)] == [False, True, False]
        assert "POST /api/unknown" in api.paths()


# --- permissions and the stdio control protocol (measured on 2.1.197) ---------------------------


def tool_results_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        block
        for line in lines
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block["type"] == "tool_result"
    ]


TOUCH = {"name": "Bash", "input": {"command": "touch made.txt", "description": "Make"}, "exec": True}


def test_no_flags_refuses_what_needs_approval(fake: Fake) -> None:
    """Like `claude -p` without permission flags: read-only Bash runs, the rest is refused with
    the real texts, listed in permission_denials, and has no effect (no handoff, no file).
    Broke `return Decision("deny", text)` in Permissions.decide (-> allow): red."""
    fake.handoff.write_text("# previous\n", encoding="utf-8")
    fake.behave(handoff="# next\n", tools=["Bash", TOUCH], result="done")
    proc, lines = fake.stream()
    assert proc.returncode == 0
    texts = [r["content"] for r in tool_results_of(lines)]
    assert texts[0] == "README.md"  # `ls` is read-only: allowed
    assert texts[1] == "This command requires approval"
    assert texts[2] == (
        f"Claude requested permissions to read from {fake.handoff}, but you haven't granted it yet."
    )
    assert texts[3] == (
        "<tool_use_error>File has not been read yet. Read it first before writing to it."
        "</tool_use_error>"
    )
    assert not (fake.cwd / "made.txt").exists()
    assert fake.handoff.read_text(encoding="utf-8") == "# previous\n"
    result = lines[-1]
    assert (result["subtype"], result["is_error"]) == ("success", False)
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash", "Read"]
    assert result["permission_denials"][0]["tool_input"] == TOUCH["input"]


def test_flags_grant_and_deny(fake: Fake) -> None:
    """dontAsk + allow list runs the command; dontAsk alone, a deny rule and a tool disallowed by
    name give the measured texts (the last one is not a permission denial).
    Broke the deny-rule loop in Permissions.decide (removed it): red."""
    fake.behave(tools=[TOUCH])
    _proc, lines = fake.stream(*GRANT)
    assert tool_results_of(lines)[0]["content"] == "(Bash completed with no output)"
    assert (fake.cwd / "made.txt").exists() and lines[-1]["permission_denials"] == []
    (fake.cwd / "made.txt").unlink()

    _proc, lines = fake.stream("--permission-mode", "dontAsk")
    text = tool_results_of(lines)[0]["content"]
    assert text.startswith("Permission to use Bash has been denied because Claude Code is running")
    assert text.endswith("Let the user decide how to proceed.")
    assert not (fake.cwd / "made.txt").exists()

    rm = {"name": "Bash", "input": {"command": "rm -rf d1", "description": "Clean"}, "exec": True}
    fake.behave(tools=[rm])
    (fake.cwd / "d1").mkdir()
    _proc, lines = fake.stream("--allowedTools", "Bash", "--disallowedTools", "Bash(rm:*)")
    assert tool_results_of(lines)[0]["content"] == (
        "Permission to use Bash with command rm -rf d1 has been denied."
    )
    assert (fake.cwd / "d1").is_dir()
    assert len(lines[-1]["permission_denials"]) == 1

    _proc, lines = fake.stream("--disallowedTools", "Bash")
    assert "Bash" not in lines[0]["tools"]
    assert tool_results_of(lines)[0]["content"] == (
        "<tool_use_error>Error: No such tool available: Bash. Bash exists but is not enabled in "
        "this context. Use one of the available tools instead.</tool_use_error>"
    )
    assert lines[-1]["permission_denials"] == []


STDIO = [*SJ, "--input-format", "stream-json", "--permission-prompt-tool", "stdio",
         "--permission-mode", "default", "--allowedTools", "Read"]  # fmt: skip


def stdio_session(fake: Fake, answer: Any) -> tuple[list[dict[str, Any]], int, bool]:
    """Run the fake over the stdio protocol; ``answer(request) -> response dict | None`` (None:
    close stdin). Returns the lines, the exit code, and whether it still ran after the result."""
    proc = subprocess.Popen(
        [fake_claude_bin(), "-p", "--model", MODEL, *STDIO],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=fake.cwd, env=fake.env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    user = {"type": "user", "message": {"role": "user", "content": "go"},
            "parent_tool_use_id": None, "session_id": ""}  # fmt: skip
    proc.stdin.write(json.dumps(user) + "\n")
    proc.stdin.flush()
    lines: list[dict[str, Any]] = []
    alive_after_result = False
    for raw in proc.stdout:
        line = json.loads(raw)
        lines.append(line)
        if line["type"] == "control_request":
            response = answer(line["request"])
            if response is None:
                proc.stdin.close()
                continue
            reply = {"type": "control_response", "response": {
                "subtype": "success", "request_id": line["request_id"], "response": response}}  # fmt: skip
            proc.stdin.write(json.dumps(reply) + "\n")
            proc.stdin.flush()
        elif line["type"] == "result":
            alive_after_result = proc.poll() is None
            if not proc.stdin.closed:
                proc.stdin.close()
    code = proc.wait(timeout=10)
    proc.stdout.close()
    return lines, code, alive_after_result


def test_stdio_allow_runs_the_approved_command(fake: Fake) -> None:
    """An allow with updatedInput runs the (rewritten) command; the CLI waits for stdin to close
    after the result line and then exits 0.
    Broke `final_input = dict(answer["updatedInput"])` (kept the original input): red."""
    fake.behave(tools=[TOUCH])
    seen: list[dict[str, Any]] = []

    def allow(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"behavior": "allow", "updatedInput": {**request["input"], "command": "touch ok.txt"}}

    lines, code, alive = stdio_session(fake, allow)
    assert code == 0 and alive
    (request,) = seen
    assert request["subtype"] == "can_use_tool"
    assert (request["tool_name"], request["display_name"]) == ("Bash", "Bash")
    assert request["input"] == TOUCH["input"] and request["description"] == "Make"
    assert request["decision_reason"] == "This command requires approval"
    assert request["decision_reason_type"] == "other"
    assert request["permission_suggestions"][0]["rules"] == [
        {"toolName": "Bash", "ruleContent": "touch made.txt"}
    ]
    assert request["tool_use_id"] == tool_uses(lines)[0]["id"]
    assert (fake.cwd / "ok.txt").exists() and not (fake.cwd / "made.txt").exists()
    assert lines[-1]["permission_denials"] == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"behavior": "deny", "message": "no pushing tonight"}, "no pushing tonight"),
        ({"behavior": "allow"}, "Tool permission request failed: ZodError: ["),
        (None, "Tool permission request failed: Error: Tool permission stream closed before "
         "response received"),
    ],
    ids=["deny", "bare-allow", "stdin-closed"],
)  # fmt: skip
def test_stdio_refusals_fail_closed(fake: Fake, answer: Any, expected: str) -> None:
    """A deny, a bare allow (no updatedInput) and stdin closing while asked all refuse the call.
    Broke the bare-allow branch (treated any "allow" as allow): bare-allow red."""
    fake.behave(tools=[TOUCH])
    lines, code, _alive = stdio_session(fake, lambda _req: answer)
    assert code == 0
    assert tool_results_of(lines)[0]["content"].startswith(expected)
    assert tool_results_of(lines)[0]["is_error"] is True
    assert not (fake.cwd / "made.txt").exists()
    assert [d["tool_name"] for d in lines[-1]["permission_denials"]] == ["Bash"]
