"""Approval rules: which tool calls of a link run at once, which are refused, and which wait for a
person's answer on the phone. Pure: a call and the rules in, a verdict out.

A chain (or a link) names them in `approve`:

    "approve": {"ask": ["Bash(git push:*)", "Bash(rm:*)", "Write(/etc/**)", "WebFetch"],
                "deny": ["Bash(curl:*)"], "timeout_minutes": 30, "on_timeout": "deny"}

in the claude CLI's own rule syntax: `Tool`, `Tool(prefix:*)`, `Tool(glob *)`, `Tool(exact)`; for file
tools a path glob (`/` absolute, else relative to the link's working directory; `**` any depth),
for WebFetch `domain:host`. The order of the verdict is claude's: deny, then ask, then allow; a
rule added by "Always allow this in this run" allows before ask. What no rule allows is refused,
as claude's dontAsk mode would.

The runner matches here rather than handing the ask rules to claude: measured with 2.1.197, the
CLI's own `ask` rule `Bash(git push:*)` does not catch `cd /repo && git push`. A Bash command is
cut into its parts (`&&`, `||`, `;`, `|`, newlines, `$(...)` and backticks, leading `VAR=value`
and `cd`): an ask or deny rule that matches ANY part applies, an allow rule must match EVERY
part. A command this cannot cut for sure fails closed: it is asked, or refused.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from engine.records import Record

FILE_TOOLS = frozenset({"Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "Glob", "Grep"})
# claude: "Edit rules apply to all built-in tools that edit files"; Read rules to those that read.
_FAMILIES = {"Edit": frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"}), "Read": frozenset({"Read", "Glob", "Grep"})}
ON_TIMEOUT = ("deny", "stop_chain")
DEFAULT_TIMEOUT_MIN = 30.0
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_SEPARATORS = re.compile(r"&&|\|\||\|&|;|\||\n|&")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*\s+")


class Verdict(StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Rule(Record):
    """One rule: a tool name and, optionally, what its argument must look like."""

    tool: str
    content: str | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a rule: write Tool or Tool(pattern), e.g. Bash(git push:*)")
        content = match.group(2)
        if content is not None and not content.strip():
            raise ValueError(f"{text!r}: the pattern in parentheses is empty")
        return cls(match.group(1), content.strip() if content is not None else None)

    def __str__(self) -> str:
        return self.tool if self.content is None else f"{self.tool}({self.content})"

    def names(self, tool: str) -> bool:
        return tool == self.tool or tool in _FAMILIES.get(self.tool, ())

    def matches(self, tool: str, tool_input: Mapping[str, Any], cwd: str, *, every_part: bool) -> bool:
        """Does this rule cover the call? For Bash, `every_part` asks that each part of a compound
        command match (allow rules), else any part (ask and deny rules)."""
        if not self.names(tool):
            return False
        if self.content is None:
            return True
        if tool == "Bash":
            command = tool_input.get("command")
            if not isinstance(command, str):
                return not every_part
            parts = command_parts(command)
            if parts is None:  # cannot be cut for sure: never allowed by a pattern, always asked/denied
                return not every_part
            hits = [_command_matches(self.content, part) for part in parts]
            return all(hits) if every_part else any(hits)
        if tool in FILE_TOOLS:
            path = next((tool_input.get(k) for k in ("file_path", "notebook_path", "path") if isinstance(tool_input.get(k), str)), None)
            return path is not None and _path_matches(self.content, path, cwd)
        if tool == "WebFetch" and self.content.startswith("domain:"):
            url = tool_input.get("url")
            host = urlsplit(url).hostname if isinstance(url, str) else None
            want = self.content.removeprefix("domain:").lower()
            return host is not None and (host.lower() == want or host.lower().endswith("." + want))
        target = next((v for v in tool_input.values() if isinstance(v, str)), "")
        return fnmatch.fnmatchcase(target, self.content)


def parse_rules(values: Iterable[str]) -> tuple[Rule, ...]:
    return tuple(Rule.parse(v) for v in values)


def command_parts(command: str) -> list[str] | None:
    """The simple commands of a shell command line (cut at `&&`, `||`, `;`, `|`, `&`, newlines,
    outside quotes; `$(...)` and backticks cut out as commands of their own), each without leading
    `VAR=x` assignments and `sudo`/`exec`/... ; None when the quoting is unbalanced."""
    parts: list[str] = []
    inner: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(command):
        ch = command[i]
        if quote:
            if ch == "\\" and quote == '"' and i + 1 < len(command):
                current.append(command[i:i + 2])
                i += 2
                continue
            if ch == quote:
                quote = None
            elif quote == '"' and command.startswith("$(", i):
                end = command.find(")", i)
                if end < 0:
                    return None
                inner.append(command[i + 2:end])
                i = end + 1
                continue
            current.append(ch)
            i += 1
            continue
        if ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == "\\" and i + 1 < len(command):
            current.append(command[i:i + 2])
            i += 2
            continue
        elif command.startswith("$(", i) or ch == "`":
            close = command.find(")" if ch == "$" else "`", i + (2 if ch == "$" else 1))
            if close < 0:
                return None
            inner.append(command[i + (2 if ch == "$" else 1):close])
            i = close + 1
            continue
        elif _SEPARATORS.match(command, i) and not (ch == "&" and (command[i - 1:i] in (">", "<") or command[i + 1:i + 2] == ">")):
            parts.append("".join(current))
            current = []
            i = _SEPARATORS.match(command, i).end()  # type: ignore[union-attr]
            continue
        else:
            current.append(ch)
        i += 1
    if quote:
        return None
    parts.append("".join(current))
    for sub in inner:
        found = command_parts(sub)
        if found is None:
            return None
        parts.extend(found)
    out = []
    for piece in parts:
        piece = piece.strip().lstrip("(").rstrip(")").strip()
        while (m := _ASSIGNMENT.match(piece)) is not None:
            piece = piece[m.end():]
        for prefix in ("sudo ", "exec ", "command ", "nohup ", "time "):
            if piece.startswith(prefix):
                piece = piece[len(prefix):].strip()
        if piece:
            out.append(piece)
    return out


def _command_matches(pattern: str, command: str) -> bool:
    words = " ".join(command.split())
    if pattern.endswith(":*"):
        prefix = " ".join(pattern[:-2].split())
        return words == prefix or words.startswith(prefix + " ")
    if "*" in pattern:
        return fnmatch.fnmatchcase(words, " ".join(pattern.split()))
    return words == " ".join(pattern.split())


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _path_matches(pattern: str, path: str, cwd: str) -> bool:
    absolute = os.path.normpath(path if os.path.isabs(path) else os.path.join(cwd, path))
    if pattern.startswith("~/"):
        pattern = os.path.expanduser(pattern)
    elif pattern.startswith("//"):
        pattern = pattern[1:]
    elif not pattern.startswith("/"):
        pattern = os.path.join(cwd, pattern.removeprefix("./"))
    return bool(_glob_regex(pattern).match(absolute))


@dataclass
class Decision:
    """A person's answer to one request (the desk of the run that asked applies it)."""

    approve: bool
    by: str
    message: str | None = None
    always: bool = False


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ApprovalRules(Record):
    """A link's `approve` settings, parsed."""

    ask: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_MIN * 60
    on_timeout: str = "deny"

    def __bool__(self) -> bool:
        # Deny rules alone count too: a chain that only says `approve.deny` must still have its
        # calls matched by the runner (claude's own deny rules miss `cd x && curl ...`).
        return bool(self.ask or self.deny)

    def asked_tools(self) -> frozenset[str]:
        """Tools some calls of which are asked: claude must not settle them (they stay out of
        --allowedTools, so claude hands every call of them to the runner)."""
        return frozenset(t for r in self.ask for t in (r.tool, *_FAMILIES.get(r.tool, ())))


