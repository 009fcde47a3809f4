"""The compute driver interface, named after Nova's ComputeDriver (nova/virt/driver.py).

A compute agent runs its host's guests only through these methods, so a libvirt driver can follow
the simulated one without touching the agent. Methods are coroutines: a driver that blocks (libvirt)
runs its calls in a thread.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field


class PowerState(enum.IntEnum):
    """Nova's power_state values (nova/compute/power_state.py)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


@dataclass(frozen=True)
class GuestSpec:
    """What the driver needs to create a guest."""

    uuid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0
    image_ref: str | None = None


@dataclass(frozen=True)
class GuestInfo:
    uuid: str
    power_state: PowerState


@dataclass(frozen=True)
class HostResources:
    """One node's capacity and use, as the host reports it for its hypervisor record (os-hypervisors)."""

    hypervisor_hostname: str
    hypervisor_type: str
    hypervisor_version: int
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    running_vms: int
    disk_available_least: int | None = None
    host_ip: str | None = None
    cpu_info: dict = field(default_factory=dict)
    # What the host keeps for itself (Nova's reserved_host_* options); the scheduler subtracts it.
    reserved_host_cpus: int = 0
    reserved_host_memory_mb: int = 0
    reserved_host_disk_mb: int = 0


class GuestNotFound(Exception):
    """No guest with that UUID on this host."""


class GuestExists(Exception):
    """A guest with that UUID is already on this host (spawn)."""


class ComputeDriver(abc.ABC):
    @abc.abstractmethod
    async def init_host(self, host: str) -> None:
        """Prepare the driver for ``host`` (load state, connect to the hypervisor)."""

    @abc.abstractmethod
    async def spawn(self, guest: GuestSpec) -> None:
        """Create and start a guest; it is RUNNING when this returns. Raises GuestExists for an existing UUID."""

    @abc.abstractmethod
    async def destroy(self, uuid: str) -> None:
        """Stop and remove a guest. Destroying a guest that does not exist is not an error (idempotent)."""

    @abc.abstractmethod
    async def power_off(self, uuid: str) -> None:
        """Stop a guest, keeping it (SHUTDOWN). Raises GuestNotFound."""

    @abc.abstractmethod
    async def power_on(self, uuid: str) -> None:
        """Start a stopped guest (RUNNING). Raises GuestNotFound."""

    @abc.abstractmethod
    async def get_info(self, uuid: str) -> GuestInfo:
        """Raises GuestNotFound."""

    @abc.abstractmethod
    async def list_instance_uuids(self) -> list[str]:
        """Every guest this host holds, running or not."""

    @abc.abstractmethod
    def get_available_nodes(self) -> list[str]:
        """The hypervisor hostnames (nodes) this host reports; one for every driver so far."""

    @abc.abstractmethod
    async def get_available_resource(self, nodename: str) -> HostResources:
        """Capacity and current use of ``nodename``."""
