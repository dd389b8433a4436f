"""Chain definitions: every field's valid and invalid values, defaults and their precedence, prompt
resolution, names, warnings, and the shipped chains."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.chains import GlobalDefaults, chain_names, chain_path, load_chain
from engine.errors import BadChainName, ConfigError, InvalidChain, UnknownChain
from tests.conftest import ROOT, write_chain

LINK = {"name": "w", "model": "sonnet", "prompt": "do the work"}


def load(home: Path, doc: Any, **kw: Any) -> Any:
    (home / "chains" / "t.json").write_text(json.dumps(doc), encoding="utf-8")
    return load_chain(home, "t", **kw)


def problems(home: Path, doc: Any) -> list[str]:
    with pytest.raises(InvalidChain) as info:
        load(home, doc)
    return info.value.problems


def test_minimal_chain_gets_the_defaults(home: Path) -> None:
    chain = load(home, {"links": [LINK]})
    assert (chain.name, chain.mode, chain.max_rounds, chain.runtime_hours, chain.deadline) == ("t", "loop", 100, 0.0, None)
    assert (chain.max_consecutive_blocks, chain.max_cost_usd, chain.on_blocked, chain.workdir) == (3, None, "continue", None)
    link = chain.links[0]
    assert (link.role, link.model, link.prompt, link.continue_session, link.timeout_s, link.stall_s) == (
        "worker", "sonnet", "do the work", False, 7200.0, 600.0)
    assert chain.warnings == ()


@pytest.mark.parametrize("field, value, message", [
    ("mode", "forever", "t.json: mode: expected one of loop, once, deadend, conditional, got 'forever'"),
    ("mode", 3, "mode: expected a string, got a number (3)"),
    ("max_rounds", -1, "max_rounds: must be at least 0, got -1"),
    ("max_rounds", "ten", "max_rounds: expected a whole number, got a string ('ten')"),
    ("max_rounds", True, "max_rounds: expected a whole number, got a boolean (true)"),
    ("max_rounds", 2.5, "max_rounds: expected a whole number, got a number (2.5)"),
    ("runtime_hours", -0.5, "runtime_hours: must be at least 0, got -0.5"),
    ("runtime_hours", [1], "runtime_hours: expected a number, got a list"),
    ("max_consecutive_blocks", -2, "max_consecutive_blocks: must be at least 0, got -2"),
    ("max_cost_usd", 0, "max_cost_usd: must be greater than 0, got 0"),
    ("max_cost_usd", "5", "max_cost_usd: expected a number, got a string ('5')"),
    ("deadline", "next tuesday", "deadline: expected an ISO date or datetime"),
    ("deadline", 20261201, "deadline: expected a string, got a number (20261201)"),
    ("workdir", "does/not/exist", "workdir: 'does/not/exist' is not a directory"),
    ("on_blocked", "panic", "on_blocked: expected one of continue, wait, got 'panic'"),
    ("blocked_wait_minutes", 0, "blocked_wait_minutes: must be greater than 0, got 0"),
    ("env_allow", "PATH", "env_allow: expected a list of environment variable names"),
    ("env_allow", ["OK", "not ok"], "env_allow: expected a list of environment variable names"),
    ("description", 42, "description: expected a string, got a number (42)"),
    ("defaults", [], "defaults: expected an object, got a list"),
    ("prompts", "x", "prompts: expected an object of key: prompt, got a string ('x')"),
    ("links", [], "links: expected a non-empty list of links"),
    ("links", {"a": 1}, "links: expected a non-empty list of links, got an object"),
])
def test_chain_field_errors_name_file_field_and_reason(home: Path, field: str, value: Any, message: str) -> None:
    found = problems(home, {"links": [LINK], field: value})
    assert any(message in p for p in found), found
    assert all(p.startswith("chains/t.json: ") for p in found)


@pytest.mark.parametrize("link, message", [
    ({"model": "m", "prompt": "p q"}, "links[0].name: required"),
    ({"name": "a b", "model": "m", "prompt": "p q"}, "links[0].name: 'a b': use letters"),
    ({"name": "w", "model": "m", "command": ["x"], "prompt": "p q"}, "links[0]: give a model or a command, not both"),
    ({"name": "w", "model": 42, "prompt": "p q"}, "links[0].model: expected a string, got a number (42)"),
    ({"name": "w", "model": "m"}, "links[0].prompt: required for a model link"),
    ({"name": "w", "command": "ls -l"}, "links[0].command: expected a non-empty list of strings (argv)"),
    ({"name": "w", "command": []}, "links[0].command: expected a non-empty list of strings (argv)"),
    ({"name": "w", "command": [""]}, "links[0].command: the program name is empty"),
    ({**LINK, "role": "boss"}, "links[0].role: expected one of worker, reviewer, controller, got 'boss'"),
    ({**LINK, "continue": "yes"}, "links[0].continue: expected true or false, got a string ('yes')"),
    ({**LINK, "until_full": 1}, "links[0].until_full: expected true or false, got a number (1)"),
    ({**LINK, "permission_mode": "yolo"}, "links[0].permission_mode: expected one of acceptEdits"),
    ({**LINK, "allowed_tools": 5}, "links[0].allowed_tools: expected a list of tool names"),
    ({**LINK, "timeout_seconds": 0}, "links[0].timeout_seconds: must be greater than 0, got 0"),
    ({**LINK, "stall_seconds": -1}, "links[0].stall_seconds: must be greater than 0, got -1"),
    ({**LINK, "env": {"A B": "x"}}, "links[0].env.A B: not a valid environment variable name"),
    ({**LINK, "env": {"A": 1}}, "links[0].env.A: expected a string, got a number (1)"),
    ({**LINK, "prompt": "missing.md"}, "links[0].prompt: no prompt key or file 'missing.md'"),
    ({**LINK, "prompt": 7}, "links[0].prompt: expected a prompt key, a file in prompts/, or text"),
    ("just a string", "links[0]: expected an object, got a string"),
])
def test_link_field_errors(home: Path, link: Any, message: str) -> None:
    found = problems(home, {"links": [link]})
    assert any(message in p for p in found), found


def test_every_problem_is_reported_at_once(home: Path) -> None:
    found = problems(home, {"mode": "x", "max_rounds": -1, "links": [{"name": "a", "model": 1, "prompt": "p q"},
                                                                      {"name": "a", "model": "m", "prompt": 3}]})
    assert len(found) == 4
    assert any("links[1].prompt: expected a prompt key" in p for p in found)


def test_unknown_fields_are_warnings(home: Path) -> None:
    chain = load(home, {"links": [{**LINK, "colour": "red"}], "speed": 11, "defaults": {"turbo": True}})
    assert chain.warnings == (
        "chains/t.json: speed: unknown field (ignored)",
        "chains/t.json: defaults.turbo: unknown field (ignored)",
        "chains/t.json: links[0].colour: unknown field (ignored)",
    )


def test_precedence_link_over_chain_defaults_over_globals(home: Path) -> None:
    gd = GlobalDefaults(permission_mode="plan", allowed_tools=("Read",), timeout_s=100, stall_s=50)
    chain = load(home, {
        "defaults": {"permission_mode": "acceptEdits", "allowed_tools": "Read, Edit", "timeout_seconds": 60, "env": {"A": "1", "B": "1"}},
        "links": [
            {**LINK, "name": "a"},
            {**LINK, "name": "b", "permission_mode": "dontAsk", "allowed_tools": ["Bash"], "timeout_seconds": 5, "env": {"B": "2"}},
        ],
    }, global_defaults=gd)
    a, b = chain.links
    assert (a.permission_mode, a.allowed_tools, a.timeout_s, a.stall_s, dict(a.env)) == ("acceptEdits", ("Read", "Edit"), 60, 50, {"A": "1", "B": "1"})
    assert (b.permission_mode, b.allowed_tools, b.timeout_s, dict(b.env)) == ("dontAsk", ("Bash",), 5, {"A": "1", "B": "2"})
    bare = load(home, {"links": [LINK]}, global_defaults=gd)
    assert (bare.links[0].permission_mode, bare.links[0].allowed_tools, bare.links[0].timeout_s) == ("plan", ("Read",), 100)


def test_prompt_resolution_order(home: Path) -> None:
    (home / "prompts" / "work.md").write_text("from prompts/work.md", encoding="utf-8")
    (home / "prompts" / "other.txt").write_text("from other.txt", encoding="utf-8")
    chain = load(home, {
        "prompts": {"work": "from the prompts key", "alias": {"type": "ref", "key": "work"},
                    "f": {"type": "file", "path": "work.md"}, "inline": {"type": "inline", "text": "inline text"}},
        "links": [
            {"name": "a", "model": "m", "prompt": "work"},
            {"name": "b", "model": "m", "prompt": "alias"},
            {"name": "c", "model": "m", "prompt": "f"},
            {"name": "d", "model": "m", "prompt": "other.txt"},
            {"name": "e", "model": "m", "prompt": "Plain inline {HANDOFF} text"},
            {"name": "g", "model": "m", "prompt": "inline"},
        ],
    })
    assert [link.prompt for link in chain.links] == [
        "from the prompts key", "from the prompts key", "from prompts/work.md", "from other.txt",
        "Plain inline {HANDOFF} text", "inline text"]


@pytest.mark.parametrize("prompts, message", [
    ({"a": {"type": "ref", "key": "b"}, "b": {"type": "ref", "key": "a"}}, "prompts.a: cycle of prompt references a -> b -> a"),
    ({"a": {"type": "ref", "key": "zzz"}}, "prompts.a.key: no prompt key 'zzz'"),
    ({"a": {"type": "file", "path": "/etc/passwd"}}, "prompts.a.path: '/etc/passwd': absolute paths are not allowed"),
    ({"a": {"type": "file", "path": "../../outside.md"}}, "prompts.a.path: '../../outside.md' leads outside the home folder"),
    ({"a": {"type": "file", "path": "nope.md"}}, "prompts.a.path: no prompt file 'nope.md'"),
    ({"a": {"type": "telepathy"}}, "prompts.a.type: expected file, inline or ref, got 'telepathy'"),
    ({"a": 5}, "prompts.a: expected text or an object, got a number (5)"),
])
def test_prompt_errors(home: Path, prompts: dict[str, Any], message: str) -> None:
    found = problems(home, {"prompts": prompts, "links": [LINK]})
    assert any(message in p for p in found), found


def test_prompt_file_symlinked_out_of_the_home_is_refused(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("secret", encoding="utf-8")
    (home / "prompts" / "link.md").symlink_to(secret)
    found = problems(home, {"prompts": {"a": {"type": "file", "path": "link.md"}}, "links": [LINK]})
    assert any("leads outside the home folder" in p for p in found), found


@pytest.mark.parametrize("raw, expected", [
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T18:30", datetime(2026, 12, 1, 18, 30, tzinfo=UTC)),
    ("2026-12-01T18:30:00+02:00", datetime(2026, 12, 1, 16, 30, tzinfo=UTC)),
])
def test_deadline_forms(home: Path, raw: str, expected: datetime) -> None:
    chain = load(home, {"deadline": raw, "links": [LINK]}, tz=UTC)
    assert chain.deadline == expected
    assert chain.deadline is not None and chain.deadline.utcoffset() is not None


def test_deadline_naive_uses_the_given_zone(home: Path) -> None:
    plus2 = timezone(timedelta(hours=2))
    chain = load(home, {"deadline": "2026-12-01T10:00", "links": [LINK]}, tz=plus2)
    assert chain.deadline == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_workdir_relative_to_home(home: Path) -> None:
    (home / "proj").mkdir()
    assert load(home, {"workdir": "proj", "links": [LINK]}).workdir == (home / "proj").resolve()


def test_notify_and_on_blocked_wait(home: Path) -> None:
    chain = load(home, {"notify": "every_link", "on_blocked": "wait", "blocked_wait_minutes": 30, "links": [LINK]})
    assert (chain.notify_every_link, chain.on_blocked, chain.blocked_wait_s) == (True, "wait", 1800.0)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", ".hidden", "", ".", "..", "na me", "x\x00", "ｃｈａｉｎ", "a\\b"])
def test_bad_names_are_refused(home: Path, name: str) -> None:
    with pytest.raises(BadChainName):
        load_chain(home, name)


def test_unknown_chain_lists_known(home: Path) -> None:
    write_chain(home, "alpha", {"links": [LINK]})
    write_chain(home, "beta", {"links": [LINK]})
    with pytest.raises(UnknownChain) as info:
        load_chain(home, "gamma")
    assert str(info.value) == "unknown chain 'gamma' (chains: alpha, beta)"
    assert chain_names(home) == ["alpha", "beta"]


def test_chain_file_symlinked_outside_chains_is_refused(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "evil.json"
    outside.write_text(json.dumps({"links": [LINK]}), encoding="utf-8")
    (home / "chains" / "evil.json").symlink_to(outside)
    with pytest.raises(BadChainName, match="outside"):
        load_chain(home, "evil")
    with pytest.raises(BadChainName):
        chain_path(home, "evil")


def test_validate_a_file_path(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps({"links": [LINK]}), encoding="utf-8")
    assert load_chain(home, str(path), allow_file=True).name == "candidate"


def test_a_file_path_is_only_validated_never_loaded_to_run(home: Path, tmp_path: Path) -> None:
    """What the engine starts is a name inside chains/: a path to a .json elsewhere is refused."""
    path = tmp_path / "outside.json"
    path.write_text(json.dumps({"links": [LINK]}), encoding="utf-8")
    with pytest.raises(BadChainName):
        load_chain(home, str(path))


@pytest.mark.parametrize("name", ["worker-reviewer-loop", "controller-assigns", "demo"])
def test_shipped_chains_load(name: str) -> None:
    chain = load_chain(ROOT, name)
    assert chain.warnings == ()
    assert all(link.prompt or link.command for link in chain.links)
    if name == "controller-assigns":
        assert [link.role for link in chain.links] == ["controller", "worker", "worker"]
        assert chain.links[0].continue_session


def test_the_originals_prompt_lookup_order(home: Path) -> None:
    """prompts section, then prompts/KEY, prompts/KEY.txt, prompts/KEY.md, then inline text. Checked
    by breaking the order (".md" before ".txt" in `_Loader.link_prompt`): red."""
    (home / "prompts" / "worker.txt").write_text("from worker.txt")
    (home / "prompts" / "worker.md").write_text("from worker.md")
    (home / "prompts" / "plain").write_text("from plain")
    (home / "prompts" / "notes.md").write_text("from notes.md")
    chain = load(home, {
        "prompts": {"keyed": {"type": "inline", "content": "from content"}, "texted": {"type": "inline", "text": "from text"}},
        "links": [{"name": n, "model": "m", "prompt": p} for n, p in (
            ("a", "worker"), ("b", "plain"), ("c", "notes"), ("d", "keyed"), ("e", "texted"), ("f", "reviewer"))],
    })
    assert [(link.prompt, link.prompt_source) for link in chain.links] == [
        ("from worker.txt", "prompts/worker.txt"), ("from plain", "prompts/plain"), ("from notes.md", "prompts/notes.md"),
        ("from content", "prompts.keyed"), ("from text", "prompts.texted"), ("reviewer", "inline")]
    assert chain.warnings == ("chains/t.json: links[5].prompt: 'reviewer' is used as the prompt text itself: there is no "
                              "prompts key 'reviewer' and no file prompts/reviewer, prompts/reviewer.txt or prompts/reviewer.md",)


def test_the_originals_fields_and_defaults(home: Path) -> None:
    chain = load(home, {
        "chain_name": "other", "version": "1.0", "_note": "a comment", "_comment_x": 1, "opus_deep_limit": 2,
        "telegram": {"enabled": False, "update_every_n_links": 4, "chat_id": "595767047"},
        "defaults": {"model": "claude-opus-4-6", "fallback_model": "claude-sonnet-4-6"},
        "links": [{"name": "w", "prompt": "p q", "description": "the worker"},
                  {"name": "opus-deep", "prompt": "p q", "model": "x"}, {"name": "w", "prompt": "p q", "max_runs": 3}],
    })
    w, deep, w2 = chain.links
    assert (w.model, w.fallback_model, w.description, w.max_runs) == ("claude-opus-4-6", "claude-sonnet-4-6", "the worker", None)
    assert (deep.model, deep.max_runs, w2.max_runs) == ("x", 2, 3)
    assert (chain.version, chain.notify_every_n_links, chain.max_rounds) == ("1.0", 4, 100)
    assert (w.permission_mode, w.allowed_tools, w.tools_source) == (
        "dontAsk", ("Read", "Edit", "Write", "Bash", "Glob", "Grep"), "LLMAUTO_ALLOWED_TOOLS")
    assert chain.warnings == (
        "chains/t.json: chain_name: 'other' differs from the file name; the chain is called 't'",
        "chains/t.json: opus_deep_limit: applied as links[1].max_runs = 2: opus-deep runs at most 2 time(s) per run, "
        "then is skipped and the controller is told",
        "chains/t.json: telegram.chat_id: ignored: the bot's token and chat come from .env (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID)",
    )


def test_settings_give_the_permissions_and_model_of_links_that_set_none(home: Path) -> None:
    from engine.settings import Settings

    settings = Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_PERMISSION_MODE": "acceptEdits",
                              "LLMAUTO_ALLOWED_TOOLS": "Read, Bash(git diff:*) Edit", "LLMAUTO_DEFAULT_MODEL": "claude-haiku-4-5"})
    write_chain(home, "s", {"defaults": {"permission_mode": "plan"},
                            "links": [{"name": "a", "prompt": "p q"}, {"name": "b", "prompt": "p q", "allowed_tools": "Grep"}]})
    a, b = load_chain(home, "s", settings=settings).links
    assert (a.permission_mode, a.allowed_tools, a.model) == ("plan", ("Read", "Bash(git diff:*)", "Edit"), "claude-haiku-4-5")
    assert (b.allowed_tools, b.tools_source) == (("Grep",), "links[1].allowed_tools")
    assert a.permissions() == "plan · allowed: Read Bash(git diff:*) Edit (from LLMAUTO_ALLOWED_TOOLS)"
    with pytest.raises(ConfigError, match="LLMAUTO_PERMISSION_MODE: expected one of"):
        Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_PERMISSION_MODE": "yolo"})


# ---- #13: verdict routing and task pools -------------------------------------------------------

REVIEW_LINKS = [
    {"name": "worker", "model": "m", "prompt": "do the work"},
    {"name": "reviewer", "role": "reviewer", "model": "m", "prompt": "review the work",
     "routes": {"needs-fix": "worker", "APPROVED": "next", "REJECTED": "stop"}},
]


def test_routes_conditional_mode_and_max_bounces_are_carried(home: Path) -> None:
    """The loader hands the parsed routes to the link and reads "conditional" as a routing loop.
    Checked by dropping `routes=parsed` in `_Loader.routes`: red."""
    chain = load(home, {"mode": "conditional", "max_bounces": 2, "links": REVIEW_LINKS})
    assert (chain.mode, chain.conditional, chain.max_bounces, chain.warnings) == ("loop", True, 2, ())
    assert chain.links[1].routes.verdicts == ("NEEDS_FIX", "APPROVED", "REJECTED")
    assert chain.routes["reviewer"].get("needs_fix").target == "worker"  # type: ignore[union-attr]
    assert not chain.links[0].routes and chain.routing


@pytest.mark.parametrize("doc_change, message", [
    ({"links": [REVIEW_LINKS[0], {**REVIEW_LINKS[1], "routes": {"NEEDS_FIX": "wroker"}}]},
     "links[1].routes.NEEDS_FIX: unknown link 'wroker' (did you mean 'worker'?)"),
    ({"links": [REVIEW_LINKS[0], {**REVIEW_LINKS[1], "routes": ["worker"]}]},
     "links[1].routes: expected an object of VERDICT: target, got a list"),
    ({"max_bounces": 0}, "max_bounces: must be at least 1, got 0"),
    ({"task_pool": {"type": "file", "path": "missing.md"}}, "task_pool.path: 'missing.md' does not exist in the workdir"),
    ({"task_pool": {"type": "file", "path": "../outside.md"}}, "task_pool.path: '../outside.md' leads outside the workdir"),
    ({"task_pool": {"type": "file", "path": "big.md"}}, "task_pool.path: 'big.md' is 10,485,760 bytes, over the 1,048,576-byte limit"),
    ({"task_pool": {"type": "folder", "path": "x"}}, "task_pool.type: expected file or directory, got 'folder'"),
    ({"task_pool": {"type": "directory", "path": "TODO.md"}}, "task_pool.path: 'TODO.md' is not a directory"),
])
def test_routing_and_pool_errors_are_precise(home: Path, doc_change: dict[str, Any], message: str) -> None:
    """Each bad route or pool is an error naming its field and reason. Checked by dropping the
    `check_pool` call in `_Loader.task_pool` (the disk problems were not reported): red."""
    (home / "TODO.md").write_text("- [ ] a\n", encoding="utf-8")
    (home.parent / "outside.md").write_text("- [ ] a\n", encoding="utf-8")
    with (home / "big.md").open("wb") as handle:
        handle.truncate(10 * 1024 * 1024)
    found = problems(home, {"links": REVIEW_LINKS, **doc_change})
    assert any(message in p for p in found), found


def test_unreachable_links_and_a_conditional_chain_without_routes_are_warned(home: Path) -> None:
    chain = load(home, {"mode": "conditional", "links": [
        {"name": "a", "model": "m", "prompt": "do x", "routes": {"*": "restart"}},
        {"name": "b", "model": "m", "prompt": "do y"}]})
    assert any("links: 'b' is unreachable" in w for w in chain.warnings), chain.warnings
    plain = load(home, {"mode": "conditional", "links": [LINK]})
    assert any("mode: 'conditional' but no link declares routes" in w for w in plain.warnings)


def test_a_good_pool_is_carried(home: Path) -> None:
    (home / "TODO.md").write_text("- [ ] a\n", encoding="utf-8")
    (home / "tasks").mkdir()
    from engine.tasks import DirectoryPool, FilePool

    assert load(home, {"links": [LINK], "task_pool": {"type": "file", "path": "TODO.md"}}).task_pool == FilePool(path="TODO.md")
    assert load(home, {"links": [LINK], "task_pool": {"type": "directory", "path": "tasks/"}}).task_pool == DirectoryPool(path="tasks/")
