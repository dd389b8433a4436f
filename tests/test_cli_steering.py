"""The steering commands of the command line on a chain that is not running, as a user types
them (real `python -m engine` processes, a real SQLite store): what each says and its exit code
(0 done, 1 refused by the engine, 2 bad input). Paths the run tests do not reach."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import write_chain
from tests.helpers import Cli

ONE = {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", "pass"]}]}


def test_list_of_an_empty_home_says_so(cli: Cli) -> None:
    """Red with the `if not views` line of cmd_list removed (nothing printed at all)."""
    out = cli.run("chain", "list")
    assert (out.returncode, out.stdout) == (0, f"no chains in {cli.home / 'chains'}\n")
    write_chain(cli.home, "c", ONE)
    out = cli.run("chain", "status")  # no name: the list
    assert out.returncode == 0 and out.stdout.startswith("c ") and "READY" in out.stdout


def test_pause_resume_and_answer_of_a_chain_not_running(cli: Cli) -> None:
    """pause and resume refuse (exit 1), answer leaves the note in the handoff for the next run.
    Red with `engine.load(args.name)` dropped from _steer (an unknown chain would say "not
    running" with exit 1 instead of naming the known chains with exit 2)."""
    write_chain(cli.home, "c", ONE)
    for action in ("pause", "resume"):
        out = cli.run("chain", action, "c")
        assert (out.returncode, out.stderr) == (1, "error: c is not running\n")
    out = cli.run("chain", "pause", "nope")
    assert (out.returncode, out.stderr) == (2, "error: unknown chain 'nope' (chains: c)\n")
    out = cli.run("chain", "answer", "c", "use", "postgres")
    assert (out.returncode, out.stdout) == (0, "c: note added to the handoff (the chain is not running)\n")
    assert "use postgres" in (cli.home / "state" / "c" / "handoff.md").read_text(encoding="utf-8")


def test_approve_and_deny_read_an_optional_request_number(cli: Cli) -> None:
    """`approve c abc` is bad input (2); `deny c because` takes "because" as the reason, not a
    number; `#12` and `12` are the same request. Red with `removeprefix("#")` dropped (#12 would
    become a reason) or approve's check of a non-number removed (exit 1, not 2)."""
    write_chain(cli.home, "c", ONE)
    out = cli.run("chain", "approve", "c", "abc")
    assert (out.returncode, out.stderr) == (2, "error: approve: expected a request number, got 'abc'\n")
    out = cli.run("chain", "approve", "c")
    assert (out.returncode, out.stderr) == (1, "error: c has no request waiting for approval\n")
    for number in ("12", "#12"):
        out = cli.run("chain", "deny", "c", number, "no", "thanks")
        assert (out.returncode, out.stderr) == (1, "error: c has no approval request #12\n")
    out = cli.run("chain", "deny", "c", "because")
    assert (out.returncode, out.stderr) == (1, "error: c has no request waiting for approval\n")


def test_pipe_refuses_an_empty_prompt_from_stdin(cli: Cli) -> None:
    """Red with the `if not prompt.strip()` check of cmd_pipe removed (claude would be started
    on whitespace)."""
    out = subprocess.run([sys.executable, "-m", "engine", "pipe"], env=cli.env, cwd=cli.home, input="  \n",
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (2, "error: pipe: the prompt is empty\n")
