"""A run's approval desk: answers claude's permission questions for the run's links, asking a
person (on the phone, or `llmauto chain approve/deny`) when a call matches an `approve.ask` rule.

One desk per run. For each link attempt that has approval rules it hands the runner a
`PermissionHandler`: the rules (engine/approvals.py) settle most calls at once; a call to ask is
stored (table `approvals`), announced as an `approval_requested` event (the bot sends the question
with its buttons), and waits until a person decides, the request times out (`timeout_minutes`,
then `on_timeout`: deny, or deny and stop the chain), or the run is stopped or shut down (denied,
so the link goes on or ends as today). Meanwhile the chain's status file says WAITING. Every
decision is an `approval_decided` event. The agent process fails closed if llmauto dies: claude
denies a pending request when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.approvals import Decision, RunRules, Verdict, always_rule, describe
from engine.chains import LinkDef
from engine.errors import StoreError
from engine.event_types import ApprovalDecided, ApprovalRequested
from engine.events import Event
from engine.prompts import format_duration
from engine.runner import PermissionHandler
from engine.settings import split_tools
from engine.statefiles import ChainFiles
from engine.states import ChainStatus
from engine.store import NewEvent, Store

STATUS = {True: "approved", False: "denied"}


class ApprovalDesk:
    def __init__(
        self, *, store: Store, chain: str, files: ChainFiles, publish: Callable[[list[Event]], None],
        stopping: Callable[[], bool], changed: Callable[[], Awaitable[None]],
        on_timeout_stop: Callable[[str], None],
    ) -> None:
        self.store = store
        self.chain = chain
        self.files = files
        self.publish = publish
        self.stopping = stopping  # a stop or a shutdown was requested
        self.changed = changed  # waits until the run's controls change
        self.on_timeout_stop = on_timeout_stop
        self.run_id = 0
        self._rules: dict[str, RunRules] = {}
        self._pending: dict[int, asyncio.Future[Decision]] = {}

    @property
    def pending_ids(self) -> list[int]:
        return sorted(self._pending)

    def rules_for(self, link: LinkDef) -> RunRules:
        """The link's rules for this run (kept, so "always allow" holds for the rest of the run)."""
        if link.name not in self._rules:
            from engine.approvals import parse_rules

            self._rules[link.name] = RunRules(approval=link.approval, allowed=parse_rules(
                split_tools(" ".join(link.allowed_tools or ()))))
        return self._rules[link.name]

    def handler(self, link: LinkDef, *, round_no: int, link_run_id: Callable[[], int | None], cwd: str) -> PermissionHandler:
        rules = self.rules_for(link)

        async def handle(request: Mapping[str, object]) -> dict[str, object]:
            tool = str(request.get("tool_name") or "?")
            raw_input = request.get("input")
            tool_input: dict[str, Any] = dict(raw_input) if isinstance(raw_input, Mapping) else {}
            decision = rules.decide(tool, tool_input, cwd)
            if decision.verdict is Verdict.ALLOW:
                return {"behavior": "allow", "updatedInput": tool_input}
            if decision.verdict is Verdict.DENY:
                return {"behavior": "deny", "message": decision.reason}
            answer = await self._ask(link, round_no, link_run_id(), tool, tool_input, request)
            if answer.approve:
                if answer.always:
                    rules.always.extend(always_rule(tool, tool_input, request.get("permission_suggestions")))
                return {"behavior": "allow", "updatedInput": tool_input}
            return {"behavior": "deny", "message": answer.message or f"Denied by {answer.by}."}

        return handle

    async def _ask(
        self, link: LinkDef, round_no: int, link_run_id: int | None, tool: str, tool_input: dict[str, Any],
        request: Mapping[str, object],
    ) -> Decision:
        rules = link.approval
        raw_reason = request.get("description")
        reason = raw_reason if isinstance(raw_reason, str) else None
        suggestions = request.get("permission_suggestions")

        def requested(approval_id: int) -> NewEvent:
            return ApprovalRequested(
                id=approval_id, link=link.name, round=round_no, tool=tool,
                command=describe(tool, tool_input)[:3000], reason=(reason or "")[:500],
                timeout_s=rules.timeout_s, on_timeout=rules.on_timeout,
                always=bool(always_rule(tool, tool_input, suggestions)),
            ).new()

        approval_id, events = await self.store.add_approval(
            run_id=self.run_id, chain=self.chain, link_run_id=link_run_id, round_no=round_no, link=link.name,
            tool=tool, tool_input=tool_input, description=reason, suggestions=suggestions, event=requested,
        )
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending[approval_id] = future
        self.files.write_status(ChainStatus.WAITING)
        await self.store.set_chain_status(self.chain, ChainStatus.WAITING)  # what status views read
        self.publish(events)
        try:
            decision, status = await self._wait(future, rules.timeout_s, rules.on_timeout)
        finally:
            self._pending.pop(approval_id, None)
            if not self._pending:
                with contextlib.suppress(OSError):
                    self.files.write_status(ChainStatus.RUNNING)
                with contextlib.suppress(StoreError):
                    await self.store.set_chain_status(self.chain, ChainStatus.RUNNING)
        decided = await self.store.decide_approval(
            approval_id, status=status, by=decision.by, message=decision.message,
            evs=[ApprovalDecided(
                id=approval_id, link=link.name, tool=tool, status=status, by=decision.by,
                message=(decision.message or "")[:500], always=decision.always,
            ).new()],
        )
        if decided is not None:
            self.publish(decided)
        if status == "timed_out" and rules.on_timeout == "stop_chain":
            self.on_timeout_stop(f"no answer to the approval request #{approval_id} within {format_duration(rules.timeout_s)}")
        return decision

    async def _wait(self, future: asyncio.Future[Decision], timeout_s: float, on_timeout: str) -> tuple[Decision, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not future.done():
            if self.stopping():
                return Decision(False, "llmauto", "The chain is stopping: denied."), "denied"
            left = deadline - loop.time()
            if left <= 0:
                said = f"No answer within {format_duration(timeout_s)}: denied"
                return Decision(False, "timeout", said + (" and the chain stops." if on_timeout == "stop_chain" else ".")), "timed_out"
            watcher: asyncio.Future[None] = asyncio.ensure_future(self.changed())
            waits: set[asyncio.Future[Any]] = {future, watcher}
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            watcher.cancel()
        decision = future.result()
        return decision, STATUS[decision.approve]

    def decide(self, approval_id: int, decision: Decision) -> bool:
        """A person's answer; False when the request is not pending in this run."""
        future = self._pending.get(approval_id)
        if future is None or future.done():
            return False
        future.set_result(decision)
        return True

    async def expire_all(self, why: str, *, link_run_id: int | None = None) -> None:
        """Requests of this run still open when it ends (or never answered before a crash); with
        `link_run_id`, only that link's (a remote link whose worker was lost)."""
        for row in await self.store.run_approvals(self.run_id):
            if row.status == "pending" and link_run_id in (None, row.link_run_id):
                events = await self.store.decide_approval(row.id, status="expired", by="llmauto", message=why, evs=[
                    ApprovalDecided(id=row.id, link=row.link, tool=row.tool, status="expired", by="llmauto",
                                    message=why).new()])
                if events:
                    self.publish(events)
