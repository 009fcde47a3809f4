"""Whether a service is up: Nova's service-group "db" driver rule (spec section 4).

A service is up when it is not forced down and the absolute difference between now and its last
heartbeat (last_seen_up, else created_at; never updated_at) is at most service_down_time.
"""

from __future__ import annotations

import datetime as dt

from novalite.timeutils import naive_utc, utcnow


def last_heartbeat(last_seen_up: dt.datetime | None, created_at: dt.datetime) -> dt.datetime:
    return naive_utc(last_seen_up or created_at)


class UpWindow:
    """The heartbeats that count as "up" at one instant: within service_down_time of now, either side.

    Built once per request so that a listing of thousands of services judges them all at one now.
    """

    __slots__ = ("earliest", "latest")

    def __init__(self, service_down_time: float, now: dt.datetime | None = None):
        now = naive_utc(now or utcnow())
        margin = dt.timedelta(seconds=service_down_time)
        self.earliest = now - margin
        self.latest = now + margin

    def is_up(self, forced_down: bool, last_seen_up: dt.datetime | None, created_at: dt.datetime) -> bool:
        if forced_down:
            return False
        beat = last_seen_up or created_at
        if beat.tzinfo is not None:
            beat = naive_utc(beat)
        return self.earliest <= beat <= self.latest


def is_up(
    *,
    forced_down: bool,
    last_seen_up: dt.datetime | None,
    created_at: dt.datetime,
    service_down_time: float,
    now: dt.datetime | None = None,
) -> bool:
    return UpWindow(service_down_time, now).is_up(forced_down, last_seen_up, created_at)
