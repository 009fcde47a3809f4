"""The monitor's journal: one row per decision and per server move, with wall time, in SQLite.

It is the monitor's memory of what it did (``novalite monitor events`` reads it; a resumed recovery reads
the status each server had before it was moved) and its audit trail. Each record is also logged as one
structured line on the "novalite.monitor" logger: ``event=<kind> host=<host> recovery=<id> key=value ...``.

The file is opened in WAL mode, so the CLI reads it while the monitor writes, and a monitor killed with
SIGKILL loses at most the row it was writing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from novalite.config import Settings

LOG = logging.getLogger("novalite.monitor")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    host TEXT NOT NULL,
    recovery_id TEXT,
    kind TEXT NOT NULL,
    server TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_host ON events (host, id);
CREATE INDEX IF NOT EXISTS events_recovery ON events (recovery_id, id);
"""


@dataclass(frozen=True)
class Event:
    id: int
    at: float  # wall time, seconds since the epoch
    host: str
    recovery_id: str | None
    kind: str
    server: str | None = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, "at": iso(self.at), "host": self.host, "recovery_id": self.recovery_id,
                "kind": self.kind, "server": self.server, "detail": self.detail}


@dataclass(frozen=True)
class RecoverySummary:
    recovery_id: str
    host: str
    started: float
    last: float
    last_kind: str
    events: int


def iso(at: float) -> str:
    """Wall time as ISO-8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def journal_path(settings: Settings, config_dir: Path | None) -> Path:
    """[monitor] state_path, relative to the config file's directory; empty: <that dir>/monitor.sqlite."""
    base = config_dir if config_dir is not None else Path.cwd()
    path = Path(settings.monitor.state_path) if settings.monitor.state_path else Path("monitor.sqlite")
    return path if path.is_absolute() else base / path


def log_line(kind: str, host: str, recovery_id: str | None, server: str | None, detail: dict) -> str:
    parts = [("event", kind), ("host", host)]
    if recovery_id:
        parts.append(("recovery", recovery_id))
    if server:
        parts.append(("server", server))
    parts.extend(detail.items())
    return " ".join(f"{key}={_value(value)}" for key, value in parts)


def _value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


class Journal:
    """The journal at ``path`` (created if missing). Use from one thread (the monitor's event loop)."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.listeners: list[Callable[[Event], None]] = []  # called with each new event (e.g. metrics)
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit survives the monitor's own death (kill -9), not the machine's: no fsync per row, which
            # would cost the event loop a millisecond or more per server move.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._db.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        self._db.close()

    def record(self, host: str, recovery_id: str | None, kind: str, *, server: str | None = None,
               **detail: object) -> Event:
        """Write one decision or move and log it; ``detail`` must be JSON-serialisable."""
        at = time.time()
        cursor = self._db.execute(
            "INSERT INTO events (at, host, recovery_id, kind, server, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (at, host, recovery_id, kind, server, json.dumps(detail)))
        event = Event(cursor.lastrowid, at, host, recovery_id, kind, server, detail)
        LOG.info("%s", log_line(kind, host, recovery_id, server, detail))
        for listener in self.listeners:
            listener(event)
        return event

    def events(self, host: str | None = None, recovery_id: str | None = None, kind: str | None = None) -> list[Event]:
        """Events in the order they happened, optionally of one host, recovery or kind."""
        where, args = [], []
        for column, value in (("host", host), ("recovery_id", recovery_id), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT id, at, host, recovery_id, kind, server, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [Event(id_, at, host_, rid, kind_, server, json.loads(detail))
                for id_, at, host_, rid, kind_, server, detail in rows]

    def recoveries(self, host: str | None = None) -> list[RecoverySummary]:
        """One summary per recovery, oldest first: when it started, its last event and how many."""
        sql = ("SELECT recovery_id, host, MIN(at), MAX(at), COUNT(*), "
               "(SELECT kind FROM events AS e2 WHERE e2.recovery_id = e.recovery_id ORDER BY id DESC LIMIT 1) "
               "FROM events AS e WHERE recovery_id IS NOT NULL")
        args = []
        if host is not None:
            sql += " AND host = ?"
            args.append(host)
        sql += " GROUP BY recovery_id, host ORDER BY MIN(id)"
        return [RecoverySummary(rid, host_, started, last, last_kind, count)
                for rid, host_, started, last, count, last_kind in self._db.execute(sql, args).fetchall()]
