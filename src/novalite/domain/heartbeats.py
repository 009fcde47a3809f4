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

AsyncHeartbeats is the same group commit for one asyncio loop (the agents' heartbeat listener,
api/heartbeat_listener.py): a heartbeat is a future; one writer task at a time runs the write in a thread and
settles the futures of its batch. It may wait ``window`` seconds before each write for more heartbeats to
share it: a loop that no request thread blocks can afford to, and at a heartbeat a millisecond that is what
batches them (the writes are shorter than the gaps between heartbeats).
"""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import Engine

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
            batch, self._pending = one_per_service(self._pending)
        try:
            found = write_heartbeats(self.engine, [b.uuid for b in batch])
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


class AsyncHeartbeats:
    """Group commit of the heartbeats of one asyncio loop: ``submit`` answers with a future, settled once the
    write holding the heartbeat committed (True), found the service gone (False) or failed (its error)."""

    def __init__(self, engine: Engine, window: float = 0.0):
        self.engine = engine
        self.window = window
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    def submit(self, service_uuid: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((service_uuid, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_pending())
        return future

    async def beat(self, service_uuid: str) -> bool:
        return await self.submit(service_uuid)

    async def _write_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                await asyncio.sleep(self.window)
                batch, self._pending = one_per_service(self._pending, key=lambda pending: pending[0])
                try:
                    found = await loop.run_in_executor(None, write_heartbeats, self.engine, [u for u, _f in batch])
                except Exception as error:  # noqa: BLE001 - every heartbeat of the batch gets the failure
                    for _service_uuid, future in batch:
                        future.set_exception(error)
                else:
                    for service_uuid, future in batch:
                        future.set_result(service_uuid in found)
        finally:
            self._writer = None


def one_per_service(pending: list, key=lambda beat: beat.uuid) -> tuple[list, list]:
    """Split the pending heartbeats into this write's batch (each service's first) and those held for the next
    (a service's later ones: report_count counts each, so one UPDATE may not beat a row twice)."""
    batch, held, seen = [], [], set()
    for beat in pending:
        service_uuid = key(beat)
        (held if service_uuid in seen else batch).append(beat)
        seen.add(service_uuid)
    return batch, held


def write_heartbeats(engine: Engine, service_uuids: list[str]) -> set[str]:
    """One transaction beating each of ``service_uuids`` (distinct); the UUIDs whose rows were there.

    A transaction, not an autocommitted statement (which would spare PostgreSQL's BEGIN and COMMIT round trips):
    only a transaction's first statement is run again when its pooled connection turns out dead (db/engine.py),
    so the first heartbeats after a database restart are written, not failed."""
    with engine.connect() as conn:
        found = db.service_heartbeat_many(conn, service_uuids, utcnow())
        conn.commit()
        return found
