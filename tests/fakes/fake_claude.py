#!/usr/bin/env python3
"""A fake `claude` CLI (Claude Code 2.1.x, print mode only), scripted by a JSON scenario.

Stdlib only and quick to start. It mirrors what was measured on the real CLI 2.1.197 (see
tests/test_real_claude_cli.py and /work/shared/CLAUDE_CLI.md): the flags and their error messages
(unknown option, bad choice, stream-json without --verbose, bypass permissions as root, variadic
--allowedTools swallowing a following positional prompt), the text / json / stream-json output
shapes, the exit codes and texts of API failures, and session files under
$CLAUDE_CONFIG_DIR/projects/<cwd with non-alphanumerics as "-">/<id>.jsonl.

Scenario: env FAKE_CLAUDE_SCENARIO names a JSON file
    {"default": BEHAVIOUR, "links": {"worker": [BEHAVIOUR, ...], "reviewer": BEHAVIOUR}}
The link is env LLMAUTO_LINK. Each call of a link takes the next element of its list (a counter per
link lives in "<scenario>.counts.json", updated under an fcntl lock); past the end, "default"
applies. A link mapped to one object uses it for every call. No scenario: every call answers "ok".
Calls that fail before the "API" (bad flags, unknown --resume id, ...) consume nothing.

BEHAVIOUR keys, all optional:
  result          final text (default "ok"); {round} {link} {chain} {session_id} {model} {call}
                  {prior_prompts} are substituted (also in handoff and files contents)
  handoff         text written to $LLMAUTO_HANDOFF (default ./handoff.md), reported as a Read
                  (when it exists) then a Write tool_use; handoff_mode "replace" | "append"
  status          a word written to $LLMAUTO_STATE_DIR/status.txt (a Write tool_use)
  files           {"path": "content"}, relative to the cwd; each reported as a Write tool_use
  tools           ["Bash", "Grep", ...] or [{"name", "input", "result", "is_error"}] tool_uses
  sleep           seconds before the outcome (an assistant text line comes first);
                  heartbeat_s: an assistant text line every N s while sleeping (stream-json)
  hang            true: the init line (stream-json), then block forever
  ignore_sigterm  true: SIGTERM is ignored (default: SIGTERM exits 143, SIGINT exits 0 silently)
  spawn_child     true: start `sleep 1000` in the same process group and write its pid to
                  $LLMAUTO_STATE_DIR/fake_child.pid; "inherit_stdout": the child keeps stdout
  retries         N api_retry system lines (retry_delay_s apart, retry_status default 529)
  error           rate_limited | overloaded | auth | invalid_api_key | api_error | not_found |
                  connection_refused | not_logged_in | max_turns | crash | empty
                  rate_limited: "resets" (text such as "3pm (Europe/Berlin)") and/or "resets_at"
                  (epoch s; adds a rate_limit_event line) give the subscription wording
                  "You've hit your session limit · resets ..." (limit_name changes "session limit")
  fail_models     {"model-id": "overloaded"}: the error applies only to that --model; with
                  --fallback-model, overloaded (if CLAUDE_CODE_MAX_RETRIES >= 3, the default 10)
                  and not_found switch model with a model_fallback line, like the real CLI
  cost, input_tokens, output_tokens, turns, permission_denials (tool names or full objects),
  exit_code (override), stderr (text written to stderr at the end)
  tools entries may be {"name": "Bash", "input": {"command": ...}, "exec": true}: the approved
                  command really runs (shell, in the cwd) and its output is the tool_result
--max-turns N and --max-budget-usd X are honoured against turns and cost.

Permissions (measured on 2.1.197): every tool call above (tools, and the Read/Write of handoff,
status and files) is checked as the CLI checks it. A refused call has NO effect, gets an is_error
tool_result ("tool_use_result": "Error: <text>") and is listed in permission_denials; the run
still ends success, exit 0. Order: a tool disallowed by bare name is not offered (missing from the
init tools; "<tool_use_error>Error: No such tool available: X. X exists but is not enabled in this
context. ...", not listed); a matching deny rule refuses ("Permission to use Bash with command CMD
has been denied."); bypassPermissions allows; an allow rule allows (`Tool`, `Tool(prefix:*)`,
`Tool(glob *)`, exact; Edit rules cover Write/NotebookEdit; comma or space separated); then the
tool's safe cases: Read inside the cwd / --add-dir, read-only Bash (ls, echo, cat, git status...,
every part of a compound command), Glob/Grep/TodoWrite/Task, Write/Edit in the cwd under
acceptEdits. Anything else: dontAsk refuses ("Permission to use X has been denied because Claude
Code is running in don't ask mode. IMPORTANT: ..."); with --permission-prompt-tool stdio it is
asked (below); otherwise refused as `claude -p` does: "This command requires approval", "This Bash
command contains multiple operations. The following part(s) require(s) approval: a, b", the
cd-before-git text, "Claude requested permissions to write to PATH, but you haven't granted it
yet." (Write/Edit, even in the cwd), "... to read from PATH ..." (Read outside the cwd). A Write to
an existing file whose Read was refused fails with "File has not been read yet. ...". Not modelled:
the CLI's path texts for mkdir/touch/rm ("mkdir in 'P' was blocked. ..."): "requires approval" here.

Stdio control protocol: --input-format stream-json (needs --output-format stream-json) takes the
prompt from the first {"type":"user",...} line of stdin and keeps reading stdin. With
--permission-prompt-tool stdio an unsettled call prints {"type":"control_request","request_id",
"request":{"subtype":"can_use_tool","tool_name","display_name","input","description",
"permission_suggestions","decision_reason","decision_reason_type","tool_use_id"}} (fields per case,
as measured) and waits for the matching control_response: allow + updatedInput runs the tool with
that (possibly rewritten) input; deny + message refuses with the message; a bare allow is refused
with the CLI's ZodError text; subtype "error" with "Tool permission request failed: Error: E";
stdin EOF with "Tool permission request failed: Error: Tool permission stream closed before response
received". dontAsk never asks (and, in this mode, emits a system "permission_denied" line). After
the result line the fake, like the CLI, waits until stdin closes, then exits 0 (SIGTERM: 143).
Later user lines are ignored (the CLI would run another turn).

Env FAKE_CLAUDE_LOG: append one JSON line per call (argv, stdin, prompt, cwd, pid, pgid, model,
session_id, resumed, prior_prompts, link, round, env_keys, env (LLMAUTO_* and FAKE_*), started,
call, behaviour_index, behaviour, early_error), written before any sleep or hang.
Env FAKE_CLAUDE_SPANS: append one JSON line per call when it ends (pid, link, chain, start, end,
exit_code; times from time.time()), to check how calls overlap in time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import uuid

VERSION = "2.1.197"
DEFAULT_MODEL = "claude-opus-4-8"
ALIASES = {
    "opus": "claude-opus-4-8",
    "sonnet": "claude-sonnet-4-6",
    "haiku": "claude-haiku-4-5",
    "fable": "claude-fable-5",
    "opusplan": "claude-opus-4-8",
}
TOOLS = [
    "Task",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
]
PERMISSION_MODES = ["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]

# long name -> (kind, display, choices); kinds: flag, value, optional, variadic
OPTIONS: dict[str, tuple[str, str, list[str] | None]] = {
    "print": ("flag", "-p, --print", None),
    "verbose": ("flag", "--verbose", None),
    "continue": ("flag", "-c, --continue", None),
    "dangerously-skip-permissions": ("flag", "--dangerously-skip-permissions", None),
    "allow-dangerously-skip-permissions": ("flag", "--allow-dangerously-skip-permissions", None),
    "no-session-persistence": ("flag", "--no-session-persistence", None),
    "bare": ("flag", "--bare", None),
    "fork-session": ("flag", "--fork-session", None),
    "include-partial-messages": ("flag", "--include-partial-messages", None),
    "include-hook-events": ("flag", "--include-hook-events", None),
    "strict-mcp-config": ("flag", "--strict-mcp-config", None),
    "disable-slash-commands": ("flag", "--disable-slash-commands", None),
    "replay-user-messages": ("flag", "--replay-user-messages", None),
    "safe-mode": ("flag", "--safe-mode", None),
    "ide": ("flag", "--ide", None),
    "chrome": ("flag", "--chrome", None),
    "no-chrome": ("flag", "--no-chrome", None),
    "brief": ("flag", "--brief", None),
    "help": ("flag", "-h, --help", None),
    "version": ("flag", "-v, --version", None),
    "output-format": ("value", "--output-format <format>", ["text", "json", "stream-json"]),
    "input-format": ("value", "--input-format <format>", ["text", "stream-json"]),
    "permission-mode": ("value", "--permission-mode <mode>", PERMISSION_MODES),
    "effort": ("value", "--effort <level>", ["low", "medium", "high", "xhigh", "max"]),
    "model": ("value", "--model <model>", None),
    "fallback-model": ("value", "--fallback-model <model>", None),
    "session-id": ("value", "--session-id <uuid>", None),
    "append-system-prompt": ("value", "--append-system-prompt <prompt>", None),
    "system-prompt": ("value", "--system-prompt <prompt>", None),
    "max-turns": ("value", "--max-turns <turns>", None),
    "max-budget-usd": ("value", "--max-budget-usd <amount>", None),
    "name": ("value", "-n, --name <name>", None),
    "json-schema": ("value", "--json-schema <schema>", None),
    "settings": ("value", "--settings <file-or-json>", None),
    "setting-sources": ("value", "--setting-sources <sources>", None),
    "agent": ("value", "--agent <agent>", None),
    "agents": ("value", "--agents <json>", None),
    "debug-file": ("value", "--debug-file <path>", None),
    "permission-prompt-tool": ("value", "--permission-prompt-tool <tool>", None),
    "resume": ("optional", "-r, --resume [value]", None),
    "debug": ("optional", "-d, --debug [filter]", None),
    "allowedTools": ("variadic", "--allowedTools, --allowed-tools <tools...>", None),
    "disallowedTools": ("variadic", "--disallowedTools, --disallowed-tools <tools...>", None),
    "add-dir": ("variadic", "--add-dir <directories...>", None),
    "mcp-config": ("variadic", "--mcp-config <configs...>", None),
    "betas": ("variadic", "--betas <betas...>", None),
    "tools": ("variadic", "--tools <tools...>", None),
    "file": ("variadic", "--file <specs...>", None),
}
ALIAS_NAMES = {
    "allowed-tools": "allowedTools",
    "disallowed-tools": "disallowedTools",
}
SHORT = {
    "p": "print",
    "c": "continue",
    "h": "help",
    "v": "version",
    "r": "resume",
    "d": "debug",
    "n": "name",
}

HELP = (
    f"""Usage: claude [options] [command] [prompt]

