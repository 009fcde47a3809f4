"""Database access for servers: instances, their metadata and faults, instance actions and their
events, and evacuation migrations.

Functions take an open Connection so the caller chooses the transaction. State changes are
conditional (``expected`` column values, as Nova's ``instance.save(expected_task_state=…)``):
a change whose precondition no longer holds updates nothing and says so, so two actors racing on
one server never both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, or_, select, update

from novalite.db.models import (
    Instance,
    InstanceAction,
    InstanceActionEvent,
    InstanceFault,
    InstanceMetadata,
    Migration,
)
from novalite.timeutils import utcnow

instances = Instance.__table__
instance_metadata = InstanceMetadata.__table__
instance_faults = InstanceFault.__table__
instance_actions = InstanceAction.__table__
action_events = InstanceActionEvent.__table__
migrations = Migration.__table__

Expected = dict[str, Any]  # column → value, or a tuple of allowed values (None allowed as a value)


def _conditions(table, expected: Expected) -> list:
    out = []
    for column, value in expected.items():
        col = table.c[column]
        if isinstance(value, tuple):
            allowed = [v for v in value if v is not None]
            cond = col.in_(allowed) if allowed else None
            if None in value:
                cond = col.is_(None) if cond is None else or_(cond, col.is_(None))
            out.append(cond)
        elif value is None:
            out.append(col.is_(None))
        else:
            out.append(col == value)
    return out


# -- instances ----------------------------------------------------------------------------------------

def instance_create(conn: Connection, values: dict, metadata: dict[str, str]) -> Row:
    now = utcnow()
    conn.execute(insert(instances).values(created_at=now, deleted=0, **values))
    for key, value in metadata.items():
        conn.execute(insert(instance_metadata).values(
            instance_uuid=values["uuid"], key=key, value=value, created_at=now, deleted=0))
    return instance_get(conn, values["uuid"])


def instance_get(conn: Connection, uuid: str, *, read_deleted: bool = False) -> Row | None:
    query = select(instances).where(instances.c.uuid == uuid)
    if not read_deleted:
        query = query.where(instances.c.deleted == 0)
    return conn.execute(query).first()


def instances_get(conn: Connection, uuids: Sequence[str]) -> list[Row]:
    if not uuids:
        return []
    return list(conn.execute(select(instances).where(instances.c.uuid.in_(uuids))))


def instance_update(conn: Connection, uuid: str, expected: Expected | None = None, **values) -> bool:
    """Change a live instance if it still is as ``expected``; True if it changed."""
    query = (update(instances)
             .where(instances.c.uuid == uuid, instances.c.deleted == 0, *_conditions(instances, expected or {}))
             .values(updated_at=utcnow(), **values))
    return conn.execute(query).rowcount == 1


def instance_destroy(conn: Connection, uuid: str, expected: Expected | None = None) -> bool:
    """Soft-delete the instance and its metadata (Nova's instance_destroy); True if it was live."""
    now = utcnow()
    query = (update(instances)
             .where(instances.c.uuid == uuid, instances.c.deleted == 0, *_conditions(instances, expected or {}))
             .values(deleted=instances.c.id, deleted_at=now, updated_at=now, vm_state="deleted", task_state=None,
                     terminated_at=now))
    if conn.execute(query).rowcount != 1:
        return False
    conn.execute(update(instance_metadata)
                 .where(instance_metadata.c.instance_uuid == uuid, instance_metadata.c.deleted == 0)
                 .values(deleted=instance_metadata.c.id, deleted_at=now))
    return True


def instances_on_host(conn: Connection, host: str) -> list[Row]:
    return list(conn.execute(select(instances).where(instances.c.deleted == 0, instances.c.host == host)
                             .order_by(instances.c.id)))


def instances_needing_placement(conn: Connection, limit: int) -> list[Row]:
    """New servers waiting for the scheduler: building, task_state scheduling, not yet on a host."""
    return list(conn.execute(
        select(instances)
        .where(instances.c.deleted == 0, instances.c.vm_state == "building",
               instances.c.task_state == "scheduling", instances.c.host.is_(None))
        .order_by(instances.c.id).limit(limit)))


def instance_list(conn: Connection, *, where: Iterable = (), order_by: Sequence = (), limit: int | None = None,
                  read_deleted: bool = False) -> list[Row]:
    """Instances matching ``where`` (SQLAlchemy conditions on ``instances``), in ``order_by`` order."""
    query = select(instances).where(*where)
    if not read_deleted:
        query = query.where(instances.c.deleted == 0)
    query = query.order_by(*order_by, instances.c.id)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query))


