"""Listing migration records (GET /os-migrations): Nova's filters, order and paging, free of HTTP.

Nova's rules (compute API get_migrations / get_migrations_sorted, db migration_get_all_by_filters):
- ``host`` matches either end and then ``source_compute`` is ignored; ``status`` and the others are exact;
- changes-since / changes-before bound updated_at (a record never updated matches neither);
- sorted listings (2.59+) run newest first, created_at then id, and page after a marker migration's UUID
  (400 "Marker <uuid> could not be found." when no live migration has it); unsorted ones come in id order;
- hidden migrations (Nova's cross-cell resize copies) are read like the rest and left out by the API view,
  after the page was cut, as Nova does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, Row

from novalite.db import servers as db
from novalite.exceptions import BadRequest


@dataclass(frozen=True)
class MigrationFilters:
    status: str | None = None
    host: str | None = None
    source_compute: str | None = None
    node: str | None = None
    migration_type: str | None = None
    instance_uuid: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    uuid: str | None = None
    changes_since: dt.datetime | None = None  # naive UTC
    changes_before: dt.datetime | None = None


class MarkerNotFound(BadRequest):
    def __init__(self, marker: object):
        super().__init__(f"Marker {marker} could not be found.")


class Migrations:
    def __init__(self, engine: Engine):
        self.engine = engine

    def list(self, filters: MigrationFilters, *, newest_first: bool = False, limit: int | None = None,
             marker: str | None = None) -> list[Row]:
        if limit == 0:
            return []
        f = filters
        with self.engine.connect() as conn:
            after = None
            if marker is not None:
                after = db.migration_get(conn, marker)
                if after is None:
                    raise MarkerNotFound(marker)
            return db.migration_list(
                conn, uuids=None if f.uuid is None else [f.uuid], statuses=None if f.status is None else [f.status],
                host=f.host, source_compute=f.source_compute, node=f.node, migration_type=f.migration_type,
                instance_uuid=f.instance_uuid, user_id=f.user_id, project_id=f.project_id,
                changes_since=f.changes_since, changes_before=f.changes_before, newest_first=newest_first,
                limit=limit, after=after)
