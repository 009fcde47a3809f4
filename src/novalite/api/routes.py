"""Every endpoint novalite serves, at a glance: path → {method: handler}.

Compute API paths are served under /v2.1 and /v2.1/{project_id}. A method listed as several
``Versioned`` handlers changes with the microversion; a method not listed is the router's bare 404.
"""

from novalite.api.handlers import (
    agent,
    aggregates,
    availability_zones,
    flavors,
    hypervisors,
    instance_actions,
    migrations,
    servers,
    services,
    versions,
)
from novalite.api.wsgi import Versioned

COMPUTE_PREFIXES = ("/v2.1", "/v2.1/{project_id:projectid}")

# Authenticated, microversioned (novalite.api.wsgi.ComputeEndpoint).
COMPUTE_ROUTES = {
    "/os-services": {"GET": services.list_services},
    "/os-services/{service_id}": {
        "PUT": [Versioned("2.1", "2.52", services.legacy_update), Versioned("2.53", "", services.update)],
        "DELETE": services.delete,
    },
    "/flavors": {"GET": flavors.list_flavors, "POST": flavors.create},
    # PUT and DELETE here act on a flavor whose id is "detail", as Nova's router does.
    "/flavors/detail": {"GET": flavors.list_flavors_detail,
                        "PUT": [Versioned("2.55", "", flavors.update)], "DELETE": flavors.delete},
    "/flavors/{flavor_id}": {
        "GET": flavors.show,
        "PUT": [Versioned("2.55", "", flavors.update)],
        "DELETE": flavors.delete,
    },
    "/flavors/{flavor_id}/os-extra_specs": {"GET": flavors.list_extra_specs},
    "/os-hypervisors": {"GET": hypervisors.list_hypervisors},
    "/os-hypervisors/detail": {"GET": hypervisors.list_detail},
    "/os-hypervisors/statistics": {"GET": [Versioned("2.1", "2.87", hypervisors.statistics)]},
    "/os-hypervisors/{hypervisor_id}": {"GET": hypervisors.show},
    "/os-hypervisors/{hypervisor_id}/uptime": {"GET": [Versioned("2.1", "2.87", hypervisors.uptime)]},
    "/os-hypervisors/{hypervisor_id}/search": {"GET": [Versioned("2.1", "2.52", hypervisors.search)]},
    "/os-hypervisors/{hypervisor_id}/servers": {"GET": [Versioned("2.1", "2.52", hypervisors.servers)]},
    "/os-availability-zone": {"GET": availability_zones.list_zones},
    "/os-availability-zone/detail": {"GET": availability_zones.detail},
    "/os-aggregates": {"GET": aggregates.list_aggregates},
    "/servers": {"GET": servers.list_servers_brief, "POST": servers.create},
    # DELETE here acts on a server whose id is "detail", as Nova's router does (a 404).
    "/servers/detail": {"GET": servers.list_servers_detail, "DELETE": servers.delete},
    "/servers/{server_id}": {"GET": servers.show, "DELETE": servers.delete},
    "/servers/{server_id}/action": {"POST": servers.action},
    "/os-migrations": {"GET": migrations.list_migrations},
    "/servers/{server_id}/os-instance-actions": {"GET": instance_actions.list_actions},
    "/servers/{server_id}/os-instance-actions/{request_id}": {"GET": instance_actions.show_action},
}

# Version documents: no authentication; /v2.1 still negotiates the microversion (spec 1.3).
VERSIONED_DOCUMENTS = {
    "/v2.1": {"GET": versions.show_v21},
    "/v2.1/": {"GET": versions.show_v21},
}
PLAIN_DOCUMENTS = {
    "/": {"GET": versions.list_versions},
    "/v2": {"GET": versions.show_v20},
    "/v2/": {"GET": versions.show_v20},
}

# The compute agents' internal interface, authenticated by the agent secret (handlers/agent.py).
AGENT_ROUTES = {
    "/agent/v1/services": {"POST": agent.register},
    "/agent/v1/services/{service_uuid}/heartbeat": {"PUT": agent.heartbeat},
    "/agent/v1/services/{service_uuid}/nodes/{nodename}": {"PUT": agent.report_node},
    "/agent/v1/services/{service_uuid}/work": {"GET": agent.work},
    "/agent/v1/services/{service_uuid}/results": {"POST": agent.results},
    "/agent/v1/services/{service_uuid}/evacuations": {"GET": agent.evacuations},
    "/agent/v1/services/{service_uuid}/evacuations/cleaned": {"POST": agent.evacuations_cleaned},
    "/agent/v1/services/{service_uuid}/reap": {"POST": agent.reap},
}
