"""Database access for the scheduler: nodes as placement candidates, allocations, generations.

Every function takes an open Connection so the scheduler chooses the transaction. The rule that
keeps claims atomic lives in novalite.domain.scheduler; the statements it needs are here:
``compute_node_lock`` (bump the node's generation, which locks the node until the transaction
ends), ``candidate_node`` (re-read under that lock) and ``allocation_create``.
"""

from __future__ import annotations

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from novalite.db.compute_nodes import COMPUTE_SERVICE_OF_NODE, SERVICE_OF_NODE_COLUMNS
from novalite.db.models import Allocation, ComputeNode, Service
from novalite.timeutils import utcnow

allocations = Allocation.__table__
compute_nodes = ComputeNode.__table__
services = Service.__table__

_usage = (
    select(
        allocations.c.compute_node_id,
        func.sum(allocations.c.vcpus).label("vcpus"),
        func.sum(allocations.c.memory_mb).label("memory_mb"),
        func.sum(allocations.c.disk_gb).label("disk_gb"),
    )
    .group_by(allocations.c.compute_node_id)
    .subquery("usage")
)
# One statement, so a node's generation, inventory and allocation sums always agree.
_candidates = (
    select(
        compute_nodes.c.id, compute_nodes.c.uuid, compute_nodes.c.host, compute_nodes.c.hypervisor_hostname,
        compute_nodes.c.generation,
        compute_nodes.c.vcpus, compute_nodes.c.memory_mb, compute_nodes.c.local_gb,
        compute_nodes.c.reserved_host_cpus, compute_nodes.c.reserved_host_memory_mb,
        compute_nodes.c.reserved_host_disk_mb,
        compute_nodes.c.cpu_allocation_ratio, compute_nodes.c.ram_allocation_ratio,
        compute_nodes.c.disk_allocation_ratio,
        func.coalesce(_usage.c.vcpus, 0).label("vcpus_allocated"),
        func.coalesce(_usage.c.memory_mb, 0).label("memory_mb_allocated"),
        func.coalesce(_usage.c.disk_gb, 0).label("disk_gb_allocated"),
        *SERVICE_OF_NODE_COLUMNS,
    )
    .select_from(
        compute_nodes.outerjoin(services, COMPUTE_SERVICE_OF_NODE)
        .outerjoin(_usage, _usage.c.compute_node_id == compute_nodes.c.id)
    )
    .where(compute_nodes.c.deleted == 0)
    .order_by(compute_nodes.c.id)
)


def candidate_nodes(conn: Connection, host: str | None = None) -> list[Row]:
    """Every live node (or ``host``'s) with its generation, inventory, allocated sums and compute service.

    A node whose host has no live nova-compute service comes back with service columns of None.
    """
    query = _candidates if host is None else _candidates.where(compute_nodes.c.host == host)
    return list(conn.execute(query))


_candidate_by_id = _candidates.where(compute_nodes.c.id == bindparam("node_id"))  # built once: claims run hot


def candidate_node(conn: Connection, node_id: int) -> Row | None:
    return conn.execute(_candidate_by_id, {"node_id": node_id}).first()


_lock_node = (
    update(compute_nodes)
    .where(compute_nodes.c.id == bindparam("node_id"), compute_nodes.c.deleted == 0)
    .values(generation=compute_nodes.c.generation + 1)
)


def compute_node_lock(conn: Connection, node_id: int) -> bool:
    """Bump the node's generation, which locks it until the transaction ends; False if the node is gone.

    The lock is the node's row on PostgreSQL and MariaDB, the database on SQLite; a claim holding it
    knows no other claim or release on the node can commit before it does.
    """
    return conn.execute(_lock_node, {"node_id": node_id}).rowcount == 1


def compute_node_generations_bump(conn: Connection, node_ids: list[int]) -> None:
    """Bump the generation of each node, in id order (one lock order, so two releases never deadlock)."""
    for node_id in sorted(set(node_ids)):
        conn.execute(update(compute_nodes).where(compute_nodes.c.id == node_id)
                     .values(generation=compute_nodes.c.generation + 1))


_insert_allocation = insert(allocations)


def allocation_create(conn: Connection, *, consumer_uuid: str, compute_node_id: int, vcpus: int,
                      memory_mb: int, disk_gb: int) -> None:
    conn.execute(_insert_allocation, {
        "consumer_uuid": consumer_uuid, "compute_node_id": compute_node_id, "vcpus": vcpus,
        "memory_mb": memory_mb, "disk_gb": disk_gb, "created_at": utcnow(),
    })


_by_consumer = (
    select(allocations, compute_nodes.c.host, compute_nodes.c.hypervisor_hostname,
           compute_nodes.c.uuid.label("compute_node_uuid"))
    .select_from(allocations.join(compute_nodes, compute_nodes.c.id == allocations.c.compute_node_id))
    .order_by(allocations.c.id)
)


_by_one_consumer = _by_consumer.where(allocations.c.consumer_uuid == bindparam("consumer"))


def allocations_for_consumer(conn: Connection, consumer_uuid: str) -> list[Row]:
    """The consumer's allocations, oldest first, each with its node's host, name and UUID."""
    return list(conn.execute(_by_one_consumer, {"consumer": consumer_uuid}))


_by_consumers = _by_consumer.where(allocations.c.consumer_uuid.in_(bindparam("consumers", expanding=True)))


def allocations_for_consumers(conn: Connection, consumer_uuids: list[str]) -> list[Row]:
    """The allocations of every consumer named (a batch of placements' "already held" nodes)."""
    if not consumer_uuids:
        return []
    return list(conn.execute(_by_consumers, {"consumers": consumer_uuids}))


def allocations_on_node(conn: Connection, node_id: int) -> list[Row]:
    return list(conn.execute(_by_consumer.where(allocations.c.compute_node_id == node_id)))


def allocations_delete(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(delete(allocations).where(allocations.c.id.in_(ids)))
