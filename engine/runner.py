"""One link = one subprocess in its own process group, watched until it ends (the watchdog runner;
the process toolkit is engine/processes.py, the claude CLI contract engine/claude_cli.py).

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
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from engine.claude_cli import user_message, with_budget
from engine.processes import kill_group, reap_group
from engine.records import Record
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


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Invocation(Record):
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
        on_spawn(proc.pid)
        watch = _Watch(inv, proc, on_progress, started)
        await watch.until_done(kill, self.tick_s, self.kill_grace_s)
        return watch.result()


class _Watch:
    """One running process: its pipes (the prompt in; stream-json, output and stderr out; the
    answers to claude's permission questions in), and the watchdog that ends it on a kill, its
    timeout, or a stall. Ending means SIGTERM to the group, a grace period, SIGKILL; it is always
    reaped, with any stragglers of its group."""

    def __init__(self, inv: Invocation, proc: asyncio.subprocess.Process, on_progress: ProgressCallback,
                 started: float) -> None:
        self.inv = inv
        self.proc = proc
        self.pgid = proc.pid
        self.on_progress = on_progress
        self.started = started
        self.parser = StreamParser()
        self.stdout_tail = _Tail()
        self.stderr_tail = _Tail(limit=4096)
        self.last_life = time.monotonic()
        self.asking = _Asking()
        self.stdin_lock = asyncio.Lock()
        self.answers: list[asyncio.Task[None]] = []
        self.timed_out = self.stalled = self.killed = False

    def alive(self) -> None:
        self.last_life = time.monotonic()

    # ---- the pipes ---------------------------------------------------------------------------
    async def write_stdin(self, data: bytes, *, close: bool = False) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        async with self.stdin_lock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                if not stdin.is_closing():
                    stdin.write(data)
                    await stdin.drain()
                    if close:
                        stdin.close()

    async def feed_stdin(self) -> None:
        if self.inv.on_permission is not None:
            # The prompt as one stream-json user message; stdin stays open for the answers.
            await self.write_stdin(user_message(self.inv.stdin))
            return
        await self.write_stdin(self.inv.stdin.encode(), close=True)

    async def answer(self, request: dict[str, object]) -> None:
        """One control request of claude: a permission question goes to the handler; anything else
        (hooks we never registered) is answered with an error, so claude does not wait."""
        request_id = request.get("request_id")
        body = request.get("request") if isinstance(request.get("request"), dict) else {}
        assert isinstance(body, dict)
        handler = self.inv.on_permission
        if body.get("subtype") != "can_use_tool" or handler is None:
            reply: dict[str, object] = {"subtype": "error", "request_id": request_id,
                                        "error": f"llmauto does not handle {body.get('subtype')!r}"}
        else:
            self.asking.begin()
            try:
                response = await handler(body)
            except Exception as exc:  # fail closed: a broken handler denies
                response = {"behavior": "deny", "message": f"llmauto could not decide: {exc}"}
            finally:
                self.asking.end()
                self.alive()
            reply = {"subtype": "success", "request_id": request_id, "response": response}
        await self.write_stdin((json.dumps({"type": "control_response", "response": reply}) + "\n").encode())

    async def read_stdout(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while True:
            try:
                raw = await stdout.readline()
            except ValueError:  # a line over the limit: skip it, keep reading
                self.alive()
                continue
            if not raw:
                return
            self.alive()
            await self.take_line(raw.decode("utf-8", "replace"))

    async def take_line(self, line: str) -> None:
        asks = self.inv.on_permission is not None
        if asks and '"control_request"' in line[:200]:
            # Parsed, not matched by its first bytes: the protocol does not promise key order.
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and obj.get("type") == "control_request":
                self.answers.append(asyncio.create_task(self.answer(obj)))
                return
        if self.inv.kind == "claude":
            progress = self.parser.feed(line)
            if asks and self.parser.result is not None:
                await self.write_stdin(b"", close=True)  # the run is over: claude exits once stdin closes
        else:
            self.stdout_tail.add(line)
            progress = Progress("output", detail=line.strip()[:200])
        if progress is not None:
            self.on_progress(progress)

    async def read_stderr(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            self.stderr_tail.add(chunk.decode("utf-8", "replace"))

    # ---- the watchdog ------------------------------------------------------------------------
    async def until_done(self, kill: asyncio.Event, tick_s: float, grace_s: float) -> None:
        readers = [asyncio.create_task(self.feed_stdin()), asyncio.create_task(self.read_stdout()),
                   asyncio.create_task(self.read_stderr())]
        waiter = asyncio.create_task(self.proc.wait())
        killer = asyncio.create_task(kill.wait())
        try:
            while not waiter.done():
                if self.must_end(kill):
                    await self.terminate(waiter, grace_s)
                    break
                await asyncio.wait({waiter, killer}, timeout=self.next_look(tick_s) + 0.001,
                                   return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await asyncio.shield(self.terminate(waiter, grace_s))
            raise
        finally:
            killer.cancel()
            # Output still buffered in the pipes belongs to this run; read it before judging.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 5.0)
            for task in readers + self.answers:
                task.cancel()
            await asyncio.gather(*self.answers, return_exceptions=True)
            await waiter
            await reap_group(self.pgid)  # stragglers: background children the agent's tools left behind

    def must_end(self, kill: asyncio.Event) -> bool:
        """Killed, past the timeout, or silent for too long? A permission question in flight pauses
        both clocks: claude prints nothing while a person decides."""
        now = time.monotonic()
        if self.asking.waiting:
            self.alive()
        if kill.is_set():
            self.killed = True
        elif now >= self.started + self.inv.timeout_s + self.asking.paused_s(now):
            self.timed_out = True
        elif self.inv.stall_s is not None and now - self.last_life >= self.inv.stall_s:
            self.stalled = True
        return self.killed or self.timed_out or self.stalled

    def next_look(self, tick_s: float) -> float:
        now = time.monotonic()
        wake = self.started + self.inv.timeout_s + self.asking.paused_s(now) - now
        if self.inv.stall_s is not None:
            wake = min(wake, self.last_life + self.inv.stall_s - now)
        return max(0.0, min(wake, tick_s * 4))

    async def terminate(self, waiter: asyncio.Task[int], grace_s: float) -> None:
        if waiter.done():
            return
        kill_group(self.pgid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), grace_s)
        kill_group(self.pgid, signal.SIGKILL)
        await waiter

    def result(self) -> LinkResult:
        exit_code = self.proc.returncode
        duration = time.monotonic() - self.started
        how = {"timed_out": self.timed_out, "stalled": self.stalled, "killed": self.killed}
        if self.inv.kind == "command":
            return _command_result(exit_code, self.stdout_tail.text(), self.stderr_tail.text(), duration, **how)
        return self.parser.finish(exit_code, duration_s=duration, stderr_tail=self.stderr_tail.text(), **how)


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