Claude Code (fake {VERSION} for tests) - only -p/--print is supported.

Options:
"""
    + "\n".join(f"  {display}" for _k, display, _c in OPTIONS.values())
    + "\n"
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class UsageError(Exception):
    """An error the real CLI reports on stderr before doing anything, with exit 1."""


# --- arguments ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> tuple[dict[str, object], list[str]]:
    opts: dict[str, object] = {}
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, inline = arg[2:].partition("=")
            name = ALIAS_NAMES.get(name, name)
        elif arg.startswith("-") and len(arg) > 1:
            short = arg[1:2]
            if short not in SHORT:
                raise UsageError(f"error: unknown option '{arg[:2]}'")
            name = SHORT[short]
            inline = arg[2:]
            if inline and OPTIONS[name][0] == "flag":  # combined short flags: -pc
                opts[name] = True
                argv = [*argv[:i], "-" + inline, *argv[i:]]
                continue
            eq = "=" if inline else ""
            if inline.startswith("="):
                inline = inline[1:]
        else:
            positionals.append(arg)
            continue
        if name not in OPTIONS:
            raise UsageError(f"error: unknown option '{arg.partition('=')[0]}'")
        kind, display, choices = OPTIONS[name]
        if kind == "flag":
            if eq:
                raise UsageError(f"error: option '{display}' does not take an argument")
            opts[name] = True
            continue
        if kind == "value":
            if eq:
                value = inline
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"error: option '{display}' argument missing")
            if choices is not None and value not in choices:
                raise UsageError(
                    f"error: option '{display}' argument '{value}' is invalid. "
                    f"Allowed choices are {', '.join(choices)}."
                )
            opts[name] = value
            continue
        if kind == "optional":
            if eq:
                opts[name] = inline
            elif i < len(argv) and not argv[i].startswith("-"):
                opts[name] = argv[i]
                i += 1
            else:
                opts[name] = True
            continue
        # variadic: like commander, take every following argument up to the next option
        values: list[str] = list(opts.get(name) or [])  # type: ignore[call-overload]
        if eq:
            values.append(inline)
        else:
            taken = 0
            while i < len(argv) and not argv[i].startswith("-"):
                values.append(argv[i])
                i += 1
                taken += 1
            if not taken:
                raise UsageError(f"error: option '{display}' argument missing")
        opts[name] = values
    return opts, positionals


def split_tools(values: object) -> list[str]:
    out: list[str] = []
    for v in values or []:  # type: ignore[attr-defined]
        out.extend(t for t in re.split(r"[,\s]+", str(v)) if t)
    return out


# --- sessions ----------------------------------------------------------------------------------


def config_dir() -> str:
    return os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude")


def _java_hash(s: str) -> int:
    h = 0
    for ch in s:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def project_dir(cwd: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9]", "-", cwd)
    if len(name) > 200:
        name = f"{name[:200]}-{_base36(abs(_java_hash(cwd)))}"
    return os.path.join(config_dir(), "projects", name)


def session_file(cwd: str, session_id: str) -> str:
    return os.path.join(project_dir(cwd), f"{session_id}.jsonl")


def latest_session(cwd: str) -> str | None:
    pdir = project_dir(cwd)
    try:
        files = [f for f in os.listdir(pdir) if f.endswith(".jsonl")]
    except OSError:
        return None
    if not files:
        return None
    files.sort(key=lambda f: os.path.getmtime(os.path.join(pdir, f)))
    return files[-1][: -len(".jsonl")]


def count_prompts(path: str) -> int:
    n = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("type") == "user" and isinstance(
                    (entry.get("message") or {}).get("content"), str
                ):
                    n += 1
    except OSError:
        pass
    return n


# --- scenario ----------------------------------------------------------------------------------


def _locked_update(path: str, fn):  # type: ignore[no-untyped-def]
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            raw += chunk
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            data = {}
        result, data = fn(data)
        encoded = json.dumps(data).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, encoded)
        return result
    finally:
        os.close(fd)  # releases the lock


def select_behaviour(link: str) -> tuple[dict, int | None, int]:
    """(behaviour, index in the link's list or None for default, call number of this link)."""
    path = os.environ.get("FAKE_CLAUDE_SCENARIO")
    if not path:
        return {}, None, 0
    with open(path, encoding="utf-8") as fh:
        scenario = json.load(fh)
    key = link or "_"

    def bump(counts: dict) -> tuple[int, dict]:
        n = int(counts.get(key, 0))
        counts[key] = n + 1
        return n, counts

    call = _locked_update(path + ".counts.json", bump)
    entry = (scenario.get("links") or {}).get(link) if link else None
    if isinstance(entry, dict):
        return entry, 0, call
    if isinstance(entry, list) and call < len(entry):
        return dict(entry[call] or {}), call, call
    return dict(scenario.get("default") or {}), None, call


def write_log(record: dict) -> None:
    path = os.environ.get("FAKE_CLAUDE_LOG")
    if not path:
        return
    import fcntl

    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)


