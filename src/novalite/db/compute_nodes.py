"""Database access for hypervisors (compute_nodes): the agents' writes and os-hypervisors' reads."""

from __future__ import annotations

import uuid as uuidlib

from sqlalchemy import Connection, Row, and_, false, func, insert, select, update

from novalite.db.models import ComputeNode, Instance, Service
from novalite.timeutils import utcnow

compute_nodes = ComputeNode.__table__

_live = select(compute_nodes).where(compute_nodes.c.deleted == 0)


def compute_node_get_by_host_and_nodename(conn: Connection, host: str, nodename: str) -> Row | None:
    return conn.execute(
        _live.where(compute_nodes.c.host == host, compute_nodes.c.hypervisor_hostname == nodename)
    ).first()


def compute_node_save(conn: Connection, *, service_id: int, host: str, nodename: str, values: dict) -> Row:
    """Create the host's node record or update it with ``values`` (capacity, use, hypervisor facts)."""
    now = utcnow()
    row = compute_node_get_by_host_and_nodename(conn, host, nodename)
    if row is None:
        conn.execute(insert(compute_nodes).values(
            uuid=str(uuidlib.uuid4()), service_id=service_id, host=host, hypervisor_hostname=nodename,
            created_at=now, deleted=0, **values,
        ))
    else:
        conn.execute(update(compute_nodes).where(compute_nodes.c.id == row.id)
                     .values(service_id=service_id, updated_at=now, **values))
    return compute_node_get_by_host_and_nodename(conn, host, nodename)


# -- reads for os-hypervisors -----------------------------------------------------------------------
# A hypervisor is shown with its host's live nova-compute service (Nova's service_get_by_compute_host):
# every read below joins that service, outer, so a node whose service was deleted comes back with
# service columns of None and the domain can skip it as Nova does.

_services = Service.__table__
_instances = Instance.__table__
# How a node meets its host's live nova-compute service (also used by db/allocations.py).
COMPUTE_SERVICE_OF_NODE = and_(
    _services.c.host == compute_nodes.c.host,
    _services.c.binary == "nova-compute",
    _services.c.deleted == 0,
)
# What a node's readers need of its service: state, status and liveness (also db/allocations.py).
SERVICE_OF_NODE_COLUMNS = (
    _services.c.id.label("service_row_id"),
    _services.c.disabled.label("service_disabled"),
    _services.c.disabled_reason.label("service_disabled_reason"),
    _services.c.forced_down.label("service_forced_down"),
    _services.c.last_seen_up.label("service_last_seen_up"),
    _services.c.created_at.label("service_created_at"),
)
_with_service = (
    select(compute_nodes, _services.c.uuid.label("service_uuid"), *SERVICE_OF_NODE_COLUMNS)
    .select_from(compute_nodes.outerjoin(_services, COMPUTE_SERVICE_OF_NODE))
    .where(compute_nodes.c.deleted == 0)
)


def compute_nodes_with_services(conn: Connection, *, after_id: int | None = None,
                                limit: int | None = None) -> list[Row]:
    """Live nodes by ascending id (Nova's paging order), after ``after_id``, at most ``limit``."""
    query = _with_service.order_by(compute_nodes.c.id)
    if after_id is not None:
        query = query.where(compute_nodes.c.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query))


def compute_node_with_service_by_id(conn: Connection, node_id: int) -> Row | None:
    return conn.execute(_with_service.where(compute_nodes.c.id == node_id)).first()


def compute_node_with_service_by_uuid(conn: Connection, node_uuid: str) -> Row | None:
    return conn.execute(_with_service.where(compute_nodes.c.uuid == node_uuid)).first()


def compute_nodes_matching(conn: Connection, pattern: str) -> list[Row]:
    """Nodes whose hypervisor_hostname contains ``pattern``: Nova's LIKE '%pattern%', wildcards unescaped."""
    query = _with_service.where(compute_nodes.c.hypervisor_hostname.like(f"%{pattern}%"))
    return list(conn.execute(query.order_by(compute_nodes.c.id)))


def instances_on_hosts(conn: Connection, hosts: list[str]) -> list[Row]:
    """(host, id, uuid) of the live instances on ``hosts``, by id."""
    if not hosts:
        return []
    return list(conn.execute(
        select(_instances.c.host, _instances.c.id, _instances.c.uuid)
        .where(_instances.c.deleted == 0, _instances.c.host.in_(hosts))
        .order_by(_instances.c.id)
    ))


def compute_node_statistics(conn: Connection) -> Row:
    """Sums over the nodes of enabled, live nova-compute services (Nova's compute_node_statistics)."""
    enabled = and_(COMPUTE_SERVICE_OF_NODE, _services.c.disabled == false())
    c = compute_nodes.c
    return conn.execute(
        select(
            func.count().label("count"),
            func.sum(c.vcpus).label("vcpus"),
            func.sum(c.memory_mb).label("memory_mb"),
            func.sum(c.local_gb).label("local_gb"),
            func.sum(c.vcpus_used).label("vcpus_used"),
            func.sum(c.memory_mb_used).label("memory_mb_used"),
            func.sum(c.local_gb_used).label("local_gb_used"),
            func.sum(c.memory_mb - c.memory_mb_used).label("free_ram_mb"),
            func.sum(c.local_gb - c.local_gb_used).label("free_disk_gb"),
            func.sum(c.running_vms).label("running_vms"),
            func.sum(c.disk_available_least).label("disk_available_least"),
        )
        .select_from(compute_nodes.join(_services, enabled))
        .where(c.deleted == 0)
    ).one()
