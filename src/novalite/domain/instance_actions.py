"""A server's instance actions and their events (os-instance-actions), free of HTTP.

Nova's rules (compute InstanceActionAPI, db actions_get / action_get_by_request_id / action_events_get):
- the server is looked up as for any read, deleted ones included when asked (2.21);
- actions come newest first (created_at, then id), bounded by changes-since / changes-before on
  updated_at, paged after the action of a marker request id; an unknown marker is 400 "Marker None could
  not be found." (Nova names the failed lookup's result, not the marker);
- an action is found by its request id; its events come newest first.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, Row

from novalite.db import servers as db
from novalite.domain.migrations import MarkerNotFound
from novalite.domain.servers import InstanceNotFound, Requester


class InstanceActions:
    def __init__(self, engine: Engine):
        self.engine = engine

    def server(self, who: Requester, uuid: str, *, read_deleted: bool = False) -> Row:
        """The server, if ``who`` may see it (admins see every project's); else InstanceNotFound."""
        with self.engine.connect() as conn:
            row = db.instance_get(conn, uuid, read_deleted=read_deleted)
        if row is None or not (who.is_admin or row.project_id == who.project_id):
            raise InstanceNotFound(uuid)
        return row

    def list(self, instance_uuid: str, *, limit: int | None = None, marker: str | None = None,
             changes_since: dt.datetime | None = None, changes_before: dt.datetime | None = None) -> list[Row]:
        if limit == 0:
            return []
        with self.engine.connect() as conn:
            after = None
            if marker is not None:
                after = db.action_by_request_id(conn, instance_uuid, marker)
                if after is None:
                    raise MarkerNotFound(after)
            return db.actions_of(conn, instance_uuid, limit=limit, after=after, changes_since=changes_since,
                                 changes_before=changes_before)

    def get(self, instance_uuid: str, request_id: str) -> Row | None:
        with self.engine.connect() as conn:
            return db.action_by_request_id(conn, instance_uuid, request_id)

    def events(self, action_id: int) -> list[Row]:
        with self.engine.connect() as conn:
            return db.events_of(conn, action_id)