# --- output ------------------------------------------------------------------------------------


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class Run:
    def __init__(self, fmt: str, session_id: str, model: str, cwd: str, transcript: str | None):
        self.fmt = fmt
        self.session_id = session_id
        self.model = model
        self.cwd = cwd
        self.transcript = transcript
        self.turns = 0
        self.read_files: set[str] = set()
        self.tried_reads: set[str] = set()
        self.parent: str | None = None
        self.started = time.time()
        self.perms: Permissions | None = None  # None: every call allowed (as before)
        self.channel: ControlChannel | None = None
        self.denials: list[dict] = []

    # stream-json lines
    def emit(self, obj: dict) -> None:
        if self.fmt == "stream-json":
            sys.stdout.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def record(self, entry: dict) -> None:
        if not self.transcript:
            return
        entry_uuid = str(uuid.uuid4())
        full = {
            "parentUuid": self.parent,
            "isSidechain": False,
            **entry,
            "uuid": entry_uuid,
            "timestamp": now_iso(),
            "userType": "external",
            "entrypoint": "sdk-cli",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": VERSION,
        }
        self.parent = entry_uuid
        os.makedirs(os.path.dirname(self.transcript), exist_ok=True)
        with open(self.transcript, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(full, ensure_ascii=False) + "\n")

    def init_line(self, permission_mode: str, tools: list[str]) -> None:
        self.emit(
            {
                "type": "system",
                "subtype": "init",
                "cwd": self.cwd,
                "session_id": self.session_id,
                "tools": tools,
                "mcp_servers": [],
                "model": self.model,
                "permissionMode": permission_mode,
                "slash_commands": ["compact", "context", "init", "review"],
                "apiKeySource": "ANTHROPIC_API_KEY"
                if os.environ.get("ANTHROPIC_API_KEY")
                else "none",
                "claude_code_version": VERSION,
                "output_style": "default",
                "agents": ["general-purpose", "Explore", "Plan"],
                "skills": [],
                "plugins": [],
                "uuid": str(uuid.uuid4()),
                "fast_mode_state": "off",
            }
        )

    def system(self, subtype: str, **fields: object) -> None:
        self.emit(
            {
                "type": "system",
                "subtype": subtype,
                **fields,
                "session_id": self.session_id,
                "uuid": str(uuid.uuid4()),
            }
        )

    def assistant(self, blocks: list[dict], *, model: str | None = None) -> None:
        """One model turn: each content block is its own line, all with the same message id."""
        self.turns += 1
        msg_id = new_id("msg_")
        request_id = new_id("req_")
        for block in blocks:
            self.emit(
                {
                    "type": "assistant",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model or self.model,
                        "content": [block],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": 12,
                            "output_tokens": 1,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                        },
                        "context_management": None,
                    },
                    "parent_tool_use_id": None,
                    "session_id": self.session_id,
                    "uuid": str(uuid.uuid4()),
                    "request_id": request_id,
                }
            )
        self.record(
            {
                "type": "assistant",
                "message": {
                    "id": msg_id,
                    "role": "assistant",
                    "model": model or self.model,
                    "content": blocks,
                },
            }
        )

    def tool_result(
        self, tool_use_id: str, content: str, extra: object, is_error: bool | None = None
    ) -> None:
        block: dict = {"tool_use_id": tool_use_id, "type": "tool_result", "content": content}
        if is_error is not None:
            block["is_error"] = is_error
        self.emit(
            {
                "type": "user",
                "message": {"role": "user", "content": [block]},
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": str(uuid.uuid4()),
                "timestamp": now_iso(),
                "tool_use_result": extra,
            }
        )
        self.record({"type": "user", "message": {"role": "user", "content": [block]}})

    def tool(
        self,
        name: str,
        tool_input: dict,
        content: str,
        extra: object,
        *,
        is_error: bool | None = None,
        text: str | None = None,
    ) -> None:
        tool_id = new_id("toolu_")
        blocks: list[dict] = []
        if text:
            blocks.append({"type": "text", "text": text})
        blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        self.assistant(blocks)
        self.tool_result(tool_id, content, extra, is_error)

    def use(
        self,
        name: str,
        tool_input: dict,
        perform,  # type: ignore[no-untyped-def]  # (input) -> (content, extra, is_error)
        *,
        text: str | None = None,
    ) -> bool:
        """One tool call through the permission check: the tool_use line, then either the
        tool's own result (perform runs with the approved, possibly rewritten, input) or the
        refusal as an is_error tool_result. Returns whether the tool ran."""
        tool_id = new_id("toolu_")
        blocks: list[dict] = []
        if text:
            blocks.append({"type": "text", "text": text})
        blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        self.assistant(blocks)
        decision = self.perms.decide(name, tool_input) if self.perms else Decision("allow")
        final_input = tool_input
        if decision.kind == "ask":
            answer = self._ask(name, tool_input, tool_id, decision)
            if "error" in answer:
                decision = Decision("deny", str(answer["error"]))
            elif answer.get("behavior") == "allow" and isinstance(answer.get("updatedInput"), dict):
                decision = Decision("allow")
                final_input = dict(answer["updatedInput"])
            elif answer.get("behavior") == "deny" and isinstance(answer.get("message"), str):
                decision = Decision("deny", str(answer["message"]))
            else:  # a bare allow (no updatedInput) or a deny without message
                decision = Decision("deny", BARE_ALLOW_TEXT)
        if decision.kind == "allow":
            content, extra, is_error = perform(final_input)
            self.tool_result(tool_id, content, extra, is_error)
            return not is_error
        if decision.request.get("mode") and self.perms and self.perms.stdio:
            self.system(
                "permission_denied",
                tool_name=name,
                tool_use_id=tool_id,
                decision_reason_type="mode",
                message=decision.text,
            )
        self.tool_result(tool_id, decision.text, "Error: " + decision.text, True)
        if decision.listed:
            self.denials.append(
                {"tool_name": name, "tool_use_id": tool_id, "tool_input": tool_input}
            )
        return False

    def _ask(self, name: str, tool_input: dict, tool_id: str, decision: Decision) -> dict:
        if self.channel is None:  # stdio prompt tool without stream-json input: nobody answers
            return {"error": STREAM_CLOSED_TEXT}
        request: dict = {
            "subtype": "can_use_tool",
            "tool_name": name,
            "display_name": name,
            "input": tool_input,
        }
        extra = dict(decision.request)
        if "description" in extra:
            request["description"] = extra.pop("description")
        elif "description" in tool_input:
            request["description"] = tool_input["description"]
        request.update(extra)
        request["tool_use_id"] = tool_id
        return self.channel.ask(request)

    # file tools, behaving like the real Read / Write
    def read(self, path: str, text: str | None = None) -> str | None:
        if not os.path.isfile(path):
            return None
        got: list[str] = []

        def perform(inp: dict):  # type: ignore[no-untyped-def]
            target = str(inp.get("file_path", path))
            try:
                with open(target, encoding="utf-8") as fh:
                    body = fh.read()
            except OSError:
                return (
                    "<tool_use_error>File does not exist.</tool_use_error>",
                    "Error: File does not exist.",
                    True,
                )
            got.append(body)
            self.read_files.add(target)
            lines = body.split("\n")
            numbered = "\n".join(f"{n}\t{line}" for n, line in enumerate(lines, 1))
            extra = {
                "type": "text",
                "file": {
                    "filePath": target,
                    "content": body,
                    "numLines": len(lines),
                    "startLine": 1,
                    "totalLines": len(lines),
                },
            }
            return numbered, extra, None

        self.tried_reads.add(path)
        self.use("Read", {"file_path": path}, perform, text=text)
        return got[0] if got else None

    def write(self, path: str, content: str) -> bool:
        """A Write call; returns whether the file was written (a refused Write has no effect)."""
        exists = os.path.exists(path)
        if exists and path not in self.read_files and path not in self.tried_reads:
            self.read(path)
        if exists and path not in self.read_files:  # the Read was refused: Write's own check
            msg = "File has not been read yet. Read it first before writing to it."
            self.tool(
                "Write",
                {"file_path": path, "content": content},
                f"<tool_use_error>{msg}</tool_use_error>",
                f"Error: {msg}",
                is_error=True,
            )
            return False
        return self.use("Write", {"file_path": path, "content": content}, self._do_write)

    def _do_write(self, inp: dict):  # type: ignore[no-untyped-def]
        path = str(inp.get("file_path", ""))
        content = str(inp.get("content", ""))
        exists = os.path.exists(path)
        old = None
        if exists:
            with open(path, encoding="utf-8") as fh:
                old = fh.read()
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(content)
        self.read_files.add(path)
        suffix = " (file state is current in your context — no need to Read it back)"
        if exists:
            msg = f"The file {path} has been updated successfully.{suffix}"
            extra = {
                "type": "update",
                "filePath": path,
                "content": content,
                "structuredPatch": [],
                "originalFile": old,
                "userModified": False,
            }
        else:
            msg = f"File created successfully at: {path}{suffix}"
            extra = {
                "type": "create",
                "filePath": path,
                "content": content,
                "structuredPatch": [],
                "originalFile": None,
                "userModified": False,
            }
        return msg, extra, None


