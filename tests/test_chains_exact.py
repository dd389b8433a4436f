"""A link's prompt, env and tools as `load_chain` reads them, by table, with the *whole* answer:
every problem's exact text (field path and reason) or the prompt's text, its source, the env and
the tools. tests/test_chains.py checks that a problem's text *contains* a phrase; the mutation run
(tests/MUTATION.md) left alive mutants of `_Loader.prompt_file`, `link_prompt`, `env_map` and
`tools` that dropped the field path, emptied or reworded a reason, or changed a source label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.chains import MAX_PROMPT_BYTES, load_chain
from engine.errors import InvalidChain

TOOLS = ("Read", "Edit", "Write", "Bash", "Glob", "Grep")  # the global default


def _answer(home: Path, link: dict[str, Any]) -> tuple[Any, ...]:
    (home / "prompts" / "big.md").write_text("x" * (MAX_PROMPT_BYTES + 1), encoding="utf-8")
    (home / "prompts" / "exact.md").write_text("y" * MAX_PROMPT_BYTES, encoding="utf-8")
    (home / "prompts" / "latin.md").write_bytes(b"caf\xe9")
    (home / "prompts" / "plan.txt").write_text("plan text", encoding="utf-8")
    (home / "notes.md").write_text("home note", encoding="utf-8")
    doc = {"links": [{"name": "w", "model": "m", **link}]}
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        chain = load_chain(home, "t")
    except InvalidChain as exc:
        return ("problems", *exc.problems)
    first = chain.links[0]
    return (first.prompt[:12], first.prompt_source, dict(first.env), first.allowed_tools, *chain.warnings)


P = "chains/t.json: links[0]."


@pytest.mark.parametrize(("link", "answer"), [
    ({"prompt": ""}, ("problems", P + "prompt: empty prompt")),
    ({"prompt": "   "}, ("problems", P + "prompt: empty prompt")),
    ({"prompt": ["x"]}, ("problems", P + "prompt: expected a prompt key, a file in prompts/, or text, got a list")),
    ({"prompt": "/etc/passwd"},
     ("problems", P + "prompt: '/etc/passwd': absolute paths are not allowed; use a path inside the home folder")),
    ({"prompt": "../x.md"}, ("problems", P + "prompt: '../x.md' leads outside the home folder")),
    ({"prompt": "big.md"}, ("problems", P + "prompt: 'big.md' is larger than 262,144 bytes")),
    ({"prompt": "exact.md"}, ("y" * 12, "prompts/exact.md", {}, TOOLS)),  # exactly the limit: read
    ({"prompt": "latin.md"}, ("problems", P + "prompt: 'latin.md' is not UTF-8 text")),
    ({"prompt": "plan"}, ("plan text", "prompts/plan.txt", {}, TOOLS)),
    ({"prompt": "notes"}, ("home note", "notes.md", {}, TOOLS)),  # in the home folder
    ({"prompt": "missing.md"}, ("problems", P + "prompt: no prompt key or file 'missing.md'")),
    ({"prompt": "missing.txt"}, ("problems", P + "prompt: no prompt key or file 'missing.txt'")),
    ({"prompt": "sub/missing"}, ("problems", P + "prompt: no prompt key or file 'sub/missing'")),
    ({"prompt": "bareword"}, ("bareword", "inline", {}, TOOLS,
                              "chains/t.json: links[0].prompt: 'bareword' is used as the prompt text itself: there is "
                              "no prompts key 'bareword' and no file prompts/bareword, prompts/bareword.txt or "
                              "prompts/bareword.md")),
    ({"prompt": "two words"}, ("two words", "inline", {}, TOOLS)),
    ({"prompt": "p q", "env": ["A"]}, ("problems", P + "env: expected an object of NAME: value, got a list")),
    ({"prompt": "p q", "env": {"A": "1", "B C": "2", "D": 3}},
     ("problems", P + "env.B C: not a valid environment variable name", P + "env.D: expected a string, got a number (3)")),
    ({"prompt": "p q", "env": {"A": "1"}}, ("p q", "inline", {"A": "1"}, TOOLS)),
    ({"prompt": "p q", "allowed_tools": {"a": 1}},
     ("problems", P + "allowed_tools: expected a list of tool names or a space-separated string, got an object")),
    ({"prompt": "p q", "allowed_tools": [" Read ", "", "Edit"]}, ("p q", "inline", {}, ("Read", "Edit"))),
    ({"prompt": "p q", "allowed_tools": "Read  Edit"}, ("p q", "inline", {}, ("Read", "Edit"))),
])
def test_link_prompt_env_tools_whole_answer(home: Path, link: dict[str, Any], answer: tuple[Any, ...]) -> None:
    """Kills the survivors listed in tests/MUTATION.md under `chains` (field path -> None, reason ->
    None / dropped / "XX..XX" / upper case, `kind_of(value)` -> `kind_of(None)`, `> MAX_PROMPT_BYTES`
    -> `>=`, `"inline"` reworded, `".txt"` reworded). Checked by hand: `"empty prompt"` made
    `"EMPTY PROMPT"` turns the first two rows red; `st_size > MAX` made `>=` turns "exact.md" red."""
    assert _answer(home, link) == answer


GOOD = json.dumps({"links": [{"name": "w", "model": "m", "prompt": "p q"}]}).encode()


@pytest.mark.parametrize(("raw", "problem"), [
    (b"x" * (1024 * 1024 + 1), "file is 1,048,577 bytes, over the 1,048,576-byte limit"),
    (GOOD + b" " * (1024 * 1024 - len(GOOD)), None),  # exactly the limit: read
    ("\ufeff".encode() + GOOD, None),  # a byte order mark is allowed
    (b'{"links": "\xff"}', "not UTF-8 text (invalid byte at offset 11)"),
    (b"  \n", "the file is empty"),
    (b'{"links": NaN}', "invalid JSON: NaN is not allowed"),
    (b'{"links": [}', "line 1 column 12: invalid JSON: Expecting value"),
    (b"[" * 100000, "invalid JSON: nested too deeply"),
    (b"[]", "the top level must be an object, got a list"),
    (b'"text"', "the top level must be an object, got a string ('text')"),
])
def test_the_file_itself_whole_problem(home: Path, raw: bytes, problem: str | None) -> None:
    """Kills `_Loader._document`'s mutants that raised `InvalidChain(None)` instead of the problem,
    `size > MAX_CHAIN_BYTES` -> `>=`, `parse_constant=_reject_constant` -> None / dropped (NaN
    accepted), `_reject_constant`'s message -> None, and `kind_of(doc)` -> `kind_of(None)`.
    Checked by hand: `size > MAX_CHAIN_BYTES` made `>=` turns the second row red."""
    (home / "chains" / "t.json").write_bytes(raw)
    if problem is None:
        assert load_chain(home, "t").links[0].name == "w"
        return
    with pytest.raises(InvalidChain) as info:
        load_chain(home, "t")
    assert info.value.problems == ["chains/t.json: " + problem]


@pytest.mark.parametrize(("extra", "fields"), [
    ({}, ("", 3)),
    ({"description": "nightly"}, ("nightly", 3)),
    ({"shutdown": {"max_consecutive_blocks": 5}}, ("", 5)),  # the original's place for it
    ({"shutdown": {"max_consecutive_blocks": 5}, "max_consecutive_blocks": 0}, ("", 0)),  # the top level wins
])
def test_description_and_the_originals_shutdown_section(home: Path, extra: dict[str, Any],
                                                        fields: tuple[str, int]) -> None:
    """Kills `_Loader.load`'s `description ... or ""` -> `and ""` / default "XXXX" / `or "XXXX"`,
    and the `shutdown` section ignored (`isinstance(...) and False`, its key reworded, its value
    None). Checked by hand: `doc["shutdown"] if isinstance(...) and False` turns row 3 red."""
    doc = {"links": [{"name": "w", "model": "m", "prompt": "p q"}], **extra}
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    chain = load_chain(home, "t")
    assert (chain.description, chain.max_consecutive_blocks) == fields


def test_a_file_outside_the_home_is_named_by_its_path(home: Path, tmp_path: Path) -> None:
    """Kills `_Loader.__init__`'s `self.label = str(path)` -> None / `str(None)` (a file that
    `chain validate` checks before it is copied in)."""
    path = tmp_path / "elsewhere" / "cand.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"links": [{"name": "w", "model": "m", "prompt": "p q"}], "max_rounds": -1}),
                    encoding="utf-8")
    with pytest.raises(InvalidChain) as info:
        load_chain(home, str(path), allow_file=True)
    assert info.value.problems == [f"{path}: max_rounds: must be at least 0, got -1"]


def _approvals(home: Path, doc: dict[str, Any]) -> tuple[Any, ...]:
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        chain = load_chain(home, "t")
    except InvalidChain as exc:
        return ("problems", *exc.problems)
    return (*((link.name, tuple(map(str, link.approval.ask)), tuple(map(str, link.approval.deny)),
               link.approval.timeout_s, link.approval.on_timeout) for link in chain.links), *chain.warnings)


W = {"name": "w", "model": "m", "prompt": "p q"}
RULES = 'expected a list of rules such as "Bash(git push:*)"'


@pytest.mark.parametrize(("doc", "answer"), [
    ({"links": [W], "approve": {"ask": ["Bash(git push:*)"], "deny": "Write", "timeout_minutes": 5,
                                "on_timeout": "stop_chain", "extra": 1}},
     (("w", ("Bash(git push:*)",), ("Write",), 300.0, "stop_chain"),
      "chains/t.json: approve.extra: unknown field (ignored)")),
    ({"links": [W, {**W, "name": "v", "approve": {"ask": "Edit"}}], "approve": {"ask": ["Bash"]}},
     (("w", ("Bash",), (), 1800.0, "deny"), ("v", ("Edit",), (), 1800.0, "deny"))),  # the link's own wins
    ({"links": [W]}, (("w", (), (), 1800.0, "deny"),)),
    ({"links": [W], "approve": ["Bash"]},
     ("problems", "chains/t.json: approve: expected an object with ask, deny, timeout_minutes, on_timeout, got a list")),
    ({"links": [{**W, "approve": {"ask": 5, "deny": [3], "timeout_minutes": 0, "on_timeout": "maybe"}}]},
     ("problems", f"chains/t.json: links[0].approve.ask: {RULES}", f"chains/t.json: links[0].approve.deny: {RULES}",
      "chains/t.json: links[0].approve.timeout_minutes: must be greater than 0, got 0",
      "chains/t.json: links[0].approve.on_timeout: expected one of deny, stop_chain, got 'maybe'")),
])
def test_approve_whole_answer(home: Path, doc: dict[str, Any], answer: tuple[Any, ...]) -> None:
    """Kills `_Loader.approve`'s mutants: no selected test reached a chain's `approve` (only the
    end-to-end approval tests did), so its key, field paths, messages, defaults (30 minutes,
    "deny") and the unknown-field warning all survived. Checked by hand: `where = path + "approve"`
    made `path + "APPROVE"` turns rows 1, 4 and 5 red."""
    assert _approvals(home, doc) == answer


def test_every_chain_field_carried(home: Path) -> None:
    """Kills `_Loader.load`'s mutants that dropped a field from the ChainDef or replaced it by None
    (`path`, `description`, `max_cost_usd`, `env_allow`, `runtime_hours`, the blocked wait's
    minutes -> seconds, `version`'s str()), which only the defaults' test saw, and there the
    default is what None falls back to. Checked by hand: `max_cost_usd=None` turns it red."""
    doc = {"links": [W], "description": "d", "max_rounds": 7, "runtime_hours": 1.5, "max_cost_usd": 2.5,
           "blocked_wait_minutes": 45, "on_blocked": "wait", "max_consecutive_blocks": 2, "version": 2,
           "env_allow": ["PATH"]}
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    c = load_chain(home, "t")
    assert (c.path, c.description, c.max_rounds, c.runtime_hours, c.max_cost_usd, c.blocked_wait_s, c.on_blocked,
            c.max_consecutive_blocks, c.version, c.env_allow) == (
        home / "chains" / "t.json", "d", 7, 1.5, 2.5, 2700.0, "wait", 2, "2", ("PATH",))
    (home / "chains" / "t.json").write_text(json.dumps({**doc, "version": True}), encoding="utf-8")
    with pytest.raises(InvalidChain) as info:
        load_chain(home, "t")
    assert info.value.problems == ["chains/t.json: version: expected a string or a number, got a boolean (true)"]
