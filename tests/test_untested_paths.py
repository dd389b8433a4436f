"""Paths no other test ran (issue #16): `llmauto pipe -f`, and `runner.group_alive` against real
process groups. Each test names the line that, broken, made it fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.runner import group_alive
from tests.fakes.claude_env import read_log
from tests.helpers import Cli


def test_pipe_reads_its_prompt_from_a_file_or_stdin_with_the_words_first(cli: Cli, tmp_path: Path) -> None:
    """Checked: with `prompt = " ".join(args.prompt) + "\\n\\n" + prompt` in engine/cli.py's
    cmd_pipe dropped, this fails (the words are lost); with `_read_prompt_file` ignoring "-", the
    stdin case fails."""
    log = tmp_path / "claude.log"
    cli.env["FAKE_CLAUDE_LOG"] = str(log)
    cli.scenario_is({"default": {"result": "done"}})
    prompt = tmp_path / "prompt.md"
    prompt.write_text("the file's part\nline two\n", encoding="utf-8")
    out = cli.run("pipe", "-f", str(prompt), "summarise", "this")
    assert (out.returncode, out.stdout) == (0, "done\n"), out.stderr
    assert read_log(log)[-1]["prompt"] == "summarise this\n\nthe file's part\nline two\n"
    piped = subprocess.run([sys.executable, "-m", "engine", "pipe", "-f", "-"], env=cli.env, cwd=cli.home,
                           input="from stdin\n", capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert read_log(log)[-1]["prompt"] == "from stdin\n"
    missing = cli.run("pipe", "-f", str(tmp_path / "nope.md"))
    assert missing.returncode == 2 and "pipe: cannot read" in missing.stderr and "Traceback" not in missing.stderr
    assert len(read_log(log)) == 2  # nothing ran for the missing file


def test_group_alive_follows_a_real_process_group_to_its_end() -> None:
    """Checked: with ProcessLookupError no longer caught in `group_alive`, this fails at the last
    check (a gone group must read as not alive, not raise)."""
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"], start_new_session=True)
    try:
        pgid = os.getpgid(leader.pid)
        assert pgid == leader.pid and group_alive(pgid)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
    assert not group_alive(leader.pid)  # reaped: no process of the group is left