def zero_usage() -> dict:
    return {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "inference_geo": "",
        "iterations": [],
        "speed": "standard",
    }


def synthetic_error_line(run: Run, text: str, error: str) -> None:
    run.emit(
        {
            "type": "assistant",
            "message": {
                "id": str(uuid.uuid4()),
                "container": None,
                "model": "<synthetic>",
                "role": "assistant",
                "stop_details": None,
                "stop_reason": "stop_sequence",
                "stop_sequence": "",
                "type": "message",
                "usage": {
                    **zero_usage(),
                    "service_tier": None,
                    "inference_geo": None,
                    "iterations": None,
                    "speed": None,
                },
                "content": [{"type": "text", "text": text}],
                "context_management": None,
            },
            "parent_tool_use_id": None,
            "session_id": run.session_id,
            "uuid": str(uuid.uuid4()),
            "error": error,
            "request_id": new_id("req_"),
        }
    )
    run.record(
        {
            "type": "assistant",
            "isApiErrorMessage": True,
            "error": error,
            "message": {
                "id": str(uuid.uuid4()),
                "role": "assistant",
                "model": "<synthetic>",
                "content": [{"type": "text", "text": text}],
            },
        }
    )


def gateway_hint() -> str:
    base = os.environ.get("ANTHROPIC_BASE_URL", "")
    if not base:
        return " If it persists, check https://status.claude.com."
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", base).split("/", 1)[0]
    return f" If it persists, check your inference gateway ({host or base})."


def format_reset(epoch: float) -> str:
    """Like the CLI's reset formatting: "3pm (Europe/Berlin)" / "3:30pm (UTC)"."""
    t = time.localtime(epoch)
    hour = t.tm_hour % 12 or 12
    ampm = "am" if t.tm_hour < 12 else "pm"
    clock = f"{hour}{ampm}" if t.tm_min == 0 else f"{hour}:{t.tm_min:02d}{ampm}"
    tz = os.environ.get("TZ") or "UTC"
    return f"{clock} ({tz})"


def api_error(kind: str, beh: dict, model: str) -> tuple[str, int | None, str]:
    """(result text, api_error_status, assistant "error" field) for an error kind."""
    if kind == "rate_limited":
        resets = beh.get("resets")
        if not resets and beh.get("resets_at"):
            resets = format_reset(float(beh["resets_at"]))
        if resets:
            limit = beh.get("limit_name") or "session limit"
            return f"You've hit your {limit} · resets {resets}", 429, "rate_limit"
        return (
            "API Error: Request rejected (429) · Number of requests has exceeded your rate limit.",
            429,
            "rate_limit",
        )
    if kind == "overloaded":
        return (
            "API Error: 529 Overloaded. This is a server-side issue, usually temporary — "
            "try again in a moment." + gateway_hint(),
            529,
            "server_error",
        )
    if kind == "auth":
        return (
            "Failed to authenticate. API Error: 401 authentication failed",
            401,
            "authentication_failed",
        )
    if kind == "invalid_api_key":  # what a 401 "invalid x-api-key" from the API shows
        return "Invalid API key · Fix external API key", 401, "authentication_failed"
    if kind == "api_error":
        return (
            "API Error: 500 Internal server error. This is a server-side issue, usually "
            "temporary — try again in a moment." + gateway_hint(),
            500,
            "server_error",
        )
    if kind == "not_found":
        return (
            f"There's an issue with the selected model ({model}). It may not exist or you may not "
            "have access to it. Run --model to pick a different model.",
            404,
            "model_not_found",
        )
    if kind == "connection_refused":
        return "API Error: Unable to connect to API (ConnectionRefused)", None, "server_error"
    if kind == "not_logged_in":
        return "Not logged in · Please run /login", None, "authentication_failed"
    raise ValueError(f"fake claude: unknown error kind {kind!r} in scenario")


RETRY_ERRORS = {
    529: "overloaded",
    500: "server_error",
    429: "rate_limit",
    401: "authentication_failed",
}


def max_retries() -> int:
    try:
        return int(os.environ.get("CLAUDE_CODE_MAX_RETRIES", "10"))
    except ValueError:
        return 10


def emit_retries(run: Run, n: int, delay: float, status: int) -> None:
    limit = max_retries()
    for attempt in range(1, n + 1):
        run.system(
            "api_retry",
            attempt=attempt,
            max_retries=max(limit, n),
            retry_delay_ms=500.0 * 2 ** (attempt - 1),
            error_status=status,
            error=RETRY_ERRORS.get(status, "server_error"),
        )
        if delay:
            time.sleep(delay)


def substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


# --- permissions (measured on 2.1.197; see tests/test_real_claude_cli.py) -----------------------

DONT_ASK_TEXT = (
    "Permission to use {tool} has been denied because Claude Code is running in don't ask mode. "
    "IMPORTANT: You *may* attempt to accomplish this action using other tools that might naturally "
    "be used to accomplish this goal, e.g. using head instead of cat. But you *should not* attempt "
    "to work around this denial in malicious ways, e.g. do not use your ability to run tests to "
    "execute non-test actions. You should only try to work around this restriction in reasonable "
    "ways that do not attempt to bypass the intent behind this denial. If you believe this "
    "capability is essential to complete the user's request, STOP and explain to the user what "
    "you were trying to do and why you need this permission. Let the user decide how to proceed."
)
NOT_ENABLED_TEXT = (
    "<tool_use_error>Error: No such tool available: {tool}. {tool} exists but is not enabled in "
    "this context. Use one of the available tools instead.</tool_use_error>"
)
CD_GIT_TEXT = (
    "This command changes directory before running git, which can execute untrusted hooks from "
    "the target directory. Approve only if you trust it."
)
STREAM_CLOSED_TEXT = (
    "Tool permission request failed: Error: Tool permission stream closed before response received"
)
# what 2.1.197 answers to {"behavior":"allow"} without updatedInput (or a deny without message)
BARE_ALLOW_TEXT = "Tool permission request failed: ZodError: " + json.dumps(
    [
        {
            "code": "invalid_union",
            "errors": [
                [
                    {
                        "expected": "record",
                        "code": "invalid_type",
                        "path": ["updatedInput"],
                        "message": "Invalid input: expected record, received undefined",
                    }
                ],
                [
                    {
                        "code": "invalid_value",
                        "values": ["deny"],
                        "path": ["behavior"],
                        "message": 'Invalid input: expected "deny"',
                    },
                    {
                        "expected": "string",
                        "code": "invalid_type",
                        "path": ["message"],
                        "message": "Invalid input: expected string, received undefined",
                    },
                ],
            ],
            "path": [],
            "message": "Invalid input",
        }
    ],
    indent=2,
)
FILE_EDIT_TOOLS = {"Write", "Edit", "NotebookEdit"}
# tools that never need approval (Glob/Grep are not even offered by 2.1.197; kept harmless here)
FREE_TOOLS = {"Glob", "Grep", "TodoWrite", "Task", "Agent", "TaskCreate", "TaskGet", "TaskList",
              "TaskUpdate", "TaskOutput", "TaskStop"}  # fmt: skip
