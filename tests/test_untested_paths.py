"""Paths no other test ran (issue #16): `llmauto pipe -f`, and steering a chain that another
process runs (`runner.group_alive`, the other path named there, was dead code and is gone). Each test names the line that, broken, made it fail."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import LlmautoError
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import make_settings
from tests.fakes.claude_env import read_log
from tests.faults.serve_rig import until
from tests.helpers import Cli
from tests.steering import held_in_another_process, unhandled_controls


def test_pipe_reads_its_prompt_from_a_file_or_stdin_with_the_words_first(cli: Cli, tmp_path: Path) -> None:
    """Checked: with `prompt = " ".join(args.prompt) + "\\n\\n" + prompt` in llmauto/cli.py's
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


async def test_pause_answer_and_resume_reach_a_chain_running_in_another_process(cli: Cli, home: Path, tmp_path: Path) -> None:
    """Engine._steer for a chain another process runs (a foreground `chain start`): the pause, the
    answer and the resume travel through the store's controls. Then an answer to the idle chain
    goes straight into its handoff. Checked: with `_steer` raising "not running" instead of
    `store.add_control` for a chain running elsewhere, this fails at the pause."""
    gate = tmp_path / "gate"
    runner = await held_in_another_process(cli, home, gate)
    try:
        settings = make_settings(home)
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            assert await engine.pause_chain("far", by="t") == "far: pausing (after the current link)"
            assert await engine.answer("far", "use sqlite", by="ann") == "far: answer added to the handoff"
            await until("the other process to take both in", lambda: unhandled_controls(settings.db_path) == 0,
                        proc=runner)
            gate.touch()

            async def paused() -> bool:
                return any(e.kind == "paused" for e in await store.chain_events("far"))

            await until("the other process to pause the chain", paused, proc=runner)
            handoff = ChainFiles(settings.state_dir, "far")
            text = handoff.read_handoff().text or ""
            assert "use sqlite" in text and "b ran" not in text  # answered, and b waits
            assert await engine.resume_chain("far", by="t") == "far: resuming"
            _out, err = await asyncio.to_thread(runner.communicate, timeout=60)
            assert runner.returncode == 0, err
            assert "b ran" in (handoff.read_handoff().text or "")
            idle = await engine.answer("far", "next time, smaller steps", by="ann")
            assert idle == "far: note added to the handoff (the chain is not running)"
            assert "next time, smaller steps" in (handoff.read_handoff().text or "")
            with pytest.raises(LlmautoError, match="far is not running"):
                await engine.pause_chain("far")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate(timeout=10)
