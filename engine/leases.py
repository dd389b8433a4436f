"""Chain leases: one chain runs in one process at a time, across every llmauto process of a home.

A lease names its holder by host, pid and the pid's start time, and the holder keeps a heartbeat
in it. Taking a lease is one store transaction that succeeds when it is free or its holder is dead;
a holder on this host is dead when its pid is gone, a zombie, or another process now (the pid was
reused), and anywhere when its heartbeat is stale. Recovery tidies what a dead holder left behind
before a new run starts. The facade (`engine/engine.py`) only asks these questions; the lease
table itself is the store's.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from engine import events as ev
from engine.clock import Clock
from engine.processes import kill_group, process_is, process_start_token
from engine.statefiles import ChainFiles
from engine.store import Lease, Store

LEASE_STALE_S = 120.0


class Leases:
    """This process's side of the chain leases: its identity as a holder, and take / check /
    release / heartbeat."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.host = os.uname().nodename  # socket.gethostname() on Linux, without importing socket (#14)
        # 8 random hex digits, as uuid4().hex[:8] gave, without importing uuid (and platform) (#14)
        self.owner = f"{self.host}:{os.getpid()}:{os.urandom(4).hex()}"
        self.pid_start = process_start_token(os.getpid())  # this process, as leases name their holder

    async def take(self, chain: str) -> str | None:
        """Take the chain's lease: None once it is ours, else who holds it ("pid N on HOST")."""
        current = await self.store.lease(chain)
        dead = current is None or self.is_dead(current)
        held = await self.store.try_acquire_lease(
            chain, owner=self.owner, host=self.host, pid=os.getpid(), holder_dead=dead,
            pid_start=self.pid_start,
        )
        if held is None:
            return None
        return holder(held)

    def is_dead(self, lease: Lease) -> bool:
        """A holder on this host is dead when its pid is gone, a zombie, or now another process
        (a different start time: the pid was reused); anywhere, when its heartbeat is stale."""
        if lease.host == self.host and lease.pid != os.getpid() and not process_is(lease.pid, lease.pid_start):
            return True
        age = (self.clock.now() - datetime.fromisoformat(lease.heartbeat_at)).total_seconds()
        return age > LEASE_STALE_S

    def held_elsewhere(self, lease: Lease | None) -> str | None:
        """Who holds this lease, when a live process other than this one does."""
        if lease is None or lease.owner == self.owner or self.is_dead(lease):
            return None
        return holder(lease)

    async def check(self, chain: str) -> str | None:
        """Is the chain running in another live process? Its holder, or None."""
        return self.held_elsewhere(await self.store.lease(chain))

    async def release(self, chain: str) -> None:
        await self.store.release_lease(chain, self.owner)

    async def heartbeat(self) -> None:
        await self.store.heartbeat(self.owner)


def holder(lease: Lease) -> str:
    return f"pid {lease.pid} on {lease.host}"


async def recover(store: Store, state_dir: Path, chain: str) -> list[ev.Event]:
    """A run its dead owner left behind: kill its agent if it still runs, put the handoff back
    to the last version the engine committed (the interrupted link may have half-written it),
    mark the run interrupted and expire the approvals it waited for. The chain's counters were
    committed atomically with that version, so the new run re-runs exactly the interrupted link
    and counts no round twice. Returns the stored events, for the caller to publish."""
    links = await store.unfinished_links(chain)
    runs = [r for r in await store.open_runs() if r.chain == chain]
    if not links and not runs:
        return []
    killed = []
    for link_run in links:
        ours = link_run.pid and link_run.pid_start and process_start_token(link_run.pid) == link_run.pid_start
        if ours and link_run.pid and kill_group(link_run.pid):
            killed.append(link_run.link)
        await store.mark_link_interrupted(link_run.id)
    files = ChainFiles(state_dir, chain)
    versions = await store.handoff_versions(chain, 1)
    restored = False
    if versions and files.read_handoff().text != versions[0].content:
        files.write_handoff(versions[0].content)
        restored = True
    run_id = runs[-1].id if runs else links[-1].run_id
    for run in runs:
        await store.mark_run_interrupted(run.id, [])
    events = await expire_approvals(store, chain, "the run was interrupted (llmauto stopped or crashed)")
    st = await store.chain_state(chain)
    # The typed events are imported here, not with the module: `chain status` and `reset` stay lean (#14).
    from engine import event_types as et

    return events + await store.add_events(chain, run_id, [et.Recovered(
        link=links[-1].link if links else None, round=st.round, agents_killed=tuple(killed),
        handoff_restored=restored,
    ).new()])


async def expire_approvals(store: Store, chain: str, why: str) -> list[ev.Event]:
    """Expire the chain's pending approval requests: the run that asked is gone."""
    from engine import event_types as et

    out: list[ev.Event] = []
    for row in await store.pending_approvals(chain):
        out += await store.decide_approval(row.id, status="expired", by="llmauto", message=why, evs=[
            et.ApprovalDecided(id=row.id, link=row.link, tool=row.tool, status="expired", by="llmauto",
                               message=why).new()]) or []
    return out
