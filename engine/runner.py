"""One link = one subprocess in its own process group, watched until it ends.

The real runner spawns `claude -p` (or a link's `command`) with the prompt on stdin, parses its
stream-json output live, and ends it when asked (`kill`), when the link's timeout passes, or when it
has printed nothing for `stall_s` (API retry lines count as life). Ending it means SIGTERM to the
whole group, a grace period, then SIGKILL; the process is always reaped, and stragglers left in the
group after a normal exit (background children of tools) are killed too, so no orphan survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from engine.redact import cut
from engine.stream import ErrorClass, LinkResult, Progress, StreamParser

KILL_GRACE_S = 3.0
STDOUT_LINE_LIMIT = 32 * 1024 * 1024
TAIL_BYTES = 16 * 1024

ProgressCallback = Callable[[Progress], None]
SpawnCallback = Callable[[int], None]
# Answers claude's `can_use_tool` control request (its `request` object) with the response object:
# {"behavior": "allow", "updatedInput": {...}} or {"behavior": "deny", "message": "..."}.
PermissionHandler = Callable[[Mapping[str, object]], Awaitable[dict[str, object]]]


@dataclass(frozen=True, kw_only=True)
class Invocation:
    argv: tuple[str, ...]
    stdin: str
    cwd: Path
    env: Mapping[str, str]
    timeout_s: float
    stall_s: float | None = None
    kind: Literal["claude", "command"] = "claude"
    # Set for a claude link whose tool calls may be asked (argv has --permission-prompt-tool stdio
    # and --input-format stream-json): the prompt goes as a stream-json user message, stdin stays
    # open until the result, and each permission request is answered by this handler. While one
    # waits, the link's stall watchdog and timeout are paused (claude prints nothing meanwhile).
    on_permission: PermissionHandler | None = None


class AgentRunner(Protocol):
    async def run(
        self,
        inv: Invocation,
        *,
        on_progress: ProgressCallback,
        on_spawn: SpawnCallback,
        kill: asyncio.Event,
    ) -> LinkResult: ...


@dataclass
class _Tail:
    """The last bytes of a stream, bounded."""

    limit: int = TAIL_BYTES
    chunks: deque[str] = field(default_factory=deque)
    size: int = 0

    def add(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)
        while self.size > self.limit and len(self.chunks) > 1:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        joined = "".join(self.chunks)
        return joined[-self.limit :]


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def live_group_members(pgid: int) -> list[int]:
    """Processes of a group that are not zombies (Linux /proc; a container's init may leave
    zombies unreaped, and they still count for killpg)."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            found.append(int(name))
    return found


async def reap_group(pgid: int, timeout_s: float = 2.0) -> None:
    """SIGKILL whatever is left of a group and wait (briefly) until it is really gone."""
    if not kill_group(pgid):
        return  # the fast path: nothing left
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while live_group_members(pgid) and loop.time() < deadline:  # noqa: ASYNC110 (no event to wait on)
        await asyncio.sleep(0.01)


