"""The simulated hypervisor: guests that exist only as records in a local JSON file.

It stands in for a real hypervisor the way Nova's fake driver (nova/virt/fake.py) does, with two
differences that the evacuation story needs: its guests survive an agent restart (they live in
``<state dir>/guests.json``, rewritten atomically on every change), and booting and stopping take
configurable times (``spawn_time``, ``stop_time``; 0 by default). A power-off of the simulated host
(agent/simulated_host.py) leaves its guests in the file, SHUTDOWN, as a real host's domains after a power cut.

What it reports as the host's hypervisor record, and why:
- ``hypervisor_type`` "fake" and ``hypervisor_version`` 1000 (Nova's encoding of "1.0"), as Nova's
  fake driver: "fake" is one of Nova's known hypervisor types (HVType), so anything that knows
  Nova's types knows this one; a made-up "simulated" would be known to nothing.
- one node per host, named after the host (Nova's fake driver uses CONF.host);
- capacity from configuration; use as Nova's resource tracker counts it: the host's reservations
  (``reserved_host_memory_mb``, ``reserved_host_disk_mb``) plus every guest on the host, running or
  stopped (a stopped guest keeps its memory and disk claimed, as in Nova); ``running_vms`` is the
  number of guests on the host, as Nova's num_instances;
- ``disk_available_least``: the free disk, local_gb - local_gb_used (what libvirt reports).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from novalite.agent.virt.driver import (
    ComputeDriver,
    GuestExists,
    GuestInfo,
    GuestNotFound,
    GuestSpec,
    HostResources,
    PowerState,
)

LOG = logging.getLogger(__name__)

HYPERVISOR_TYPE = "fake"
HYPERVISOR_VERSION = 1000  # Nova's convert_version_to_int("1.0")
STATE_FILE = "guests.json"
STATE_FORMAT = 1


class StateFileError(Exception):
    """The state file exists but cannot be read as this driver's state: refuse to run rather than forget guests."""


