"""Settings: read once at the edge (CLI, serve) into a frozen object and passed down.

The env file is read first; the process environment wins. Library modules never read
`os.environ`. The env file is the home's `.env`, or `LLMAUTO_ENV_FILE` (a path, relative to the
home; `none`: no file, the environment only). Agents run as the same user in a folder that is by
default the home itself, so a `.env` there is a file they can read: keeping the secrets elsewhere
is the way to keep them from agents (see `engine.exposure`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine import dburl
from engine.errors import ConfigError
from engine.records import Record

DEFAULT_API_BASE = "https://api.telegram.org/bot"
# The original llmauto's defaults (its config.json): every link may read, edit, write and run
# commands, and claude refuses anything else without asking (there is nobody to ask in -p).
DEFAULT_PERMISSION_MODE = "dontAsk"
DEFAULT_ALLOWED_TOOLS: tuple[str, ...] = ("Read", "Edit", "Write", "Bash", "Glob", "Grep")
DEFAULT_MODEL = "claude-sonnet-4-6"
PERMISSION_MODES = ("acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan")


def split_tools(raw: str) -> tuple[str, ...]:
    """Tool rules from a list written as text: separated by commas or spaces, except inside
    parentheses, so `Read, Bash(git diff:*)` is two rules (the claude CLI reads them alike)."""
    rules: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in raw:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if depth == 0 and (ch == "," or ch.isspace()):
            if current:
                rules.append("".join(current))
                current = []
            continue
        current.append(ch)
    if current:
        rules.append("".join(current))
    return tuple(r.strip() for r in rules if r.strip())


# A variable whose name holds one of these words has a secret value (masked everywhere) ...
SECRET_WORDS = ("TOKEN", "SECRET", "API_KEY", "KEY", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL", "PRIVATE")
# ... unless its name ends in one of these (it names a file, a folder, a socket or an account).
NOT_SECRET_SUFFIXES = ("_PATH", "_FILE", "_DIR", "_SOCK", "_ID", "_USER", "_USERNAME")
MIN_SECRET_CHARS = 8  # shorter values would mask ordinary words


def is_secret_name(key: str) -> bool:
    name = key.upper()
    return any(w in name for w in SECRET_WORDS) and not name.endswith(NOT_SECRET_SUFFIXES)


def default_parallel_links() -> int:
    """One claude process costs ~300 MB and some CPU; two per core, capped, is a sane default."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, optional `export `, single or double quotes."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _ids(raw: str, name: str) -> frozenset[int]:
    out: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.add(int(part))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a numeric Telegram user id") from None
    return frozenset(out)


def _positive_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}: must be at least 1, got {value}")
    return value


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
DEFAULT_MISSED_RUN_GRACE_S = 3600.0