class SubprocessRunner:
    """Runs an Invocation as a real child process group."""

    def __init__(self, *, kill_grace_s: float = KILL_GRACE_S, tick_s: float = 0.25) -> None:
        self.kill_grace_s = kill_grace_s
        self.tick_s = tick_s

    async def run(
        self,
        inv: Invocation,
        *,
        on_progress: ProgressCallback,
        on_spawn: SpawnCallback,
        kill: asyncio.Event,
    ) -> LinkResult:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *inv.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(inv.cwd),
                env=dict(inv.env),
                start_new_session=True,
                limit=STDOUT_LINE_LIMIT,
            )
        except OSError as exc:
            return LinkResult(
                error_class=ErrorClass.CRASHED,
                error_message=f"cannot start {inv.argv[0]!r}: {exc.strerror or exc}",
                duration_s=time.monotonic() - started,
            )
        pgid = proc.pid
        on_spawn(proc.pid)
        parser = StreamParser()
        stdout_tail = _Tail()
        stderr_tail = _Tail(limit=4096)
        last_life = time.monotonic()
        asking = _Asking()
        stdin_lock = asyncio.Lock()

        def alive() -> None:
            nonlocal last_life
            last_life = time.monotonic()

        async def write_stdin(data: bytes, *, close: bool = False) -> None:
            assert proc.stdin is not None
            async with stdin_lock:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                    if not proc.stdin.is_closing():
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                        if close:
                            proc.stdin.close()

        async def feed_stdin() -> None:
            if inv.on_permission is not None:
                # The prompt as one stream-json user message; stdin stays open for the answers.
                await write_stdin(user_message(inv.stdin))
                return
            await write_stdin(inv.stdin.encode(), close=True)

        async def answer(request: dict[str, object]) -> None:
            """One control request of claude: a permission question goes to the handler; anything
            else (hooks we never registered) is answered with an error, so claude does not wait."""
            request_id = request.get("request_id")
            body = request.get("request") if isinstance(request.get("request"), dict) else {}
            assert isinstance(body, dict)
            if body.get("subtype") != "can_use_tool" or inv.on_permission is None:
                reply: dict[str, object] = {"subtype": "error", "request_id": request_id,
                                            "error": f"llmauto does not handle {body.get('subtype')!r}"}
            else:
                asking.begin()
                try:
                    response = await inv.on_permission(body)
                except Exception as exc:  # fail closed: a broken handler denies
                    response = {"behavior": "deny", "message": f"llmauto could not decide: {exc}"}
                finally:
                    asking.end()
                    alive()
                reply = {"subtype": "success", "request_id": request_id, "response": response}
            await write_stdin((json.dumps({"type": "control_response", "response": reply}) + "\n").encode())

        async def read_stdout() -> None:
            assert proc.stdout is not None
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError:  # a line over the limit: skip it, keep reading
                    alive()
                    continue
                if not raw:
                    return
                alive()
                line = raw.decode("utf-8", "replace")
                if inv.on_permission is not None and line.startswith('{"type":"control_request"'):
                    with contextlib.suppress(ValueError):
                        answers.append(asyncio.create_task(answer(json.loads(line))))
                    continue
                if inv.kind == "claude":
                    progress = parser.feed(line)
                    if parser.result is not None and inv.on_permission is not None:
                        await write_stdin(b"", close=True)  # the run is over: claude exits once stdin closes
                else:
                    stdout_tail.add(line)
                    progress = Progress("output", detail=line.strip()[:200])
                if progress is not None:
                    on_progress(progress)

        async def read_stderr() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(4096):
                stderr_tail.add(chunk.decode("utf-8", "replace"))

        answers: list[asyncio.Task[None]] = []
        readers = [
            asyncio.create_task(feed_stdin()),
            asyncio.create_task(read_stdout()),
            asyncio.create_task(read_stderr()),
        ]
        waiter = asyncio.create_task(proc.wait())
        killer = asyncio.create_task(kill.wait())
        deadline = started + inv.timeout_s
        timed_out = stalled = killed = False
        try:
            while not waiter.done():
                now = time.monotonic()
                if asking.waiting:
                    alive()  # a person is being asked: claude prints nothing, and that is no stall
                if kill.is_set():
                    killed = True
                elif now >= deadline + asking.paused_s(now):
                    timed_out = True
                elif inv.stall_s is not None and now - last_life >= inv.stall_s:
                    stalled = True
                if killed or timed_out or stalled:
                    await self._terminate(pgid, waiter)
                    break
                wake = deadline + asking.paused_s(now) - now
                if inv.stall_s is not None:
                    wake = min(wake, last_life + inv.stall_s - now)
                await asyncio.wait(
                    {waiter, killer}, timeout=max(0.0, min(wake, self.tick_s * 4)) + 0.001,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        except BaseException:
            await asyncio.shield(self._terminate(pgid, waiter))
            raise
        finally:
            killer.cancel()
            # Output still buffered in the pipes belongs to this run; read it before judging.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 5.0)
            for task in readers + answers:
                task.cancel()
            await asyncio.gather(*answers, return_exceptions=True)
            await waiter
            await reap_group(pgid)  # stragglers: background children the agent's tools left behind
        exit_code = proc.returncode
        duration = time.monotonic() - started
        if inv.kind == "command":
            return _command_result(
                exit_code, stdout_tail.text(), stderr_tail.text(), duration,
                timed_out=timed_out, stalled=stalled, killed=killed,
            )
        return parser.finish(
            exit_code, duration_s=duration, stderr_tail=stderr_tail.text(),
            timed_out=timed_out, stalled=stalled, killed=killed,
        )

    async def _terminate(self, pgid: int, waiter: asyncio.Task[int]) -> None:
        if waiter.done():
            return
        kill_group(pgid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), self.kill_grace_s)
        kill_group(pgid, signal.SIGKILL)
        await waiter


