"""The real Claude Code CLI, run offline against the loopback mock API (tests/fakes/anthropic_api.py).

These tests keep the fake `claude` honest: they check the shapes and texts that
tests/fakes/fake_claude.py reproduces, and compare the fake's messages with the real ones where the
two can be run side by side.

Measured on Claude Code 2.1.197 (native binary from npm), which the fake mirrors:

- Requests: ``HEAD /`` first (a 404 is fine), then ``POST /v1/messages?beta=true`` with
  ``"stream": true`` (~115 KB: 24 tools, the "You are a Claude agent, built on Anthropic's Claude
  Agent SDK." system prompt). No side requests (titles, topic detection, count_tokens) in print mode,
  even without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC.
- A scripted Bash ``tool_use`` is really executed with ``--allowedTools Bash`` in the default
  permission mode (no bypass needed, also as root); the tool_result goes back in a 2nd request.
  Without it the run still exits 0 and lists the call in ``permission_denials``.
- stream-json: init line, one ``assistant`` line per content block (blocks of one message share the
  message id), ``user`` lines with tool_result (+ ``tool_use_result``), then the result object.
- API errors exit 1 with ``"subtype":"success","is_error":true`` and a synthetic assistant line
  (model ``<synthetic>``) whose ``error`` is rate_limit (429), server_error (5xx, 529, connection
  refused), authentication_failed (401, not logged in) or model_not_found (404). Texts:
  529 "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a
  moment. If it persists, check your inference gateway (HOST:PORT)."; 429 "API Error: Request
  rejected (429) · <message>" (API key: no reset time, no rate_limit_event, even with the
  ``anthropic-ratelimit-unified-*: rejected`` headers); 401 "Failed to authenticate. API Error: 401
  <message>", or "Invalid API key · Fix external API key" for "invalid x-api-key"; 404 "There's an
  issue with the selected model (M). ..." (retried once first). Text mode prints them on stdout.
- ``--fallback-model`` switches at once on 404 and after 3 attempts on 529 (so never when
  CLAUDE_CODE_MAX_RETRIES < 3), with a ``model_fallback`` system line.
- ``--max-turns`` ends with ``error_max_turns``, exit 1, no ``result``, ``errors`` listed; text mode
  prints "Error: Reached max turns (N)".
- Sessions live in ``$CLAUDE_CONFIG_DIR/projects/<cwd, non-alphanumerics as ->/<id>.jsonl``, also
  after an API error (such a run can be resumed). ``--resume`` keeps the id, works only from the
  same cwd ("No conversation found with session ID: X" on stderr, exit 1); ``--session-id`` of an
  existing session *of this cwd* fails with "Error: Session ID X is already in use."; ``-c`` with
  no session starts a new one.
- Flags use commander: ``--allowedTools`` is variadic and swallows a following positional prompt
  (pass the prompt on stdin); a positional prompt plus stdin sends "positional\\nstdin".
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_api import MockAnthropic, Reply, agent_responder, has_tool_result
from tests.fakes.claude_env import (
    INIT_KEYS,
    MODEL_USAGE_KEYS,
    REAL_CLAUDE_MISSING,
    RESULT_KEYS,
    USAGE_KEYS,
    fake_claude_bin,
    fake_env,
    offline_env,
    real_claude_bin,
    write_scenario,
)

REAL = real_claude_bin()

pytestmark = [
    pytest.mark.real_claude,
    pytest.mark.skipif(REAL is None, reason=REAL_CLAUDE_MISSING),
]

MODEL = "claude-sonnet-4-6"
TIMEOUT = 60


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cwd = tmp / "work"
        self.cwd.mkdir()
        self.config = tmp / "config"
        self.home = tmp / "home"
        self.home.mkdir()
        self.tmpdir = tmp / "tmp"
        self.tmpdir.mkdir()

    def run(
        self,
        api: MockAnthropic | None,
        *args: str,
        prompt: str = "Say hello.",
        cwd: Path | None = None,
        max_retries: int = 0,
        base_url: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        assert REAL is not None
        url = base_url or (api.base_url if api else "http://127.0.0.1:9")
        env = offline_env(url, self.config, max_retries=max_retries, home=self.home)
        env["TMPDIR"] = str(self.tmpdir)  # the CLI keeps Bash tool output under $TMPDIR/claude-UID
        return subprocess.run(
            [REAL, "-p", "--model", MODEL, *args],
            input=prompt,
            capture_output=True,
            text=True,
            cwd=cwd or self.cwd,
            env=env,
            timeout=TIMEOUT,
        )

    def run_fake(
        self,
        *args: str,
        behaviour: dict[str, Any] | None = None,
        base_url: str = "",
        cwd: Path | None = None,
        prompt: str = "Say hello.",
    ) -> subprocess.CompletedProcess[str]:
        env = fake_env(self.tmp / "fake-config")
        if behaviour is not None:
            env["FAKE_CLAUDE_SCENARIO"] = write_scenario(
                self.tmp / "scenario.json", {"default": behaviour}
            )
        env["ANTHROPIC_BASE_URL"] = base_url
        env["IS_SANDBOX"] = "1"
        return subprocess.run(
            [fake_claude_bin(), "-p", "--model", MODEL, *args],
            input=prompt,
            capture_output=True,
            text=True,
            cwd=cwd or self.cwd,
            env=env,
            timeout=TIMEOUT,
        )


@pytest.fixture
def real(tmp_path: Path) -> Env:
    return Env(tmp_path)


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_json_text_answer_and_resume(real: Env) -> None:
    with MockAnthropic([Reply.text("hello from the mock")]) as api:
        proc = real.run(api, "--output-format", "json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert set(obj) >= RESULT_KEYS
    assert set(obj["usage"]) >= USAGE_KEYS
    assert set(obj["modelUsage"][MODEL]) >= MODEL_USAGE_KEYS
    assert obj["is_error"] is False
    assert obj["api_error_status"] is None
    assert obj["result"] == "hello from the mock"
    assert obj["num_turns"] == 1
    sid = obj["session_id"]
    uuid.UUID(sid)
    project = real.config / "projects" / re.sub(r"[^a-zA-Z0-9]", "-", str(real.cwd))
    assert (project / f"{sid}.jsonl").is_file()

    # what the CLI asked the mock for
    assert ("HEAD", "/") in {(r.method, r.route) for r in api.recorded()}
    (request,) = api.message_requests()
    assert request.path == "/v1/messages?beta=true"
    assert request.body["stream"] is True
    assert request.body["model"] == MODEL
    assert request.body["tools"]
    assert "x-api-key" not in request.headers  # recorded without the key
    assert not api.message_requests(include_side=True)[1:]  # no side requests

    # --resume from the same cwd sends the history again and keeps the id
    with MockAnthropic(lambda req: Reply.text(f"{len(req['messages'])} messages")) as api:
        proc = real.run(api, "--output-format", "json", "--resume", sid, prompt="And again.")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["session_id"] == sid
    assert again["is_error"] is False
    (request,) = api.message_requests()
    assert len(request.body["messages"]) >= 3
    assert "Say hello." in json.dumps(request.body["messages"][0])

    # ... but not from another directory; the fake says the same
    other = real.tmp / "elsewhere"
    other.mkdir()
    proc = real.run(None, "--output-format", "json", "--resume", sid, cwd=other)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.strip() == f"No conversation found with session ID: {sid}"
    fake = real.run_fake("--output-format", "json", "--resume", sid, cwd=other)
    assert (fake.returncode, fake.stderr) == (1, proc.stderr)


def test_stream_json_runs_a_bash_tool(real: Env) -> None:
    target = real.tmp / "made-by-bash.txt"
    command = f"echo made > {target}"
    with MockAnthropic(agent_responder(command, "all done")) as api:
        proc = real.run(
            api, "--output-format", "stream-json", "--verbose", "--allowedTools", "Bash"
        )
    assert proc.returncode == 0, proc.stderr
    assert target.read_text().strip() == "made"  # the CLI really ran the command
    lines = parse_lines(proc.stdout)
    init, *middle, result = lines
    assert set(init) >= INIT_KEYS
    assert (init["type"], init["subtype"], init["model"]) == ("system", "init", MODEL)
    assert init["cwd"] == str(real.cwd)
    assert "Bash" in init["tools"]
    uses = [
        block
        for line in middle
        if line["type"] == "assistant"
        for block in line["message"]["content"]
        if block["type"] == "tool_use"
    ]
    assert [(u["name"], u["input"]["command"]) for u in uses] == [("Bash", command)]
    answers = [
        block
        for line in middle
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block["type"] == "tool_result"
    ]
    assert [a["tool_use_id"] for a in answers] == [uses[0]["id"]]
    assert all(len(line["message"]["content"]) == 1 for line in middle)
    assert result["type"] == "result"
    assert set(result) >= RESULT_KEYS
    assert (result["is_error"], result["result"], result["num_turns"]) == (False, "all done", 2)
    assert result["permission_denials"] == []
    requests = api.message_requests()
    assert len(requests) == 2
    assert has_tool_result(requests[1].body)


@pytest.mark.parametrize(
    ("reply", "kind", "status", "field"),
    [
        (Reply.overloaded(), "overloaded", 529, "server_error"),
        (Reply.rate_limited(), "rate_limited", 429, "rate_limit"),
        (Reply.error(401, "authentication failed"), "auth", 401, "authentication_failed"),
    ],
    ids=["529", "429-rejected", "401"],
)
def test_api_error_ends_the_run(
    real: Env, reply: Reply, kind: str, status: int, field: str
) -> None:
    with MockAnthropic(lambda _req: reply) as api:
        proc = real.run(api, "--output-format", "stream-json", "--verbose", max_retries=0)
        fake = real.run_fake(
            "--output-format", "stream-json", "--verbose",
            behaviour={"error": kind}, base_url=api.base_url,
        )  # fmt: skip
    assert proc.returncode == 1
    lines = parse_lines(proc.stdout)
    result = lines[-1]
    assert set(result) >= RESULT_KEYS
    assert (result["subtype"], result["is_error"], result["api_error_status"]) == (
        "success",
        True,
        status,
    )
    assert lines[-2]["type"] == "assistant"
    assert lines[-2]["error"] == field
    assert not any(line["type"] == "rate_limit_event" for line in lines)  # API key: none
    # the fake gives the same exit code, texts and line types
    fake_lines = parse_lines(fake.stdout)
    assert fake.returncode == proc.returncode
    assert fake_lines[-1]["result"] == result["result"]
    assert fake_lines[-2]["error"] == field
    assert [line["type"] for line in fake_lines] == [line["type"] for line in lines]


def test_fallback_model_on_404(real: Env) -> None:
    def respond(req: dict[str, Any]) -> Reply:
        if req["model"] == MODEL:
            return Reply.not_found_model(MODEL)
        return Reply.text(f"answered by {req['model']}")

    with MockAnthropic(respond) as api:
        proc = real.run(
            api,
            "--output-format",
            "stream-json",
            "--verbose",
            "--fallback-model",
            "claude-haiku-4-5",
        )
    assert proc.returncode == 0, proc.stderr
    lines = parse_lines(proc.stdout)
    switch = next(line for line in lines if line.get("subtype") == "model_fallback")
    assert (switch["original_model"], switch["fallback_model"]) == (MODEL, "claude-haiku-4-5")
    assert lines[-1]["result"] == "answered by claude-haiku-4-5"


def test_usage_errors_match_the_fake(real: Env) -> None:
    sid = str(uuid.uuid4())
    for prompt, args in (
        ("hi", ["--output-format", "stream-json"]),
        ("", ["--output-format", "stream-json"]),  # no input is reported first
        ("hi", ["--bogus"]),
        ("hi", ["--permission-mode", "sideways"]),
        ("", ["--resume", sid]),
        ("hi", ["--resume"]),
        ("hi", ["--resume", sid, "--session-id", "not-a-uuid"]),
        ("", ["--session-id", "not-a-uuid", "--output-format", "stream-json"]),
        ("", ["--allowedTools", "Bash", "prompt swallowed by the variadic option"]),
    ):
        proc = real.run(None, *args, prompt=prompt)
        fake = real.run_fake(*args, prompt=prompt)
        assert proc.returncode == 1, args
        assert (fake.returncode, fake.stdout, fake.stderr) == (1, "", proc.stderr), args


# --- permissions: the fake's refusals side by side with the real CLI's ---------------------------


def _results_and_denials(stdout: str) -> tuple[list[tuple[str, bool]], list[str]]:
    lines = parse_lines(stdout)
    results = [
        (block["content"], bool(block.get("is_error")))
        for line in lines
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block["type"] == "tool_result"
    ]
    return results, [d["tool_name"] for d in lines[-1]["permission_denials"]]


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("git push origin main", []),
        ("git push origin main && git status", []),
        ("echo hi", []),  # read-only: runs without flags
        ("git push origin main", ["--permission-mode", "dontAsk"]),
        ("git push origin main", ["--allowedTools", "Read"]),
        ("rm -rf d1", ["--allowedTools", "Bash", "--disallowedTools", "Bash(rm:*)"]),
        ("git push origin main", ["--disallowedTools", "Bash"]),
        ("cd /tmp && git push", []),
    ],
    ids=["single", "compound", "read-only", "dontAsk", "allow-read", "deny-rule", "disabled", "cd-git"],
)  # fmt: skip
def test_bash_refusals_match_the_fake(real: Env, command: str, args: list[str]) -> None:
    """The fake refuses (or runs) a Bash call with the real CLI's tool_result text and lists the
    same permission_denials."""
    tool_input = {"command": command, "description": "Do it"}
    with MockAnthropic(agent_responder(command, "all done")) as api:
        proc = real.run(api, "--output-format", "stream-json", "--verbose", *args)
    assert proc.returncode == 0, proc.stderr
    fake = real.run_fake(
        "--output-format", "stream-json", "--verbose", *args,
        behaviour={"tools": [{"name": "Bash", "input": tool_input, "exec": True}]},
    )  # fmt: skip
    assert fake.returncode == 0, fake.stderr
    assert _results_and_denials(fake.stdout) == _results_and_denials(proc.stdout)


@pytest.mark.parametrize("args", [[], ["--permission-mode", "dontAsk"], ["--allowedTools", "Write"]])
def test_write_refusal_matches_the_fake(real: Env, args: list[str]) -> None:
    """A Write in the cwd: refused without flags and in dontAsk, run with --allowedTools Write,
    with the same texts in the fake (the fake's `files` are Write calls)."""
    path = str(real.cwd / "new.txt")
    with MockAnthropic(
        agent_responder("", "all done", tool="Write", tool_input={"file_path": path, "content": "hi"})
    ) as api:
        proc = real.run(api, "--output-format", "stream-json", "--verbose", *args)
    written = (real.cwd / "new.txt").exists()
    (real.cwd / "new.txt").unlink(missing_ok=True)
    fake = real.run_fake(
        "--output-format", "stream-json", "--verbose", *args, behaviour={"files": {"new.txt": "hi"}}
    )
    assert (real.cwd / "new.txt").exists() == written
    assert _results_and_denials(fake.stdout) == _results_and_denials(proc.stdout)


def _stdio_run(argv: list[str], env: dict[str, str], cwd: Path, answer: Any) -> list[dict[str, Any]]:
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=cwd, env=env,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        user = {"type": "user", "message": {"role": "user", "content": "go"},
                "parent_tool_use_id": None, "session_id": ""}  # fmt: skip
        proc.stdin.write(json.dumps(user) + "\n")
        proc.stdin.flush()
        lines: list[dict[str, Any]] = []
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
            elif line["type"] == "result" and not proc.stdin.closed:
                proc.stdin.close()  # the CLI waits for more input until stdin closes
        assert proc.wait(timeout=TIMEOUT) == 0
    return lines


STDIO = ["--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
         "--permission-prompt-tool", "stdio", "--permission-mode", "default", "--allowedTools", "Read"]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("git push origin main", {"behavior": "deny", "message": "no pushing tonight"}),
        ("git push origin main && git status", {"behavior": "deny", "message": "no"}),
        ("cd /tmp && git push", {"behavior": "deny", "message": "no"}),
        ("git push origin main", {"behavior": "allow"}),  # bare allow: rejected
        ("git push origin main", None),  # stdin closed while asked
    ],
    ids=["deny", "compound", "cd-git", "bare-allow", "stdin-closed"],
)  # fmt: skip
def test_stdio_control_protocol_matches_the_fake(
    real: Env, command: str, answer: dict[str, Any] | None
) -> None:
    """The can_use_tool control_request (all fields but the ids) and the resulting tool_result /
    permission_denials are the same from the fake as from the real CLI."""
    tool_input = {"command": command, "description": "Run a command"}  # as Reply.bash sends
    with MockAnthropic(agent_responder(command, "all done")) as api:
        env = offline_env(api.base_url, real.config, home=real.home)
        env["TMPDIR"] = str(real.tmpdir)
        assert REAL is not None
        real_lines = _stdio_run([REAL, "-p", "--model", MODEL, *STDIO], env, real.cwd, lambda _r: answer)
    fenv = fake_env(real.tmp / "fake-config")
    fenv["FAKE_CLAUDE_SCENARIO"] = write_scenario(
        real.tmp / "scenario.json", {"default": {"tools": [{"name": "Bash", "input": tool_input}]}}
    )
    fake_lines = _stdio_run(
        [fake_claude_bin(), "-p", "--model", MODEL, *STDIO], fenv, real.cwd, lambda _r: answer
    )

    def requests(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for line in lines:
            if line["type"] == "control_request":
                assert set(line) == {"type", "request_id", "request"}
                out.append({k: v for k, v in line["request"].items() if k != "tool_use_id"})
        return out

    assert requests(fake_lines) == requests(real_lines)
    assert len(requests(real_lines)) == 1
    real_out = _results_and_denials("\n".join(json.dumps(x) for x in real_lines))
    fake_out = _results_and_denials("\n".join(json.dumps(x) for x in fake_lines))
    assert fake_out == real_out
