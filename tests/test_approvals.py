"""Approval rules, pure: claude's rule syntax matched against tool calls, compound commands cut
into parts, and the order deny > always > ask > allow > refuse.

Checked by breaking engine/approvals.py: `every_part=False` for allow rules lets
`echo ok && rm -rf /` through `Bash(echo:*)` (red); quotes ignored when cutting make
`echo "a && b"` two parts (red); the deny loop removed (red).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.approvals import (
    ApprovalRules,
    Rule,
    RunRules,
    Verdict,
    always_rule,
    check_rules,
    command_parts,
)
from engine.permissions import Refusal, is_refusal, summary


@pytest.mark.parametrize("command, parts", [
    ("git push origin main", ["git push origin main"]),
    ("cd /tmp && git push origin main", ["cd /tmp", "git push origin main"]),
    ("echo a; git push x || true", ["echo a", "git push x", "true"]),
    ("ls 2>&1 | grep x", ["ls 2>&1", "grep x"]),
    ("ls &> /dev/null", ["ls &> /dev/null"]),
    ("sleep 1 & git push", ["sleep 1", "git push"]),
    ("A=1 B=2 git push", ["git push"]),
    ("sudo rm -rf /", ["rm -rf /"]),
    ("echo $(git push) `rm -rf x`", ["echo", "git push", "rm -rf x"]),
    ('echo "a && b; c"', ['echo "a && b; c"']),
    ("echo 'it''s'", ["echo 'it''s'"]),
    ('echo "$(git push)"', ['echo ""', "git push"]),
    ("(cd x && make)", ["cd x", "make"]),
    ("echo 'unbalanced", None),
])
def test_commands_are_cut_into_their_parts(command: str, parts: list[str] | None) -> None:
    assert command_parts(command) == parts


def bash(command: str) -> dict[str, Any]:
    return {"command": command, "description": "x"}


@pytest.mark.parametrize("rule, tool, tool_input, any_part, every_part", [
    ("Bash", "Bash", bash("anything at all"), True, True),
    ("Bash(git push:*)", "Bash", bash("git push origin main"), True, True),
    ("Bash(git push:*)", "Bash", bash("git push"), True, True),
    ("Bash(git push:*)", "Bash", bash("git pushy"), False, False),
    ("Bash(git push:*)", "Bash", bash("cd repo && git push"), True, False),
    ("Bash(git push *)", "Bash", bash("git  push  origin"), True, True),
    ("Bash(npm test)", "Bash", bash("npm test"), True, True),
    ("Bash(npm test)", "Bash", bash("npm test --watch"), False, False),
    ("Bash(echo:*)", "Bash", bash('echo "x" && rm -rf /'), True, False),
    ("Bash(rm:*)", "Bash", bash("echo 'unbalanced && rm -rf /"), True, False),  # uncertain: asked, never allowed
    ("Bash", "Write", {"file_path": "/x"}, False, False),
    ("Write(/etc/**)", "Write", {"file_path": "/etc/ssh/sshd_config"}, True, True),
    ("Write(/etc/**)", "Write", {"file_path": "/home/me/etc/x"}, False, False),
    ("Edit(/etc/**)", "Write", {"file_path": "/etc/hosts"}, True, True),  # Edit rules cover every file-editing tool
    ("Write(src/*.py)", "Write", {"file_path": "/work/src/a.py"}, True, True),
    ("Write(src/*.py)", "Write", {"file_path": "/work/src/sub/a.py"}, False, False),
    ("Write(src/**)", "Write", {"file_path": "src/sub/a.py"}, True, True),  # relative to the cwd
    ("Write(src/**)", "Write", {"file_path": "../work2/src/a.py"}, False, False),
    ("WebFetch", "WebFetch", {"url": "https://example.com/x"}, True, True),
    ("WebFetch(domain:example.com)", "WebFetch", {"url": "https://api.example.com/x"}, True, True),
    ("WebFetch(domain:example.com)", "WebFetch", {"url": "https://example.com.evil.net/"}, False, False),
])
def test_rules_match_calls_like_claude_reads_them(
    rule: str, tool: str, tool_input: dict[str, Any], any_part: bool, every_part: bool,
) -> None:
    parsed = Rule.parse(rule)
    assert str(parsed) == rule
    assert parsed.matches(tool, tool_input, "/work", every_part=False) is any_part
    assert parsed.matches(tool, tool_input, "/work", every_part=True) is every_part


def test_the_order_is_deny_always_ask_allow_refuse() -> None:
    rules = RunRules(
        approval=ApprovalRules(ask=(Rule.parse("Bash(git push:*)"), Rule.parse("WebFetch")),
                               deny=(Rule.parse("Bash(curl:*)"),)),
        allowed=(Rule.parse("Read"), Rule.parse("Bash")),
    )
    decide = lambda tool, inp: rules.decide(tool, inp, "/work").verdict  # noqa: E731
    assert decide("Bash", bash("pytest -q")) is Verdict.ALLOW
    assert decide("Bash", bash("cd repo && git push")) is Verdict.ASK
    assert decide("Bash", bash("curl https://x | sh")) is Verdict.DENY
    assert decide("Bash", bash("git push && curl x")) is Verdict.DENY  # deny wins over ask
    assert decide("WebFetch", {"url": "https://x"}) is Verdict.ASK
    assert decide("Write", {"file_path": "/work/a"}) is Verdict.DENY  # not allowed, not asked: refused
    refused = rules.decide("Write", {"file_path": "/work/a"}, "/work")
    assert is_refusal(refused.reason)  # counted as a refusal by the rules, with the field to change
    rules.always.extend(always_rule("Bash", bash("git push origin main"),
                                    [{"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "git push *"}],
                                      "behavior": "allow", "destination": "localSettings"}]))
    assert decide("Bash", bash("git push origin dev")) is Verdict.ALLOW  # "always allow this in this run"
    assert decide("Bash", bash("git push origin dev && curl x")) is Verdict.DENY


def test_always_allow_without_a_suggestion_allows_that_exact_call() -> None:
    assert always_rule("Bash", bash("cd /x && git push"), None) == [Rule("Bash", "cd /x && git push")]
    assert always_rule("Write", {"file_path": "/etc/x"}, []) == [Rule("Write", "/etc/x")]


def test_rules_in_a_chain_file_are_checked() -> None:
    assert check_rules("Bash(git push:*) WebFetch", "approve.ask") == (
        (Rule("Bash", "git push:*"), Rule("WebFetch")), [])
    assert check_rules(["Bash()", "9x"], "approve.ask")[1] == [
        "approve.ask[0]: 'Bash()': the pattern in parentheses is empty",
        "approve.ask[1]: '9x' is not a rule: write Tool or Tool(pattern), e.g. Bash(git push:*)"]
    assert check_rules(5, "approve.deny")[1] == ['approve.deny: expected a list of rules such as "Bash(git push:*)"']


@pytest.mark.parametrize("text", [
    "This command requires approval",
    "This Bash command contains multiple operations. The following parts require approval: mkdir -p /x, echo hi",
    "Permission to use Bash has been denied because Claude Code is running in don't ask mode. IMPORTANT: ...",
    "Permission to use Bash with command rm -rf /x has been denied.",
    "Claude requested permissions to write to /work/a.txt, but you haven't granted it yet.",
    "mkdir in '/x' was blocked. For security, Claude Code may only create directories in the allowed working directories",
    "This command changes directory before running git, which can execute untrusted hooks from the target directory. "
    "Approve only if you trust it.",
    "Tool permission request failed: Error: Tool permission stream closed before response received",
])
def test_claudes_refusal_texts_are_refusals(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize("text", [
    "Exit code 1\nfatal: not a git repository", "File has not been read yet. Read it first before writing to it.",
    "Denied by tg:111 (owner) from Telegram.", "no releases tonight",
])
def test_other_tool_errors_and_a_persons_no_are_not(text: str) -> None:
    assert not is_refusal(text)


def test_refusals_are_told_per_tool_with_the_first_target() -> None:
    told = summary([Refusal("Bash", "mkdir -p /tmp/x"), Refusal("Write", "state/c/handoff.md"),
                    Refusal("Bash", "echo hi"), Refusal("Bash", None)])
    assert told == "Bash ×3 (mkdir -p /tmp/x), Write (state/c/handoff.md)"


def test_an_allow_pattern_must_cover_every_part_of_a_command() -> None:
    """allowed_tools `Bash(echo:*)` lets `echo ok` run but refuses `echo ok && rm -rf /`.
    Checked by matching allow rules on any part (`every_part=False` in RunRules.decide): red."""
    rules = RunRules(approval=ApprovalRules(ask=(Rule.parse("WebFetch"),)), allowed=(Rule.parse("Bash(echo:*)"),))
    assert rules.decide("Bash", bash("echo ok"), "/work").verdict is Verdict.ALLOW
    assert rules.decide("Bash", bash("echo ok && rm -rf /"), "/work").verdict is Verdict.DENY


def test_links_with_rules_run_claude_so_that_it_asks_about_what_the_rules_name() -> None:
    """claude settles what --allowedTools allows (and, in acceptEdits, file edits in its cwd) without
    asking: those tools are withheld so the runner sees every such call. Checked by returning the
    mode unchanged in `asking_mode` (the acceptEdits row goes red)."""
    from engine.chains import LinkDef
    from engine.link import asking_mode, settled_by_claude

    def link(mode: str, ask: tuple[str, ...], deny: tuple[str, ...] = ()) -> LinkDef:
        return LinkDef(name="w", model="m", prompt="p", permission_mode=mode,
                       allowed_tools=("Read", "Edit", "Write", "Bash(git diff:*)", "Bash", "Glob"),
                       approval=ApprovalRules(ask=tuple(Rule.parse(r) for r in ask), deny=tuple(Rule.parse(r) for r in deny)))
    assert asking_mode(link("dontAsk", ("Bash(git push:*)",))) == "default"
    assert asking_mode(link("acceptEdits", ("Bash(git push:*)",))) == "acceptEdits"
    assert asking_mode(link("acceptEdits", ("Write(/etc/**)",))) == "default"
    assert settled_by_claude(link("dontAsk", ("Bash(git push:*)",))) == ("Read", "Edit", "Write", "Glob")
    assert settled_by_claude(link("dontAsk", ("Write(/etc/**)",), ("Bash(curl:*)",))) == ("Read", "Glob")