class _Asking:
    """Permission questions in flight, and how long they kept the link waiting (its timeout is
    extended by that time: the link's own work did not take it)."""

    def __init__(self) -> None:
        self.waiting = 0
        self._since: float | None = None
        self._paused = 0.0

    def begin(self) -> None:
        if self.waiting == 0:
            self._since = time.monotonic()
        self.waiting += 1

    def end(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and self._since is not None:
            self._paused += time.monotonic() - self._since
            self._since = None

    def paused_s(self, now: float) -> float:
        return self._paused + (now - self._since if self._since is not None else 0.0)


def user_message(prompt: str) -> bytes:
    """The prompt as claude's stream-json input expects it (one line)."""
    line = {"type": "user", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": None, "session_id": ""}
    return (json.dumps(line) + "\n").encode()


def _command_result(
    exit_code: int | None, stdout: str, stderr: str, duration: float,
    *, timed_out: bool, stalled: bool, killed: bool,
) -> LinkResult:
    if killed:
        cls, msg = ErrorClass.KILLED, "stopped on request"
    elif timed_out:
        cls, msg = ErrorClass.TIMEOUT, "timed out"
    elif stalled:
        cls, msg = ErrorClass.STALLED, "no output for too long"
    elif exit_code == 0:
        cls, msg = ErrorClass.OK, ""
    else:
        last = (stderr.strip().splitlines() or stdout.strip().splitlines() or [""])[-1]
        # Never cut inside a long word: the store redacts after this cut, and half a token is
        # still a token (redact.cut).
        cls, msg = ErrorClass.CRASHED, f"exit code {exit_code}" + (f": {cut(last, 300)}" if last else "")
    return LinkResult(
        error_class=cls, text=stdout.strip(), exit_code=exit_code, duration_s=duration,
        error_message=msg, stderr_tail=stderr,
    )


def claude_argv(
    claude_bin: str,
    *,
    model: str | None,
    permission_mode: str | None,
    allowed_tools: Sequence[str] | None,
    fallback_model: str | None = None,
    resume: str | None = None,
    session_id: str | None = None,
    max_budget_usd: float | None = None,
    ask: bool = False,
    disallowed_tools: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The argv of one headless claude call (prompt on stdin). With `ask`, claude hands the tool
    calls its rules do not settle to the runner (stdio permission protocol, stream-json input)."""
    argv = [claude_bin, "-p", "--output-format", "stream-json", "--verbose"]
    if ask:
        argv += ["--input-format", "stream-json", "--permission-prompt-tool", "stdio"]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", budget_arg(max_budget_usd)]
    if model:
        argv += ["--model", model]
    if fallback_model and fallback_model != model:
        argv += ["--fallback-model", fallback_model]
    if permission_mode:
        argv += ["--permission-mode", permission_mode]
    if allowed_tools:
        argv += ["--allowedTools", " ".join(allowed_tools)]
    if disallowed_tools:
        argv += ["--disallowedTools", " ".join(disallowed_tools)]
    if resume:
        argv += ["--resume", resume]
    elif session_id:
        argv += ["--session-id", session_id]
    return tuple(argv)


def budget_arg(usd: float) -> str:
    """A dollar amount for --max-budget-usd: plain decimal, to the hundredth of a cent."""
    return f"{max(usd, 0.0001):.4f}".rstrip("0").rstrip(".")


def with_budget(argv: Sequence[str], usd: float) -> tuple[str, ...]:
    """A claude argv with `--max-budget-usd usd` (replacing one already there)."""
    out = list(argv)
    if "--max-budget-usd" in out:
        at = out.index("--max-budget-usd")
        del out[at : at + 2]
    # Right after -p & co., before any variadic option (--allowedTools) could swallow it.
    at = out.index("--verbose") + 1 if "--verbose" in out else len(out)
    out[at:at] = ["--max-budget-usd", budget_arg(usd)]
    return tuple(out)


class BudgetedRunner:
    """Caps each claude call at what the run may still spend (`budget_left()`, None: no cap), so
    one link cannot overspend the chain's max_cost_usd: claude ends it with error_max_budget_usd
    (error class `budget`) and the run's budget rule stops the chain. Command links are not capped."""

    def __init__(self, inner: AgentRunner, budget_left: Callable[[], float | None]) -> None:
        self.inner = inner
        self.budget_left = budget_left

    async def run(
        self,
        inv: Invocation,
        *,
        on_progress: ProgressCallback,
        on_spawn: SpawnCallback,
        kill: asyncio.Event,
    ) -> LinkResult:
        left = self.budget_left() if inv.kind == "claude" else None
        if left is not None:
            inv = replace(inv, argv=with_budget(inv.argv, left))
        return await self.inner.run(inv, on_progress=on_progress, on_spawn=on_spawn, kill=kill)


# Variables never handed to agents unless a chain's env_allow names them.
_WITHHELD_PREFIXES = ("TELEGRAM_",)
_ALWAYS_PASSED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "TERM")


def agent_env(
    parent: Mapping[str, str],
    *,
    env_allow: Sequence[str] | None,
    link_env: Mapping[str, str],
    llmauto_vars: Mapping[str, str],
) -> dict[str, str]:
    """The environment of one link: the parent's (or its allow-listed part) without the bot's
    secrets or `CLAUDECODE`, plus the link's own `env`, plus the LLMAUTO_* variables."""
    if env_allow is None:
        env = {k: v for k, v in parent.items() if not k.startswith(_WITHHELD_PREFIXES)}
    else:
        allowed = set(env_allow) | set(_ALWAYS_PASSED)
        env = {k: v for k, v in parent.items() if k in allowed}
    env.pop("CLAUDECODE", None)
    env.update(link_env)
    env.update(llmauto_vars)
    return env


def process_is(pid: int, start_token: str | None) -> bool:
    """Is `pid` alive and still the process that had `start_token` (when given)? A dead pid, a
    zombie, or another process that reuses the pid: False. Without /proc, only liveness counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            rest = handle.read().decode("ascii", "replace").rsplit(")", 1)[-1].split()
    except FileNotFoundError:
        return False  # gone between the two looks
    except OSError:
        return True
    if rest and rest[0] == "Z":
        return False
    return start_token is None or (len(rest) > 19 and rest[19] == start_token)


def process_start_token(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux /proc), so a reused pid is never mistaken
    for the agent that once had it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 22 (starttime), counted after the ')' that ends the command name.
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else None
