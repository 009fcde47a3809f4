"""Where each evacuation of a failed host's servers goes, and the rule that chose it (evacuation.py asks).

Every evacuate names its target's rule in the journal (``target_rule``, starting with the rule's name):
    reserved-host   a spare of the host's policy ([monitor] reserved_hosts, or its group's) whose free RAM and
                    disk hold the flavor, as the hypervisor reports them (allocation ratio 1; vCPUs are not
                    counted: the compute API does not show the overcommit). Spares are filled in priority
                    order and only for first attempts. A spare kept disabled is enabled for it, as Masakari's
                    reserved_host method does; one that is not up, or that the monitor disabled (recovered or
                    returned), is not used. With targets = group only the group's spares count.
    group-host      targets = group: the up and enabled host of the group with the most free RAM that holds
                    the flavor (the scheduler's RAM weigher, among the group's hosts). The evacuate names it
                    without force, so Nova's scheduler still checks it (spec 6, 2.29+); each retry reads the
                    group's room afresh (less this recovery's own moves, which the reports may not show yet)
                    and names a host not tried yet while one holds the flavor.
    scheduler       no target named: Nova's scheduler picks any host (targets = any, after the spares, and
                    every retry).
    fallback        targets = group and no host of the group holds the flavor: ``fallback = scheduler`` lets
                    the scheduler pick any host; ``fallback = none`` evacuates it nowhere else: the attempt
                    fails and the retries look again in the group, then the server is left for a human.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from novalite.client import ApiVersion, ClientError, ComputeClient
from novalite.monitor import gates
from novalite.monitor.groups import Policy
from novalite.monitor.journal import Journal

if TYPE_CHECKING:
    from novalite.monitor.evacuation import ApiCalls

COMPUTE = "nova-compute"
HYPERVISOR_STATS_VERSION = ApiVersion(2, 87)  # 2.88 dropped free_ram_mb and free_disk_gb from the detail
RESERVED_HOST, GROUP_HOST, SCHEDULER, FALLBACK = "reserved-host", "group-host", "scheduler", "fallback"


@dataclass
class Move:
    """One server to evacuate, as planned, and where its attempts went."""

    server_id: str
    status: str  # what it was before the failure, restored after the move
    priority: int
    ram_mb: int
    disk_gb: int
    target: str | None = None  # the named host of the next attempt; None: the scheduler picks
    target_rule: str = SCHEDULER  # why (the rule first): journaled with the plan and each evacuate
    stranded: bool = False  # no host may take it (targets = group, fallback = none): not evacuated
    tried: list[str] = field(default_factory=list)  # named targets of earlier attempts


@dataclass
class Room:
    """What a usable target has free, as its hypervisor record says, less what this plan gave it."""

    ram_mb: int
    disk_gb: int
    group_host: bool  # an up and enabled host of the group (targets = group): a group-host candidate

    def holds(self, move: Move) -> bool:
        return self.ram_mb >= move.ram_mb and self.disk_gb >= move.disk_gb

    def take(self, move: Move) -> None:
        self.ram_mb -= move.ram_mb
        self.disk_gb -= move.disk_gb


class Targets:
    """Picks the target of each attempt for the policy of the failed host."""

    def __init__(self, api: ApiCalls, journal: Journal):
        self.api = api
        self.client = api.client
        self.journal = journal
        # failed host → server → (host it went to, ram_mb, disk_gb): this recovery's own moves, counted against
        # their hosts when a retry reads the room again (see claim()).
        self._claims: dict[str, dict[str, tuple[str, int, int]]] = {}

    def claim(self, host: str, move: Move, on: str | None) -> None:
        """``move`` (of a server of failed ``host``) went to ``on`` (None: it holds no room any more). The
        hypervisors' reports show a landing only a while later, so a retry that reads them would see that room
        still free, name it, and have Nova's scheduler refuse it; a retry counts these moves against their
        hosts, at worst twice (once more in a report that caught up), which errs on the side of no overcommit."""
        claims = self._claims.setdefault(host, {})
        if on is None:
            claims.pop(move.server_id, None)
        else:
            claims[move.server_id] = (on, move.ram_mb, move.disk_gb)

    async def plan(self, host: str, recovery_id: str, policy: Policy, moves: list[Move]) -> None:
        """Name each first attempt's target, ``moves`` taken in their order (priority, higher first)."""
        self._claims.pop(host, None)  # a new run of the host's evacuations: what an earlier one moved is reported
        in_group = policy.targets == "group"
        spares = [s for s in policy.reserved_hosts if s != host and (not in_group or policy.in_group(s))]
        if not moves or not (spares or in_group):
            for move in moves:  # no API call needed: nothing to weigh
                move.target_rule = f"{SCHEDULER}: {policy.source} has no spare and targets = any"
            return
        services, room = await self._room(host, policy, spares)
        for move in moves:
            pick(move, policy, room, spares)
        await self._enable_spares(host, recovery_id, policy, moves, services, room, spares)

    async def retarget(self, host: str, policy: Policy, move: Move) -> None:
        """The target of a retry: the scheduler's choice, or with targets = group a host of the group, its
        room read afresh (room may have appeared), one not tried yet first."""
        if move.target is not None:
            move.tried.append(move.target)
        move.target, move.target_rule, move.stranded = None, f"{SCHEDULER}: a retry; Nova's scheduler picks", False
        if policy.targets == "group":
            _, room = await self._room(host, policy, [])
            for server_id, (on, ram_mb, disk_gb) in self._claims.get(host, {}).items():
                if on in room and server_id != move.server_id:
                    room[on].ram_mb -= ram_mb
                    room[on].disk_gb -= disk_gb
            untried = {name: r for name, r in room.items() if name not in move.tried}
            pick(move, policy, untried, [])
            if move.target is None and len(untried) < len(room):  # every untried one full: the tried ones
                move.stranded = False
                pick(move, policy, room, [])

    async def _room(self, host: str, policy: Policy, spares: list[str]) -> tuple[dict[str, dict], dict[str, Room]]:
        """The compute services by host, and the free room of each usable target: a spare that is up (even
        disabled: kept out of normal scheduling) and, with targets = group, each up and enabled host of the
        group; never the failed host nor one the monitor disabled."""
        services = {s["host"]: s for s in await self.api.retrying(self.client.list_services, binary=COMPUTE)}
        stats = ComputeClient(self.client.adapter, min(self.client.version, HYPERVISOR_STATS_VERSION))
        room: dict[str, Room] = {}
        for hypervisor in await self.api.retrying(stats.list_hypervisors_detail):
            name = (hypervisor.get("service") or {}).get("host")
            service = services.get(name)
            if name == host or name in room or service is None or service.get("state") != "up":
                continue
            if (service.get("disabled_reason") or "").startswith(gates.MARKER_PREFIX):
                continue
            group_host = (policy.targets == "group" and policy.in_group(name)
                          and service.get("status") == "enabled")
            if name in spares or group_host:
                room[name] = Room(hypervisor.get("free_ram_mb") or 0, hypervisor.get("free_disk_gb") or 0,
                                  group_host)
        return services, room

    async def _enable_spares(self, host: str, recovery_id: str, policy: Policy, moves: list[Move],
                             services: dict[str, dict], room: dict[str, Room], spares: list[str]) -> None:
        """Enable each chosen spare an operator keeps disabled; a spare that cannot be enabled is dropped and
        its servers are given another target (not another spare: those were shared out already)."""
        for spare in dict.fromkeys(m.target for m in moves if m.target in spares):
            if services[spare].get("status") != "disabled":
                continue
            try:
                await self.api.retrying(self.client.enable, spare)
            except ClientError as error:
                self.journal.record(host, recovery_id, "spare_unusable", spare=spare, reason=str(error),
                                    **policy.cited())
                room.pop(spare, None)
                for move in (m for m in moves if m.target == spare):
                    move.target = None
                    pick(move, policy, room, [])
                continue
            self.journal.record(host, recovery_id, "spare_enabled", spare=spare,
                                was=services[spare].get("disabled_reason"), **policy.cited())


