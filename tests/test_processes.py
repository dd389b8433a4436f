"""The process toolkit (engine/processes.py) on real processes: a group signalled and reaped, a
zombie that still counts for killpg but not as alive, a pid that another process reuses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from engine.processes import (
    kill_group,
    live_group_members,
    process_is,
    process_start_token,
    reap_group,
)


def test_a_group_is_reaped_and_then_gone() -> None:
    """Red with kill_group's `except ProcessLookupError: return False` removed (signalling the
    gone group raises), or process_is's zombie check (`rest[0] == "Z"`) removed."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    pgid = proc.pid
    assert live_group_members(pgid) == [proc.pid]
    assert process_is(proc.pid, process_start_token(proc.pid))
    assert not process_is(proc.pid, "0")  # the same pid with another start time: a reused pid
    asyncio.run(reap_group(pgid))
    assert live_group_members(pgid) == []  # a zombie (not yet waited for) is not a member
    assert not process_is(proc.pid, None)  # ...and not alive
    proc.wait()
    assert not kill_group(pgid, signal.SIGTERM)
    assert not process_is(proc.pid, None)
    asyncio.run(reap_group(pgid))  # nothing left: returns at once


def test_start_tokens_of_this_process_and_of_no_process() -> None:
    """Red with the token taken from another field of /proc/PID/stat (it would change over time or
    differ from the start time that process_is compares)."""
    token = process_start_token(os.getpid())
    assert token is not None and token.isdigit() and token == process_start_token(os.getpid())
    assert process_is(os.getpid(), token)
    assert process_start_token(2**22 + 12345) is None  # above pid_max: never a process
