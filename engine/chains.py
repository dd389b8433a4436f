"""Chain definitions: the frozen value types, loading from `chains/NAME.json`, defaults, validation.

Compatible with the original llmauto format (see shared DESIGN.md). Precedence for per-link
settings: link beats chain `defaults` beats global settings. Errors name the file, the field path
(e.g. `links[2].model`) and the reason; unknown fields become warnings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine import routing
from engine.approvals import ON_TIMEOUT, ApprovalRules, check_rules
from engine.describe import kind as kind_of
from engine.errors import BadChainName, InvalidChain, UnknownChain
from engine.records import Record
from engine.settings import (
    DEFAULT_ALLOWED_TOOLS,
    DEFAULT_MODEL,
    DEFAULT_PERMISSION_MODE,
    PERMISSION_MODES,
    Settings,
    split_tools,
)

if TYPE_CHECKING:
    from engine.tasks import PoolDef

Role = Literal["worker", "reviewer", "controller"]
Mode = Literal["loop", "once", "deadend"]
OnBlocked = Literal["continue", "wait"]

DEFAULT_TIMEOUT_S = 2 * 3600.0
DEFAULT_STALL_S = 600.0
DEFAULT_BLOCKED_WAIT_S = 6 * 3600.0
NAME_PATTERN = r"[A-Za-z0-9_.-]+"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkDef(Record):
    """One link: one non-interactive run of claude (or of `command`)."""

    name: str
    role: Role = "worker"
    model: str | None = None
    command: tuple[str, ...] | None = None
    # The prompt template text, already resolved from a key, a file or inline text.
    prompt: str = ""
    continue_session: bool = False
    fallback_model: str | None = None
    until_full: bool = False
    telegram_update: bool = False
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    stall_s: float = DEFAULT_STALL_S
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    # At most this many runs of the link per run of the chain (None: no limit); after that the
    # engine skips it as it skips a worker the controller did not assign.
    max_runs: int | None = None
    # Where the effective allowed_tools came from (the field a person changes to widen them).
    tools_source: str = "LLMAUTO_ALLOWED_TOOLS"
    # Where the prompt came from: a prompts key, a file, or inline text.
    prompt_source: str = "inline"
    # Which tool calls wait for a person's answer on the phone (`approve`: the link's, else the chain's).
    approval: ApprovalRules = field(default_factory=ApprovalRules)

    # Verdict routing (#13): where the marble goes after this link, by the handoff's verdict.
    routes: routing.Routes = routing.NO_ROUTES

    @property
    def is_command(self) -> bool:
        return self.command is not None

    def permissions(self) -> str:  # pragma: no mutate block (not validation)
        """The effective permissions, as `chain validate` and a run's start show them."""
        if self.is_command:
            return "command (no claude permissions)"
        mode = self.permission_mode or "default"
        if mode == "bypassPermissions":
            return "bypassPermissions (every tool, no questions)"
        tools = " ".join(self.allowed_tools or ()) or "none"
        text = f"{mode} · allowed: {tools} (from {self.tools_source})"
        if self.approval.ask:
            text += " · asks on the phone: " + " ".join(str(r) for r in self.approval.ask)
        if self.approval.deny:
            text += " · denied: " + " ".join(str(r) for r in self.approval.deny)
        return text


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ChainDef(Record):
    """A whole chain, with defaults applied and every prompt resolved."""

    name: str
    path: Path
    description: str = ""
    mode: Mode = "loop"
    max_rounds: int = 0  # 0 = unlimited
    runtime_hours: float = 0.0  # 0 = unlimited
    deadline: datetime | None = None  # aware
    max_consecutive_blocks: int = 3  # 0 = never stop for BLOCKED rounds
    max_cost_usd: float | None = None
    workdir: Path | None = None  # None: the home folder
    on_blocked: OnBlocked = "continue"
    blocked_wait_s: float = DEFAULT_BLOCKED_WAIT_S
    notify_every_link: bool = False
    # The original's telegram.update_every_n_links: a note every N links (None: per-link flags).
    notify_every_n_links: int | None = None
    version: str | None = None
    # Names of environment variables handed to agents; None = the parent's environment minus
    # secrets (the bot token and other *TOKEN*/*SECRET*/*API_KEY* variables except ANTHROPIC_*).
    env_allow: tuple[str, ...] | None = None
    links: tuple[LinkDef, ...] = ()
    warnings: tuple[str, ...] = ()
    # Written as "mode": "conditional" (the original's name for a loop whose links route); it
    # runs as mode "loop", so every rule about loops applies to it unchanged.
    conditional: bool = False
    max_bounces: int = routing.DEFAULT_MAX_BOUNCES  # routed hops back to one link per round
    task_pool: PoolDef | None = None  # one task per round, read at each round's start
    # #15: the worker queue its links run on in the distributed mode (None: any worker).
    runs_on: str | None = None

    @property
    def routes(self) -> dict[str, routing.Routes]:  # pragma: no mutate block (not validation)
        """Link name -> its routes (a repeated name: its last routing occurrence)."""
        out: dict[str, routing.Routes] = {}
        for link in self.links:
            if link.routes or link.name not in out:
                out[link.name] = link.routes
        return out

    @property
    def routing(self) -> bool:  # pragma: no mutate block (not validation)
        return any(link.routes for link in self.links)


