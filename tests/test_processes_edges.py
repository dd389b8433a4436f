"""The process toolkit's (engine/processes.py) paths that real life takes only by chance or on
another machine, made deterministic: a group member that outlives the SIGKILL (the reaper waits for
it, then gives up at its deadline), a /proc that cannot be listed, a process gone between two looks,
a /proc entry that cannot be read, and a process that belongs to someone else (signals refused).

The /proc readers are handed a folder laid out like /proc (`proc=`), next to real processes: the
pids are real and alive, only what /proc says about them is chosen by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.processes import (
    kill_group,
    live_group_members,
    process_is,
    process_start_token,
    reap_group,
)

NOBODY = 65534


def stat_line(pid: int, *, state: str = "S", pgrp: int, start: str = "4242") -> str:
    """A /proc/PID/stat line: pid, (comm) with a ')' inside, state, ppid, pgrp, ... starttime is
    field 22 (the 20th after the comm)."""
    after = [state, "1", str(pgrp)] + ["0"] * 16 + [start, "0"]
    return f"{pid} (odd) name) " + " ".join(after) + "\n"


def fake_proc(root: Path, entries: dict[str, str | None]) -> str:
    """A folder laid out like /proc: `name -> stat text`, or None for an entry without a stat file."""
    for name, stat in entries.items():
        (root / name).mkdir(parents=True)
        if stat is not None:
            (root / name / "stat").write_text(stat)
    return str(root)


@contextlib.contextmanager
def sleeper(argv: tuple[str, ...] = (sys.executable, "-c", "import time; time.sleep(60)"),
            **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, start_new_session=True, **popen)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_the_reaper_waits_for_a_member_that_outlives_the_kill_then_gives_up(tmp_path: Path) -> None:
    """Red with reap_group's loop left out (`while False`: it returns at once, before the deadline)
    or its deadline dropped (it never returns: the test's timeout). A real group is killed; the
    /proc the reaper looks at still lists a live member of that group, as it does for the moment
    a killed process takes to die."""
    with sleeper() as proc:
        proc_root = fake_proc(tmp_path, {str(proc.pid): stat_line(proc.pid, pgrp=proc.pid), "self": None})
        assert live_group_members(proc.pid, proc_root) == [proc.pid]
        started = time.monotonic()
        asyncio.run(reap_group(proc.pid, timeout_s=0.3, proc=proc_root))
        waited = time.monotonic() - started
        assert 0.3 <= waited < 5, waited
        assert proc.wait(timeout=10) == -9  # the real group got its SIGKILL


def test_zombies_other_groups_and_unreadable_entries_are_not_members(tmp_path: Path) -> None:
    """Red with live_group_members' `except OSError: continue` removed (the entry without a stat
    file raises), or its zombie or group test dropped (the list grows)."""
    proc_root = fake_proc(tmp_path, {
        "10": stat_line(10, pgrp=7), "11": stat_line(11, pgrp=7, state="Z"), "12": stat_line(12, pgrp=8),
        "13": None, "net": None,
    })
    assert live_group_members(7, proc_root) == [10]


def test_without_a_readable_proc_no_member_is_found(tmp_path: Path) -> None:
    """Red with live_group_members' `except OSError: return found` removed (listing a missing
    folder raises)."""
    assert live_group_members(os.getpgid(0), str(tmp_path / "no-proc")) == []


def test_a_process_gone_between_the_two_looks_is_not_alive(tmp_path: Path) -> None:
    """Red with process_is' `except FileNotFoundError: return False` removed (it raises) or made
    to return True. The pid answers the signal (this very process), but its /proc entry is gone,
    as when it exits between the two looks."""
    proc_root = fake_proc(tmp_path, {"1": stat_line(1, pgrp=1)})
    assert not process_is(os.getpid(), None, proc_root)
    assert process_start_token(os.getpid(), proc_root) is None


def test_an_unreadable_proc_entry_leaves_liveness_alone(tmp_path: Path) -> None:
    """Red with process_is' `except OSError: return True` removed (reading a directory raises) or
    made to return False: a live process whose /proc entry cannot be read is still alive."""
    pid = os.getpid()
    proc_root = fake_proc(tmp_path, {str(pid): None})
    (tmp_path / str(pid) / "stat").mkdir()
    assert process_is(pid, "4242", proc_root)
    assert process_start_token(pid, proc_root) is None


def test_a_short_stat_line_has_no_start_token_and_matches_none(tmp_path: Path) -> None:
    """Red with process_start_token's length check removed (IndexError) or process_is' length
    check removed (IndexError), or process_is comparing another field than the start time."""
    pid = os.getpid()
    proc_root = fake_proc(tmp_path, {str(pid): f"{pid} (short) S 1 {pid}\n"})
    assert process_start_token(pid, proc_root) is None
    assert not process_is(pid, "4242", proc_root)
    assert process_is(pid, None, proc_root)  # liveness alone
    (tmp_path / str(pid) / "stat").write_text(stat_line(pid, pgrp=pid, start="777"))
    assert process_start_token(pid, proc_root) == "777"
    assert process_is(pid, "777", proc_root) and not process_is(pid, "4242", proc_root)


@contextlib.contextmanager
def someone_elses_process() -> Iterator[int]:
    """The pid of a live process this process may not signal: as root, a sleeper run as another
    user while this process acts as `nobody` (its effective uid only, so it can come back);
    otherwise init when it belongs to someone else."""
    if os.geteuid() == 0:
        # /bin/sleep: this interpreter may live where another user cannot read it (/root)
        with sleeper(("sleep", "60"), user=NOBODY - 1, group=NOBODY - 1) as proc:
            assert process_start_token(proc.pid) is not None  # /proc has it before we look away
            os.seteuid(NOBODY)
            try:
                yield proc.pid
            finally:
                os.seteuid(0)
        return
    if os.stat("/proc/1").st_uid == os.getuid():
        pytest.skip("no process of another user to signal")
    yield 1


def test_a_process_of_someone_else_is_alive_but_cannot_be_signalled() -> None:
    """Red with kill_group's `except PermissionError: return False` removed (it raises), or
    process_is' `except PermissionError: pass` removed (it raises) or made to return False."""
    with someone_elses_process() as pid:
        token = process_start_token(pid)
        assert not kill_group(os.getpgid(pid), 0)  # signal 0: only the permission is checked
        assert process_is(pid, token)
        assert process_is(pid, None)
