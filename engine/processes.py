"""The process toolkit: process groups (signal, look, reap) and process identity (pid plus start
time), used by the runner to end an agent and everything it started, and by leases and crash
recovery to tell a live holder from a dead one or from another process that reuses its pid.
Linux /proc where it helps; without it, liveness alone. The readers take the /proc root as `proc`
(always /proc but in tests, which hand them a folder laid out like it: the paths that only a race
or a broken /proc would take run deterministically)."""

from __future__ import annotations

import os
import signal


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def live_group_members(pgid: int, proc: str = "/proc") -> list[int]:
    """Processes of a group that are not zombies (Linux /proc; a container's init may leave
    zombies unreaped, and they still count for killpg)."""
    found: list[int] = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            found.append(int(name))
    return found


async def reap_group(pgid: int, timeout_s: float = 2.0, proc: str = "/proc") -> None:
    """SIGKILL whatever is left of a group and wait (briefly) until it is really gone."""
    if not kill_group(pgid):
        return  # the fast path: nothing left
    import asyncio  # here: leases import this module, and `chain status` never imports asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while live_group_members(pgid, proc) and loop.time() < deadline:  # noqa: ASYNC110 (no event to wait on)
        await asyncio.sleep(0.01)


def process_is(pid: int, start_token: str | None, proc: str = "/proc") -> bool:
    """Is `pid` alive and still the process that had `start_token` (when given)? A dead pid, a
    zombie, or another process that reuses the pid: False. Without /proc, only liveness counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            rest = handle.read().decode("ascii", "replace").rsplit(")", 1)[-1].split()
    except FileNotFoundError:
        return False  # gone between the two looks
    except OSError:
        return True
    if rest and rest[0] == "Z":
        return False
    return start_token is None or (len(rest) > 19 and rest[19] == start_token)


def process_start_token(pid: int, proc: str = "/proc") -> str | None:
    """The process's start time in clock ticks (Linux /proc), so a reused pid is never mistaken
    for the agent that once had it."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 22 (starttime), counted after the ')' that ends the command name.
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else None
