"""The compute agents' internal interface (/agent/v1), authenticated by the agents' shared secret.

    POST /agent/v1/services                 {"host", "binary", "version"} → 200 {"service": {...}}
    PUT  /agent/v1/services/{uuid}/heartbeat                              → 204, 404 once deleted
    PUT  /agent/v1/services/{uuid}/nodes/{nodename}  {capacity and use}   → 200 {"node": {...}}

Registration loads the existing record (forced_down and disabled are kept) or creates it.
"""

from __future__ import annotations

import json

import jsonschema

from novalite.api.handlers.services import service_view
from novalite.api.microversion import MAX_VERSION
from novalite.api.validation import validate_internal_body
from novalite.api.wsgi import ApiRequest, Reply

REGISTER = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"},
        "binary": {"type": "string", "enum": ["nova-compute"]},
        "version": {"type": "integer", "minimum": 0},
    },
    "required": ["host", "binary", "version"],
    "additionalProperties": False,
}
jsonschema.Draft4Validator.check_schema(REGISTER)


def register(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    validate_internal_body(REGISTER, req.body)
    state = req.app.services.register(req.body["host"], req.body["binary"], req.body["version"])
    req.version = MAX_VERSION  # the agent learns its UUID and every flag
    return Reply(200, {"service": service_view(state, req)})


def heartbeat(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    req.app.services.heartbeat(req.params["service_uuid"])
    return Reply(204, empty=True)


_COUNT = {"type": "integer", "minimum": 0}
_RATIO = {"type": "number", "minimum": 0, "exclusiveMinimum": True}
NODE_REPORT = {
    "type": "object",
    "properties": {
        "hypervisor_type": {"type": "string", "minLength": 1, "maxLength": 255},
        "hypervisor_version": _COUNT,
        "host_ip": {"type": ["string", "null"], "maxLength": 39},
        "cpu_info": {"type": "object"},
        "vcpus": _COUNT, "memory_mb": _COUNT, "local_gb": _COUNT,
        "vcpus_used": _COUNT, "memory_mb_used": _COUNT, "local_gb_used": _COUNT,
        "running_vms": _COUNT,
        "disk_available_least": {"type": ["integer", "null"]},
        "reserved_host_cpus": _COUNT, "reserved_host_memory_mb": _COUNT, "reserved_host_disk_mb": _COUNT,
        "cpu_allocation_ratio": _RATIO, "ram_allocation_ratio": _RATIO, "disk_allocation_ratio": _RATIO,
    },
    "required": ["hypervisor_type", "hypervisor_version", "vcpus", "memory_mb", "local_gb",
                 "vcpus_used", "memory_mb_used", "local_gb_used", "running_vms"],
    "additionalProperties": False,
}
jsonschema.Draft4Validator.check_schema(NODE_REPORT)


def report_node(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    validate_internal_body(NODE_REPORT, req.body)
    values = dict(req.body)
    values["cpu_info"] = json.dumps(values.get("cpu_info", {}))
    row = req.app.services.report_node(req.params["service_uuid"], req.params["nodename"], values)
    return Reply(200, {"node": {"uuid": row.uuid, "hypervisor_hostname": row.hypervisor_hostname}})
