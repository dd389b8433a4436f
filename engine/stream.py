"""Claude's `--output-format stream-json --verbose` output, parsed live.

`StreamParser.feed()` takes one stdout line at a time and returns a `Progress` for lines worth
showing (current tool and its target, a turn, an API retry, a model fallback, a rate-limit notice).
`StreamParser.finish()` turns what was seen, with the exit code and how the process ended, into a
`LinkResult` with an `ErrorClass`. Runs are judged by `is_error`, `api_error_status` and `result`,
not by `subtype` (see shared CLAUDE_CLI.md): API errors end with `"subtype":"success"`, and empty
stdout is a failure even with exit code 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.permissions import Refusal, call_target, is_refusal
from engine.records import Record


class ErrorClass(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    API_ERROR = "api_error"
    STALLED = "stalled"
    CRASHED = "crashed"
    NOT_FOUND = "not_found"
    KILLED = "killed"  # stopped on purpose (`stop --now`, shutdown)
    BUDGET = "budget"  # claude stopped at --max-budget-usd (the chain's max_cost_usd left)
    # claude was refused tool calls and the link changed nothing (its handoff stayed as it was):
    # the agent could not act. Decided by the run loop after the link, never by the parser.
    DENIED = "denied"


# Failures that say nothing about the prompt: worth a retry on the fallback model.
FALLBACK_WORTHY = frozenset(
    {ErrorClass.OVERLOADED, ErrorClass.NOT_FOUND, ErrorClass.API_ERROR, ErrorClass.STALLED,
     ErrorClass.TIMEOUT, ErrorClass.CRASHED}
)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Progress(Record):
    """Something a watcher may want to show while a link runs."""

    kind: str  # spawned | init | tool | refused | text | retry | fallback | rate_limit | output
    tool: str | None = None
    target: str | None = None
    turns: int = 0
    detail: str = ""


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkResult(Record):
    error_class: ErrorClass
    text: str = ""
    session_id: str | None = None
    model: str | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    duration_s: float = 0.0
    exit_code: int | None = None
    api_error_status: int | None = None
    error_message: str = ""
    permission_denials: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()  # every tool call claude refused, in order
    tool_calls: int = 0  # tool calls the agent made (refused ones included)
    resets_at_epoch: float | None = None
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.error_class is ErrorClass.OK


_TARGET_KEYS = ("file_path", "path", "command", "pattern", "url", "query", "description", "prompt")
_LIMIT_TEXT = re.compile(r"(usage|rate|session|weekly|5-hour)[ -]?limit|limit reached|resets\b", re.I)


def tool_target(tool_input: Any) -> str | None:
    """The most telling argument of a tool call (file, command, pattern), kept short."""
    if not isinstance(tool_input, dict):
        return None
    for key in _TARGET_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            line = value.strip().splitlines()[0]
            return line if len(line) <= 120 else line[:117] + "..."
    return None


@dataclass
class StreamParser:
    session_id: str | None = None
    model: str | None = None
    turns: int = 0
    retries: int = 0
    last_text: str = ""
    current_tool: str | None = None
    current_target: str | None = None
    resets_at_epoch: float | None = None
    rate_limit_error: bool = False
    assistant_error: str | None = None
    lines: int = 0
    result: dict[str, Any] | None = None
    tool_calls: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    _message_ids: set[str] = field(default_factory=set)
    _calls: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # tool_use id -> (tool, target)
    _errored: set[str] = field(default_factory=set)  # ids of tool calls that ended in an error of any kind

    def feed(self, line: str) -> Progress | None:
        line = line.strip()
        if not line:
            return None
        self.lines += 1
        try:
            obj = json.loads(line)
        except ValueError:
            return Progress("output", detail=line[:200])
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type")
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._tool_results(obj)
        if kind == "result":
            self.result = obj
            if isinstance(obj.get("session_id"), str):
                self.session_id = obj["session_id"]
            return None
        if kind == "rate_limit_event":
            info = obj.get("rate_limit_info") if isinstance(obj.get("rate_limit_info"), dict) else obj
            resets = info.get("resetsAt") if isinstance(info, dict) else None
            if isinstance(resets, int | float) and not isinstance(resets, bool):
                self.resets_at_epoch = float(resets)
            return Progress("rate_limit", detail=str(info.get("status", "")) if isinstance(info, dict) else "")
        return None

    def _system(self, obj: dict[str, Any]) -> Progress | None:
        sub = obj.get("subtype")
        if sub == "init":
            if isinstance(obj.get("session_id"), str):
                self.session_id = obj["session_id"]
            if isinstance(obj.get("model"), str):
                self.model = obj["model"]
            return Progress("init", detail=self.model or "")
        if sub == "api_retry":
            self.retries += 1
            status = obj.get("error_status")
            return Progress(
                "retry", turns=self.turns,
                detail=f"API retry {obj.get('attempt', self.retries)}/{obj.get('max_retries', '?')} ({status} {obj.get('error', '')})".strip(),
            )
        if sub == "model_fallback":
            if isinstance(obj.get("fallback_model"), str):
                self.model = obj["fallback_model"]
            return Progress("fallback", detail=f"{obj.get('original_model')} -> {obj.get('fallback_model')}")
        return None

    def _assistant(self, obj: dict[str, Any]) -> Progress | None:
        message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        assert isinstance(message, dict)
        mid = message.get("id")
        if isinstance(mid, str) and mid not in self._message_ids:
            self._message_ids.add(mid)
            self.turns += 1
        if isinstance(obj.get("error"), str):
            # The CLI marks failed turns: rate_limit, server_error, authentication_failed, model_not_found.
            self.assistant_error = obj["error"]
            self.rate_limit_error = self.rate_limit_error or obj["error"] == "rate_limit"
        progress: Progress | None = None
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                self.current_tool = str(block.get("name") or "?")
                self.current_target = tool_target(block.get("input"))
                self.tool_calls += 1
                if isinstance(block.get("id"), str):
                    self._calls[block["id"]] = (self.current_tool, call_target(block.get("input")))
                progress = Progress("tool", tool=self.current_tool, target=self.current_target, turns=self.turns)
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                self.last_text = block["text"]
                if progress is None:
                    progress = Progress("text", turns=self.turns, detail=self.last_text[:200])
        return progress

    def _tool_results(self, obj: dict[str, Any]) -> Progress | None:
        """A `user` line carries the tool results; an error one that a permission rule caused is a
        refusal (tool and target taken from the call it answers)."""
        message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        assert isinstance(message, dict)
        content = message.get("content")
        progress: Progress | None = None
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "tool_result" or block.get("is_error") is not True:
                continue
            text = _result_text(block.get("content"))
            use_id = block.get("tool_use_id") if isinstance(block.get("tool_use_id"), str) else None
            if use_id is not None:
                self._errored.add(use_id)
            if not is_refusal(text):
                continue  # a person's "deny" (phone approvals) or a tool's own error: no refusal by the rules
            if use_id is not None and any(r.tool_use_id == use_id for r in self.refusals):
                continue
            tool, target = self._calls.get(use_id or "", ("?", None))
            self.refusals.append(Refusal(tool=tool, target=target, tool_use_id=use_id, message=text[:300]))
            progress = Progress("refused", tool=tool, target=target, turns=self.turns, detail=text[:200])
        return progress

    def _all_refusals(self, denials: Any) -> tuple[Refusal, ...]:
        """The refusals seen in the stream, plus any the result lists that the stream did not show."""
        out = list(self.refusals)
        seen = {r.tool_use_id for r in out if r.tool_use_id}
        for d in denials if isinstance(denials, list) else []:
            if not isinstance(d, dict):
                continue
            use_id = d.get("tool_use_id") if isinstance(d.get("tool_use_id"), str) else None
            if use_id is not None and (use_id in seen or use_id in self._errored):
                continue
            out.append(Refusal(tool=str(d.get("tool_name") or "?"), target=call_target(d.get("tool_input")),
                               tool_use_id=use_id))
        return tuple(out)

    def finish(
        self,
        exit_code: int | None,
        *,
        duration_s: float,
        stderr_tail: str = "",
        timed_out: bool = False,
        stalled: bool = False,
        killed: bool = False,
    ) -> LinkResult:
        res = self.result or {}
        usage = res.get("usage") if isinstance(res.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        text = res.get("result") if isinstance(res.get("result"), str) else self.last_text
        denials = res.get("permission_denials")
        denial_names = tuple(
            str(d.get("tool_name", d)) if isinstance(d, dict) else str(d)
            for d in (denials if isinstance(denials, list) else [])
        )
        status = res.get("api_error_status")
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        cls, message = self._classify(exit_code, res, text or "", status, stderr_tail, timed_out, stalled, killed)
        return LinkResult(
            error_class=cls,
            text=text or "",
            session_id=res.get("session_id") if isinstance(res.get("session_id"), str) else self.session_id,
            model=self._model_used(res),
            cost_usd=_number(res.get("total_cost_usd")),
            input_tokens=int(_number(usage.get("input_tokens"))),
            output_tokens=int(_number(usage.get("output_tokens"))),
            turns=int(_number(res.get("num_turns"))) or self.turns,
            duration_s=duration_s,
            exit_code=exit_code,
            api_error_status=status,
            error_message=message,
            permission_denials=denial_names,
            refusals=self._all_refusals(denials),
            tool_calls=self.tool_calls,
            resets_at_epoch=self.resets_at_epoch,
            stderr_tail=stderr_tail,
        )

    def _model_used(self, res: dict[str, Any]) -> str | None:
        usage = res.get("modelUsage")
        if isinstance(usage, dict) and usage:
            return str(next(iter(usage)))
        return self.model

    def _classify(
        self, exit_code: int | None, res: dict[str, Any], text: str, status: int | None,
        stderr_tail: str, timed_out: bool, stalled: bool, killed: bool,
    ) -> tuple[ErrorClass, str]:
        if killed:
            return ErrorClass.KILLED, "stopped on request"
        if timed_out:
            return ErrorClass.TIMEOUT, "timed out"
        if stalled:
            return ErrorClass.STALLED, "no output for too long"
        if not res:
            if exit_code == 0 and self.lines == 0:
                return ErrorClass.CRASHED, "claude printed nothing (exit 0)"
            tail = stderr_tail.strip().splitlines()[-1:] or [f"exit code {exit_code}"]
            return ErrorClass.CRASHED, f"no result (exit {exit_code}): {tail[0][:300]}"
        subtype = str(res.get("subtype") or "")
        if subtype == "error_max_budget_usd":
            errors = res.get("errors")
            said = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], str) else ""
            return ErrorClass.BUDGET, said[:300] or "the link's budget (--max-budget-usd) is used up"
        if res.get("is_error") is True or subtype.startswith("error"):
            lowered = text.lower()
            if status == 401 or self.assistant_error == "authentication_failed" or "authenticate" in lowered or "not logged in" in lowered or "invalid api key" in lowered:
                return ErrorClass.AUTH, text[:300] or "authentication failed"
            if status == 429 or self.rate_limit_error or (_LIMIT_TEXT.search(text) and "limit" in lowered):
                return ErrorClass.RATE_LIMITED, text[:300] or "rate limited"
            if status == 529 or "overloaded" in lowered:
                return ErrorClass.OVERLOADED, text[:300] or "overloaded"
            if status == 404 or self.assistant_error == "model_not_found" or "not_found" in lowered or "model not found" in lowered:
                return ErrorClass.NOT_FOUND, text[:300] or "not found"
            if subtype.startswith("error_"):
                return ErrorClass.API_ERROR, subtype.removeprefix("error_").replace("_", " ")
            return ErrorClass.API_ERROR, text[:300] or f"API error {status}"
        if exit_code not in (0, None):
            return ErrorClass.CRASHED, f"exit code {exit_code}"
        return ErrorClass.OK, ""


def _result_text(content: Any) -> str:
    """A tool_result's content: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)