def metadata_of(conn: Connection, uuids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {uuid: {} for uuid in uuids}
    if not uuids:
        return out
    rows = conn.execute(select(instance_metadata.c.instance_uuid, instance_metadata.c.key,
                               instance_metadata.c.value)
                        .where(instance_metadata.c.instance_uuid.in_(uuids), instance_metadata.c.deleted == 0)
                        .order_by(instance_metadata.c.id))
    for uuid, key, value in rows:
        out[uuid][key] = value
    return out


# -- faults --------------------------------------------------------------------------------------------

def fault_create(conn: Connection, instance_uuid: str, code: int, message: str, details: str = "",
                 host: str | None = None) -> None:
    conn.execute(insert(instance_faults).values(
        instance_uuid=instance_uuid, code=code, message=message[:255], details=details, host=host,
        created_at=utcnow(), deleted=0))


def latest_faults(conn: Connection, uuids: Sequence[str]) -> dict[str, Row]:
    """The newest fault of each instance that has one."""
    if not uuids:
        return {}
    rows = conn.execute(select(instance_faults)
                        .where(instance_faults.c.instance_uuid.in_(uuids), instance_faults.c.deleted == 0)
                        .order_by(instance_faults.c.id))
    return {row.instance_uuid: row for row in rows}


# -- instance actions ------------------------------------------------------------------------------

def action_start(conn: Connection, *, instance_uuid: str, action: str, request_id: str | None,
                 user_id: str | None, project_id: str | None) -> int:
    now = utcnow()
    result = conn.execute(insert(instance_actions).values(
        action=action, instance_uuid=instance_uuid, request_id=request_id, user_id=user_id,
        project_id=project_id, start_time=now, created_at=now, updated_at=now, deleted=0))
    return result.inserted_primary_key[0]


def action_latest(conn: Connection, instance_uuid: str, action: str) -> Row | None:
    return conn.execute(select(instance_actions)
                        .where(instance_actions.c.instance_uuid == instance_uuid,
                               instance_actions.c.action == action, instance_actions.c.deleted == 0)
                        .order_by(instance_actions.c.id.desc()).limit(1)).first()


def action_finish(conn: Connection, action_id: int, message: str | None = None) -> None:
    """Finish an action; a ``message`` ("Error") is kept, none leaves the one its events set."""
    now = utcnow()
    conn.execute(update(instance_actions).where(instance_actions.c.id == action_id)
                 .values(finish_time=now, updated_at=now, **({"message": message} if message else {})))


def event_record(conn: Connection, action_id: int, event: str, *, host: str | None, result: str,
                 started_at=None, traceback: str | None = None, details: str | None = None) -> None:
    """One finished event of an action ("Success" or "Error"), as the service that did it reports it.

    As Nova's action_event_finish: the action's updated_at moves, and an error marks it "Error"."""
    now = utcnow()
    conn.execute(insert(action_events).values(
        action_id=action_id, event=event, start_time=started_at or now, finish_time=now, result=result,
        traceback=traceback, host=host, details=details, created_at=now, deleted=0))
    changes = {"updated_at": now, **({"message": "Error"} if result.lower() == "error" else {})}
    conn.execute(update(instance_actions).where(instance_actions.c.id == action_id).values(**changes))


def _changed_between(table, since, before) -> list:
    """Nova's changes-since / changes-before: updated_at within [since, before] (a row never updated has
    no updated_at and matches neither)."""
    out = []
    if since is not None:
        out.append(table.c.updated_at >= since)
    if before is not None:
        out.append(table.c.updated_at <= before)
    return out


def _after(table, marker: Row):
    """The rows after ``marker`` in (created_at desc, id desc) order: oslo.db's paginate_query."""
    return or_(table.c.created_at < marker.created_at,
               and_(table.c.created_at == marker.created_at, table.c.id < marker.id))


def actions_of(conn: Connection, instance_uuid: str, *, limit: int | None = None, after: Row | None = None,
               changes_since=None, changes_before=None) -> list[Row]:
    """Newest first (created_at, then id), as Nova's actions_get lists them."""
    query = (select(instance_actions)
             .where(instance_actions.c.instance_uuid == instance_uuid, instance_actions.c.deleted == 0,
                    *_changed_between(instance_actions, changes_since, changes_before))
             .order_by(instance_actions.c.created_at.desc(), instance_actions.c.id.desc()))
    if after is not None:
        query = query.where(_after(instance_actions, after))
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query))


