"""Chain validation (engine/chains.py) on the fields tests/test_chains.py's tables leave out:
the original's extra sections (`shutdown`, `telegram`, `task_pools`, `opus_deep_limit`), an
`approve` that is not an object or sits on a command link, an empty model or prompt. Each problem
comes back with the file, the field path and the reason; each oddity as a warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.chains import load_chain
from engine.errors import InvalidChain

LINK = {"name": "w", "model": "sonnet", "prompt": "do the work"}


def load(home: Path, doc: Any) -> Any:
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    return load_chain(home, "t")


@pytest.mark.parametrize(("doc", "message"), [
    ({"chain_name": 5}, "chain_name: expected a string, got a number (5)"),
    ({"version": [1]}, "version: expected a string or a number, got a list"),
    ({"shutdown": "now"}, "shutdown: expected an object, got a string ('now')"),
    ({"telegram": True}, "telegram: expected an object, got"),
    ({"approve": ["Bash"]}, "approve: expected an object with ask, deny, timeout_minutes, on_timeout, got a list"),
    ({"links": [{**LINK, "model": "  "}]}, "links[0].model: empty model name"),
    ({"links": [{**LINK, "prompt": "   "}]}, "links[0].prompt: empty prompt"),
    ({"links": [{**LINK, "env": ["A=1"]}]}, "links[0].env: expected an object of NAME: value, got a list"),
])
def test_chain_errors_name_the_field(home: Path, doc: dict[str, Any], message: str) -> None:
    """Red with any of these checks in the validator dropped (the chain would load)."""
    with pytest.raises(InvalidChain) as info:
        load(home, {"links": [LINK]} | doc)
    assert any(p.startswith("chains/t.json: ") and message in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize(("doc", "warning"), [
    ({"task_pools": {}}, "task_pools: not used by llmauto"),
    ({"shutdown": {"stop_file": "STOP", "grace": 1}}, "shutdown.stop_file: ignored: the stop file is state/t/STOP"),
    ({"shutdown": {"grace": 1}}, "shutdown.grace: unknown field (ignored)"),
    ({"telegram": {"colour": "red"}}, "telegram.colour: unknown field (ignored)"),
    ({"approve": {"ask": [], "colour": 1}}, "approve.colour: unknown field (ignored)"),
    ({"opus_deep_limit": 2}, "opus_deep_limit: no link named opus-deep: ignored"),
    ({"links": [{**LINK, "task_pool": "x"}]}, "links[0].task_pool: not used by llmauto"),
    ({"links": [{"name": "c", "command": ["true"], "approve": {"ask": ["Bash"]}}]},
     "links[0].approve: a command link asks nobody: ignored"),
])
def test_chain_oddities_are_warnings(home: Path, doc: dict[str, Any], warning: str) -> None:
    """Red with any of these warnings dropped (the field would be ignored silently)."""
    chain = load(home, {"links": [LINK]} | doc)
    assert any(warning in w for w in chain.warnings), chain.warnings
