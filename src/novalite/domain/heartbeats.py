"""Heartbeats of one API process written together: group commit for the agents' PUT .../heartbeat.

10,000 compute hosts reporting every 10 s are 1,000 heartbeats a second. One transaction each costs the
database a durable commit (a WAL flush: milliseconds on an ordinary disk) and the API a few round trips, so a
worker serving them one by one falls behind (bench/README.md, "Heartbeat absorption"). Here the heartbeats
that arrive in a process's request threads while a write is in flight wait for it to end, then go together in
ONE UPDATE ... WHERE uuid IN (...) and one commit:

- nothing is acknowledged before its write committed: every caller returns (or raises) only once the
  transaction holding its heartbeat has; a failed write fails each of its heartbeats;
- liveness stays exact (spec 4.3): last_seen_up and updated_at are the time of the write, taken when it
  starts, so a heartbeat is stamped at most one write's duration after it arrived, never before;
- a heartbeat for a deleted service still fails (NotFound, the agent's 404) and recreates nothing;
- only report_count (+1 per heartbeat: a service beating twice in one batch waits for the next write),
  last_seen_up and updated_at are written, never an admin's columns.

No thread waits on a timer: a lone heartbeat (one request thread per worker) is written at once, in a batch of
one. The thread that finds no write in flight leads: it writes what is pending, itself included, and hands
the lead to the first heartbeat that arrived meanwhile, so no request carries more than one write.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, Engine

from novalite.db import api as db
from novalite.timeutils import utcnow


class _Beat:
    __slots__ = ("uuid", "ready", "lead", "found", "error")

    def __init__(self, service_uuid: str):
        self.uuid = service_uuid
        self.ready = threading.Event()  # set when written (or failed), or when this beat is to lead
        self.lead = False
        self.found = False
        self.error: BaseException | None = None


class HeartbeatBatcher:
    """Group commit of the heartbeats of one process's threads (one per API worker)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._pending: list[_Beat] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """Heartbeats waiting for the next write (the one in flight holds the others)."""
        with self._lock:
            return len(self._pending)

    def beat(self, service_uuid: str) -> bool:
        """Record one heartbeat, committed before this returns; False if the service is gone (deleted)."""
        beat = _Beat(service_uuid)
        with self._lock:
            self._pending.append(beat)
            beat.lead = not self._writing
            self._writing = True
        if not beat.lead:
            beat.ready.wait()  # no timeout: the leader always ends by setting it (see _lead)
        if beat.lead:
            self._lead()
        if beat.error is not None:
            raise beat.error
        return beat.found

    def _lead(self) -> None:
        """Write every pending heartbeat (one per service), then pass the lead on or stop writing."""
        with self._lock:
            batch, held, seen = [], [], set()
            for pending in self._pending:
                (held if pending.uuid in seen else batch).append(pending)
                seen.add(pending.uuid)
            self._pending = held
        try:
            found = self._write([b.uuid for b in batch])
        except BaseException as error:  # noqa: BLE001 - every waiting request gets the failure
            for b in batch:
                b.error = error
        else:
            for b in batch:
                b.found = b.uuid in found
        finally:
            with self._lock:
                successor = self._pending[0] if self._pending else None
                self._writing = successor is not None
                if successor is not None:
                    successor.lead = True
            for b in batch:
                b.ready.set()
            if successor is not None:
                successor.ready.set()

    def _write(self, service_uuids: list[str]) -> set[str]:
        with self._connect() as conn:
            found = db.service_heartbeat_many(conn, service_uuids, utcnow())
            conn.commit()
            return found

    def _connect(self) -> Connection:
        if self.engine.dialect.name == "postgresql":
            # One statement is its own transaction: autocommit spares psycopg's BEGIN and COMMIT round trips
            # (and costs none to set: the driver's flag). pymysql would pay a round trip to set it and to reset it.
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.engine.connect()
