"""What a placement knows: the request, a node as read (HostState), the capacity rule, the filters and the
weigher (Nova's RequestSpec, HostState, filters and RAMWeigher). domain/scheduler.py places with them.

The capacity rule (placement's, per resource: VCPU, MEMORY_MB, DISK_GB):
    capacity = (total − reserved) × allocation_ratio;  used = the sum of the node's allocations
    a request fits when used + requested ≤ capacity and requested ≤ total
total and the allocation ratios are what the host's agent reports; reserved is the agent's
reserved_host_cpus, reserved_host_memory_mb and reserved_host_disk_mb (rounded up to whole GB, as
Nova does). The *_used columns the agent reports feed os-hypervisors only: the scheduler never reads
them, so a server counts once — as its allocation — from the moment it is claimed. "requested ≤
total" is placement's max_unit: overcommit never gives one server more than the host has.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Row

from novalite.domain.liveness import UpWindow


@dataclass(frozen=True)
class RequestSpec:
    """What one server needs, and where it may or must go."""

    consumer_uuid: str  # the instance
    vcpus: int
    memory_mb: int
    disk_gb: int
    availability_zone: str | None = None
    requested_host: str | None = None  # pinned: only this host, filters still run (evacuate, force=false)
    force_host: str | None = None  # forced: filters bypassed, capacity still claimed (evacuate, force=true)
    ignore_hosts: tuple[str, ...] = ()  # never these (an evacuation's source)

    def __post_init__(self) -> None:
        if self.requested_host and self.force_host:
            raise ValueError("a request is either pinned to a host or forced onto one, not both")


@dataclass(frozen=True)
class Selection:
    """Where a server was placed; its allocation there is already claimed."""

    host: str
    nodename: str
    compute_node_uuid: str


@dataclass(frozen=True)
class Inventory:
    """One resource of one node: placement's inventory and usage."""

    total: int
    reserved: int
    allocation_ratio: float
    used: int  # sum of the node's allocations

    @property
    def capacity(self) -> float:
        return (self.total - self.reserved) * self.allocation_ratio

    def shortfall(self, amount: int, unit: str) -> str | None:
        """Why ``amount`` does not fit (placement's capacity and max_unit checks), or None."""
        if amount <= 0:
            return None  # placement is not even asked for a resource of 0
        if amount > self.total:
            return f"requests {amount} {unit}, more than the host's total of {self.total} {unit}"
        usable = self.capacity - self.used
        if amount > usable:
            return f"does not have {amount} {unit} usable, it only has {usable:g} {unit} usable"
        return None


@dataclass(frozen=True)
class HostState:
    """One node as a placement sees it at one read."""

    node_id: int
    node_uuid: str
    host: str
    nodename: str
    generation: int
    vcpus: Inventory
    memory_mb: Inventory
    disk_gb: Inventory
    has_service: bool  # the host has a live nova-compute service record
    up: bool  # that service is up (liveness.UpWindow: not forced down, heartbeat fresh)
    disabled: bool
    disabled_reason: str | None
    availability_zone: str

    @property
    def free_ram_mb(self) -> int:
        """Nova's free_ram_mb (memory_mb − memory_mb_used, reserved included), with usage from allocations."""
        return self.memory_mb.total - self.memory_mb.reserved - self.memory_mb.used

    def __str__(self) -> str:
        return f"({self.host}, {self.nodename})"

    def consumed(self, spec: RequestSpec) -> HostState:
        """This node with ``spec``'s claim counted in its usage."""
        return dataclasses.replace(
            self, vcpus=dataclasses.replace(self.vcpus, used=self.vcpus.used + spec.vcpus),
            memory_mb=dataclasses.replace(self.memory_mb, used=self.memory_mb.used + spec.memory_mb),
            disk_gb=dataclasses.replace(self.disk_gb, used=self.disk_gb.used + spec.disk_gb))


def host_state(row: Row, window: UpWindow, zone: str) -> HostState:
    has_service = row.service_row_id is not None
    return HostState(
        node_id=row.id, node_uuid=row.uuid, host=row.host, nodename=row.hypervisor_hostname,
        generation=row.generation,
        vcpus=Inventory(row.vcpus, row.reserved_host_cpus, row.cpu_allocation_ratio, int(row.vcpus_allocated)),
        memory_mb=Inventory(row.memory_mb, row.reserved_host_memory_mb, row.ram_allocation_ratio,
                            int(row.memory_mb_allocated)),
        disk_gb=Inventory(row.local_gb, math.ceil(row.reserved_host_disk_mb / 1024), row.disk_allocation_ratio,
                          int(row.disk_gb_allocated)),
        has_service=has_service,
        up=has_service and window.is_up(bool(row.service_forced_down), row.service_last_seen_up,
                                         row.service_created_at),
        disabled=bool(row.service_disabled), disabled_reason=row.service_disabled_reason,
        # novalite has no host aggregates: every compute host is in the default zone.
        availability_zone=zone,
    )


# -- filters: each returns None to keep the host, or why it rejects it --------------------------------

Filter = Callable[[HostState, RequestSpec], "str | None"]


def compute_filter(host: HostState, spec: RequestSpec) -> str | None:
    """Nova's ComputeFilter: the host's compute service is up and enabled (spec 4.6, 4.7)."""
    if not host.has_service:
        return "has no nova-compute service"
    if host.disabled:
        return f"is disabled, reason: {host.disabled_reason}"
    if not host.up:
        return "has not been heard from in a while (forced down or no heartbeat within service_down_time)"
    return None


def availability_zone_filter(host: HostState, spec: RequestSpec) -> str | None:
    """Nova's AvailabilityZoneFilter: the host is in the requested zone, if one was requested."""
    if spec.availability_zone and spec.availability_zone != host.availability_zone:
        return f"is in availability zone {host.availability_zone!r}, not {spec.availability_zone!r}"
    return None


def ram_filter(host: HostState, spec: RequestSpec) -> str | None:
    """Memory by the capacity rule (Nova's RamFilter, now placement's MEMORY_MB check)."""
    return host.memory_mb.shortfall(spec.memory_mb, "MB RAM")


def core_filter(host: HostState, spec: RequestSpec) -> str | None:
    """vCPUs by the capacity rule (Nova's CoreFilter, now placement's VCPU check)."""
    return host.vcpus.shortfall(spec.vcpus, "vCPUs")


def disk_filter(host: HostState, spec: RequestSpec) -> str | None:
    """Local disk by the capacity rule (Nova's DiskFilter, now placement's DISK_GB check)."""
    return host.disk_gb.shortfall(spec.disk_gb, "GB disk")


FILTERS: list[Filter] = [compute_filter, availability_zone_filter, ram_filter, core_filter, disk_filter]
CAPACITY_FILTERS: list[Filter] = [ram_filter, core_filter, disk_filter]


def capacity_shortfall(host: HostState, spec: RequestSpec) -> str | None:
    for check in CAPACITY_FILTERS:
        reason = check(host, spec)
        if reason is not None:
            return f"{check.__name__}: {reason}"
    return None


def ram_weigher(host: HostState) -> float:
    """Nova's RAMWeigher with its default multiplier 1.0: more free RAM, higher weight (spreading)."""
    return float(host.free_ram_mb)


def weigh(hosts: list[HostState]) -> list[HostState]:
    """Best first; equal weights in host name order, so a placement is repeatable."""
    return sorted(hosts, key=lambda h: (-ram_weigher(h), h.host, h.nodename))
