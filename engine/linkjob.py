"""A link sent to a worker and its result coming back (issue #15), as plain JSON values.

`serve` turns one attempt into a `LinkJob` (what a worker on another host needs: which link of
which chain, the placeholders, the prompt, the input handoff and status texts); the worker sends
back an `Outcome` (the agent's `LinkResult`, the output handoff and status, who ran it). Both cross
the database as JSON, so they are frozen values with `to_json`/`from_json` and nothing else.
`JobKey` is the identity of one attempt, (run, round, link index, attempt, visit): the results
table is unique on it, so a redelivered job can never commit twice. `visit` is serve's link-run
id: a routed hop back runs a link again in the same round, which is a new attempt, not a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.permissions import Refusal
from engine.stream import ErrorClass, LinkResult

TASK_NAME = "llmauto.run_link"
ANY_QUEUE = "any"  # the queue of chains that name no `runs_on`: every worker listens to it


@dataclass(frozen=True, kw_only=True)
class JobKey:
    run_id: int
    round_no: int
    index: int
    attempt: int
    visit: int = 0  # serve's link_runs id of this attempt

    def __str__(self) -> str:
        return f"{self.run_id}/{self.round_no}/{self.index}/{self.attempt}/{self.visit}"


@dataclass(frozen=True, kw_only=True)
class LinkJob:
    """Everything a worker needs to run one attempt of one link, from its own home."""

    chain: str
    key: JobKey
    link: str
    model: str | None
    prompt: str
    values: Mapping[str, str]  # the placeholders as serve rendered them (its paths)
    timeout_s: float
    handoff: str | None  # the input handoff (None: no handoff file)
    status: str | None  # status.txt before the link
    budget_usd: float | None = None  # what the run may still spend (max_cost_usd), for --max-budget-usd

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["values"] = dict(self.values)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinkJob:
        return cls(
            chain=str(data["chain"]), key=JobKey(**data["key"]), link=str(data["link"]),
            model=data.get("model"), prompt=str(data["prompt"]), values=dict(data.get("values") or {}),
            timeout_s=float(data["timeout_s"]), handoff=data.get("handoff"), status=data.get("status"),
            budget_usd=float(data["budget_usd"]) if data.get("budget_usd") is not None else None,
        )

    def localized_prompt(self, values: Mapping[str, str]) -> str:
        """The prompt with serve's paths (home, state folder, handoff file) replaced by this host's:
        the agent must read and write the worker's copy. Longest first, so the handoff path is
        replaced before the state folder that contains it."""
        prompt = self.prompt
        pairs = [(self.values[k], values[k]) for k in ("HANDOFF", "STATE_DIR", "HOME", "BASH_HOME")
                 if self.values.get(k) and values.get(k)]
        for old, new in sorted(pairs, key=lambda p: -len(p[0])):
            prompt = prompt.replace(old, new)
        return prompt


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a worker commits for one attempt: the result and the files the agent left."""

    result: LinkResult
    handoff: str | None
    status: str | None
    worker: str
    events: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        result = asdict(replace(self.result, refusals=()))
        result["error_class"] = self.result.error_class.value
        result["refusals"] = [r.to_json() for r in self.result.refusals]
        result["permission_denials"] = list(self.result.permission_denials)
        return {"result": result, "handoff": self.handoff, "status": self.status, "worker": self.worker,
                "events": list(self.events)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        raw = dict(data["result"])
        raw["error_class"] = ErrorClass(raw["error_class"])
        raw["refusals"] = tuple(Refusal.from_json(r) for r in raw.get("refusals") or ())
        raw["permission_denials"] = tuple(raw.get("permission_denials") or ())
        known = set(LinkResult.__dataclass_fields__)
        return cls(result=LinkResult(**{k: v for k, v in raw.items() if k in known}),
                   handoff=data.get("handoff"), status=data.get("status"), worker=str(data.get("worker") or "?"),
                   events=tuple(data.get("events") or ()))
