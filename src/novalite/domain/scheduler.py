"""The scheduler: where a server goes, and the claim that reserves its room there (issue 3 §3).

A placement (``select_destination``, ``move_claim``):

1. reads every live compute node with its host's nova-compute service, its generation and the sum
   of its allocations, in one statement so the three agree;
2. drops the nodes of ``ignore_hosts`` and those the consumer already holds an allocation on; a
   pinned (``requested_host``) or forced (``force_host``) request keeps only that host's first node,
   as Nova pins an evacuation to it (spec 6);
3. runs ``FILTERS`` in order — skipped for a forced host, which is still claimed (Nova's
   force=true evacuation); every rejection is logged at debug with the filter's name and reason;
4. weighs the survivors: most free RAM first (Nova's RAMWeigher, which spreads);
5. claims on the best node, else the next (Nova's alternates). When every candidate filled up
   between the read and the claim, it reads again, at most ``[scheduler] claim_attempts`` times.

A batch of placements (the scheduler process's pass) shares one read: a ``HostView`` holds every node as
read once, and each claim's fresh read of its node (under the node's lock, below) replaces that node's
state, with the claim counted in. Nova's scheduler does the same within one select_destinations: it
consumes each chosen host's resources in its HostState rather than re-reading every host. Since the view
may be a little old, a claim re-runs the compute filter (up and enabled) on the state it read under the
lock, unless the host is forced.

The claim, in one transaction: bump the node's generation (``UPDATE … SET generation = generation
+ 1 WHERE id = :id``), which locks the node until commit; re-read the node's allocations under that
lock and re-check the capacity rule (and the compute filter); insert the allocation. Releases bump the
generation too, so it counts every change of a node's usage (placement's resource-provider generation).
Why not placement's compare-and-swap (``… AND generation = :seen``, retry on a miss): the re-check
under the lock is what makes the claim safe, so the swap adds nothing but retries — and concurrent
placements all weigh the same node best, so under load nearly every claim misses. 200 parallel
claims on 3 nodes took 2,258 misses and 4.7 s on PostgreSQL that way, 0 misses and 1.7 s this way.

The nodes as a placement sees them, the capacity rule, the filters and the weigher: domain/host_states.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from novalite.config import Settings
from novalite.db import allocations as db
from novalite.domain.host_states import (
    FILTERS,
    HostState,
    Inventory,
    RequestSpec,
    Selection,
    capacity_shortfall,
    compute_filter,
    host_state,
    weigh,
)
from novalite.domain.liveness import UpWindow
from novalite.exceptions import NoValidHost

# Re-exported: what callers of the scheduler name (requests, selections, node states, the filters).
__all__ = ["FILTERS", "HostState", "HostView", "Inventory", "NOT_ENOUGH_HOSTS", "RequestSpec", "Scheduler",
           "Selection", "StaleRequest", "compute_filter"]

LOG = logging.getLogger("novalite.scheduler")

# Called inside the claim's transaction once the allocation is in: records where the consumer goes
# (the instance's host, the migration's destination) atomically with the claim. False means the
# work changed meanwhile (deleted, taken by another scheduler): the claim is rolled back.
OnClaimed = Callable[[Connection, "Selection"], bool]


class StaleRequest(Exception):
    """The work behind a placement changed before it was recorded; nothing was claimed."""

# Nova's reason when filtering leaves no host (FilterScheduler._schedule).
NOT_ENOUGH_HOSTS = "There are not enough hosts available."


class HostView:
    """The nodes as a batch of placements sees them: read once (with the nodes the batch's consumers
    already hold), then kept current by each claim's own fresh read of its node."""

    def __init__(self, states: Iterable[HostState], held: dict[str, set[int]], consumers: Iterable[str]):
        self._states = {state.node_id: state for state in states}  # by node id, as read
        self._held = held
        self._consumers = set(consumers)  # those whose held nodes were read

    def nodes(self, host: str | None = None) -> list[HostState]:
        """Every node (or ``host``'s), by node id."""
        return [s for s in self._states.values() if host is None or s.host == host]

    def held(self, consumer_uuid: str) -> set[int] | None:
        """The nodes the consumer holds an allocation on; None if it is not one of the view's consumers."""
        return self._held.get(consumer_uuid, set()) if consumer_uuid in self._consumers else None

    def replace(self, states: Iterable[HostState]) -> None:
        """Every node as read again."""
        self._states = {state.node_id: state for state in states}

    def update(self, state: HostState, claimed_by: str | None = None) -> None:
        """A node as a claim just read it (its own claim counted in if ``claimed_by``)."""
        self._states[state.node_id] = state
        if claimed_by is not None and claimed_by in self._consumers:
            self._held.setdefault(claimed_by, set()).add(state.node_id)


