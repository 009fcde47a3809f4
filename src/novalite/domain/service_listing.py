"""The listing of services of one API process: the rows it listed before, kept, and only the changed ones read.

A listing of 1,000 services used to read and convert every row each time: most of its cost was the driver
loading 10,000 values and the database formatting them. Now each listing reads every listed service's id and
row_version (db.service_versions: two integers a row), then the whole rows of those this process has not kept
at that version (db.service_listed_rows), and keeps those.

Exact for every write made through SQLAlchemy, with no clock and no invalidation message between processes:

- row_version changes with every UPDATE of the row (models.Service), so a kept row whose version is the one
  just read is the row as it is now; a deleted or filtered-out service is not in the versions, so not listed;
- what changes with time alone, "up" (spec 4.1-4.2), is judged at every listing from the kept last heartbeat,
  at this listing's instant (liveness.UpWindow).

Threads of one process share the rows: a listing takes the kept rows it matched at once, so another thread
replacing one with an older copy afterwards does not change this listing.

row_version moves with the UPDATEs SQLAlchemy runs, which are all of novalite's. A hand-written SQL UPDATE that
leaves row_version alone shows at the row's next update (for a running compute, its next heartbeat), or at once
with ``row_version = row_version + 1`` in it. A database trigger would catch those too, but creating one on a
replicated MariaDB asks for privileges (SUPER, or log_bin_trust_function_creators) that a service's account
seldom has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Connection

from novalite.db import api as db
from novalite.domain.liveness import UpWindow
from novalite.timeutils import isotime

# Past this share of changed rows, one statement for all of them costs less than naming them.
_ALL_ROWS_SHARE = 0.25
_FORCED_DOWN = db.LISTED_COLUMNS.index("forced_down")
_LAST_HEARTBEAT = db.LISTED_COLUMNS.index("last_heartbeat")
_ROW_VERSION = db.LISTED_COLUMNS.index("row_version")


class Listed(NamedTuple):
    """One listing: the services' rows in id order, each a tuple in db.LISTED_COLUMNS order (the very tuple kept
    while the row is unchanged), and whether each is up."""

    rows: list[tuple]
    up: list[bool]

    def states(self) -> list[tuple]:
        """The listing as tuples of ServiceState's fields in its order."""
        return [row[:_LAST_HEARTBEAT] + (up,) for row, up in zip(self.rows, self.up, strict=True)]


class ServiceListing:
    def __init__(self, compute_zone: str, internal_zone: str, hidden_binaries: tuple[str, ...]):
        self._zones = {"compute_zone": compute_zone, "internal_zone": internal_zone}
        self._hidden = hidden_binaries
        self._kept: dict[int, tuple] = {}  # id → its row in db.LISTED_COLUMNS order
        self._lock = threading.Lock()

    def read(self, conn: Connection, window: UpWindow, host: str | None = None, binary: str | None = None) -> Listed:
        """Every live service (filtered by exact ``host`` and ``binary`` when given; hidden binaries never) in id
        order, "up" judged by ``window``."""
        filters = {"hidden_binaries": self._hidden, "host": host, "binary": binary}
        versions = db.service_versions(conn, **filters)
        kept = self._kept
        listed: list[tuple | None] = []
        changed: list[int] = []
        for service_id, version in versions:
            row = kept.get(service_id)
            if row is None or row[_ROW_VERSION] != version:
                changed.append(service_id)
                row = None
            listed.append(row)
        if changed:
            read = db.service_listed_rows(
                conn, None if len(changed) > _ALL_ROWS_SHARE * len(versions) else changed, **self._zones, **filters)
            fresh = {row[0]: row for row in read}
            # A row read now is as new as the version listed, or newer: changed since, it still counts.
            listed = [row or fresh.get(service_id) for row, (service_id, _) in zip(listed, versions, strict=True)]
            with self._lock:
                kept.update(fresh)
        if host is None and binary is None and len(kept) > len(versions):
            forget_all_but(self._kept, self._lock, (service_id for service_id, _ in versions))  # deleted services
        rows = [row for row in listed if row is not None]  # None: deleted between the two statements
        earliest, latest = isotime(window.earliest), isotime(window.latest)
        return Listed(rows, [not row[_FORCED_DOWN] and earliest <= row[_LAST_HEARTBEAT] <= latest for row in rows])

    def __len__(self) -> int:
        """How many services' rows are kept."""
        return len(self._kept)


def forget_all_but(kept: dict[int, Any], lock: threading.Lock, listed: Iterable[int]) -> None:
    """Drop from ``kept`` (by service id, mutated under ``lock``) every service not in ``listed``."""
    with lock:
        live = set(listed)
        for service_id in [i for i in kept if i not in live]:
            kept.pop(service_id, None)