@dataclass
class CallDecision:
    verdict: Verdict
    rule: Rule | None = None
    reason: str = ""


@dataclass
class RunRules:
    """A run's rules for one link: its own and those a person added for the rest of the run."""

    approval: ApprovalRules
    allowed: tuple[Rule, ...]
    always: list[Rule] = field(default_factory=list)

    def decide(self, tool: str, tool_input: Mapping[str, Any], cwd: str) -> CallDecision:
        for rule in self.approval.deny:
            if rule.matches(tool, tool_input, cwd, every_part=False):
                return CallDecision(Verdict.DENY, rule, f"Permission to use {tool} has been denied by the rule {rule} (approve.deny).")
        for rule in self.always:
            if rule.matches(tool, tool_input, cwd, every_part=True):
                return CallDecision(Verdict.ALLOW, rule, "allowed for the rest of the run")
        for rule in self.approval.ask:
            if rule.matches(tool, tool_input, cwd, every_part=False):
                return CallDecision(Verdict.ASK, rule)
        for rule in self.allowed:
            if rule.matches(tool, tool_input, cwd, every_part=True):
                return CallDecision(Verdict.ALLOW, rule)
        return CallDecision(Verdict.DENY, None, f"Permission to use {tool} has been denied: it is not in this link's "
                                                "allowed_tools and no approve.ask rule asks for it.")


def suggested_rules(suggestions: Any) -> list[Rule]:
    """The rules claude suggests for "always allow" (`permission_suggestions` of a request)."""
    out: list[Rule] = []
    for item in suggestions if isinstance(suggestions, list) else []:
        if not isinstance(item, Mapping) or item.get("behavior", "allow") != "allow":
            continue
        for r in item.get("rules") or []:
            if isinstance(r, Mapping) and isinstance(r.get("toolName"), str):
                content = r.get("ruleContent")
                out.append(Rule(r["toolName"], content if isinstance(content, str) and content else None))
    return out


def always_rule(tool: str, tool_input: Mapping[str, Any], suggestions: Any) -> list[Rule]:
    """What "Always allow this in this run" adds: claude's suggestion, else this exact call."""
    found = suggested_rules(suggestions)
    if found:
        return found
    command = tool_input.get("command") if tool == "Bash" else None
    if isinstance(command, str):
        return [Rule("Bash", command)]
    path = tool_input.get("file_path")
    return [Rule(tool, path if isinstance(path, str) else None)]


def check_rules(values: Any, field_path: str) -> tuple[tuple[Rule, ...], list[str]]:
    """Rules from a chain file: a list of strings, or one string (split like allowed_tools)."""
    from engine.settings import split_tools

    if isinstance(values, str):
        values = list(split_tools(values))
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return (), [f"{field_path}: expected a list of rules such as \"Bash(git push:*)\""]
    rules: list[Rule] = []
    problems: list[str] = []
    for i, value in enumerate(values):
        try:
            rules.append(Rule.parse(value))
        except ValueError as exc:
            problems.append(f"{field_path}[{i}]: {exc}")
    return tuple(rules), problems


def describe(tool: str, tool_input: Mapping[str, Any]) -> str:
    """The call as a person reads it: the command, or the tool and its path or URL."""
    for key in ("command", "file_path", "notebook_path", "path", "url", "pattern", "query"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