class Scheduler:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings

    # -- placing ----------------------------------------------------------------------------------

    def select_destination(self, spec: RequestSpec, on_claimed: OnClaimed | None = None,
                           view: HostView | None = None) -> Selection:
        """Place a new server: filter, weigh and claim (raises NoValidHost with Nova's message).
        ``view``: the batch's HostView (``view()``), else the nodes are read for this placement alone."""
        return self._place(spec, moving=False, on_claimed=on_claimed, view=view)

    def move_claim(self, spec: RequestSpec, on_claimed: OnClaimed | None = None,
                   view: HostView | None = None) -> Selection:
        """Claim a destination for an evacuation; the consumer's source allocation stays.

        Nova keeps both until the source compute restarts and cleans up (spec 6); that cleanup calls
        ``release(consumer_uuid, host=source)``. The source belongs in ``spec.ignore_hosts``; a
        forced destination without room is Nova's "Unable to move instance …" NoValidHost.
        """
        return self._place(spec, moving=True, on_claimed=on_claimed, view=view)

    def _place(self, spec: RequestSpec, *, moving: bool, on_claimed: OnClaimed | None,
               view: HostView | None) -> Selection:
        attempts = self.settings.scheduler.claim_attempts
        for attempt in range(1, attempts + 1):
            if view is None:
                view = self.view([spec.consumer_uuid], host=spec.force_host or spec.requested_host)
            elif attempt > 1:  # every candidate was lost to concurrent claims: read the nodes again
                view.replace(self.host_states())
            for state in self._candidates(spec, view, moving=moving):
                lost = self._claim(spec, state, on_claimed, view)
                if lost is None:
                    LOG.debug("claimed %s MB RAM, %s vCPUs, %s GB disk for %s on %s (attempt %d)",
                              spec.memory_mb, spec.vcpus, spec.disk_gb, spec.consumer_uuid, state, attempt)
                    return Selection(host=state.host, nodename=state.nodename, compute_node_uuid=state.node_uuid)
                LOG.debug("claim for %s on %s failed: %s", spec.consumer_uuid, state, lost)
        LOG.warning("giving up on %s after %d attempts lost to concurrent claims ([scheduler] claim_attempts)",
                    spec.consumer_uuid, attempts)
        raise NoValidHost(NOT_ENOUGH_HOSTS)

    def host_states(self, host: str | None = None) -> list[HostState]:
        """Every live node (or ``host``'s) as of now, by node id."""
        with self.engine.connect() as conn:
            return self._host_states(conn, host)

    def _host_states(self, conn: Connection, host: str | None = None) -> list[HostState]:
        window = UpWindow(self.settings.effective_service_down_time)
        zone = self.settings.DEFAULT.default_availability_zone
        return [host_state(row, window, zone) for row in db.candidate_nodes(conn, host)]

    def view(self, consumer_uuids: Iterable[str], host: str | None = None) -> HostView:
        """Every live node (or ``host``'s) and the nodes each consumer holds, read now on one connection."""
        consumers = list(consumer_uuids)
        with self.engine.connect() as conn:
            states = self._host_states(conn, host)
            held: dict[str, set[int]] = {}
            for row in db.allocations_for_consumers(conn, consumers):
                held.setdefault(row.consumer_uuid, set()).add(row.compute_node_id)
        return HostView(states, held, consumers)

    def _candidates(self, spec: RequestSpec, view: HostView, *, moving: bool) -> list[HostState]:
        """The nodes to try, best first; raises NoValidHost when there are none."""
        target = spec.force_host or spec.requested_host
        states = view.nodes(target)
        held = view.held(spec.consumer_uuid)
        if held is None:  # a consumer the view was not read for
            with self.engine.connect() as conn:
                held = {row.compute_node_id for row in db.allocations_for_consumer(conn, spec.consumer_uuid)}
        kept = []
        for state in states:
            if state.host in spec.ignore_hosts:
                LOG.debug("ignore_hosts: %s rejected: host is ignored for this request", state)
            elif state.node_id in held:
                LOG.debug("existing_allocation: %s rejected: %s already holds an allocation there",
                          state, spec.consumer_uuid)
            else:
                kept.append(state)
        if target is not None:
            # Nova pins to the host's first node; states come by node id.
            kept = kept[:1]
            if not kept:
                LOG.info("no usable compute node on requested host %s for %s", target, spec.consumer_uuid)
                raise NoValidHost(NOT_ENOUGH_HOSTS)
        if spec.force_host:
            (state,) = kept
            reason = capacity_shortfall(state, spec)
            if reason is not None:
                LOG.info("forced host %s cannot take %s: %s", state, spec.consumer_uuid, reason)
                raise NoValidHost(self._no_room_on_forced_host(spec, moving))
            LOG.debug("force_host: %s chosen for %s without filters", state, spec.consumer_uuid)
            return kept
        passed = self._filter(kept, spec)
        if not passed:
            raise NoValidHost(NOT_ENOUGH_HOSTS)
        return weigh(passed)

    @staticmethod
    def _no_room_on_forced_host(spec: RequestSpec, moving: bool) -> str:
        if moving:  # Nova's claim_resources_on_destination
            return (f"Unable to move instance {spec.consumer_uuid} to host {spec.force_host}. "
                    "There is not enough capacity on the host for the instance.")
        return NOT_ENOUGH_HOSTS

    @staticmethod
    def _filter(hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        results = []
        for check in FILTERS:
            name = check.__name__
            start = len(hosts)
            kept = []
            for host in hosts:
                reason = check(host, spec)
                if reason is None:
                    kept.append(host)
                else:
                    LOG.debug("%s: %s rejected: %s", name, host, reason)
            hosts = kept
            LOG.debug("Filter %s returned %d host(s)", name, len(hosts))
            results.append(f"{name}: (start: {start}, end: {len(hosts)})")
            if not hosts:
                LOG.info("Filtering removed all hosts for the request with instance ID '%s'. Filter results: %s",
                         spec.consumer_uuid, results)
                break
        return hosts

    # -- claiming and releasing -------------------------------------------------------------------

    def claim(self, spec: RequestSpec, state: HostState, on_claimed: OnClaimed | None = None) -> str | None:
        """Claim ``spec`` on the node ``state`` describes, atomically; None if claimed, else why not.

        The filters judged ``state``; here the capacity rule (and, unless the host is forced, the compute
        filter) is re-checked on the node as it is once its lock is held, whatever changed since ``state``
        was read.
        """
        return self._claim(spec, state, on_claimed, None)

    def _claim(self, spec: RequestSpec, state: HostState, on_claimed: OnClaimed | None,
               view: HostView | None) -> str | None:
        with self.engine.connect() as conn, conn.begin() as txn:
            if not db.compute_node_lock(conn, state.node_id):
                return "the compute node was deleted"
            now = host_state(db.candidate_node(conn, state.node_id),
                             UpWindow(self.settings.effective_service_down_time), state.availability_zone)
            if now.generation != state.generation + 1:
                LOG.debug("%s changed since it was read (generation %d, now %d): re-checking on fresh usage",
                          state, state.generation, now.generation - 1)
            if view is not None:
                view.update(now)
            reason = None if spec.force_host else compute_filter(now, spec)
            reason = capacity_shortfall(now, spec) if reason is None else f"compute_filter: {reason}"
            if reason is not None:
                txn.rollback()
                return reason
            try:
                db.allocation_create(conn, consumer_uuid=spec.consumer_uuid, compute_node_id=state.node_id,
                                     vcpus=spec.vcpus, memory_mb=spec.memory_mb, disk_gb=spec.disk_gb)
            except IntegrityError:
                txn.rollback()
                return f"{spec.consumer_uuid} already holds an allocation there"
            if on_claimed is not None and not on_claimed(
                    conn, Selection(host=state.host, nodename=state.nodename, compute_node_uuid=state.node_uuid)):
                txn.rollback()
                raise StaleRequest(spec.consumer_uuid)
        if view is not None:
            view.update(now.consumed(spec), claimed_by=spec.consumer_uuid)
        return None

    def release(self, consumer_uuid: str, host: str | None = None) -> int:
        """Drop the consumer's allocations (only those on ``host``'s nodes if given); how many were dropped.

        Server delete releases everything; an evacuation's source cleanup releases ``host=source``.
        """
        with self.engine.begin() as conn:
            rows = [row for row in db.allocations_for_consumer(conn, consumer_uuid)
                    if host is None or row.host == host]
            db.compute_node_generations_bump(conn, [row.compute_node_id for row in rows])
            db.allocations_delete(conn, [row.id for row in rows])
        for row in rows:
            LOG.debug("released %s's allocation on (%s, %s)", consumer_uuid, row.host, row.hypervisor_hostname)
        return len(rows)

    def allocations(self, consumer_uuid: str) -> list[Row]:
        """The consumer's allocations, oldest first (vcpus, memory_mb, disk_gb, host, hypervisor_hostname)."""
        with self.engine.connect() as conn:
            return db.allocations_for_consumer(conn, consumer_uuid)
