"""Database access for hypervisors (compute_nodes)."""

from __future__ import annotations

import uuid as uuidlib

from sqlalchemy import Connection, Row, insert, select, update

from novalite.db.models import ComputeNode
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
