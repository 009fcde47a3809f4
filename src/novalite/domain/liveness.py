"""Whether a service is up: Nova's service-group "db" driver rule (spec section 4).

A service is up when it is not forced down and the absolute difference between now and its last
heartbeat (last_seen_up, else created_at; never updated_at) is at most service_down_time.
"""

from __future__ import annotations

import datetime as dt

from novalite.timeutils import naive_utc, utcnow


def last_heartbeat(last_seen_up: dt.datetime | None, created_at: dt.datetime) -> dt.datetime:
    return naive_utc(last_seen_up or created_at)


def is_up(
    *,
    forced_down: bool,
    last_seen_up: dt.datetime | None,
    created_at: dt.datetime,
    service_down_time: float,
    now: dt.datetime | None = None,
) -> bool:
    if forced_down:
        return False
    now = naive_utc(now or utcnow())
    elapsed = abs((now - last_heartbeat(last_seen_up, created_at)).total_seconds())
    return elapsed <= service_down_time