# ---- loading -------------------------------------------------------------------------------------

MAX_CHAIN_BYTES = 1024 * 1024
MAX_PROMPT_BYTES = 256 * 1024
DEFAULT_MAX_ROUNDS = 100  # the original's, for a chain that names no max_rounds
_NAME = re.compile(rf"^{NAME_PATTERN}$")
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CHAIN_FIELDS = frozenset({
    "description", "mode", "max_rounds", "runtime_hours", "deadline", "max_consecutive_blocks", "max_cost_usd",
    "workdir", "on_blocked", "blocked_wait_minutes", "notify", "notify_every_link", "env_allow", "links",
    "prompts", "defaults", "name",
    # The original llmauto's fields (chains/*.json of lukisch/MarbleRun and its CHAIN_CONFIG_SCHEMA.md).
    "chain_name", "version", "opus_deep_limit", "telegram", "shutdown", "task_pools",
    "approve",
    # #13: verdict routing and task pools.
    "max_bounces", "task_pool",
    # #15: the distributed mode.
    "runs_on",
})
LINK_FIELDS = frozenset({
    "name", "role", "model", "command", "prompt", "continue", "fallback_model", "until_full", "telegram_update",
    "permission_mode", "allowed_tools", "timeout_seconds", "stall_seconds", "env", "description", "max_runs",
    "task_pool", "approve", "routes",
})
APPROVE_FIELDS = frozenset({"ask", "deny", "timeout_minutes", "on_timeout"})
DEFAULT_FIELDS = frozenset({
    "permission_mode", "allowed_tools", "timeout_seconds", "stall_seconds", "env", "model", "fallback_model",
})
TELEGRAM_FIELDS = frozenset({"enabled", "update_every_n_links", "bot_token_env", "chat_id"})
SHUTDOWN_FIELDS = frozenset({"max_consecutive_blocks", "stop_file"})


@dataclass(frozen=True, eq=False, repr=False)
class GlobalDefaults(Record):
    """What a link gets when neither it nor its chain's `defaults` says otherwise: the home's
    settings (LLMAUTO_PERMISSION_MODE, LLMAUTO_ALLOWED_TOOLS, LLMAUTO_DEFAULT_MODEL), which default
    to the original llmauto's."""

    permission_mode: str | None = DEFAULT_PERMISSION_MODE
    allowed_tools: tuple[str, ...] | None = DEFAULT_ALLOWED_TOOLS
    timeout_s: float = DEFAULT_TIMEOUT_S
    stall_s: float = DEFAULT_STALL_S
    model: str = DEFAULT_MODEL

    @classmethod
    def from_settings(cls, settings: Settings) -> GlobalDefaults:  # pragma: no mutate block (not validation)
        return cls(permission_mode=settings.permission_mode, allowed_tools=settings.allowed_tools,
                   model=settings.default_model)


def _check_name(name: str) -> None:
    if not name or not _NAME.match(name) or name in (".", "..") or name.startswith("."):
        raise BadChainName(f"bad chain name {name!r}: use letters, digits, '_', '.', '-' (not starting with '.')")


def chain_path(home: Path, name: str) -> Path:
    """chains/NAME.json, refusing names and symlinks that lead outside chains/."""
    _check_name(name)
    chains = (home / "chains").resolve()
    path = chains / f"{name}.json"
    resolved = path.resolve()
    if resolved.parent != chains and chains not in resolved.parents:
        raise BadChainName(f"chain {name!r} resolves outside {chains} (to {resolved})")
    return path


def chain_names(home: Path) -> list[str]:  # pragma: no mutate block (not validation)
    folder = home / "chains"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if _NAME.match(p.stem) and not p.stem.startswith("."))


