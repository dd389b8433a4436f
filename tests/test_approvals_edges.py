"""Approval rules (engine/approvals.py) on the inputs tests/test_approvals.py's tables leave out:
escapes inside and outside double quotes, `$(` inside double quotes left open, a Bash call
without a command string, `?` in path patterns, `~/` and `//` path patterns, a rule on a tool
that is neither Bash, a file tool nor WebFetch, and a call with nothing to describe. Pure."""

from __future__ import annotations

import os

import pytest

from engine.approvals import Rule, command_parts, describe


@pytest.mark.parametrize(("command", "parts"), [
    (r'echo "a \" && b" && ls', [r'echo "a \" && b"', "ls"]),
    (r"echo a\;b ; ls", [r"echo a\;b", "ls"]),
    ('echo "$(date" && ls', None),
    ('echo "x $(rm -rf y) z"', ['echo "x  z"', "rm -rf y"]),
    ("echo `whoami", None),
])
def test_command_parts_of_escapes_and_open_substitutions(command: str, parts: list[str] | None) -> None:
    """Red with command_parts' escape handling inside or outside quotes dropped (the escaped
    quote or `;` would cut the command). (Its `end < 0` check for a `$(` left open inside quotes
    is not observable here: without it the scan restarts and the same `$(` ends it as None.)"""
    assert command_parts(command) == parts


def test_a_bash_call_without_a_command_string_is_asked_never_allowed() -> None:
    """Red with Rule.matches' non-string command case dropped (it would fail on None) or inverted
    (an allow rule covering a call it cannot read)."""
    rule = Rule.parse("Bash(git status)")
    assert not rule.matches("Bash", {"command": None}, "/w", every_part=True)
    assert rule.matches("Bash", {"command": 7}, "/w", every_part=False)


def test_path_patterns_with_a_question_mark_home_and_double_slash() -> None:
    """Red with _glob_regex's `?` case dropped (a literal '?'), `~/` not expanded, or `//` not
    read as the filesystem root."""
    assert Rule.parse("Read(notes?.md)").matches("Read", {"file_path": "notes1.md"}, "/w", every_part=True)
    assert not Rule.parse("Read(notes?.md)").matches("Read", {"file_path": "notes/x.md"}, "/w", every_part=True)
    home = os.path.expanduser("~")
    assert Rule.parse("Edit(~/x/*.py)").matches("Edit", {"file_path": f"{home}/x/a.py"}, "/w", every_part=True)
    assert Rule.parse("Read(//etc/*)").matches("Read", {"file_path": "/etc/hosts"}, "/w", every_part=True)
    assert not Rule.parse("Read(//etc/*)").matches("Read", {"file_path": "etc/hosts"}, "/w", every_part=True)


def test_a_rule_on_another_tool_matches_its_first_text_argument() -> None:
    """Red with Rule.matches' generic fallback removed or matching anything."""
    rule = Rule.parse("WebSearch(claude *)")
    assert rule.matches("WebSearch", {"query": "claude code docs", "n": 3}, "/w", every_part=False)
    assert not rule.matches("WebSearch", {"query": "other"}, "/w", every_part=False)
    assert not rule.matches("WebSearch", {"n": 3}, "/w", every_part=False)


def test_a_call_with_nothing_readable_is_described_as_nothing() -> None:
    """Red with describe's empty fallback changed (e.g. the tool input's repr would show)."""
    assert describe("Task", {"n": 1, "command": ""}) == ""
    assert describe("Bash", {"command": "ls"}) == "ls"
