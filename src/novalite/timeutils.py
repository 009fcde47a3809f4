"""Time in the one form novalite stores and compares: naive UTC."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def isotime(value: dt.datetime | None) -> str | None:
    """Nova's API form, e.g. 2012-10-29T13:42:02.000000 (no timezone suffix)."""
    return None if value is None else value.isoformat(timespec="microseconds")


def as_datetime(value: dt.datetime | str | None) -> dt.datetime | None:
    """A stored timestamp as a datetime, whether the driver parsed it or returned SQLite's text."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)
