"""os-aggregates, the listing only: novalite has no host aggregates, so the list is always empty.

Served because clients read it (``openstack hypervisor show`` lists the host's aggregates).
"""

from __future__ import annotations

from novalite.api.policies import aggregates as policies
from novalite.api.wsgi import ApiRequest, Reply


def list_aggregates(req: ApiRequest) -> Reply:
    req.app.enforcer.authorize(req.context, policies.INDEX, target={})
    return Reply(200, {"aggregates": []})
