"""A corpus of hostile or careless chain files: each gives a precise error (and exit code 2 from the
CLI); and property tests: no document, however odd, makes the loader fail any other way."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.chains import load_chain
from engine.errors import BadChainName, ChainError, InvalidChain
from engine.store import Store
from llmauto.cli import main
from tests.helpers import Cli

OK_LINK = {"name": "w", "model": "m", "prompt": "do it"}

# (file name, raw bytes, expected fragment of the error)
CORPUS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "the file is empty"),
    ("blank", b"   \n\t\n", "the file is empty"),
    ("truncated", b'{"links": [', "line 1 column 12: invalid JSON"),
    ("trailing-comma", b'{"links": [1,],}', "invalid JSON"),
    ("single-quotes", b"{'links': []}", "invalid JSON: Expecting property name enclosed in double quotes"),
    ("nan", b'{"max_rounds": NaN, "links": []}', "NaN is not allowed"),
    ("infinity", b'{"runtime_hours": Infinity, "links": []}', "Infinity is not allowed"),
    ("top-list", b"[1, 2, 3]", "the top level must be an object, got a list"),
    ("top-string", b'"chain"', "the top level must be an object, got a string"),
    ("top-null", b"null", "the top level must be an object, got null"),
    ("latin1", '{"description": "café"}'.encode("latin-1"), "not UTF-8 text (invalid byte at offset"),
    ("binary", bytes(range(256)), "not UTF-8 text"),
    ("no-links", b"{}", "links: expected a non-empty list of links"),
    ("links-null", b'{"links": null}', "links: expected a non-empty list of links"),
    ("negative-rounds", json.dumps({"max_rounds": -5, "links": [OK_LINK]}).encode(), "max_rounds: must be at least 0, got -5"),
    ("negative-hours", json.dumps({"runtime_hours": -1, "links": [OK_LINK]}).encode(), "runtime_hours: must be at least 0"),
    ("negative-cost", json.dumps({"max_cost_usd": -3, "links": [OK_LINK]}).encode(), "max_cost_usd: must be greater than 0"),
    ("huge-rounds-type", json.dumps({"max_rounds": "1e9", "links": [OK_LINK]}).encode(), "max_rounds: expected a whole number"),
    ("bool-as-number", json.dumps({"runtime_hours": True, "links": [OK_LINK]}).encode(), "runtime_hours: expected a number, got a boolean"),
    ("prompt-cycle", json.dumps({"prompts": {"a": {"type": "ref", "key": "b"}, "b": {"type": "ref", "key": "c"}, "c": {"type": "ref", "key": "a"}},
                                 "links": [{**OK_LINK, "prompt": "a"}]}).encode(), "cycle of prompt references a -> b -> c -> a"),
    ("prompt-self-cycle", json.dumps({"prompts": {"a": {"type": "ref", "key": "a"}}, "links": [OK_LINK]}).encode(), "cycle of prompt references a -> a"),
    ("prompt-absolute", json.dumps({"prompts": {"p": {"type": "file", "path": "/etc/passwd"}}, "links": [OK_LINK]}).encode(), "absolute paths are not allowed"),
    ("prompt-escape", json.dumps({"prompts": {"p": {"type": "file", "path": "../../../../etc/passwd"}}, "links": [OK_LINK]}).encode(), "leads outside the home folder"),
    ("link-prompt-escape", json.dumps({"links": [{**OK_LINK, "prompt": "../../../etc/passwd"}]}).encode(), "leads outside the home folder"),
    ("workdir-missing", json.dumps({"workdir": "/nonexistent/dir", "links": [OK_LINK]}).encode(), "workdir: '/nonexistent/dir' is not a directory"),
    ("opus-deep-limit", json.dumps({"opus_deep_limit": -1, "links": [OK_LINK]}).encode(), "opus_deep_limit: must be at least 0, got -1"),
    ("link-number", json.dumps({"links": [42]}).encode(), "links[0]: expected an object, got a number (42)"),
    ("command-string", json.dumps({"links": [{"name": "c", "command": "rm -rf /"}]}).encode(), "links[0].command: expected a non-empty list of strings"),
    ("deep-nesting", b'{"description": ' + b"[" * 100_000 + b"]" * 100_000 + b', "links": []}', "invalid JSON"),
    ("deadline-garbage", json.dumps({"deadline": "soon", "links": [OK_LINK]}).encode(), "deadline: expected an ISO date"),
    ("env-not-strings", json.dumps({"defaults": {"env": {"A": ["x"]}}, "links": [OK_LINK]}).encode(), "defaults.env.A: expected a string, got a list"),
]


def write_raw(home: Path, name: str, raw: bytes) -> None:
    (home / "chains" / f"{name}.json").write_bytes(raw)


@pytest.mark.parametrize("name, raw, fragment", CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_file_gives_a_precise_error(home: Path, name: str, raw: bytes, fragment: str) -> None:
    write_raw(home, name, raw)
    with pytest.raises(InvalidChain) as info:
        load_chain(home, name)
    text = str(info.value)
    assert fragment in text, text
    assert f"chains/{name}.json" in text


def _prompt_file(name: str, content: bytes) -> Callable[[Path, Path], None]:
    def setup(home: Path, tmp: Path) -> None:
        (home / "prompts" / name).write_bytes(content)
    return setup


def _symlinked_chain(home: Path, tmp: Path) -> None:
    target = tmp / "elsewhere.json"
    target.write_text(json.dumps({"links": [OK_LINK]}), encoding="utf-8")
    os.symlink(target, home / "chains" / "sneaky.json")


def _symlinked_prompt(home: Path, tmp: Path) -> None:
    (tmp / "secret.md").write_text("do what the file outside says", encoding="utf-8")
    os.symlink(tmp / "secret.md", home / "prompts" / "outside.md")


# Files beyond CORPUS: (chain name, raw chain file or None when `setup` makes it, setup, fragment).
EXTRA_FILES: list[tuple[str, bytes | None, Callable[[Path, Path], None] | None, str]] = [
    ("huge", b'{"description": "' + b"x" * (2 * 1024 * 1024) + b'", "links": []}', None,
     "over the 1,048,576-byte limit"),
    ("bigprompt", json.dumps({"links": [{**OK_LINK, "prompt": "big.md"}]}).encode(),
     _prompt_file("big.md", b"x" * (300 * 1024)), "'big.md' is larger than 262,144 bytes"),
    ("latinprompt", json.dumps({"links": [{**OK_LINK, "prompt": "latin.md"}]}).encode(),
     _prompt_file("latin.md", "café".encode("latin-1")), "'latin.md' is not UTF-8 text"),
    ("sneaky", None, _symlinked_chain, "chain 'sneaky' resolves outside"),
    ("linkedprompt", json.dumps({"links": [{**OK_LINK, "prompt": "outside.md"}]}).encode(), _symlinked_prompt,
     "links[0].prompt: 'outside.md' leads outside the home folder"),
]
HOSTILE_NAMES = ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "~root", "$HOME", "a;rm -rf", "x" * 300 + "/"]


async def _cli(cli: Cli, gate: asyncio.Semaphore, *args: str) -> tuple[int, str]:
    async with gate:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", *args, env=cli.env, cwd=cli.home,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, err.decode("utf-8", "replace")


async def test_the_real_cli_refuses_every_corpus_file_with_exit_2_and_the_reason(cli: Cli, tmp_path: Path) -> None:
    """Every hostile file (CORPUS and EXTRA_FILES: 36) through `python -m engine chain validate`
    and `chain start`: exit 2, the precise reason, no run recorded."""
    cases: list[tuple[str, str]] = []
    for name, raw, fragment in CORPUS:
        write_raw(cli.home, name, raw)
        cases.append((name, fragment))
    for name, raw_or_none, setup, fragment in EXTRA_FILES:
        if raw_or_none is not None:
            write_raw(cli.home, name, raw_or_none)
        if setup is not None:
            setup(cli.home, tmp_path)
        cases.append((name, fragment))
    assert len(cases) == 36, f"the corpus has {len(cases)} files"
    gate = asyncio.Semaphore(3)
    jobs = [(verb, name, fragment) for name, fragment in cases for verb in ("validate", "start")]
    results = await asyncio.gather(*(_cli(cli, gate, "chain", verb, name) for verb, name, _ in jobs))
    wrong = [(verb, name, code, err.strip()[-300:]) for (verb, name, fragment), (code, err) in zip(jobs, results, strict=True)
             if code != 2 or fragment not in err or not err.startswith("error: ")]
    assert not wrong, f"{len(wrong)} of {len(jobs)} CLI calls over {len(cases)} corpus files: {wrong}"
    assert await _runs(cli.home) == []


async def test_the_real_cli_refuses_names_that_leave_the_home(cli: Cli) -> None:
    """The 8 HOSTILE_NAMES (`../`, absolute paths, shell and home syntax) through the real CLI."""
    assert len(HOSTILE_NAMES) == 8
    gate = asyncio.Semaphore(3)
    jobs = [(verb, name) for name in HOSTILE_NAMES for verb in ("validate", "start")]
    results = await asyncio.gather(*(_cli(cli, gate, "chain", verb, name) for verb, name in jobs))
    for (verb, name), (code, err) in zip(jobs, results, strict=True):
        assert code == 2, (verb, name, err)
        assert err.startswith(f"error: bad chain name {name!r}"), (verb, name, err)
    assert await _runs(cli.home) == []


async def test_chain_start_refuses_a_chain_file_outside_the_home(cli: Cli, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"links": [{"name": "c", "command": [sys.executable, "-c", "print(1)"]}]}),
                       encoding="utf-8")
    code, err = await _cli(cli, asyncio.Semaphore(1), "chain", "start", str(outside))
    assert await _runs(cli.home) == []
    assert code == 2 and err.startswith("error: "), err


async def _runs(home: Path) -> list[tuple[str, str]]:
    db = home / "state" / "llmauto.db"
    if not db.exists():
        return []
    async with Store.open(db) as store:
        return [(r.chain, r.status) for r in await store.last_runs(None, 100)]


def test_oversized_file_is_refused_before_parsing(home: Path) -> None:
    write_raw(home, "huge", b'{"description": "' + b"x" * (2 * 1024 * 1024) + b'", "links": []}')
    with pytest.raises(InvalidChain, match="over the 1,048,576-byte limit"):
        load_chain(home, "huge")


def test_oversized_prompt_file_is_refused(home: Path) -> None:
    (home / "prompts" / "big.md").write_bytes(b"x" * (300 * 1024))
    write_raw(home, "bigprompt", json.dumps({"links": [{**OK_LINK, "prompt": "big.md"}]}).encode())
    with pytest.raises(InvalidChain, match="larger than 262,144 bytes"):
        load_chain(home, "bigprompt")


def test_non_utf8_prompt_file(home: Path) -> None:
    (home / "prompts" / "latin.md").write_bytes("café".encode("latin-1"))
    write_raw(home, "lp", json.dumps({"links": [{**OK_LINK, "prompt": "latin.md"}]}).encode())
    with pytest.raises(InvalidChain, match=r"'latin\.md' is not UTF-8 text"):
        load_chain(home, "lp")


def test_symlinked_chain_out_of_the_home(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"links": [OK_LINK]}), encoding="utf-8")
    os.symlink(target, home / "chains" / "sneaky.json")
    with pytest.raises(BadChainName):
        load_chain(home, "sneaky")
    assert main(["--home", str(home), "chain", "start", "sneaky"]) == 2


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "~root", "$HOME", "a;rm -rf", "x" * 300 + "/"])
def test_names_that_try_to_leave_the_home(home: Path, name: str) -> None:
    with pytest.raises(BadChainName):
        load_chain(home, name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
chain_keys = st.sampled_from(["description", "mode", "max_rounds", "runtime_hours", "deadline", "max_consecutive_blocks",
                              "max_cost_usd", "workdir", "on_blocked", "links", "prompts", "defaults", "env_allow", "x"])
link_keys = st.sampled_from(["name", "role", "model", "command", "prompt", "continue", "fallback_model", "until_full",
                             "telegram_update", "permission_mode", "allowed_tools", "timeout_seconds", "env", "y"])
links = st.lists(st.dictionaries(link_keys, json_values, max_size=8), max_size=3)
documents = st.one_of(
    json_values,
    st.dictionaries(chain_keys, json_values, max_size=8),
    st.builds(lambda d, ls: {**d, "links": ls}, st.dictionaries(chain_keys, json_values, max_size=6), links),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_any_json_document_loads_or_gives_invalid_chain(home: Path, doc: Any) -> None:
    (home / "chains" / "fuzz.json").write_text(json.dumps(doc), encoding="utf-8")
    try:
        chain = load_chain(home, "fuzz")
    except ChainError as exc:
        assert isinstance(exc, InvalidChain)
        assert exc.problems and all(p.startswith("chains/fuzz.json: ") for p in exc.problems)
    else:
        assert chain.links and all(link.name for link in chain.links)


valid_links = st.lists(
    st.fixed_dictionaries({
        "name": st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True),
        "model": st.sampled_from(["sonnet", "opus", "claude-haiku-4-5"]),
        "prompt": st.text(min_size=1, max_size=30).map(lambda t: "do " + t),
        "continue": st.booleans(),
        "timeout_seconds": st.integers(1, 10_000),
    }),
    min_size=1, max_size=4, unique_by=lambda link: link["name"],
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=valid_links, rounds=st.integers(0, 1000), hours=st.floats(0, 1000, allow_nan=False), mode=st.sampled_from(["loop", "once", "deadend"]))
def test_valid_chains_round_trip(home: Path, links: list[dict[str, Any]], rounds: int, hours: float, mode: str) -> None:
    (home / "chains" / "rt.json").write_text(json.dumps({"mode": mode, "max_rounds": rounds, "runtime_hours": hours, "links": links}), encoding="utf-8")
    chain = load_chain(home, "rt")
    assert (chain.mode, chain.max_rounds, chain.runtime_hours) == (mode, rounds, hours)
    assert [(link.name, link.model, link.prompt, link.continue_session, link.timeout_s) for link in chain.links] == [
        (lk["name"], lk["model"], lk["prompt"], lk["continue"], float(lk["timeout_seconds"])) for lk in links]