def parse_duration_s(raw: str | None, name: str, default: float) -> float:
    """'90m', '2h', '1h30m', '45s' or plain seconds ('5400') -> seconds; empty -> default."""
    text = (raw or "").strip().lower().replace(" ", "")
    if not text:
        return default
    try:
        return _non_negative(float(text), raw, name)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        raise ConfigError(f"{name}: expected a duration like 90m, 2h or 3600 (seconds), got {raw!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return _non_negative(hours * 3600 + minutes * 60 + seconds, raw, name)


def _non_negative(value: float, raw: str | None, name: str) -> float:
    if not value >= 0 or value == float("inf"):  # also NaN
        raise ConfigError(f"{name}: expected a duration like 90m, 2h or 3600 (seconds), got {raw!r}")
    return value


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Settings(Record):
    home: Path
    telegram_token: str | None = field(default=None, repr=False)
    allowed_user_ids: frozenset[int] = frozenset()
    viewer_user_ids: frozenset[int] = frozenset()
    chat_id: int | None = None
    api_base_url: str = DEFAULT_API_BASE
    claude_bin: str = "claude"
    max_parallel_links: int = field(default_factory=default_parallel_links)
    timezone: str | None = None
    # After a crash, `serve` resumes interrupted chains by itself ("auto") or asks in the chat ("ask").
    recovery: str = "auto"
    # On SIGTERM, `serve` kills the running links at once ("interrupt": they run again on the next
    # start) or lets each finish its current link first ("finish", at most the link's timeout).
    on_shutdown: str = "interrupt"
    # "HH:MM": the chat gets a summary of what ran since the last one, every day at that time.
    summary_at: str | None = None
    # A scheduled firing missed while serve was down still runs when serve starts at most this late.
    missed_run_grace_s: float = DEFAULT_MISSED_RUN_GRACE_S
    # The environment the engine was started with (after .env), handed to agents minus secrets.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Permissions and model of links whose chain sets none (LLMAUTO_PERMISSION_MODE,
    # LLMAUTO_ALLOWED_TOOLS, LLMAUTO_DEFAULT_MODEL): the original llmauto's defaults.
    permission_mode: str = DEFAULT_PERMISSION_MODE
    allowed_tools: tuple[str, ...] = DEFAULT_ALLOWED_TOOLS
    default_model: str = DEFAULT_MODEL
    warnings: tuple[str, ...] = ()
    # The env file that was read (None: none, the environment only) and the names it sets.
    env_file: Path | None = None
    env_file_keys: frozenset[str] = frozenset()
    # LLMAUTO_DATABASE_URL: the PostgreSQL database of the store (issue #15); None: the home's
    # SQLite file. It may hold a password: secrets() has it, and repr never shows it.
    database_url: str | None = field(default=None, repr=False)

    @property
    def chains_dir(self) -> Path:
        return self.home / "chains"

    @property
    def prompts_dir(self) -> Path:
        return self.home / "prompts"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "llmauto.db"

    @property
    def shutdown_kills_links(self) -> bool:
        return self.on_shutdown == "interrupt"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log, a message or the database: the bot token and every
        secret-looking variable of the env file and the environment (`is_secret_name`), at least
        MIN_SECRET_CHARS long. (Agents get the API keys they need, not the TELEGRAM_ ones.)"""
        found = [self.telegram_token or ""]
        found += [value.strip() for key, value in self.environ.items() if is_secret_name(key)]
        # The store's and the queue's URLs (#15) may carry a password: it and the whole URL are secrets.
        for url in (self.database_url, self.environ.get("LLMAUTO_QUEUE_URL")):
            if url and dburl.password(url):
                found += [url.strip(), dburl.password(url) or ""]
        return tuple(sorted({s for s in found if len(s) >= MIN_SECRET_CHARS}, key=lambda s: (-len(s), s)))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, home: Path | None = None) -> Settings:
        """Read `.env` in the home folder, then the environment (which wins)."""
        env = dict(os.environ if environ is None else environ)
        home = (home or Path(env.get("LLMAUTO_HOME") or Path.cwd())).expanduser().resolve()
        warnings: list[str] = []
        dotenv = env_file_path(home, env.get("LLMAUTO_ENV_FILE"))
        from_file = _read_env_file(dotenv, warnings) if dotenv is not None else {}
        merged = {**from_file, **env}

        chat_raw = merged.get("TELEGRAM_CHAT_ID", "").strip()
        try:
            chat_id = int(chat_raw) if chat_raw else None
        except ValueError:
            raise ConfigError(f"TELEGRAM_CHAT_ID: {chat_raw!r} is not a numeric chat id") from None
        tz = merged.get("LLMAUTO_TIMEZONE", "").strip() or None
        if tz is not None:
            from engine.zones import find_zone

            canonical = find_zone(tz)
            if canonical is None:
                raise ConfigError(f"LLMAUTO_TIMEZONE: unknown time zone {tz!r} (an IANA name such as Europe/Berlin)")
            tz = canonical
        recovery = merged.get("LLMAUTO_RECOVERY", "").strip().lower() or "auto"
        if recovery not in ("auto", "ask"):
            raise ConfigError(f"LLMAUTO_RECOVERY: expected auto or ask, got {recovery!r}")
        on_shutdown = merged.get("LLMAUTO_ON_SHUTDOWN", "").strip().lower() or "interrupt"
        if on_shutdown not in ("interrupt", "finish"):
            raise ConfigError(f"LLMAUTO_ON_SHUTDOWN: expected interrupt or finish, got {on_shutdown!r}")
        summary_at = merged.get("LLMAUTO_SUMMARY_AT", "").strip() or None
        if summary_at is not None and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", summary_at):
            raise ConfigError(f"LLMAUTO_SUMMARY_AT: expected a time like 07:30, got {summary_at!r}")
        grace_s = parse_duration_s(merged.get("LLMAUTO_MISSED_RUN_GRACE"), "LLMAUTO_MISSED_RUN_GRACE",
                                   DEFAULT_MISSED_RUN_GRACE_S)
        permission_mode = merged.get("LLMAUTO_PERMISSION_MODE", "").strip() or DEFAULT_PERMISSION_MODE
        if permission_mode not in PERMISSION_MODES:
            raise ConfigError(f"LLMAUTO_PERMISSION_MODE: expected one of {', '.join(PERMISSION_MODES)}, "
                              f"got {permission_mode!r}")
        tools_raw = merged.get("LLMAUTO_ALLOWED_TOOLS")
        allowed_tools = DEFAULT_ALLOWED_TOOLS if tools_raw is None or not tools_raw.strip() else split_tools(tools_raw)
        default_model = merged.get("LLMAUTO_DEFAULT_MODEL", "").strip() or DEFAULT_MODEL
        database_url = merged.get(dburl.VARIABLE, "").strip() or None
        if database_url is not None and (problem := dburl.check(database_url)) is not None:
            raise ConfigError(problem)
        return cls(
            database_url=database_url,
            permission_mode=permission_mode,
            allowed_tools=allowed_tools,
            default_model=default_model,
            missed_run_grace_s=grace_s,
            recovery=recovery,
            on_shutdown=on_shutdown,
            summary_at=summary_at,
            home=home,
            telegram_token=merged.get("TELEGRAM_BOT_TOKEN", "").strip() or None,
            allowed_user_ids=_ids(merged.get("TELEGRAM_ALLOWED_USER_IDS", ""), "TELEGRAM_ALLOWED_USER_IDS"),
            viewer_user_ids=_ids(merged.get("TELEGRAM_VIEWER_USER_IDS", ""), "TELEGRAM_VIEWER_USER_IDS"),
            chat_id=chat_id,
            api_base_url=merged.get("TELEGRAM_API_BASE_URL", "").strip() or DEFAULT_API_BASE,
            claude_bin=merged.get("CLAUDE_BIN", "").strip() or "claude",
            max_parallel_links=_positive_int(
                merged.get("LLMAUTO_MAX_PARALLEL_LINKS"), "LLMAUTO_MAX_PARALLEL_LINKS", default_parallel_links()
            ),
            timezone=tz,
            environ=merged,
            warnings=tuple(warnings),
            env_file=dotenv if dotenv is not None and dotenv.is_file() else None,
            env_file_keys=frozenset(k for k, v in from_file.items() if v.strip()),
        )


def env_file_path(home: Path, raw: str | None) -> Path | None:
    """The env file to read: LLMAUTO_ENV_FILE unset or empty: the home's `.env` (read if it
    exists); `none`: no file at all; a path (`~` expanded, relative to the home): that file,
    which must exist (a ConfigError names it otherwise: a typo must not silently drop the token)."""
    value = (raw or "").strip()
    if not value:
        return home / ".env"
    if value.lower() == "none":
        return None
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else home / path).resolve()
    if not path.is_file():
        raise ConfigError(f"LLMAUTO_ENV_FILE: {path} does not exist or is not a file "
                          "(`none`: read no file, only the environment)")
    return path


def _read_env_file(path: Path, warnings: list[str]) -> dict[str, str]:
    if not path.is_file():
        return {}
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        warnings.append(
            f"{path} is readable by other users (mode {stat.filemode(mode)}); "
            f"it holds secrets: chmod 600 {path}"
        )
    try:
        return parse_dotenv(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc

