"""Database access for services, instances and migrations: every query novalite runs lives here.

Functions take an open SQLAlchemy Connection so callers choose the transaction. Writes name only
the columns they change, so a heartbeat never overwrites an admin's change and the reverse.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid as uuidlib

from sqlalchemy import Connection, Row, String, bindparam, case, false, func, insert, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from novalite.db.models import ComputeNode, Instance, Migration, Service
from novalite.timeutils import utcnow

services = Service.__table__
instances = Instance.__table__
migrations = Migration.__table__
compute_nodes = ComputeNode.__table__

# Migration statuses that are no longer in progress (nova.db.main.api).
FINISHED_MIGRATION_STATUSES = ("confirmed", "reverted", "error", "failed", "completed", "cancelled", "done")

_live_services = select(services).where(services.c.deleted == 0)

# Hot-path statements are built once; SQLAlchemy then reuses their compiled form.


class api_time(FunctionElement):
    """A timestamp column as Nova's API text, e.g. 2012-10-29T13:42:02.000000 (timeutils.isotime), made by the
    database: a listing of thousands then skips a datetime object and its isoformat per row (half the Python
    time of listing 1,000 services). Every backend stores microseconds; SQLite stores the text
    "2012-10-29 13:42:02.000000" (SQLAlchemy's format), so there the T is all that changes."""

    type = String()
    inherit_cache = True


@compiles(api_time, "sqlite")
def _api_time_sqlite(element, compiler, **kw):
    return compiler.process(func.replace(*element.clauses, " ", "T"), **kw)


@compiles(api_time, "postgresql")
def _api_time_postgresql(element, compiler, **kw):
    return compiler.process(func.to_char(*element.clauses, 'YYYY-MM-DD"T"HH24:MI:SS.US'), **kw)


@compiles(api_time, "mysql")
def _api_time_mysql(element, compiler, **kw):
    return compiler.process(func.date_format(*element.clauses, "%Y-%m-%dT%H:%i:%s.%f"), **kw)


class exact(FunctionElement):
    """A text column compared byte for byte: MariaDB's collations ignore case, Nova's filters (spec 3.2) do not."""

    type = String()
    inherit_cache = True


@compiles(exact)
def _exact(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(exact, "mysql")
def _exact_mysql(element, compiler, **kw):
    return f"BINARY {compiler.process(element.clauses, **kw)}"


# A listing of services is read in two statements (novalite.domain.service_listing keeps the rows between
# listings): service_versions, each listed service's id and row_version, which says which rows changed; then
# service_listed_rows, the whole rows of those not kept at that version.
#
# The columns of a listed row, in this order: domain.services.ServiceState's fields but "up", then what "up" is
# judged by and the row's version. zone is the availability zone its topic gives (the two names are parameters);
# updated_at is api_time's text; last_heartbeat is api_time's text of last_seen_up, else created_at (spec 4.1),
# which compares with another api_time text as the times do.
LISTED_COLUMNS = ("id", "uuid", "host", "binary", "zone", "disabled", "disabled_reason", "forced_down",
                  "updated_at", "last_heartbeat", "row_version")
_zone = case((services.c.topic == "compute", bindparam("compute_zone", type_=String())),
             else_=bindparam("internal_zone", type_=String()))
_listed = (services.c.deleted == 0, exact(services.c.binary).not_in(bindparam("hidden", expanding=True)))
_by_host, _by_binary = exact(services.c.host) == bindparam("host"), exact(services.c.binary) == bindparam("binary")
# One statement per filter combination (host given, binary given), built once.
_filters = {(False, False): (), (True, False): (_by_host,), (False, True): (_by_binary,),
            (True, True): (_by_host, _by_binary)}
_versions_by = {
    given: select(services.c.id, services.c.row_version).where(*_listed, *where).order_by(services.c.id)
    for given, where in _filters.items()
}
_listed_rows = select(
    services.c.id, services.c.uuid, services.c.host, services.c.binary, _zone, services.c.disabled,
    services.c.disabled_reason, services.c.forced_down, api_time(services.c.updated_at),
    api_time(func.coalesce(services.c.last_seen_up, services.c.created_at)), services.c.row_version)
_listed_rows_by = {given: _listed_rows.where(*_listed, *where) for given, where in _filters.items()}
_listed_rows_by_id = _listed_rows.where(services.c.deleted == 0, services.c.id.in_(bindparam("ids", expanding=True)))


def _driver_rows(conn: Connection, statement, params: dict) -> list[tuple]:
    """The driver's own rows, without SQLAlchemy's result processing (which costs more than the query): booleans
    may be 0/1."""
    result = conn.execute(statement, params)
    try:
        return list(result.cursor.fetchall())  # mysqlclient's is a tuple
    finally:
        result.close()


def service_versions(conn: Connection, *, hidden_binaries: tuple[str, ...] = (), host: str | None = None,
                     binary: str | None = None) -> list[tuple[int, int]]:
    """(id, row_version) of every live service in id order: but those of ``hidden_binaries``, and only ``host``'s
    and ``binary``'s when given (compared byte for byte, as Nova's filters)."""
    return _driver_rows(conn, _versions_by[bool(host), bool(binary)],
                        {"hidden": list(hidden_binaries), "host": host, "binary": binary})


def service_listed_rows(conn: Connection, ids: list[int] | None = None, *, compute_zone: str, internal_zone: str,
                        hidden_binaries: tuple[str, ...] = (), host: str | None = None,
                        binary: str | None = None) -> list[tuple]:
    """The LISTED_COLUMNS of the live services ``ids`` (in no order), or when ``ids`` is None of every service
    service_versions would give for the same filters."""
    zones = {"compute_zone": compute_zone, "internal_zone": internal_zone}
    if ids is not None:
        return _driver_rows(conn, _listed_rows_by_id, {"ids": ids, **zones})
    return _driver_rows(conn, _listed_rows_by[bool(host), bool(binary)],
                        {"hidden": list(hidden_binaries), "host": host, "binary": binary, **zones})


def service_get_by_uuid(conn: Connection, service_uuid: str) -> Row | None:
    return conn.execute(_live_services.where(services.c.uuid == service_uuid)).first()


def service_get_by_id(conn: Connection, service_id: int) -> Row | None:
    return conn.execute(_live_services.where(services.c.id == service_id)).first()


def service_get_by_host_and_binary(conn: Connection, host: str, binary: str) -> Row | None:
    return conn.execute(
        _live_services.where(services.c.host == host, services.c.binary == binary)
    ).first()


# Built once: every server create and evacuation reads the schedulers' addresses.
_nudge_addresses = select(services.c.nudge_address).where(
    services.c.deleted == 0, services.c.binary == bindparam("binary"), services.c.nudge_address.is_not(None))


def nudge_addresses(conn: Connection, binary: str, hosts=None) -> list[str]:
    """Where the live ``binary`` services (of ``hosts``, if given) take wake-up datagrams."""
    query = _nudge_addresses
    if hosts is not None:
        query = query.where(services.c.host.in_(list(hosts)))
    return [address for (address,) in conn.execute(query, {"binary": binary})]


def host_is_mapped(conn: Connection, host: str) -> bool:
    """A host is mapped once any of its services registered (novalite runs a single cell)."""
    found = conn.execute(
        select(services.c.id).where(services.c.deleted == 0, services.c.host == host).limit(1)
    ).first()
    return found is not None


def service_create(conn: Connection, *, host: str, binary: str, topic: str | None, version: int,
                   nudge_address: str | None = None) -> Row:
    now = utcnow()
    conn.execute(
        insert(services).values(
            uuid=str(uuidlib.uuid4()), host=host, binary=binary, topic=topic, version=version,
            report_count=0, disabled=False, forced_down=False, created_at=now, deleted=0,
            nudge_address=nudge_address,
        )
    )
    return service_get_by_host_and_binary(conn, host, binary)


@functools.cache
def _update_by_host_and_binary(columns: tuple[str, ...], unless_evacuations_done: bool):
    statement = (
        update(services)
        .where(services.c.host == bindparam("b_host"), services.c.binary == bindparam("b_binary"),
               services.c.deleted == 0)
        .values({name: bindparam(f"v_{name}") for name in columns})
    )
    if unless_evacuations_done:
        statement = statement.where(~_evacuations_done(services.c.host).exists())
    return statement


def service_update_by_host_and_binary(conn: Connection, host: str, binary: str, *,
                                      unless_evacuations_done: bool = False, **values) -> bool:
    """Write only ``values`` (and updated_at) to the live host+binary record; False if there is none, or with
    ``unless_evacuations_done`` if evacuations away from the host are still `done` (evacuation_done_count), checked
    by the UPDATE itself."""
    values["updated_at"] = utcnow()
    stmt = _update_by_host_and_binary(tuple(sorted(values)), unless_evacuations_done)
    params = {"b_host": host, "b_binary": binary, **{f"v_{k}": v for k, v in values.items()}}
    return conn.execute(stmt, params).rowcount == 1


def service_update(conn: Connection, service_id: int, **values) -> Row:
    """Write only ``values`` (and updated_at) to a live service; returns the row as saved."""
    values["updated_at"] = utcnow()
    conn.execute(update(services).where(services.c.id == service_id, services.c.deleted == 0).values(**values))
    return service_get_by_id(conn, service_id)


# A heartbeat writes these and nothing else (spec 4.3), so it never overwrites an admin's change.
_heartbeat_values = {"report_count": services.c.report_count + 1, "last_seen_up": bindparam("now"),
                     "updated_at": bindparam("now")}
_heartbeat = (
    update(services).where(services.c.uuid == bindparam("b_uuid"), services.c.deleted == 0).values(_heartbeat_values)
)
_heartbeat_many = (
    update(services)
    .where(services.c.uuid.in_(bindparam("b_uuids", expanding=True)), services.c.deleted == 0)
    .values(_heartbeat_values)
)
_live_uuids = select(services.c.uuid).where(services.c.uuid.in_(bindparam("b_uuids", expanding=True)),
                                            services.c.deleted == 0)


def service_heartbeat_many(conn: Connection, service_uuids: list[str], now: dt.datetime) -> set[str]:
    """One heartbeat for each of ``service_uuids`` (distinct) in one UPDATE: report_count + 1, last_seen_up and
    updated_at = ``now``, nothing else. Returns the UUIDs that were beaten: all of them unless some rows are gone.

    The UUIDs go in sorted order so that two overlapping batches lock their rows in the same order."""
    if len(service_uuids) == 1:  # the usual batch while heartbeats do not overlap: the plain statement
        (single,) = service_uuids
        return {single} if conn.execute(_heartbeat, {"b_uuid": single, "now": now}).rowcount == 1 else set()
    ordered = sorted(service_uuids)
    if conn.execute(_heartbeat_many, {"b_uuids": ordered, "now": now}).rowcount == len(ordered):
        return set(ordered)
    # Some are deleted. A row live now was live at the UPDATE (a deleted row never comes back), so it was beaten.
    return set(conn.execute(_live_uuids, {"b_uuids": ordered}).scalars())


def service_destroy(conn: Connection, service_id: int, compute_host: str | None = None) -> None:
    """Soft-delete a service; for a compute (``compute_host``), its host's hypervisor records too, as Nova."""
    now = utcnow()
    conn.execute(
        update(services)
        .where(services.c.id == service_id, services.c.deleted == 0)
        .values(deleted=services.c.id, deleted_at=now)
    )
    if compute_host is None:
        return
    conn.execute(
        update(compute_nodes)
        .where((compute_nodes.c.service_id == service_id) | (compute_nodes.c.host == compute_host),
               compute_nodes.c.deleted == 0)
        .values(deleted=compute_nodes.c.id, deleted_at=now)
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


def _evacuations_done(source_host):
    return select(migrations.c.id).where(
        migrations.c.deleted == 0,
        migrations.c.source_compute == source_host,
        migrations.c.status == "done",
        migrations.c.migration_type == "evacuation",
    )


_evacuation_done = select(func.count()).select_from(_evacuations_done(bindparam("source_host")).subquery())


def evacuation_done_count(conn: Connection, source_host: str) -> int:
    """Evacuations away from ``source_host`` still in status done (spec 3.6)."""
    return conn.execute(_evacuation_done, {"source_host": source_host}).scalar_one()


def service_minimum_version(conn: Connection, binary: str) -> int:
    """Nova's get_minimum_version_all_cells: the lowest positive version of the live ``binary`` services
    that are not forced down (spec 4.6); 0 when there is none."""
    found = conn.execute(
        select(func.min(services.c.version)).where(
            services.c.deleted == 0, services.c.binary == binary, services.c.forced_down == false(),
            services.c.version > 0)
    ).scalar_one()
    return found or 0
