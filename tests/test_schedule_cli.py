"""The `llmauto schedule ...` commands (llmauto/schedule_cli.py), in process and as a real
subprocess, and the bot's /schedule taking the same zone names."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmauto.cli import main
from tests.bot.conftest import Served, fake_api, served
from tests.conftest import write_chain
from tests.helpers import Cli

FIXTURES = (fake_api, served)  # the in-process serve of tests/bot, for the bot's side

ONCE = {"mode": "once", "links": [{"name": "step", "command": ["python3", "-c", "print('hi')"]}]}


@pytest.fixture
def chains(home: Path) -> Path:
    for name in ("nightly", "build", "deploy", "tests"):
        write_chain(home, name, ONCE)
    return home


# ---- the CLI ---------------------------------------------------------------------------------
def test_cli_add_list_pause_resume_remove(chains: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMAUTO_TIMEZONE", "UTC")
    home = str(chains)
    assert main(["--home", home, "schedule", "add", "nightly", "0 2 * * *", "--tz", "Europe/Berlin", "--overlap", "queue"]) == 0
    out = capsys.readouterr().out
    assert "schedule #1: nightly" in out and "Europe/Berlin" in out and "overlap queue" in out
    assert out.count("Europe/Berlin") >= 4  # the zone, then three fire times
    assert main(["--home", home, "schedule", "add", "build", "daily", "03:15"]) == 0  # words of the form joined
    capsys.readouterr()
    assert main(["--home", home, "schedule", "after", "tests", "build", "--only-all-done"]) == 0
    assert "schedule #3: tests runs after build finishes with ALL_DONE" in capsys.readouterr().out
    assert main(["--home", home, "schedule", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("#1  nightly  0 2 * * *  every day at 02:00 (Europe/Berlin)  enabled  overlap queue  next ")
    assert lines[0].endswith("never fired")
    assert lines[1].startswith("#2  build  15 3 * * *  every day at 03:15 (UTC)  enabled  overlap skip  next 2")
    assert lines[2].startswith("#3  tests  after build finishes with ALL_DONE  enabled")
    assert main(["--home", home, "schedule", "pause", "1"]) == 0
    assert "schedule #1 (nightly" in capsys.readouterr().out
    assert main(["--home", home, "schedule", "list"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "  paused  " in first and " next " not in first
    assert main(["--home", home, "schedule", "resume", "1"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert main(["--home", home, "schedule", "remove", "2"]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["--home", home, "schedule", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["#1", "#3"]


def test_the_real_cli_takes_zone_names_in_any_case_and_refuses_two_different_ones(chains: Path, cli: Cli) -> None:
    added = cli.run("schedule", "add", "nightly", "0 2 * * *", "--tz", "europe/BERLIN")
    assert added.returncode == 0, added.stderr
    assert "every day at 02:00 (Europe/Berlin)" in added.stdout
    same = cli.run("schedule", "add", "build", "daily 03:00 TZ=Asia/tokyo", "--tz", "asia/TOKYO")
    assert same.returncode == 0, same.stderr
    assert "(Asia/Tokyo)" in same.stdout
    in_text = cli.run("schedule", "add", "deploy", "weekdays 07:30 tz=america/new_york")
    assert in_text.returncode == 0 and "(America/New_York)" in in_text.stdout
    both = cli.run("schedule", "add", "tests", "0 4 * * * tz=UTC", "--tz", "Europe/Berlin")
    assert both.returncode == 2
    assert both.stderr.strip() == ("error: two different time zones given (--tz Europe/Berlin and tz=UTC): give one. "
                                   "Example: tz=Europe/Berlin")
    for args, named in ((["--tz", "Mars/Olympus"], "'Mars/Olympus'"), (["tz=mars/olympus"], "'mars/olympus'")):
        unknown = cli.run("schedule", "add", "tests", "0 4 * * *", *args)
        assert unknown.returncode == 2
        assert unknown.stderr.strip() == f"error: unknown time zone {named}. Example: tz=Europe/Berlin"
    listing = cli.run("schedule", "list")
    assert [line.split("  ")[0] for line in listing.stdout.splitlines()] == ["#1", "#2", "#3"]


async def test_the_bot_takes_zone_names_in_any_case(served: Served) -> None:
    write_chain(served.home, "nightly", ONCE)
    added = await served.answer("/schedule nightly daily 02:00 tz=europe/berlin", "Schedule #1")
    assert "(Europe/Berlin)" in added.plain
    flag = await served.answer("/schedule nightly 0 3 * * * --tz ASIA/TOKYO", "Schedule #2")
    assert "(Asia/Tokyo)" in flag.plain
    both = await served.answer("/schedule nightly 0 4 * * * tz=UTC --tz Europe/Berlin", "two different time zones")
    assert "tz=UTC and --tz Europe/Berlin" in both.plain
    unknown = await served.answer("/schedule nightly 0 4 * * * tz=Mars/Olympus", "unknown time zone")
    assert "'Mars/Olympus'" in unknown.plain


def test_cli_refuses_bad_input_with_exit_2_and_the_reason(chains: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(chains)
    assert main(["--home", home, "schedule", "add", "nightly", "bad cron"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip()) > len("error: ")
    assert main(["--home", home, "schedule", "add", "nope", "0 2 * * *"]) == 2
    assert "unknown chain 'nope'" in capsys.readouterr().err
    assert main(["--home", home, "schedule", "add", "nightly", "0 2 * * *", "--tz", "Nowhere/Special"]) == 2
    assert "Nowhere/Special" in capsys.readouterr().err
    for verb in ("remove", "pause", "resume"):
        assert main(["--home", home, "schedule", verb, "9"]) == 2
        assert "no schedule #9" in capsys.readouterr().err
    assert main(["--home", home, "schedule", "after", "build", "build"]) == 2
    assert main(["--home", home, "schedule", "list"]) == 0
    assert "no schedules" in capsys.readouterr().out
