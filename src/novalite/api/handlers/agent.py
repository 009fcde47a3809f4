"""The compute agents' internal interface (/agent/v1), authenticated by the agents' shared secret.

    POST /agent/v1/services                 {"host", "binary", "version", "nudge_address"?} → 200 {"service"}
    PUT  /agent/v1/services/{uuid}/heartbeat                              → 204, 404 once deleted
    PUT  /agent/v1/services/{uuid}/nodes/{nodename}  {capacity and use}   → 200 {"node": {...}}
    GET  /agent/v1/services/{uuid}/work             → 200 {"tasks": [{"kind", "instance_uuid", "guest",
                                                            "migration_uuid", "stopped"}]}
    POST /agent/v1/services/{uuid}/results  {"results": [{"kind", "instance_uuid", "ok", "migration_uuid"?,
                                             "power_state"?, "error"?, "details"?}]}
                                            → 200 {"results": [{"instance_uuid", "applied", "discard"}]}
    GET  /agent/v1/services/{uuid}/evacuations      → 200 {"migrations": [{"uuid", "instance_uuid", "status"}]}
    POST /agent/v1/services/{uuid}/evacuations/cleaned  {"migrations": [uuid, ...]} → 200 {"completed": n}
    POST /agent/v1/services/{uuid}/reap  {"guests": [uuid, ...]} → 200 {"reap": [uuid, ...]}

Registration loads the existing record (forced_down and disabled are kept) or creates it. Work,
results and cleanup are novalite.domain.host_work's: the host is the service record's.
"""

from __future__ import annotations

import json

import jsonschema

from novalite.api.handlers.services import service_view
from novalite.api.microversion import MAX_VERSION
from novalite.api.validation import validate_internal_body
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain import host_work
from novalite.domain.services import service_not_found
from novalite.work_kinds import KINDS

REGISTER = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"},
        "binary": {"type": "string", "enum": ["nova-compute"]},
        "version": {"type": "integer", "minimum": 0},
        "nudge_address": {"type": ["string", "null"], "maxLength": 255},
    },
    "required": ["host", "binary", "version"],
    "additionalProperties": False,
}
jsonschema.Draft4Validator.check_schema(REGISTER)


def register(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    validate_internal_body(REGISTER, req.body)
    state = req.app.services.register(req.body["host"], req.body["binary"], req.body["version"],
                                      req.body.get("nudge_address"))
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


# -- work, results, cleanup ---------------------------------------------------------------------------

def _host(req: ApiRequest) -> str:
    """The host of the calling agent's service record (404 once it is deleted)."""
    req.app.agent_auth.check(req.headers)
    service_uuid = req.params["service_uuid"]
    state = req.app.services.get_by_uuid(service_uuid)
    if state is None:
        raise service_not_found(service_uuid)
    return state.host


def work(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    service_uuid = req.params["service_uuid"]
    tasks = req.app.host_work.pending(service_uuid)
    if tasks is None:
        raise service_not_found(service_uuid)
    return Reply(200, {"tasks": [task.to_json() for task in tasks]})


_UUID = {"type": "string", "minLength": 1, "maxLength": 36}
RESULTS = {
    "type": "object",
    "properties": {"results": {"type": "array", "items": {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "instance_uuid": _UUID,
            "ok": {"type": "boolean"},
            "migration_uuid": {"type": ["string", "null"], "maxLength": 36},
            "power_state": {"type": ["integer", "null"], "minimum": 0},
            "error": {"type": ["string", "null"]},
            "details": {"type": ["string", "null"]},
        },
        "required": ["kind", "instance_uuid", "ok"],
        "additionalProperties": False,
    }}},
    "required": ["results"],
    "additionalProperties": False,
}
jsonschema.Draft4Validator.check_schema(RESULTS)


def results(req: ApiRequest) -> Reply:
    host = _host(req)
    validate_internal_body(RESULTS, req.body)
    answers = req.app.host_work.apply(host, [host_work.result_from_json(r) for r in req.body["results"]])
    return Reply(200, {"results": answers})


def evacuations(req: ApiRequest) -> Reply:
    rows = req.app.host_work.evacuated_away(_host(req))
    return Reply(200, {"migrations": [{"uuid": m.uuid, "instance_uuid": m.instance_uuid, "status": m.status}
                                      for m in rows]})


_UUID_LIST = {"type": "array", "items": _UUID}
CLEANED = {"type": "object", "properties": {"migrations": _UUID_LIST}, "required": ["migrations"],
           "additionalProperties": False}
REAP = {"type": "object", "properties": {"guests": _UUID_LIST}, "required": ["guests"],
        "additionalProperties": False}


def evacuations_cleaned(req: ApiRequest) -> Reply:
    host = _host(req)
    validate_internal_body(CLEANED, req.body)
    return Reply(200, {"completed": req.app.host_work.evacuation_cleaned(host, req.body["migrations"])})


def reap(req: ApiRequest) -> Reply:
    host = _host(req)
    validate_internal_body(REAP, req.body)
    return Reply(200, {"reap": req.app.host_work.deleted_here(host, req.body["guests"])})
