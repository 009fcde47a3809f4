"""Hypervisors (compute nodes) as os-hypervisors shows them, by Nova's rules, free of HTTP.

A hypervisor takes its state and status from its host's nova-compute service (spec section 8):
``up`` is the service-group rule of novalite.domain.liveness (forced_down gives "down"), and
``disabled`` is the service's flag. A node whose host has no live nova-compute service is left out
of listings and is a 404 when asked for, as in Nova. Errors carry Nova's status and message.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, Row

from novalite.config import Settings
from novalite.db import compute_nodes as db
from novalite.domain.liveness import UpWindow
from novalite.domain.servers import instance_name_of
from novalite.exceptions import BadRequest, NotFound, NovaError
from novalite.uuidutils import is_uuid_like


class FeatureNotSupported(NovaError):
    """Nova's 501 for what the virt driver cannot do (common.raise_feature_not_supported)."""

    code = 501

    def __init__(self) -> None:
        super().__init__("The requested functionality is not supported.")


@dataclass(frozen=True)
class ServerOnHost:
    uuid: str
    name: str


@dataclass(frozen=True)
class HypervisorState:
    """One compute node with what os-hypervisors shows of its service."""

    id: int
    uuid: str
    hypervisor_hostname: str
    host: str
    hypervisor_type: str
    hypervisor_version: int
    host_ip: str | None
    cpu_info: str  # JSON text, as stored and as shown before 2.28
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    free_ram_mb: int
    free_disk_gb: int
    current_workload: int
    running_vms: int
    disk_available_least: int | None
    service_id: int
    service_uuid: str
    disabled: bool
    disabled_reason: str | None
    up: bool
    servers: tuple[ServerOnHost, ...] | None = None  # None: servers were not asked for


def not_found(hypervisor_id: str) -> NotFound:
    return NotFound(f"Hypervisor with ID '{hypervisor_id}' could not be found.")


def no_match(pattern: str) -> NotFound:
    return NotFound(f"No hypervisor matching '{pattern}' could be found.")


def parse_integer(value: str) -> int | None:
    """Nova's utils.validate_integer without bounds: int(str(value)), else None."""
    try:
        return int(str(value))
    except ValueError:
        return None


class Hypervisors:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings

    def _window(self) -> UpWindow:
        return UpWindow(self.settings.effective_service_down_time)

    def _states(self, rows: list[Row], *, with_servers: bool) -> list[HypervisorState]:
        """Rows with a live compute service, as states (others skipped: Nova's deleted-service rule)."""
        rows = [row for row in rows if row.service_row_id is not None]
        servers: dict[str, list[ServerOnHost]] = {}
        if with_servers:
            with self.engine.connect() as conn:
                for host, instance_id, instance_uuid in db.instances_on_hosts(conn, sorted({r.host for r in rows})):
                    servers.setdefault(host, []).append(
                        ServerOnHost(uuid=instance_uuid, name=instance_name_of(instance_id)))
        window = self._window()
        return [self._state(row, window, tuple(servers.get(row.host, ())) if with_servers else None)
                for row in rows]

    @staticmethod
    def _state(row: Row, window: UpWindow, servers: tuple[ServerOnHost, ...] | None) -> HypervisorState:
        return HypervisorState(
            id=row.id, uuid=row.uuid, hypervisor_hostname=row.hypervisor_hostname, host=row.host,
            hypervisor_type=row.hypervisor_type, hypervisor_version=row.hypervisor_version,
            host_ip=row.host_ip, cpu_info=row.cpu_info, vcpus=row.vcpus, memory_mb=row.memory_mb,
            local_gb=row.local_gb, vcpus_used=row.vcpus_used, memory_mb_used=row.memory_mb_used,
            local_gb_used=row.local_gb_used,
            # What Nova's resource tracker stores in these columns.
            free_ram_mb=row.memory_mb - row.memory_mb_used, free_disk_gb=row.local_gb - row.local_gb_used,
            # Nova counts instances building, migrating, snapshotting…; novalite has no such tasks yet.
            current_workload=0,
            running_vms=row.running_vms, disk_available_least=row.disk_available_least,
            service_id=row.service_row_id, service_uuid=row.service_uuid,
            disabled=bool(row.service_disabled), disabled_reason=row.service_disabled_reason,
            up=window.is_up(bool(row.service_forced_down), row.service_last_seen_up, row.service_created_at),
            servers=servers,
        )

    # -- listing ----------------------------------------------------------------------------------

    def list(self, *, limit: int | None = None, marker: str | None = None,
             with_servers: bool = False) -> list[HypervisorState]:
        """Every hypervisor by id, or a page: ``limit`` nodes after the ``marker`` node (id or UUID).

        A marker that names no live node is Nova's 400 "marker [...] not found".
        """
        with self.engine.connect() as conn:
            after_id = None
            if marker is not None:
                found = self._get_row(conn, marker)
                if found is None:
                    raise BadRequest(f"marker [{marker}] not found")
                after_id = found.id
            rows = db.compute_nodes_with_services(conn, after_id=after_id, limit=limit)
        return self._states(rows, with_servers=with_servers)

    def search(self, pattern: str, *, with_servers: bool = False) -> list[HypervisorState]:
        """Hypervisors whose hostname contains ``pattern``; 404 when no node matches at all."""
        with self.engine.connect() as conn:
            rows = db.compute_nodes_matching(conn, pattern)
        if not rows:
            raise no_match(pattern)
        return self._states(rows, with_servers=with_servers)

    # -- one hypervisor ---------------------------------------------------------------------------

    @staticmethod
    def _get_row(conn, hypervisor_id: str) -> Row | None:
        """Nova's HostAPI.compute_node_get: by UUID when the text is UUID-like, else by integer id."""
        if is_uuid_like(hypervisor_id):
            return db.compute_node_with_service_by_uuid(conn, hypervisor_id)
        number = parse_integer(hypervisor_id)
        return None if number is None else db.compute_node_with_service_by_id(conn, number)

    def get(self, hypervisor_id: str, *, with_servers: bool = False) -> HypervisorState:
        with self.engine.connect() as conn:
            row = self._get_row(conn, hypervisor_id)
        if row is None or row.service_row_id is None:
            raise not_found(hypervisor_id)
        (state,) = self._states([row], with_servers=with_servers)
        return state

    def uptime(self, hypervisor_id: str) -> tuple[HypervisorState, str]:
        """The host's ``uptime`` text, as Nova asks the compute host's virt driver for it.

        A host that is not up is Nova's 400 (ComputeServiceUnavailable); an up host runs the
        simulated driver, which cannot tell its uptime: Nova's 501, as for any such driver.
        """
        state = self.get(hypervisor_id)
        if not state.up:
            raise BadRequest(f"Compute service of {state.host} is unavailable at this time.")
        raise FeatureNotSupported()

    def uptime_in_detail(self, state: HypervisorState) -> str | None:
        """The 2.88 detail field: None when the driver cannot tell or the host is down (Nova's rule)."""
        return None

    # -- statistics (before 2.88) -----------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            row = db.compute_node_statistics(conn)
        sums = {name: int(getattr(row, name) or 0) for name in (
            "count", "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
            "free_ram_mb", "free_disk_gb")}
        # Nova's key order; current_workload is 0 for the reason given in _state.
        return {**sums, "current_workload": 0, "running_vms": int(row.running_vms or 0),
                "disk_available_least": int(row.disk_available_least or 0)}