# the first words of Bash commands the CLI runs without asking (read-only)
READ_ONLY_COMMANDS = {"echo", "ls", "cat", "pwd", "head", "tail", "wc", "grep", "true", "false",
                      "date", "whoami", "which", "printf", "stat", "file", "sort", "uniq", "diff"}  # fmt: skip
READ_ONLY_GIT = {"status", "log", "diff", "show", "branch", "rev-parse"}


def split_rules(values: object) -> list[str]:
    """--allowedTools / --disallowedTools values: comma or space separated, but a rule's
    parenthesised content may hold spaces ("Bash(git push *)")."""
    out: list[str] = []
    for v in values or []:  # type: ignore[attr-defined]
        buf, depth = "", 0
        for ch in str(v):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(0, depth - 1)
            if depth == 0 and (ch == "," or ch.isspace()):
                if buf:
                    out.append(buf)
                buf = ""
                continue
            buf += ch
        if buf:
            out.append(buf)
    return out


def parse_rule(rule: str) -> tuple[str, str | None]:
    m = re.fullmatch(r"([A-Za-z0-9_]+)\((.*)\)", rule.strip())
    return (m.group(1), m.group(2)) if m else (rule.strip(), None)


def subcommands(command: str) -> list[str]:
    return [p.strip() for p in re.split(r"&&|\|\||;|\||\n", command) if p.strip()]


