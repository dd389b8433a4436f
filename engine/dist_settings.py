"""The distributed mode's settings (issue #15), read from the frozen `Settings`' environment.

- `LLMAUTO_QUEUE_URL`: the PostgreSQL database of procrastinate's queue and the distributed
  tables; defaults to `LLMAUTO_DATABASE_URL`. Unset (both): the embedded mode, exactly as before.
- `LLMAUTO_WORKER_HEARTBEAT_S` (default 5): how often a worker says it is alive.
- `LLMAUTO_WORKER_LOST_AFTER_S` (default 20): a worker silent this long is lost; its link is
  retried elsewhere. The bound: a worker killed mid-link is noticed at most LOST_AFTER + the
  check interval (HEARTBEAT) after its last heartbeat, i.e. within LOST_AFTER + 2 x HEARTBEAT of
  its death (30 s with the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.settings import Settings, parse_duration_s


@dataclass(frozen=True, kw_only=True)
class DistSettings:
    queue_url: str | None
    heartbeat_s: float = 5.0
    lost_after_s: float = 20.0
    max_parallel_links: int = 4  # account-wide (LLMAUTO_MAX_PARALLEL_LINKS)

    @property
    def enabled(self) -> bool:
        return self.queue_url is not None

    @property
    def detection_bound_s(self) -> float:
        """The longest a dead worker's link waits before it is retried elsewhere."""
        return self.lost_after_s + 2 * self.heartbeat_s

    @classmethod
    def from_settings(cls, settings: Settings) -> DistSettings:
        env = settings.environ
        url = (env.get("LLMAUTO_QUEUE_URL") or env.get("LLMAUTO_DATABASE_URL") or "").strip() or None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"LLMAUTO_QUEUE_URL: expected a postgresql:// URL, got {url.split(':')[0]}:...")
        heartbeat = parse_duration_s(env.get("LLMAUTO_WORKER_HEARTBEAT_S"), "LLMAUTO_WORKER_HEARTBEAT_S", 5.0)
        lost = parse_duration_s(env.get("LLMAUTO_WORKER_LOST_AFTER_S"), "LLMAUTO_WORKER_LOST_AFTER_S", 20.0)
        if heartbeat <= 0 or lost <= heartbeat:
            raise ConfigError("LLMAUTO_WORKER_LOST_AFTER_S must be longer than LLMAUTO_WORKER_HEARTBEAT_S (> 0)")
        return cls(queue_url=url, heartbeat_s=heartbeat, lost_after_s=lost,
                   max_parallel_links=settings.max_parallel_links)