def pick(move: Move, policy: Policy, room: dict[str, Room], spares: list[str]) -> None:
    """Set ``move``'s target and rule: the first of ``spares`` with room, else by the policy's targets; the
    chosen host's room shrinks by the flavor."""
    spare = next((s for s in spares if s in room and room[s].holds(move)), None)
    if spare is not None:
        room[spare].take(move)
        move.target = spare
        move.target_rule = f"{RESERVED_HOST}: {spare}, a spare of {policy.source}, has room"
        return
    if policy.targets != "group":
        move.target_rule = f"{SCHEDULER}: no spare of {policy.source} has room, targets = any; Nova's scheduler picks"
        return
    fits = [(r.ram_mb, name) for name, r in room.items() if r.group_host and r.holds(move)]
    if fits:
        _, best = min(fits, key=lambda fit: (-fit[0], fit[1]))  # most free RAM; on a tie the first by name
        room[best].take(move)
        move.target = best
        move.target_rule = f"{GROUP_HOST}: {best} of {policy.source} has the most free RAM for it"
        return
    why = f"no up and enabled host of {policy.source} has room for it"
    if policy.fallback == "scheduler":
        move.target_rule = f"{FALLBACK}: {why}; fallback = scheduler: Nova's scheduler picks any host"
    else:
        move.stranded = True
        move.target_rule = f"{FALLBACK}: {why}; fallback = none: not evacuated elsewhere, left for a human"