def _glob(pattern: str, text: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(text, pattern)


def bash_rule_matches(content: str, command: str) -> bool:
    if content.endswith(":*"):  # legacy prefix form: "git:*" matches "git" and "git ..."
        prefix = content[:-2]
        return command == prefix or command.startswith(prefix + " ")
    if "*" in content:
        return _glob(content, command) or (
            content.endswith(" *") and command == content[:-2]
        )
    return command == content


def read_only(command: str) -> bool:
    if ">" in command or "`" in command or "$(" in command:
        return False
    words = command.split()
    if not words:
        return True
    if words[0] == "git":
        return len(words) > 1 and words[1] in READ_ONLY_GIT
    return words[0] in READ_ONLY_COMMANDS


def suggestion_rule(command: str) -> str:
    words = command.split()
    if len(words) >= 3 and re.fullmatch(r"[a-z][a-z0-9-]*", words[1]):
        return f"{words[0]} {words[1]} *"
    return command


class Decision:
    """How a tool call is settled: allow, deny (text, listed or not), or ask the prompt tool."""

    def __init__(self, kind: str, text: str = "", *, listed: bool = True,
                 request: dict | None = None) -> None:  # fmt: skip
        self.kind = kind
        self.text = text
        self.listed = listed
        self.request = request or {}


class Permissions:
    """The CLI's permission evaluation, in the order measured on 2.1.197: a tool disallowed by
    bare name is not offered at all; a matching deny rule refuses; bypassPermissions allows;
    allow rules, then the tool's own safe cases (Read in the cwd, read-only Bash, edits in the
    cwd under acceptEdits) allow; anything else is refused in dontAsk mode, asked over the stdio
    control protocol with --permission-prompt-tool stdio, and refused with the "needs approval"
    texts otherwise (print mode has nobody to ask)."""

    def __init__(self, opts: dict[str, object], mode: str, cwd: str) -> None:
        self.mode = mode
        self.cwd = os.path.realpath(cwd)
        self.dirs = [self.cwd] + [
            os.path.realpath(os.path.join(cwd, d)) for d in split_rules(opts.get("add-dir"))
        ]
        self.allow = [parse_rule(r) for r in split_rules(opts.get("allowedTools"))]
        self.deny = [parse_rule(r) for r in split_rules(opts.get("disallowedTools"))]
        self.stdio = opts.get("permission-prompt-tool") == "stdio"

    def disabled(self, tool: str) -> bool:
        return any(name == tool and content is None for name, content in self.deny)

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(real == d or real.startswith(d + os.sep) for d in self.dirs)

    def _matches(self, rules: list[tuple[str, str | None]], tool: str, tool_input: dict) -> bool:
        for name, content in rules:
            family = {name} | (FILE_EDIT_TOOLS if name == "Edit" else set())
            if tool not in family:
                continue
            if content is None:
                return True
            if tool == "Bash":
                if bash_rule_matches(content, str(tool_input.get("command", ""))):
                    return True
            elif "file_path" in tool_input:
                path = str(tool_input["file_path"])
                rel = os.path.relpath(os.path.realpath(path), self.cwd)
                if _glob(content, path) or _glob(content, rel) or _glob(content.lstrip("/"), rel):
                    return True
        return False

    def decide(self, tool: str, tool_input: dict) -> Decision:
        if self.disabled(tool):
            return Decision("deny", NOT_ENABLED_TEXT.format(tool=tool), listed=False)
        command = str(tool_input.get("command", "")) if tool == "Bash" else ""
        if tool == "Bash":
            for part in [command, *subcommands(command)]:
                if self._matches(self.deny, tool, {"command": part}):
                    return Decision(
                        "deny", f"Permission to use Bash with command {command} has been denied."
                    )
        elif self._matches(self.deny, tool, tool_input):
            return Decision("deny", f"Permission to use {tool} has been denied.")
        if self.mode == "bypassPermissions" or tool in FREE_TOOLS:
            return Decision("allow")
        if self._matches(self.allow, tool, tool_input):
            return Decision("allow")
        path = str(tool_input.get("file_path", ""))
        request: dict = {}
        if tool == "Bash":
            parts = subcommands(command) or [command]
            pending = [
                p for p in parts if not read_only(p) and not self._matches(self.allow, tool, {"command": p})
            ]
            if not pending:
                return Decision("allow")
            if re.match(r"\s*cd\s", command) and any(p.split()[0] == "git" for p in parts):
                text = CD_GIT_TEXT
                request = {"decision_reason": text, "decision_reason_type": "other"}
            elif len(parts) > 1:
                many = len(pending) > 1
                text = (
                    "This Bash command contains multiple operations. The following "
                    + ("parts require" if many else "part requires")
                    + " approval: "
                    + ", ".join(pending)
                )
                request = {
                    "permission_suggestions": [_add_rules(pending)],
                    "decision_reason_type": "subcommandResults",
                }
            else:
                text = "This command requires approval"
                request = {
                    "permission_suggestions": [_add_rules(pending)],
                    "decision_reason": text,
                    "decision_reason_type": "other",
                }
        elif tool == "Read":
            if self._inside(path):
                return Decision("allow")
            text = f"Claude requested permissions to read from {path}, but you haven't granted it yet."
            request = {"blocked_path": path}
        elif tool in FILE_EDIT_TOOLS:
            if self.mode == "acceptEdits" and self._inside(path):
                return Decision("allow")
            text = f"Claude requested permissions to write to {path}, but you haven't granted it yet."
            request = {
                "description": os.path.basename(path),
                "permission_suggestions": [
                    {"type": "setMode", "mode": "acceptEdits", "destination": "session"}
                ],
            }
        else:
            text = f"Claude requested permissions to use {tool}, but you haven't granted it yet."
        if self.mode == "dontAsk":
            return Decision("deny", DONT_ASK_TEXT.format(tool=tool), request={"mode": True})
        if self.stdio:
            return Decision("ask", text, request=request)
        return Decision("deny", text)


def _add_rules(commands: list[str]) -> dict:
    return {
        "type": "addRules",
        "rules": [{"toolName": "Bash", "ruleContent": suggestion_rule(c)} for c in commands],
        "behavior": "allow",
        "destination": "localSettings",
    }


class ControlChannel:
    """The stdio control protocol on stdin (--input-format stream-json): the first user line is the
    prompt; later lines answer can_use_tool control requests. EOF fails every pending request."""

    def __init__(self) -> None:
        self.closed = False
        self.pending_lines: list[dict] = []

    def next_line(self) -> dict | None:
        if self.pending_lines:
            return self.pending_lines.pop(0)
        while not self.closed:
            raw = sys.stdin.buffer.readline()
            if not raw:
                self.closed = True
                return None
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise UsageError(
                    f"Error parsing streaming input line: {text}: SyntaxError: {exc}"
                ) from None
            if isinstance(obj, dict):
                return obj
        return None

    def first_prompt(self) -> str:
        while True:
            obj = self.next_line()
            if obj is None:
                return ""
            if obj.get("type") == "user":
                content = (obj.get("message") or {}).get("content")
                if isinstance(content, list):
                    return "\n".join(
                        str(b.get("text", "")) for b in content
                        if isinstance(b, dict) and b.get("type") == "text"
                    )  # fmt: skip
                return str(content or "")

    def ask(self, request: dict) -> dict:
        """Send a control_request, wait for its control_response: the inner response dict, or
        {"error": text} when the answer is an error or stdin closes first."""
        request_id = str(uuid.uuid4())
        line = {"type": "control_request", "request_id": request_id, "request": request}
        sys.stdout.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        while True:
            obj = self.next_line()
            if obj is None:
                return {"error": STREAM_CLOSED_TEXT}
            if obj.get("type") != "control_response":
                continue  # e.g. a further user message: not handled by the fake
            response = obj.get("response") or {}
            if response.get("request_id") != request_id:
                continue
            if response.get("subtype") == "error":
                return {"error": f"Tool permission request failed: Error: {response.get('error')}"}
            return dict(response.get("response") or {})

    def wait_for_eof(self) -> None:
        """After the result line the CLI waits for more input; it exits when stdin closes."""
        while self.next_line() is not None:
            pass


# --- tools reported on request -----------------------------------------------------------------


def run_bash(command: str, cwd: str):  # type: ignore[no-untyped-def]
    """Really run an approved command (scenario "exec": true), like the Bash tool."""
    import subprocess

    proc = subprocess.run(
        command, shell=True, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    out, err = proc.stdout.rstrip("\n"), proc.stderr.rstrip("\n")
    if proc.returncode:
        text = "\n".join(t for t in (f"Exit code {proc.returncode}", out, err) if t)
        return text, "Error: " + text, True
    extra = {"stdout": out, "stderr": err, "interrupted": False, "isImage": False,
             "noOutputExpected": False}  # fmt: skip
    return out or err or "(Bash completed with no output)", extra, False


def extra_tool(run: Run, spec: object) -> None:
    """A scenario tool call, through the permission check (a refused call has no effect)."""

    def fixed(content: str, extra: object, is_error: bool | None = None):  # type: ignore[no-untyped-def]
        return lambda _inp: (content, extra, is_error)

    if isinstance(spec, dict):
        name = str(spec.get("name", "Bash"))
        tool_input = dict(spec.get("input") or {})
        if name == "Bash" and spec.get("exec"):
            run.use(name, tool_input, lambda inp: run_bash(str(inp.get("command", "")), run.cwd))
            return
        content = str(spec.get("result", ""))
        run.use(
            name,
            tool_input,
            fixed(content, {"stdout": content} if name == "Bash" else content, spec.get("is_error")),
        )
        return
    name = str(spec)
    if name == "Bash":
        run.use(
            "Bash",
            {"command": "ls", "description": "List files"},
            fixed(
                "README.md",
                {
                    "stdout": "README.md",
                    "stderr": "",
                    "interrupted": False,
                    "isImage": False,
                    "noOutputExpected": False,
                },
                False,
            ),
        )
    elif name == "Grep":
        run.use(
            "Grep",
            {"pattern": "TODO"},
            fixed("No files found", {"mode": "files_with_matches", "filenames": [], "numFiles": 0}),
        )
    elif name == "Glob":
        run.use(
            "Glob",
            {"pattern": "**/*.py"},
            fixed(
                "No files found",
                {"filenames": [], "durationMs": 1, "numFiles": 0, "truncated": False},
            ),
        )
    elif name == "Read":
        path = os.path.join(run.cwd, "README.md")
        if not os.path.exists(path):  # validation comes before the permission check
            run.tool(
                "Read",
                {"file_path": path},
                "<tool_use_error>File does not exist.</tool_use_error>",
                "Error: File does not exist.",
                is_error=True,
            )
        else:
            run.read(path)
    elif name == "Edit":
        path = os.path.join(run.cwd, "notes.txt")
        run.tool(
            "Edit",
            {"file_path": path, "old_string": "a", "new_string": "b"},
            "<tool_use_error>File does not exist.</tool_use_error>",
            "Error: File does not exist.",
            is_error=True,
        )
    elif name == "WebFetch":
        run.use(
            "WebFetch",
            {"url": "https://example.com", "prompt": "summarise"},
            fixed("Example Domain", {"code": 200, "result": "Example Domain"}),
        )
    elif name == "WebSearch":
        run.use("WebSearch", {"query": "python asyncio"}, fixed("No results", {"results": []}))
    elif name in ("Task", "Agent"):
        run.use(
            name,
            {"description": "Explore", "prompt": "look around", "subagent_type": "Explore"},
            fixed("Nothing found.", {"status": "completed"}),
        )
    elif name == "TodoWrite":
        todos = [{"content": "do it", "status": "in_progress", "activeForm": "Doing it"}]
        run.use(
            "TodoWrite",
            {"todos": todos},
            fixed("Todos have been modified successfully.", {"oldTodos": [], "newTodos": todos}),
        )
    else:
        run.use(name, {}, fixed("ok", "ok"))


def spawn_child(mode: object) -> int:
    import subprocess

    out = None if mode == "inherit_stdout" else subprocess.DEVNULL
    child = subprocess.Popen(
        ["sleep", "1000"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL
    )
    state_dir = os.environ.get("LLMAUTO_STATE_DIR")
    if state_dir:
        os.makedirs(state_dir, exist_ok=True)
        tmp = os.path.join(state_dir, f".fake_child.pid.{os.getpid()}")
        with open(tmp, "w") as fh:
            fh.write(str(child.pid))
        os.replace(tmp, os.path.join(state_dir, "fake_child.pid"))
    return child.pid


# --- main --------------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    return code


def read_stdin(have_prompt: bool) -> str:
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return ""
    except (ValueError, OSError):
        return ""
    if have_prompt:
        import select

        try:
            ready, _, _ = select.select([sys.stdin], [], [], 0.05)
        except (ValueError, OSError):
            return ""
        if not ready:
            return ""
    try:
        return sys.stdin.read()
    except (ValueError, OSError):
        return ""


def main(argv: list[str]) -> int:
    started = time.time()
    # like the real CLI: SIGINT mid-request exits 0 printing nothing, SIGTERM exits 143
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))

    try:
        opts, positionals = parse_args(argv)
    except UsageError as exc:
        write_log(
            {
                "argv": argv,
                "stdin": None,
                "cwd": os.getcwd(),
                "pid": os.getpid(),
                "pgid": os.getpgid(0),
                "link": os.environ.get("LLMAUTO_LINK", ""),
                "round": os.environ.get("LLMAUTO_ROUND"),
                "env_keys": sorted(os.environ),
                "env": {k: v for k, v in os.environ.items() if k.startswith(("LLMAUTO_", "FAKE_"))},
                "started": started,
                "call": None,
                "early_error": str(exc),
            }
        )
        return fail(str(exc))

    if opts.get("help"):
        sys.stdout.write(HELP)
        return 0
    if opts.get("version"):
        sys.stdout.write(f"{VERSION} (Claude Code)\n")
        return 0

    positional = positionals[0] if positionals else None
    channel: ControlChannel | None = None
    stream_error: str | None = None
    if opts.get("input-format") == "stream-json":
        if opts.get("output-format") != "stream-json":
            return fail("Error: --input-format=stream-json requires output-format=stream-json.")
        channel = ControlChannel()
        try:
            stdin_text = channel.first_prompt()
        except UsageError as exc:
            stdin_text, stream_error = "", str(exc)
        prompt = stdin_text
    else:
        stdin_text = read_stdin(positional is not None)
        prompt = positional if positional is not None else stdin_text
        if positional is not None and stdin_text.strip():
            prompt = positional + "\n" + stdin_text  # what the real CLI sends

    cwd = os.getcwd()
    env = os.environ
    link = env.get("LLMAUTO_LINK", "")
    model_arg = str(opts.get("model") or DEFAULT_MODEL)
    model = ALIASES.get(model_arg, model_arg)
    fmt = str(opts.get("output-format") or "text")
    permission_mode = str(opts.get("permission-mode") or "default")
    if opts.get("dangerously-skip-permissions"):
        permission_mode = "bypassPermissions"

    log: dict = {
        "argv": argv,
        "stdin": stdin_text,
        "prompt": prompt,
        "cwd": cwd,
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "model": model,
        "fallback_model": opts.get("fallback-model"),
        "permission_mode": permission_mode,
        "allowed_tools": split_rules(opts.get("allowedTools")),
        "disallowed_tools": split_rules(opts.get("disallowedTools")),
        "permission_prompt_tool": opts.get("permission-prompt-tool"),
        "input_format": opts.get("input-format") or "text",
        "output_format": fmt,
        "session_id": None,
        "resumed": False,
        "link": link,
        "round": env.get("LLMAUTO_ROUND"),
        "env_keys": sorted(env),
        "env": {k: v for k, v in env.items() if k.startswith(("LLMAUTO_", "FAKE_"))},
        "started": started,
        "call": None,
        "behaviour_index": None,
        "early_error": None,
    }

    def early(message: str) -> int:
        log["early_error"] = message
        write_log(log)
        return fail(message)

    if not opts.get("print"):
        return early("fake claude: only -p/--print mode is supported")
    if stream_error:
        return early(stream_error)
    # checks in the order the real CLI makes them (measured with several wrong at once)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if permission_mode == "bypassPermissions" and is_root and env.get("IS_SANDBOX") != "1":
        return early(
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
        )

    resume = opts.get("resume")
    session_opt = opts.get("session-id")
    fork = bool(opts.get("fork-session"))
    if session_opt is not None and (resume is not None or opts.get("continue")) and not fork:
        return early(
            "Error: --session-id can only be used with --continue or --resume if --fork-session is also specified."
        )
    if session_opt is not None and not UUID_RE.match(str(session_opt)):
        return early("Error: Invalid session ID. Must be a valid UUID.")

    history_from: str | None = None
    if resume is not None:
        if resume is True:
            return early(
                "Error: --resume requires a valid session ID or session title when used with --print. "
                "Usage: claude -p --resume <session-id|title>"
            )
        if not UUID_RE.match(str(resume)):
            return early(
                "Error: --resume requires a valid session ID or session title when used with --print. "
                f'Usage: claude -p --resume <session-id|title>. Provided value "{resume}" is not a '
                "UUID and does not match any session title."
            )
        if not os.path.exists(session_file(cwd, str(resume))):
            return early(f"No conversation found with session ID: {resume}")
        history_from = str(resume)
    elif opts.get("continue"):
        history_from = latest_session(cwd)

    if history_from and not fork:
        session_id = history_from
    else:
        session_id = str(session_opt) if session_opt else str(uuid.uuid4())
        if session_opt and os.path.exists(session_file(cwd, session_id)):
            return early(f"Error: Session ID {session_id} is already in use.")

    if not prompt.strip():
        return early(
            "Error: Input must be provided either through stdin or as a prompt argument when using --print"
        )
    if fmt == "stream-json" and not opts.get("verbose"):
        return early("Error: When using --print, --output-format=stream-json requires --verbose")

    prior_prompts = count_prompts(session_file(cwd, history_from)) if history_from else 0
    log["session_id"] = session_id
    log["resumed"] = bool(history_from)
    log["prior_prompts"] = prior_prompts

    try:
        beh, index, call = select_behaviour(link)
    except (OSError, ValueError) as exc:
        log["early_error"] = f"bad scenario: {exc}"
        write_log(log)
        return fail(f"fake claude: cannot read scenario: {exc}", 2)
    log["call"] = call
    log["behaviour_index"] = index
    log["behaviour"] = beh
    write_log(log)

    if beh.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    transcript = None if opts.get("no-session-persistence") else session_file(cwd, session_id)
    if transcript and history_from and history_from != session_id:
        import shutil

        os.makedirs(os.path.dirname(transcript), exist_ok=True)
        shutil.copyfile(session_file(cwd, history_from), transcript)
    run = Run(fmt, session_id, model, cwd, transcript)
    run.perms = Permissions(opts, permission_mode, cwd)
    run.channel = channel

    error = beh.get("error")
    if "fail_models" in beh:
        error = (beh.get("fail_models") or {}).get(model)

    if error == "empty":
        time.sleep(float(beh.get("sleep") or 0))
        return int(beh.get("exit_code", 0))

    tools = TOOLS
    if opts.get("tools") is not None:
        tools = [t for t in split_tools(opts.get("tools")) if t != "default"] or (
            TOOLS if "default" in split_tools(opts.get("tools")) else []
        )
    tools = [t for t in tools if not run.perms.disabled(t)]
    if beh.get("spawn_child"):  # before the init line: a test that has read it finds the pid
        spawn_child(beh["spawn_child"])
    run.init_line(permission_mode, tools)
    run.record(
        {
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "permissionMode": permission_mode,
            "promptSource": "sdk",
        }
    )

    if beh.get("hang"):
        while True:
            signal.pause()

    if error == "crash":
        sys.stderr.write(
            "Traceback (most recent call last):\n"
            '  File "/usr/lib/node_modules/claude/cli.js", line 1, in <module>\n'
            "RuntimeError: fake claude crashed on purpose\n"
        )
        sys.stderr.flush()
        return int(beh.get("exit_code", 3))

    values = {
        "round": env.get("LLMAUTO_ROUND", ""),
        "link": link,
        "chain": env.get("LLMAUTO_CHAIN", ""),
        "session_id": session_id,
        "model": model,
        "call": str(call),
        "prior_prompts": str(prior_prompts),
    }

    sleep_s = float(beh.get("sleep") or 0)
    if sleep_s:
        run.assistant([{"type": "text", "text": "Working on it."}])
        heartbeat = float(beh.get("heartbeat_s") or 0)
        deadline = time.monotonic() + sleep_s
        beat = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if heartbeat and fmt == "stream-json":
                time.sleep(min(heartbeat, left))
                if deadline - time.monotonic() > 0:
                    beat += 1
                    run.assistant([{"type": "text", "text": f"Still working ({beat})."}])
            else:
                time.sleep(left)

    retries = int(beh.get("retries") or 0)
    retry_status = int(beh.get("retry_status") or 529)
    if retries:
        emit_retries(run, retries, float(beh.get("retry_delay_s") or 0), retry_status)

    # --fallback-model: the real CLI switches at once on 404 and after 3 failed attempts on 529
    # (so not at all when CLAUDE_CODE_MAX_RETRIES < 3); never on 429.
    fallback_arg = opts.get("fallback-model")
    if error in ("overloaded", "not_found") and fallback_arg:
        if error == "overloaded" and max_retries() < 3:
            pass
        else:
            fail_models = beh.get("fail_models") if "fail_models" in beh else None
            for candidate in str(fallback_arg).split(","):
                candidate = ALIASES.get(candidate.strip(), candidate.strip())
                if not candidate or candidate == model:
                    continue
                if error == "overloaded" and not retries:
                    emit_retries(run, 2, 0, 529)
                run.system(
                    "model_fallback",
                    trigger="overloaded" if error == "overloaded" else "model_not_found",
                    original_model=model,
                    fallback_model=candidate,
                    content=(
                        f"Switched to {candidate} due to high demand for {model}"
                        if error == "overloaded"
                        else f"Switched to {candidate} because {model} is not available"
                    ),
                )
                model = run.model = candidate
                values["model"] = model
                error = (fail_models or {}).get(candidate) if fail_models is not None else None
                break

    denials = []
    for d in beh.get("permission_denials") or []:
        if isinstance(d, str):
            d = {"tool_name": d, "tool_use_id": new_id("toolu_"), "tool_input": {}}
        denials.append(d)

    def usage_block(inp: int, out: int) -> dict:
        u = zero_usage()
        u["input_tokens"] = inp
        u["output_tokens"] = out
        return u

    def finish(obj: dict, text_out: str | None, code: int) -> int:
        if fmt == "stream-json":
            run.emit(obj)
            if channel is not None:  # like the CLI: wait for more input until stdin closes
                channel.wait_for_eof()
        elif fmt == "json":
            sys.stdout.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
        elif text_out is not None:
            sys.stdout.write(text_out + "\n")
        sys.stdout.flush()
        if beh.get("stderr"):
            sys.stderr.write(str(beh["stderr"]) + "\n")
        return int(beh.get("exit_code", code))

    duration_ms = lambda: int((time.time() - started) * 1000)  # noqa: E731

    if error:
        if error == "max_turns":
            return _max_turns(
                run,
                beh,
                finish,
                duration_ms,
                int(str(opts["max-turns"]))
                if str(opts.get("max-turns", "")).isdigit()
                else int(beh.get("turns") or 1),
                denials,
                usage_block,
            )
        try:
            text, status, kind = api_error(str(error), beh, model)
        except ValueError as exc:
            return fail(str(exc), 2)
        if error == "rate_limited" and beh.get("resets_at"):
            run.emit(
                {
                    "type": "rate_limit_event",
                    "rate_limit_info": {
                        "status": "rejected",
                        "resetsAt": int(beh["resets_at"]),
                        "rateLimitType": beh.get("rate_limit_type") or "five_hour",
                        "utilization": 1.0,
                        "overageStatus": "rejected",
                        "isUsingOverage": False,
                    },
                    "uuid": str(uuid.uuid4()),
                    "session_id": session_id,
                }
            )
        synthetic_error_line(run, text, kind)
        return finish(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": status,
                "duration_ms": duration_ms(),
                "duration_api_ms": 0,
                "num_turns": 1,
                "result": text,
                "stop_reason": "stop_sequence",
                "session_id": session_id,
                "total_cost_usd": 0,
                "usage": zero_usage(),
                "modelUsage": {},
                "permission_denials": [],
                "terminal_reason": "completed",
                "fast_mode_state": "off",
                "uuid": str(uuid.uuid4()),
            },
            text,
            1,
        )

    # the agent's work: extra tools, files, handoff, status
    for spec in beh.get("tools") or []:
        extra_tool(run, spec)
    for rel, content in (beh.get("files") or {}).items():
        path = rel if os.path.isabs(rel) else os.path.join(cwd, rel)
        run.write(path, substitute(str(content), values))
    handoff = beh.get("handoff")
    if handoff is not None:
        path = env.get("LLMAUTO_HANDOFF") or os.path.join(cwd, "handoff.md")
        new = substitute(str(handoff), values)
        old = run.read(path, text="Let me read the handoff first.")
        if beh.get("handoff_mode") == "append" and old:
            new = old + ("" if old.endswith("\n") else "\n") + new
        run.write(path, new)
    status_word = beh.get("status")
    if status_word:
        state_dir = env.get("LLMAUTO_STATE_DIR") or cwd
        run.write(os.path.join(state_dir, "status.txt"), str(status_word) + "\n")
    denials.extend(run.denials)

    result_text = substitute(str(beh.get("result", "ok")), values)
    run.assistant([{"type": "text", "text": result_text}])
    num_turns = int(beh.get("turns") or run.turns)
    max_turns = opts.get("max-turns")
    if max_turns is not None and str(max_turns).isdigit() and num_turns > int(str(max_turns)):
        return _max_turns(run, beh, finish, duration_ms, int(str(max_turns)), denials, usage_block)

    cost = float(beh.get("cost", 0.001))
    inp = int(beh.get("input_tokens", 12 * num_turns))
    out = int(beh.get("output_tokens", 5 * num_turns))
    model_usage = {
        model: {
            "inputTokens": inp,
            "outputTokens": out,
            "cacheReadInputTokens": 0,
            "cacheCreationInputTokens": 0,
            "webSearchRequests": 0,
            "costUSD": cost,
            "contextWindow": 200000,
            "maxOutputTokens": 32000,
        }
    }
    budget = opts.get("max-budget-usd")
    if budget is not None:
        try:
            over = cost > float(str(budget))
        except ValueError:
            over = False
        if over:
            return finish(
                {
                    "type": "result",
                    "subtype": "error_max_budget_usd",
                    "duration_ms": duration_ms(),
                    "duration_api_ms": 0,
                    "is_error": True,
                    "num_turns": num_turns,
                    "stop_reason": "end_turn",
                    "session_id": session_id,
                    "total_cost_usd": cost,
                    "usage": usage_block(inp, out),
                    "modelUsage": model_usage,
                    "permission_denials": denials,
                    "fast_mode_state": "off",
                    "uuid": str(uuid.uuid4()),
                    "errors": [f"Reached maximum budget (${budget})"],
                },
                f"Error: Reached maximum budget (${budget})",
                1,
            )
    api_ms = max(1, int(sleep_s * 1000) + 20 * num_turns)
    return finish(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "api_error_status": None,
            "duration_ms": max(duration_ms(), api_ms),
            "duration_api_ms": api_ms,
            "num_turns": num_turns,
            "result": result_text,
            "stop_reason": "end_turn",
            "session_id": session_id,
            "total_cost_usd": cost,
            "usage": usage_block(inp, out),
            "modelUsage": model_usage,
            "permission_denials": denials,
            "terminal_reason": "completed",
            "fast_mode_state": "off",
            "uuid": str(uuid.uuid4()),
        },
        result_text,
        0,
    )


