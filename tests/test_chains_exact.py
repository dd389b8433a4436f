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
