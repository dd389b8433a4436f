"""An in-process stand-in for the agent runner, for testing the marble loop's logic fast.

Each call looks up the link (from LLMAUTO_LINK in the invocation's environment) and plays the next
scripted step: a function that may write the agent's files and returns a LinkResult. The real
runner is tested separately against the fake `claude` executable and the real CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.runner import Invocation
from engine.stream import ErrorClass, LinkResult, Progress

Step = Callable[["Call"], LinkResult]


@dataclass
class Call:
    inv: Invocation
    link: str
    round: int
    handoff: Path
    state_dir: Path

    def write_handoff(self, text: str) -> None:
        self.handoff.write_text(text, encoding="utf-8")

    def append_handoff(self, text: str) -> None:
        old = self.handoff.read_text(encoding="utf-8") if self.handoff.exists() else ""
        self.handoff.write_text(old + text, encoding="utf-8")

    def write_status(self, word: str) -> None:
        (self.state_dir / "status.txt").write_text(word + "\n", encoding="utf-8")

    def argv_value(self, flag: str) -> str | None:
        argv = list(self.inv.argv)
        return argv[argv.index(flag) + 1] if flag in argv else None


def ok(text: str = "done", cost: float = 0.01, **kw: object) -> LinkResult:
    kw.setdefault("duration_s", 0.01)
    return LinkResult(error_class=ErrorClass.OK, text=text, cost_usd=cost, exit_code=0, **kw)  # type: ignore[arg-type]


def fail(cls: ErrorClass, message: str = "failed", **kw: object) -> LinkResult:
    kw.setdefault("duration_s", 0.01)
    return LinkResult(error_class=cls, text=message, error_message=message, exit_code=1, **kw)  # type: ignore[arg-type]


@dataclass
class ScriptedRunner:
    steps: dict[str, list[Step]] = field(default_factory=dict)
    default: Step | None = None
    calls: list[Call] = field(default_factory=list)
    # Set by a step that wants to block until the test lets it go (e.g. to stop mid-link).
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, link: str, *steps: Step) -> None:
        self.steps.setdefault(link, []).extend(steps)

    def links_called(self) -> list[str]:
        return [c.link for c in self.calls]

    async def run(self, inv: Invocation, *, on_progress, on_spawn, kill: asyncio.Event) -> LinkResult:  # type: ignore[no-untyped-def]
        env = inv.env
        call = Call(inv=inv, link=env["LLMAUTO_LINK"], round=int(env["LLMAUTO_ROUND"]),
                    handoff=Path(env["LLMAUTO_HANDOFF"]), state_dir=Path(env["LLMAUTO_STATE_DIR"]))
        self.calls.append(call)
        on_progress(Progress("tool", tool="Read", target=str(call.handoff), turns=1))
        self.started.set()
        gate = self.gates.get(call.link)
        if gate is not None:
            killer = asyncio.create_task(kill.wait())
            opener = asyncio.create_task(gate.wait())
            await asyncio.wait({killer, opener}, return_when=asyncio.FIRST_COMPLETED)
            killer.cancel()
            opener.cancel()
            if kill.is_set():
                return fail(ErrorClass.KILLED, "stopped on request")
        queue = self.steps.get(call.link) or []
        step = queue.pop(0) if queue else self.default
        if step is None:
            return ok()
        return step(call)
