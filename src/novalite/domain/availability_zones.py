"""Availability zones as os-availability-zone shows them (Nova's nova/availability_zones.py rules).

novalite has no host aggregates, so every nova-compute host is in [DEFAULT]default_availability_zone
and every other service in [DEFAULT]internal_service_availability_zone. A zone is "available" when
at least one of its services is enabled; liveness does not enter into it (Nova's rule). Liveness
only shows per service in the detailed listing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Engine

from novalite.config import Settings
from novalite.domain.liveness import UpWindow
from novalite.domain.service_listing import ServiceListing
from novalite.timeutils import as_datetime

# Nova leaves the API's own service records out of the detailed host listing.
API_BINARIES = ("nova-osapi_compute", "nova-metadata")


@dataclass(frozen=True)
class ZoneService:
    binary: str
    up: bool
    updated_at: dt.datetime | None


@dataclass
class Zone:
    name: str
    available: bool
    internal: bool
    # host → its enabled services (API services left out), in service id order.
    hosts: dict[str, list[ZoneService]] = field(default_factory=dict)


class AvailabilityZones:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings

    def zones(self) -> list[Zone]:
        """Available zones first, then unavailable ones, each in the order their services were created."""
        d = self.settings.DEFAULT
        window = UpWindow(self.settings.effective_service_down_time)
        # API services count for their zone's availability, so none is hidden here. Not a hot path: nothing kept.
        listing = ServiceListing(d.default_availability_zone, d.internal_service_availability_zone, hidden_binaries=())
        with self.engine.connect() as conn:
            rows = listing.read(conn, window).states()
        zones: dict[str, Zone] = {}
        # Tuples in ServiceState's field order.
        for _id, _uuid, host, binary, name, disabled, _reason, _forced, updated_at, up in rows:
            zone = zones.setdefault(name, Zone(name, available=False,
                                               internal=name == d.internal_service_availability_zone))
            if disabled:
                continue
            zone.available = True
            if binary not in API_BINARIES:
                zone.hosts.setdefault(host, []).append(ZoneService(binary, bool(up), as_datetime(updated_at)))
        ordered = list(zones.values())
        return [z for z in ordered if z.available] + [z for z in ordered if not z.available]