def _max_turns(run, beh, finish, duration_ms, limit, denials, usage_block):  # type: ignore[no-untyped-def]
    """The real CLI's --max-turns ending: subtype error_max_turns, exit 1, no "result" field."""
    cost = float(beh.get("cost", 0.001))
    return finish(
        {
            "type": "result",
            "subtype": "error_max_turns",
            "duration_ms": duration_ms(),
            "duration_api_ms": 0,
            "is_error": True,
            "num_turns": limit + 1,
            "stop_reason": "tool_use",
            "session_id": run.session_id,
            "total_cost_usd": cost,
            "usage": usage_block(
                int(beh.get("input_tokens", 12)), int(beh.get("output_tokens", 5))
            ),
            "modelUsage": {},
            "permission_denials": denials,
            "terminal_reason": "max_turns",
            "fast_mode_state": "off",
            "uuid": str(uuid.uuid4()),
            "errors": [f"Reached maximum number of turns ({limit})"],
        },
        f"Error: Reached max turns ({limit})",
        1,
    )


def write_span(start: float, code: int) -> None:
    path = os.environ.get("FAKE_CLAUDE_SPANS")
    if not path:
        return
    record = {
        "pid": os.getpid(), "link": os.environ.get("LLMAUTO_LINK", ""),
        "chain": os.environ.get("LLMAUTO_CHAIN", ""), "start": start, "end": time.time(),
        "exit_code": code,
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    span_start = time.time()
    try:
        code = main(sys.argv[1:])
    except BrokenPipeError:
        code = 1
    sys.stdout.flush()
    write_span(span_start, code)
    sys.exit(code)