@dataclass
class _Guest:
    spec: GuestSpec
    power_state: PowerState

    def to_json(self) -> dict:
        return {**asdict(self.spec), "power_state": self.power_state.name}

    @classmethod
    def from_json(cls, data: dict) -> _Guest:
        data = dict(data)
        state = PowerState[data.pop("power_state")]
        return cls(GuestSpec(**data), state)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash at any moment leaves the old or the new file whole:
    write a temporary file beside it, fsync it, rename it over the old one, fsync the directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SimulatedDriver(ComputeDriver):
    def __init__(self, *, state_dir: str | os.PathLike, vcpus: int = 16, memory_mb: int = 32768,
                 local_gb: int = 500, reserved_host_memory_mb: int = 512, reserved_host_disk_mb: int = 0,
                 spawn_time: float = 0.0, stop_time: float = 0.0):
        self.state_file = Path(state_dir) / STATE_FILE
        self.vcpus = vcpus
        self.memory_mb = memory_mb
        self.local_gb = local_gb
        self.reserved_host_memory_mb = reserved_host_memory_mb
        self.reserved_host_disk_mb = reserved_host_disk_mb
        self.spawn_time = spawn_time
        self.stop_time = stop_time
        self.host: str | None = None
        self._guests: dict[str, _Guest] = {}
        # Group commit: every change bumps _changes; one write persists every change made before it.
        self._changes = 0
        self._persisted = 0
        self._write_lock = asyncio.Lock()

    # -- state file --------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            text = self.state_file.read_text()
        except FileNotFoundError:
            self._guests = {}
            return
        try:
            data = json.loads(text)
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            self._guests = {uuid: _Guest.from_json(g) for uuid, g in data["guests"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StateFileError(f"cannot read the simulated guests of {self.state_file}: {error}") from error
        if data.get("host") != self.host:
            LOG.warning("%s was written for host %s; this is %s", self.state_file, data.get("host"), self.host)

    def _serialize(self) -> str:
        guests = {uuid: g.to_json() for uuid, g in self._guests.items() if g.power_state != PowerState.NOSTATE}
        return json.dumps({"format": STATE_FORMAT, "host": self.host, "guests": guests}, indent=1, sort_keys=True)

    async def _persist(self) -> None:
        """Write the state, including this caller's change, before returning; concurrent callers share writes.

        A write once begun is finished even if the caller is cancelled, so memory and file never disagree.
        """
        self._changes += 1
        mine = self._changes
        async with self._write_lock:
            if self._persisted >= mine:
                return  # a write that started after our change already carried it
            upto = self._changes
            write = asyncio.ensure_future(asyncio.to_thread(write_atomically, self.state_file, self._serialize()))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await write
                self._persisted = upto
                raise
            self._persisted = upto

    async def _set_state(self, uuid: str, state: PowerState) -> None:
        guest = self._guest(uuid)
        before, guest.power_state = guest.power_state, state
        try:
            await self._persist()
        except Exception:
            guest.power_state = before  # the file was not written: the change did not happen
            raise

    def _guest(self, uuid: str) -> _Guest:
        try:
            return self._guests[uuid]
        except KeyError:
            raise GuestNotFound(f"Instance {uuid} could not be found.") from None

    # -- ComputeDriver -----------------------------------------------------------------------------

    async def init_host(self, host: str) -> None:
        self.host = host
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        LOG.info("simulated hypervisor on %s: %d guest(s) in %s", host, len(self._guests), self.state_file)

    async def spawn(self, guest: GuestSpec) -> None:
        if guest.uuid in self._guests:
            raise GuestExists(f"Instance {guest.uuid} already exists on {self.host}.")
        # While it boots the guest holds its resources and its UUID (NOSTATE), but is not yet in the file:
        # an agent that dies now forgets it, as a hypervisor forgets a domain it never finished defining.
        self._guests[guest.uuid] = _Guest(guest, PowerState.NOSTATE)
        try:
            if self.spawn_time:
                await asyncio.sleep(self.spawn_time)
        except BaseException:
            self._guests.pop(guest.uuid, None)
            raise
        try:
            await self._set_state(guest.uuid, PowerState.RUNNING)
        except Exception:
            self._guests.pop(guest.uuid, None)
            raise

    async def destroy(self, uuid: str) -> None:
        guest = self._guests.get(uuid)
        if guest is None:
            return
        if guest.power_state == PowerState.RUNNING and self.stop_time:
            await asyncio.sleep(self.stop_time)
        if self._guests.pop(uuid, None) is None:
            return  # destroyed meanwhile by a concurrent call
        try:
            await self._persist()
        except Exception:
            self._guests[uuid] = guest
            raise

    async def power_off(self, uuid: str) -> None:
        if self._guest(uuid).power_state == PowerState.SHUTDOWN:
            return
        if self.stop_time:
            await asyncio.sleep(self.stop_time)
        await self._set_state(uuid, PowerState.SHUTDOWN)  # GuestNotFound if destroyed during the wait

    async def power_on(self, uuid: str) -> None:
        if self._guest(uuid).power_state == PowerState.RUNNING:
            return
        if self.spawn_time:
            await asyncio.sleep(self.spawn_time)
        await self._set_state(uuid, PowerState.RUNNING)

    async def get_info(self, uuid: str) -> GuestInfo:
        return GuestInfo(uuid=uuid, power_state=self._guest(uuid).power_state)

    async def list_instance_uuids(self) -> list[str]:
        return list(self._guests)

    def get_available_nodes(self) -> list[str]:
        if self.host is None:
            raise RuntimeError("init_host() first")
        return [self.host]

    async def get_available_resource(self, nodename: str) -> HostResources:
        if nodename not in self.get_available_nodes():
            raise ValueError(f"{nodename} is not a node of host {self.host}")
        specs = [g.spec for g in self._guests.values()]
        local_gb_used = (math.ceil(self.reserved_host_disk_mb / 1024)
                         + sum(s.root_gb + s.ephemeral_gb for s in specs))
        return HostResources(
            hypervisor_hostname=nodename,
            hypervisor_type=HYPERVISOR_TYPE,
            hypervisor_version=HYPERVISOR_VERSION,
            vcpus=self.vcpus,
            memory_mb=self.memory_mb,
            local_gb=self.local_gb,
            vcpus_used=sum(s.vcpus for s in specs),
            memory_mb_used=self.reserved_host_memory_mb + sum(s.memory_mb for s in specs),
            local_gb_used=local_gb_used,
            running_vms=len(specs),
            disk_available_least=self.local_gb - local_gb_used,
            cpu_info={"arch": "x86_64", "model": "Nehalem", "vendor": "Intel", "features": [],
                      "topology": {"sockets": self.vcpus, "cores": 1, "threads": 1}},
            reserved_host_memory_mb=self.reserved_host_memory_mb,
            reserved_host_disk_mb=self.reserved_host_disk_mb,
        )
