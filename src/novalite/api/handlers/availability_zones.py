"""os-availability-zone handlers (Nova's compute/availability_zone.py).

    GET /os-availability-zone          zones without hosts; the internal zone is hidden
    GET /os-availability-zone/detail   zones with their hosts' enabled services (admin by default)
"""

from __future__ import annotations

from novalite.api.policies import availability_zones as policies
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.availability_zones import AvailabilityZones
from novalite.timeutils import isotime


def _zones(req: ApiRequest):
    return AvailabilityZones(req.app.engine, req.app.settings).zones()


def list_zones(req: ApiRequest) -> Reply:
    req.app.enforcer.authorize(req.context, policies.LIST)
    info = [{"zoneName": z.name, "zoneState": {"available": z.available}, "hosts": None}
            for z in _zones(req) if not z.internal]
    return Reply(200, {"availabilityZoneInfo": info})


def detail(req: ApiRequest) -> Reply:
    req.app.enforcer.authorize(req.context, policies.DETAIL)
    info = []
    for zone in _zones(req):
        hosts = None
        if zone.available:
            hosts = {host: {s.binary: {"available": s.up, "active": True, "updated_at": isotime(s.updated_at)}
                            for s in services}
                     for host, services in zone.hosts.items()}
        info.append({"zoneName": zone.name, "zoneState": {"available": zone.available}, "hosts": hosts})
    return Reply(200, {"availabilityZoneInfo": info})
