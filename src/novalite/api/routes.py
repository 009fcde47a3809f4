"""Every endpoint novalite serves, at a glance: path → {method: handler}.

Compute API paths are served under /v2.1 and /v2.1/{project_id}. A method listed as several
``Versioned`` handlers changes with the microversion; a method not listed is the router's bare 404.
"""

from novalite.api.handlers import agent, services, versions
from novalite.api.wsgi import Versioned

COMPUTE_PREFIXES = ("/v2.1", "/v2.1/{project_id:projectid}")

# Authenticated, microversioned (novalite.api.wsgi.ComputeEndpoint).
COMPUTE_ROUTES = {
    "/os-services": {"GET": services.list_services},
    "/os-services/{service_id}": {
        "PUT": [Versioned("2.1", "2.52", services.legacy_update), Versioned("2.53", "", services.update)],
        "DELETE": services.delete,
    },
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
}