def load_chain(
    home: Path, name_or_file: str, *, tz: tzinfo | None = None, global_defaults: GlobalDefaults | None = None,
    allow_file: bool = False, settings: Settings | None = None,
) -> ChainDef:
    """Load and validate a chain by name (chains/NAME.json) or, with `allow_file` (only `chain
    validate` uses it: it checks a candidate before it is copied in), from a .json file path. Whatever
    runs is always a name inside chains/, never a file from elsewhere."""
    looks_like_file = allow_file and name_or_file.endswith(".json") and ("/" in name_or_file or Path(name_or_file).is_file())
    if looks_like_file:
        path = Path(name_or_file).expanduser()
        if not path.is_file():
            raise UnknownChain(name_or_file, chain_names(home))
        name = path.stem
    else:
        path = chain_path(home, name_or_file)
        name = name_or_file
        if not path.is_file():
            raise UnknownChain(name, chain_names(home))
    if global_defaults is None:
        global_defaults = GlobalDefaults.from_settings(settings) if settings is not None else GlobalDefaults()
    return _Loader(home, path, name, tz, global_defaults).load()


class _Loader:
    """Validates one chain file, collecting every problem as 'file: field: reason'."""

    def __init__(self, home: Path, path: Path, name: str, tz: tzinfo | None, gd: GlobalDefaults) -> None:
        self.home = home
        self.path = path
        self.name = name
        self.tz = tz
        self.gd = gd
        try:
            self.label = str(path.resolve().relative_to(home.resolve()))
        except ValueError:
            self.label = str(path)
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.chain_approval: ApprovalRules | None = None

    def err(self, field_path: str, reason: str) -> None:
        self.problems.append(f"{self.label}: {field_path}: {reason}" if field_path else f"{self.label}: {reason}")

    def warn(self, field_path: str, reason: str) -> None:
        self.warnings.append(f"{self.label}: {field_path}: {reason}")

    # -- reading --
    def _document(self) -> dict[str, Any]:
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise InvalidChain([f"{self.label}: cannot read: {exc.strerror}"]) from None
        if size > MAX_CHAIN_BYTES:
            raise InvalidChain([f"{self.label}: file is {size:,} bytes, over the {MAX_CHAIN_BYTES:,}-byte limit"])
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise InvalidChain([f"{self.label}: cannot read: {exc.strerror}"]) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidChain([f"{self.label}: not UTF-8 text (invalid byte at offset {exc.start})"]) from None
        if not text.strip():
            raise InvalidChain([f"{self.label}: the file is empty"])
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise InvalidChain([f"{self.label}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"]) from None
        except ValueError as exc:
            raise InvalidChain([f"{self.label}: invalid JSON: {exc}"]) from None
        except RecursionError:
            raise InvalidChain([f"{self.label}: invalid JSON: nested too deeply"]) from None
        if not isinstance(doc, dict):
            raise InvalidChain([f"{self.label}: the top level must be an object, got {kind_of(doc)}"])
        return doc

    def load(self) -> ChainDef:
        doc = self._document()
        for key in doc:
            if key not in CHAIN_FIELDS and not str(key).startswith("_"):  # "_note" & co. are comments
                self.warn(str(key), "unknown field (ignored)")
        self.original_fields(doc)
        description = self.string(doc, "description", "") or ""
        mode = self.choice(doc, "mode", ("loop", "once", "deadend", routing.CONDITIONAL_MODE), "loop")
        conditional = mode == routing.CONDITIONAL_MODE
        if conditional:
            mode = "loop"
        max_bounces = self.integer(doc, "max_bounces", routing.DEFAULT_MAX_BOUNCES, minimum=1)
        max_rounds = self.integer(doc, "max_rounds", DEFAULT_MAX_ROUNDS, minimum=0)
        runtime_hours = self.number(doc, "runtime_hours", 0.0, minimum=0.0)
        deadline = self.deadline(doc)
        shutdown: dict[str, Any] = doc["shutdown"] if isinstance(doc.get("shutdown"), dict) else {}
        blocks_default = self.integer(shutdown, "max_consecutive_blocks", 3, minimum=0, path="shutdown.")
        max_blocks = self.integer(doc, "max_consecutive_blocks", blocks_default, minimum=0)
        max_cost = self.number(doc, "max_cost_usd", None, minimum=0.0, exclusive=True)
        workdir = self.workdir(doc)
        on_blocked = self.choice(doc, "on_blocked", ("continue", "wait"), "continue")
        wait_min = self.number(doc, "blocked_wait_minutes", DEFAULT_BLOCKED_WAIT_S / 60, minimum=0.0, exclusive=True)
        notify_every = self.notify(doc)
        env_allow = self.env_names(doc, "env_allow")
        prompts = self.prompts(doc)
        defaults = self.defaults(doc)
        self.chain_approval = self.approve(doc, "")
        links = self.links(doc, prompts, defaults)
        links = self.opus_deep_limit(doc, links)
        links = self.routes(doc, links, routing.CONDITIONAL_MODE if conditional else mode)
        task_pool = self.task_pool(doc, workdir)
        every_n = self.telegram(doc)
        runs_on = self.runs_on(doc)
        if self.problems:
            raise InvalidChain(self.problems)
        version = doc.get("version")
        return ChainDef(
            notify_every_n_links=every_n,
            version=str(version) if isinstance(version, str | int | float) and not isinstance(version, bool) else None,
            name=self.name, path=self.path, description=description, mode=mode,  # type: ignore[arg-type]
            max_rounds=int(max_rounds or 0), runtime_hours=float(runtime_hours or 0.0), deadline=deadline,
            max_consecutive_blocks=int(max_blocks if max_blocks is not None else 3), max_cost_usd=max_cost,
            workdir=workdir, on_blocked=on_blocked, blocked_wait_s=float(wait_min or 0) * 60,  # type: ignore[arg-type]
            notify_every_link=notify_every, env_allow=env_allow, links=tuple(links), warnings=tuple(self.warnings),
            conditional=conditional, max_bounces=int(max_bounces or routing.DEFAULT_MAX_BOUNCES), task_pool=task_pool,
            runs_on=runs_on,
        )

    def approve(self, obj: dict[str, Any], path: str) -> ApprovalRules | None:
        """`approve`: {"ask": [rules], "deny": [rules], "timeout_minutes": 30, "on_timeout": "deny"}."""
        raw = obj.get("approve")
        if raw is None:
            return None
        where = path + "approve"
        if not isinstance(raw, dict):
            self.err(where, f"expected an object with ask, deny, timeout_minutes, on_timeout, got {kind_of(raw)}")
            return None
        for key in raw:
            if key not in APPROVE_FIELDS:
                self.warn(f"{where}.{key}", "unknown field (ignored)")
        ask, problems = check_rules(raw.get("ask", []), f"{where}.ask")
        deny, more = check_rules(raw.get("deny", []), f"{where}.deny")
        for problem in (*problems, *more):
            self.err("", problem)
        minutes = self.number(raw, "timeout_minutes", 30.0, minimum=0.0, exclusive=True, path=f"{where}.")
        on_timeout = self.choice(raw, "on_timeout", ON_TIMEOUT, "deny", f"{where}.")
        return ApprovalRules(ask=ask, deny=deny, timeout_s=float(minutes or 30.0) * 60, on_timeout=on_timeout)

    # -- #13: verdict routing and task pools --
    def routes(self, doc: dict[str, Any], links: list[LinkDef], mode: str) -> list[LinkDef]:
        """Each link's `routes`, checked against the chain's link names; then the whole chain's
        routing (unreachable links, a conditional chain that routes nothing) as warnings."""
        raw_links = doc.get("links")
        if not isinstance(raw_links, list) or len(raw_links) != len(links):
            return links  # a link failed to load: its problem is already reported
        names = [link.name for link in links]
        out = list(links)
        for i, item in enumerate(raw_links):
            if not isinstance(item, dict) or item.get("routes") is None:
                continue
            if mode in ("once", "deadend"):
                self.warn(f"links[{i}].routes", f"mode {mode!r} never loops back: 'next' after the last link ends the run")
            parsed, problems = routing.parse_routes(item["routes"], names, f"links[{i}].routes")
            for problem in problems:
                self.err(problem.field, problem.reason)
            out[i] = replace(out[i], routes=parsed)
        for warning in routing.check_chain(names, {n.name: n.routes for n in reversed(out)}, mode):
            field_path, _, reason = warning.partition(": ")
            self.warn(field_path, reason)
        return out

    def task_pool(self, doc: dict[str, Any], workdir: Path | None) -> PoolDef | None:
        """The chain's `task_pool`: its shape, then the disk (missing, unreadable, outside the
        workdir, too large are errors with the reason)."""
        if doc.get("task_pool") is None:
            return None  # the task pool modules are imported by the chains that have one (#14)
        from engine.taskpool import check_pool
        from engine.tasks import parse_pool

        pool, problems = parse_pool(doc.get("task_pool"))
        for problem in problems:
            self.err(problem.field, problem.reason)
        if pool is None:
            return None
        for problem in check_pool(pool, workdir or self.home.resolve()):
            self.err(problem.field, problem.reason)
        return pool

    # -- the original llmauto's fields --
    def original_fields(self, doc: dict[str, Any]) -> None:
        """Fields the original's chain files carry: checked, and said plainly where llmauto differs."""
        chain_name = doc.get("chain_name")
        if chain_name is not None and not isinstance(chain_name, str):
            self.err("chain_name", f"expected a string, got {kind_of(chain_name)}")
        elif chain_name and chain_name != self.name:
            self.warn("chain_name", f"{chain_name!r} differs from the file name; the chain is called {self.name!r}")
        version = doc.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, str | int | float)):
            self.err("version", f"expected a string or a number, got {kind_of(version)}")
        if "task_pools" in doc:
            self.warn("task_pools", "not used by llmauto (the original never read it either)")
        shutdown = doc.get("shutdown")
        if shutdown is not None:
            if not isinstance(shutdown, dict):
                self.err("shutdown", f"expected an object, got {kind_of(shutdown)}")
            else:
                for key in shutdown:
                    if key not in SHUTDOWN_FIELDS:
                        self.warn(f"shutdown.{key}", "unknown field (ignored)")
                if "stop_file" in shutdown:
                    self.warn("shutdown.stop_file", f"ignored: the stop file is state/{self.name}/STOP")

    def telegram(self, doc: dict[str, Any]) -> int | None:
        """The original's `telegram` section: `update_every_n_links` is honoured (a note every N links);
        the bot's token and chat come from the home's settings, never from a chain file."""
        raw = doc.get("telegram")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.err("telegram", f"expected an object, got {kind_of(raw)}")
            return None
        for key in raw:
            if key not in TELEGRAM_FIELDS:
                self.warn(f"telegram.{key}", "unknown field (ignored)")
        for key in ("bot_token_env", "chat_id"):
            if raw.get(key):
                self.warn(f"telegram.{key}", "ignored: the bot's token and chat come from .env "
                                             "(TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID)")
        self.boolean(raw, "enabled", True, "telegram.")
        return self.integer(raw, "update_every_n_links", None, minimum=1, path="telegram.")

    def opus_deep_limit(self, doc: dict[str, Any], links: list[LinkDef]) -> list[LinkDef]:
        """The original's `opus_deep_limit` (its controllers were asked to count opus-deep runs
        themselves) becomes a real limit: `max_runs` of the link named opus-deep."""
        limit = self.integer(doc, "opus_deep_limit", None, minimum=0)
        if limit is None:
            return links
        targets = [i for i, link in enumerate(links) if link.name == "opus-deep" or link.name.startswith("opus-deep")]
        if not targets:
            self.warn("opus_deep_limit", "no link named opus-deep: ignored")
            return links
        out = list(links)
        for i in targets:
            if out[i].max_runs is None:
                out[i] = replace(out[i], max_runs=limit)
                self.warn("opus_deep_limit", f"applied as links[{i}].max_runs = {limit}: {out[i].name} runs at most "
                                             f"{limit} time(s) per run, then is skipped and the controller is told")
        return out

    # -- field kinds --
    def string(self, obj: dict[str, Any], key: str, default: str | None, path: str = "") -> str | None:
        if key not in obj or obj[key] is None:
            return default
        value = obj[key]
        if not isinstance(value, str):
            self.err(path + key, f"expected a string, got {kind_of(value)}")
            return default
        return value

    def choice(self, obj: dict[str, Any], key: str, options: tuple[str, ...], default: str, path: str = "") -> str:
        value = self.string(obj, key, default, path)
        if value not in options:
            self.err(path + key, f"expected one of {', '.join(options)}, got {value!r}")
            return default
        return value

    def boolean(self, obj: dict[str, Any], key: str, default: bool, path: str = "") -> bool:
        if key not in obj or obj[key] is None:
            return default
        if not isinstance(obj[key], bool):
            self.err(path + key, f"expected true or false, got {kind_of(obj[key])}")
            return default
        return bool(obj[key])

    def integer(self, obj: dict[str, Any], key: str, default: int | None, *, minimum: int, path: str = "") -> int | None:
        if key not in obj or obj[key] is None:
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and math.isfinite(value):
                value = int(value)
            else:
                self.err(path + key, f"expected a whole number, got {kind_of(value)}")
                return default
        if value < minimum:
            self.err(path + key, f"must be at least {minimum}, got {value}")
            return default
        return int(value)

    def number(
        self, obj: dict[str, Any], key: str, default: float | None, *, minimum: float, exclusive: bool = False, path: str = "",
    ) -> float | None:
        if key not in obj or obj[key] is None:
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.err(path + key, f"expected a number, got {kind_of(value)}")
            return default
        if value < minimum or (exclusive and value == minimum):
            self.err(path + key, f"must be {'greater than' if exclusive else 'at least'} {minimum:g}, got {value:g}")
            return default
        return float(value)

    def deadline(self, doc: dict[str, Any]) -> datetime | None:
        raw = self.string(doc, "deadline", None)
        if raw is None or not raw.strip():
            return None
        zone = self.tz or datetime.now().astimezone().tzinfo
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
                when = datetime.combine(date.fromisoformat(raw.strip()), time(0, 0))
            else:
                when = datetime.fromisoformat(raw.strip())
        except ValueError:
            self.err("deadline", f"expected an ISO date or datetime (2026-12-01 or 2026-12-01T18:00), got {raw!r}")
            return None
        return when if when.tzinfo else when.replace(tzinfo=zone)

    def runs_on(self, doc: dict[str, Any]) -> str | None:
        """`runs_on`: the worker queue (a name like `buildbox`) whose workers run this chain's links."""
        raw = self.string(doc, "runs_on", None)
        if raw is None:
            return None
        if not QUEUE_NAME.fullmatch(raw):
            self.err("runs_on", f"expected a queue name (letters, digits, - _ ., up to 64), got {raw!r}")
            return None
        return raw

    def workdir(self, doc: dict[str, Any]) -> Path | None:
        raw = self.string(doc, "workdir", None)
        if raw is None or not raw.strip():
            return None
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.home / path
        if not path.is_dir():
            self.err("workdir", f"{raw!r} is not a directory")
            return None
        return path.resolve()

    def notify(self, doc: dict[str, Any]) -> bool:
        every = self.boolean(doc, "notify_every_link", False)
        if "notify" in doc and doc["notify"] is not None:
            return self.choice(doc, "notify", ("links", "every_link"), "links") == "every_link" or every
        return every

    def env_names(self, obj: dict[str, Any], key: str, path: str = "") -> tuple[str, ...] | None:
        if key not in obj or obj[key] is None:
            return None
        value = obj[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and _ENV_NAME.match(v) for v in value):
            self.err(path + key, "expected a list of environment variable names")
            return None
        return tuple(value)

    def env_map(self, obj: dict[str, Any], key: str, path: str) -> dict[str, str]:
        if key not in obj or obj[key] is None:
            return {}
        value = obj[key]
        if not isinstance(value, dict):
            self.err(path + key, f"expected an object of NAME: value, got {kind_of(value)}")
            return {}
        out = {}
        for k, v in value.items():
            if not _ENV_NAME.match(str(k)):
                self.err(f"{path}{key}.{k}", "not a valid environment variable name")
            elif not isinstance(v, str):
                self.err(f"{path}{key}.{k}", f"expected a string, got {kind_of(v)}")
            else:
                out[str(k)] = v
        return out

    def tools(self, obj: dict[str, Any], key: str, path: str) -> tuple[str, ...] | None:
        if key not in obj or obj[key] is None:
            return None
        value = obj[key]
        if isinstance(value, str):
            return split_tools(value)
        if isinstance(value, list) and all(isinstance(t, str) for t in value):
            return tuple(t.strip() for t in value if t.strip())
        self.err(path + key, f"expected a list of tool names or a space-separated string, got {kind_of(value)}")
        return None

    def defaults(self, doc: dict[str, Any]) -> dict[str, Any]:
        raw = doc.get("defaults")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.err("defaults", f"expected an object, got {kind_of(raw)}")
            return {}
        for key in raw:
            if key not in DEFAULT_FIELDS:
                self.warn(f"defaults.{key}", "unknown field (ignored)")
        out: dict[str, Any] = {}
        if "permission_mode" in raw and raw["permission_mode"] is not None:
            out["permission_mode"] = self.choice(raw, "permission_mode", PERMISSION_MODES, "default", "defaults.")
        if (tools := self.tools(raw, "allowed_tools", "defaults.")) is not None:
            out["allowed_tools"] = tools
        if (t := self.number(raw, "timeout_seconds", None, minimum=0.0, exclusive=True, path="defaults.")) is not None:
            out["timeout_s"] = t
        if (t := self.number(raw, "stall_seconds", None, minimum=0.0, exclusive=True, path="defaults.")) is not None:
            out["stall_s"] = t
        out["env"] = self.env_map(raw, "env", "defaults.")
        if (model := self.string(raw, "model", None, "defaults.")) is not None and model.strip():
            out["model"] = model.strip()
        if (fallback := self.string(raw, "fallback_model", None, "defaults.")) is not None and fallback.strip():
            out["fallback_model"] = fallback.strip()
        return out

    # -- prompts --
    def prompts(self, doc: dict[str, Any]) -> dict[str, str]:
        raw = doc.get("prompts")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.err("prompts", f"expected an object of key: prompt, got {kind_of(raw)}")
            return {}
        resolved: dict[str, str] = {}

        def resolve(key: str, trail: tuple[str, ...]) -> str | None:
            if key in resolved:
                return resolved[key]
            if key in trail:
                self.err(f"prompts.{trail[0]}", "cycle of prompt references " + " -> ".join((*trail, key)))
                return None
            entry = raw[key]
            text: str | None
            if isinstance(entry, str):
                text = entry
            elif isinstance(entry, dict):
                kind = entry.get("type", "inline")
                if kind == "file":
                    text = self.prompt_file(entry.get("path"), f"prompts.{key}.path")
                elif kind in ("inline", "template"):
                    # The original's own chains write {"type": "inline", "content": ...}; "text" is
                    # accepted too, and its schema's "template" kind keeps its text in "template".
                    field_name = next((f for f in ("content", "text", "template") if f in entry), "content")
                    text = entry.get(field_name) if isinstance(entry.get(field_name), str) else None
                    if text is None:
                        self.err(f"prompts.{key}.{field_name}", "expected a string")
                elif kind == "ref":
                    target = entry.get("key")
                    if not isinstance(target, str) or target not in raw:
                        self.err(f"prompts.{key}.key", f"no prompt key {target!r}")
                        return None
                    text = resolve(target, (*trail, key))
                else:
                    self.err(f"prompts.{key}.type", f"expected file, inline or ref, got {kind!r}")
                    return None
            else:
                self.err(f"prompts.{key}", f"expected text or an object, got {kind_of(entry)}")
                return None
            if text is not None:
                resolved[key] = text
            return text

        for key in raw:
            resolve(str(key), ())
        return resolved

    def prompt_file(self, raw: Any, field_path: str) -> str | None:
        if not isinstance(raw, str) or not raw.strip():
            self.err(field_path, "expected a file path")
            return None
        if Path(raw).is_absolute():
            self.err(field_path, f"{raw!r}: absolute paths are not allowed; use a path inside the home folder")
            return None
        home = self.home.resolve()
        for base in (self.home / "prompts", self.home):
            candidate = (base / raw).resolve()
            if home not in candidate.parents:
                self.err(field_path, f"{raw!r} leads outside the home folder")
                return None
            if candidate.is_file():
                try:
                    if candidate.stat().st_size > MAX_PROMPT_BYTES:
                        self.err(field_path, f"{raw!r} is larger than {MAX_PROMPT_BYTES:,} bytes")
                        return None
                    return candidate.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    self.err(field_path, f"{raw!r} is not UTF-8 text")
                    return None
                except OSError as exc:
                    self.err(field_path, f"{raw!r}: {exc.strerror}")
                    return None
        self.err(field_path, f"no prompt file {raw!r} in prompts/ or the home folder")
        return None

    def link_prompt(self, value: Any, prompts: dict[str, str], field_path: str) -> tuple[str, str] | None:
        """(text, where it came from), looked up in the original's order: the chain's `prompts`
        section, then prompts/KEY, prompts/KEY.txt, prompts/KEY.md (and the same names in the
        home folder), then the value itself as inline text."""
        if not isinstance(value, str):
            self.err(field_path, f"expected a prompt key, a file in prompts/, or text, got {kind_of(value)}")
            return None
        if value in prompts:
            return prompts[value], f"prompts.{value}"
        if not value.strip():
            self.err(field_path, "empty prompt")
            return None
        if re.search(r"\s", value.strip()):
            return value, "inline"
        if Path(value).is_absolute() or ".." in Path(value).parts:
            text = self.prompt_file(value, field_path)  # refused there, with the reason
            return None if text is None else (text, value)
        for candidate in (value, f"{value}.txt", f"{value}.md"):
            for base, shown in ((self.home / "prompts", f"prompts/{candidate}"), (self.home, candidate)):
                if (base / candidate).is_file():
                    text = self.prompt_file(candidate, field_path)
                    return None if text is None else (text, shown)
        if value.endswith((".md", ".txt")) or "/" in value:
            self.err(field_path, f"no prompt key or file {value!r}")
            return None
        self.warn(field_path, f"{value!r} is used as the prompt text itself: there is no prompts key {value!r} "
                              f"and no file prompts/{value}, prompts/{value}.txt or prompts/{value}.md")
        return value, "inline"

    # -- links --
    def links(self, doc: dict[str, Any], prompts: dict[str, str], defaults: dict[str, Any]) -> list[LinkDef]:
        raw = doc.get("links")
        if not isinstance(raw, list) or not raw:
            self.err("links", "expected a non-empty list of links" + ("" if raw is None else f", got {kind_of(raw)}"))
            return []
        out: list[LinkDef] = []
        for i, item in enumerate(raw):
            p = f"links[{i}]."
            if not isinstance(item, dict):
                self.err(f"links[{i}]", f"expected an object, got {kind_of(item)}")
                continue
            for key in item:
                if key not in LINK_FIELDS:
                    self.warn(p + str(key), "unknown field (ignored)")
            name = self.string(item, "name", None, p)
            if name is None:
                if item.get("name") is None:
                    self.err(p + "name", "required")
                continue
            if not _NAME.match(name):
                self.err(p + "name", f"{name!r}: use letters, digits, '_', '.', '-'")
            # A name may repeat (the original's forschung-kritik-schleife runs r-scientist three times):
            # such links share their claude session (`continue`) and their run count (`max_runs`).
            role = self.choice(item, "role", ("worker", "reviewer", "controller"), "worker", p)
            model = self.string(item, "model", None, p)
            command = self.command(item, p)
            if model is not None and command is not None:
                self.err(f"links[{i}]", "give a model or a command, not both")
            elif model is not None and not model.strip():
                self.err(p + "model", "empty model name")
            if command is None and not (model and model.strip()):
                model = defaults.get("model", self.gd.model)  # the original's default model
            prompt, prompt_source = "", "inline"
            if "prompt" in item and item["prompt"] is not None:
                found = self.link_prompt(item["prompt"], prompts, p + "prompt")
                if found is not None:
                    prompt, prompt_source = found
            elif command is None:
                self.err(p + "prompt", "required for a model link")
            perm = defaults.get("permission_mode", self.gd.permission_mode)
            if "permission_mode" in item and item["permission_mode"] is not None:
                perm = self.choice(item, "permission_mode", PERMISSION_MODES, "default", p)
            tools = self.tools(item, "allowed_tools", p)
            if tools is not None:
                tools_source = f"links[{i}].allowed_tools"
            elif "allowed_tools" in defaults:
                tools_source = "defaults.allowed_tools"
            else:
                tools_source = "LLMAUTO_ALLOWED_TOOLS"
            if "task_pool" in item:
                self.warn(p + "task_pool", "not used by llmauto (the original never read it either)")
            approval = self.approve(item, p) or self.chain_approval or ApprovalRules()
            if approval and command is not None:
                self.warn(p + "approve", "a command link asks nobody: ignored")
                approval = ApprovalRules()
            if approval and perm == "bypassPermissions":
                self.err(p + "permission_mode", "bypassPermissions with approve: claude never asks under "
                                                "bypassPermissions, so no call would reach the phone")
            timeout = self.number(item, "timeout_seconds", None, minimum=0.0, exclusive=True, path=p)
            stall = self.number(item, "stall_seconds", None, minimum=0.0, exclusive=True, path=p)
            env = {**defaults.get("env", {}), **self.env_map(item, "env", p)}
            out.append(LinkDef(
                name=name, role=role, model=model, command=command, prompt=prompt,  # type: ignore[arg-type]
                continue_session=self.boolean(item, "continue", False, p),
                fallback_model=self.string(item, "fallback_model", None, p) or defaults.get("fallback_model"),
                until_full=self.boolean(item, "until_full", False, p),
                telegram_update=self.boolean(item, "telegram_update", False, p),
                permission_mode=perm,
                allowed_tools=tools if tools is not None else defaults.get("allowed_tools", self.gd.allowed_tools),
                timeout_s=timeout or defaults.get("timeout_s", self.gd.timeout_s),
                stall_s=stall or defaults.get("stall_s", self.gd.stall_s),
                env=env,
                description=self.string(item, "description", "", p) or "",
                max_runs=self.integer(item, "max_runs", None, minimum=0, path=p),
                tools_source=tools_source,
                prompt_source=prompt_source if command is None else "command",
                approval=approval,
            ))
        return out

    def command(self, item: dict[str, Any], p: str) -> tuple[str, ...] | None:
        if "command" not in item or item["command"] is None:
            return None
        value = item["command"]
        if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
            self.err(p + "command", "expected a non-empty list of strings (argv)")
            return None
        if not value[0].strip():
            self.err(p + "command", "the program name is empty")
            return None
        return tuple(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