def action_by_request_id(conn: Connection, instance_uuid: str, request_id: str) -> Row | None:
    """The newest action of the instance with this request id (Nova's _action_get_by_request_id)."""
    return conn.execute(select(instance_actions)
                        .where(instance_actions.c.instance_uuid == instance_uuid,
                               instance_actions.c.request_id == request_id,
                               instance_actions.c.deleted == 0)
                        .order_by(instance_actions.c.created_at.desc(), instance_actions.c.id.desc())
                        .limit(1)).first()


def events_of(conn: Connection, action_id: int) -> list[Row]:
    """Newest first, as Nova's action_events_get."""
    return list(conn.execute(select(action_events)
                             .where(action_events.c.action_id == action_id, action_events.c.deleted == 0)
                             .order_by(action_events.c.created_at.desc(), action_events.c.id.desc())))


# -- migrations ------------------------------------------------------------------------------------------

def migration_create(conn: Connection, **values) -> Row:
    conn.execute(insert(migrations).values(created_at=utcnow(), deleted=0, **values))
    return migration_get(conn, values["uuid"])


def migration_get(conn: Connection, uuid: str) -> Row | None:
    return conn.execute(select(migrations).where(migrations.c.uuid == uuid, migrations.c.deleted == 0)).first()


def migration_update(conn: Connection, uuid: str, expected: Expected | None = None, **values) -> bool:
    query = (update(migrations)
             .where(migrations.c.uuid == uuid, migrations.c.deleted == 0, *_conditions(migrations, expected or {}))
             .values(updated_at=utcnow(), **values))
    return conn.execute(query).rowcount == 1


def migrations_with_status(conn: Connection, status: str, migration_type: str, limit: int) -> list[Row]:
    return list(conn.execute(select(migrations)
                             .where(migrations.c.deleted == 0, migrations.c.status == status,
                                    migrations.c.migration_type == migration_type)
                             .order_by(migrations.c.id).limit(limit)))


def migration_in_flight_for_instance(conn: Connection, instance_uuid: str) -> Row | None:
    """The instance's evacuation that has not reached done, error or failed yet."""
    return conn.execute(select(migrations)
                        .where(migrations.c.deleted == 0, migrations.c.instance_uuid == instance_uuid,
                               migrations.c.migration_type == "evacuation",
                               migrations.c.status.in_(("accepted", "pre-migrating")))
                        .order_by(migrations.c.id.desc()).limit(1)).first()


def evacuations_from(conn: Connection, source_host: str, statuses: Sequence[str]) -> list[Row]:
    return list(conn.execute(select(migrations)
                             .where(migrations.c.deleted == 0, migrations.c.source_compute == source_host,
                                    migrations.c.migration_type == "evacuation",
                                    migrations.c.status.in_(statuses))
                             .order_by(migrations.c.id)))


def evacuations_to(conn: Connection, dest_host: str, status: str) -> list[Row]:
    return list(conn.execute(select(migrations)
                             .where(migrations.c.deleted == 0, migrations.c.dest_compute == dest_host,
                                    migrations.c.migration_type == "evacuation", migrations.c.status == status)
                             .order_by(migrations.c.id)))


def migration_list(conn: Connection, *, uuids: Sequence[str] | None = None, statuses: Sequence[str] | None = None,
                   host: str | None = None, source_compute: str | None = None, node: str | None = None,
                   migration_type: str | None = None, instance_uuid: str | None = None, user_id: str | None = None,
                   project_id: str | None = None, changes_since=None, changes_before=None,
                   newest_first: bool = False, limit: int | None = None, after: Row | None = None) -> list[Row]:
    """Nova's migration_get_all_by_filters: ``host`` is either end (and then ``source_compute`` is not
    looked at); hidden migrations are returned too (the API leaves them out). Without ``newest_first``
    the rows come in id order, as an unsorted query returns them."""
    m = migrations.c
    where = [m.deleted == 0, *_changed_between(migrations, changes_since, changes_before)]
    if uuids is not None:
        where.append(m.uuid.in_(list(uuids)))
    if statuses is not None:
        where.append(m.status.in_(list(statuses)))
    if host is not None:
        where.append(or_(m.source_compute == host, m.dest_compute == host))
    elif source_compute is not None:
        where.append(m.source_compute == source_compute)
    if node is not None:
        where.append(or_(m.source_node == node, m.dest_node == node))
    for column, value in (("migration_type", migration_type), ("instance_uuid", instance_uuid),
                          ("user_id", user_id), ("project_id", project_id)):
        if value is not None:
            where.append(m[column] == value)
    if after is not None:
        where.append(_after(migrations, after))
    query = select(migrations).where(*where)
    query = query.order_by(m.created_at.desc(), m.id.desc()) if newest_first else query.order_by(m.id)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query))


def count_live_instances(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(instances).where(instances.c.deleted == 0)).scalar_one()

