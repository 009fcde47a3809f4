"""Listing servers as Nova's database layer does for GET /servers (instance_get_all_by_filters_sort).

Filters are keyed by instance column, as Nova's compute API hands them down:
- exact matches (a value, or a list meaning "any of"): Nova's exact_match_filter_names;
- every other column name is a regular expression searched in the column's text (Nova's REGEXP);
  a name that is no column is ignored, as Nova ignores it;
- "changes-since" / "changes-before" bound updated_at; "deleted" True lists only deleted servers,
  False only live ones, absent both (the changes-* listings show recent deletions).

The sort order is Nova's: the requested keys, then created_at and id in the first direction; None sorts
lowest on every backend. A marker is any server, deleted or not, of any project (Nova looks it up
elevated); the page holds the servers after it in that order.

Exact filters run in SQL; regular expressions, order and paging run here, so they behave the same on
SQLite, PostgreSQL and MariaDB (whose REGEXP and NULL orders differ).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Row

from novalite.db import servers as db
from novalite.exceptions import BadRequest
from novalite.timeutils import as_datetime

EXACT_FILTERS = ("project_id", "user_id", "image_ref", "vm_state", "instance_type_id", "uuid", "host",
                 "task_state", "locked")
DEFAULT_SORT_KEYS = ("created_at", "id")
SORT_DIRS = ("asc", "desc")


class MarkerNotFound(BadRequest):
    def __init__(self, marker: str):
        super().__init__(f"marker [{marker}] not found")


def sort_order(keys: Sequence[str], dirs: Sequence[str]) -> list[tuple[str, str]]:
    """Nova's process_sort_params with the database layer's defaults (created_at, id; "desc")."""
    default_dir = dirs[0] if dirs else "desc"
    for sort_dir in dirs:
        if sort_dir not in SORT_DIRS:
            raise BadRequest("Invalid input received: Unknown sort direction, must be 'desc' or 'asc'")
    if len(dirs) > len(keys):
        raise BadRequest("Invalid input received: Sort direction size exceeds sort key size")
    order = [(key, dirs[i] if i < len(dirs) else default_dir) for i, key in enumerate(keys)]
    order += [(key, default_dir) for key in DEFAULT_SORT_KEYS if key not in keys]
    return order


def _value(row: Row, column: str) -> Any:
    value = row._mapping.get(column)
    return as_datetime(value) if isinstance(value, str) and column.endswith(("_at", "_time")) else value


def _compare(a: Any, b: Any) -> int:
    if a is None or b is None:
        return (a is not None) - (b is not None)  # None lowest
    return (a > b) - (a < b)


def _ordering(order: list[tuple[str, str]]):
    def compare(left: Row, right: Row) -> int:
        for column, direction in order:
            result = _compare(_value(left, column), _value(right, column))
            if result:
                return result if direction == "asc" else -result
        return 0

    return compare


def _regex_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"  # as the databases store booleans
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _matches(row: Row, patterns: dict[str, re.Pattern]) -> bool:
    for column, pattern in patterns.items():
        value = row._mapping.get(column)
        if value is None or not pattern.search(_regex_text(value)):
            return False
    return True


def _conditions(filters: dict[str, Any], columns) -> tuple[list, dict[str, re.Pattern]]:
    where, patterns = [], {}
    for name, value in filters.items():
        if name == "changes-since":
            where.append(columns.updated_at >= value)
        elif name == "changes-before":
            where.append(columns.updated_at <= value)
        elif name == "deleted":
            where.append(columns.deleted != 0 if value else columns.deleted == 0)
        elif name not in columns:
            continue  # not an instance attribute: Nova's regex filter skips it
        elif name in EXACT_FILTERS:
            values = value if isinstance(value, (list, tuple)) else [value]
            where.append(columns[name].in_(values))
        else:
            patterns[name] = re.compile(str(value))
    return where, patterns


def list_servers(engine: Engine, filters: dict[str, Any], order: list[tuple[str, str]],
                 marker: str | None = None, limit: int | None = None) -> list[Row]:
    """The page of servers matching ``filters`` in ``order``; MarkerNotFound for an unknown marker."""
    if limit == 0:
        return []  # Nova does not even look the marker up
    where, patterns = _conditions(filters, db.instances.c)
    with engine.connect() as conn:
        marker_row = None
        if marker is not None:
            marker_row = db.instance_get(conn, marker, read_deleted=True)
            if marker_row is None:
                raise MarkerNotFound(marker)
        rows = db.instance_list(conn, where=where, read_deleted=True)
    compare = _ordering(order)
    rows = sorted((row for row in rows if _matches(row, patterns)), key=functools.cmp_to_key(compare))
    if marker_row is not None:
        rows = [row for row in rows if compare(row, marker_row) > 0]
    return rows if limit is None else rows[:limit]


def metadata_and_faults(engine: Engine, rows: Iterable[Row]) -> tuple[dict[str, dict[str, str]], dict[str, Row]]:
    """Each server's metadata, and the newest fault of those that have one."""
    uuids = [row.uuid for row in rows]
    with engine.connect() as conn:
        return db.metadata_of(conn, uuids), db.latest_faults(conn, uuids)
