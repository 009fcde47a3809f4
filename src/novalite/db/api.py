"""Database access for services, instances and migrations: every query novalite runs lives here.

Functions take an open SQLAlchemy Connection so callers choose the transaction. Writes name only
the columns they change, so a heartbeat never overwrites an admin's change and the reverse.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence

from sqlalchemy import Connection, Row, func, insert, select, update

from novalite.db.models import Instance, Migration, Service
from novalite.timeutils import utcnow

services = Service.__table__
instances = Instance.__table__
migrations = Migration.__table__

# Migration statuses that are no longer in progress (nova.db.main.api).
FINISHED_MIGRATION_STATUSES = ("confirmed", "reverted", "error", "failed", "completed", "cancelled", "done")

_live_services = select(services).where(services.c.deleted == 0)


def service_list(conn: Connection) -> Sequence[Row]:
    return conn.execute(_live_services.order_by(services.c.id)).all()


def service_get_by_uuid(conn: Connection, service_uuid: str) -> Row | None:
    return conn.execute(_live_services.where(services.c.uuid == service_uuid)).first()


def service_get_by_id(conn: Connection, service_id: int) -> Row | None:
    return conn.execute(_live_services.where(services.c.id == service_id)).first()


def service_get_by_host_and_binary(conn: Connection, host: str, binary: str) -> Row | None:
    return conn.execute(
        _live_services.where(services.c.host == host, services.c.binary == binary)
    ).first()


def host_is_mapped(conn: Connection, host: str) -> bool:
    """A host is mapped once any of its services registered (novalite runs a single cell)."""
    found = conn.execute(
        select(services.c.id).where(services.c.deleted == 0, services.c.host == host).limit(1)
    ).first()
    return found is not None


def service_create(conn: Connection, *, host: str, binary: str, topic: str | None, version: int) -> Row:
    now = utcnow()
    conn.execute(
        insert(services).values(
            uuid=str(uuidlib.uuid4()), host=host, binary=binary, topic=topic, version=version,
            report_count=0, disabled=False, forced_down=False, created_at=now, deleted=0,
        )
    )
    return service_get_by_host_and_binary(conn, host, binary)


def service_update(conn: Connection, service_id: int, **values) -> Row:
    """Write only ``values`` (and updated_at) to a live service; returns the row as saved."""
    values["updated_at"] = utcnow()
    conn.execute(update(services).where(services.c.id == service_id, services.c.deleted == 0).values(**values))
    return service_get_by_id(conn, service_id)


def service_heartbeat(conn: Connection, service_uuid: str) -> bool:
    """Bump report_count and last_seen_up atomically; False if the row is gone (Nova 4.3)."""
    now = utcnow()
    result = conn.execute(
        update(services)
        .where(services.c.uuid == service_uuid, services.c.deleted == 0)
        .values(report_count=services.c.report_count + 1, last_seen_up=now, updated_at=now)
    )
    return result.rowcount == 1


def service_destroy(conn: Connection, service_id: int) -> None:
    now = utcnow()
    conn.execute(
        update(services)
        .where(services.c.id == service_id, services.c.deleted == 0)
        .values(deleted=services.c.id, deleted_at=now)
    )


def instance_count_on_host(conn: Connection, host: str) -> int:
    return conn.execute(
        select(func.count()).select_from(instances).where(instances.c.deleted == 0, instances.c.host == host)
    ).scalar_one()


def migration_in_progress_count(conn: Connection, host: str) -> int:
    """Migrations with ``host`` as source or destination that have not finished."""
    return conn.execute(
        select(func.count())
        .select_from(migrations)
        .where(
            migrations.c.deleted == 0,
            (migrations.c.source_compute == host) | (migrations.c.dest_compute == host),
            migrations.c.status.not_in(FINISHED_MIGRATION_STATUSES),
        )
    ).scalar_one()


def evacuation_done_count(conn: Connection, source_host: str) -> int:
    """Evacuations away from ``source_host`` still in status done (spec 3.6)."""
    return conn.execute(
        select(func.count())
        .select_from(migrations)
        .where(
            migrations.c.deleted == 0,
            migrations.c.source_compute == source_host,
            migrations.c.status == "done",
            migrations.c.migration_type == "evacuation",
        )
    ).scalar_one()
