"""Database access for flavors, their extra specs and project access: every flavor query lives here.

Functions take an open SQLAlchemy Connection so callers choose the transaction. Flavors are
deleted for real (Nova keeps them in the API database, without soft delete).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, exists, insert, or_, select, true, update

from novalite.db.models import Flavor, FlavorExtraSpec, FlavorProject
from novalite.timeutils import utcnow

flavors = Flavor.__table__
extra_specs = FlavorExtraSpec.__table__
flavor_projects = FlavorProject.__table__


def _has_access(project_id: str | None):
    return exists().where(flavor_projects.c.flavor_id == flavors.c.id,
                          flavor_projects.c.project_id == project_id)


def _visible(project_id: str | None, is_admin: bool):
    """Nova's base flavor query: admins see every flavor, others public ones and their project's."""
    if is_admin:
        return true()
    return or_(flavors.c.is_public == true(), _has_access(project_id))


def flavor_get_by_flavorid(conn: Connection, flavorid: str, *, project_id: str | None = None,
                           is_admin: bool = True) -> Row | None:
    return conn.execute(
        select(flavors).where(flavors.c.flavorid == flavorid, _visible(project_id, is_admin))
        .order_by(flavors.c.id).limit(1)
    ).first()


def flavor_get_by_name(conn: Connection, name: str) -> Row | None:
    return conn.execute(select(flavors).where(flavors.c.name == name)).first()


def _sort_value(row: Row, key: str) -> tuple:
    # NULL sorts first ascending, as in MySQL (Nova's usual API database). vcpu_weight is not
    # stored: Nova's API cannot set it, so it is NULL for every flavor.
    value = row._mapping.get(key)
    return (value is not None, value if value is not None else 0, row.id)


def flavor_get_all(
    conn: Connection,
    *,
    project_id: str | None,
    is_admin: bool,
    is_public: bool | None,
    only_enabled: bool,
    min_memory_mb: int | None,
    min_root_gb: int | None,
    sort_key: str,
    sort_dir: str,
    limit: int,
    marker: str | None,
) -> list[Row]:
    """The flavors a listing shows, in (sort_key, id) order, after ``marker``, at most ``limit``.

    Raises LookupError when ``marker`` names no flavor the caller can see.
    """
    query = select(flavors).where(_visible(project_id, is_admin))
    if min_memory_mb is not None:
        query = query.where(flavors.c.memory_mb >= min_memory_mb)
    if min_root_gb is not None:
        query = query.where(flavors.c.root_gb >= min_root_gb)
    if only_enabled:
        query = query.where(flavors.c.disabled == False)  # noqa: E712 - SQL comparison
    if is_public is not None:
        public = flavors.c.is_public == is_public
        # Asking for public flavors also shows the private ones the caller's project may use.
        query = query.where(or_(public, _has_access(project_id)) if is_public and project_id else public)
    rows = conn.execute(query).all()
    descending = sort_dir == "desc"
    rows.sort(key=lambda r: _sort_value(r, sort_key), reverse=descending)
    if marker is not None:
        marker_row = flavor_get_by_flavorid(conn, marker, project_id=project_id, is_admin=is_admin)
        if marker_row is None:
            raise LookupError(marker)
        # The page starts after the marker's place, even when the filters leave the marker out.
        after = _sort_value(marker_row, sort_key)
        rows = [r for r in rows if (_sort_value(r, sort_key) < after if descending
                                    else _sort_value(r, sort_key) > after)]
    return rows[:limit]


def flavor_create(conn: Connection, values: dict[str, Any]) -> Row:
    now = utcnow()
    result = conn.execute(insert(flavors).values(created_at=now, **values))
    return conn.execute(select(flavors).where(flavors.c.id == result.inserted_primary_key[0])).one()


def flavor_update_description(conn: Connection, flavor_pk: int, description: str | None) -> Row:
    conn.execute(update(flavors).where(flavors.c.id == flavor_pk)
                 .values(description=description, updated_at=utcnow()))
    return conn.execute(select(flavors).where(flavors.c.id == flavor_pk)).one()


def flavor_destroy(conn: Connection, flavorid: str) -> bool:
    """Delete the flavor with its extra specs and project access; False if there is none."""
    row = conn.execute(select(flavors.c.id).where(flavors.c.flavorid == flavorid)
                       .order_by(flavors.c.id).limit(1)).first()
    if row is None:
        return False
    conn.execute(delete(flavor_projects).where(flavor_projects.c.flavor_id == row.id))
    conn.execute(delete(extra_specs).where(extra_specs.c.flavor_id == row.id))
    conn.execute(delete(flavors).where(flavors.c.id == row.id))
    return True


def extra_specs_of(conn: Connection, flavor_pks: Iterable[int]) -> dict[int, dict[str, str | None]]:
    """Extra specs keyed by flavor row id (every id given has an entry, maybe empty)."""
    found: dict[int, dict[str, str | None]] = {pk: {} for pk in flavor_pks}
    if not found:
        return found
    rows = conn.execute(
        select(extra_specs.c.flavor_id, extra_specs.c.key, extra_specs.c.value)
        .where(extra_specs.c.flavor_id.in_(list(found))).order_by(extra_specs.c.id)
    )
    for flavor_pk, key, value in rows:
        found[flavor_pk][key] = value
    return found


def flavor_projects_of(conn: Connection, flavor_pk: int) -> list[str]:
    rows = conn.execute(select(flavor_projects.c.project_id)
                        .where(flavor_projects.c.flavor_id == flavor_pk).order_by(flavor_projects.c.id))
    return [project_id for (project_id,) in rows]


def flavor_add_project(conn: Connection, flavor_pk: int, project_id: str) -> None:
    conn.execute(insert(flavor_projects).values(flavor_id=flavor_pk, project_id=project_id,
                                                created_at=utcnow()))


def extra_spec_set(conn: Connection, flavor_pk: int, key: str, value: str) -> None:
    now = utcnow()
    changed = conn.execute(update(extra_specs).where(and_(extra_specs.c.flavor_id == flavor_pk,
                                                          extra_specs.c.key == key))
                           .values(value=value, updated_at=now)).rowcount
    if not changed:
        conn.execute(insert(extra_specs).values(flavor_id=flavor_pk, key=key, value=value, created_at=now))
