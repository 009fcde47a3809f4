"""Server request schemas by microversion range (Nova's schemas/servers.py): create, list query, show query.

Left out on purpose: block_device_mapping(_v2) (novalite has no volume service, so a request naming one
is refused as an unexpected property rather than silently booting without it).

Key order matters: jsonschema reports the first failing keyword in schema order, as in Nova.
"""

from __future__ import annotations

import copy

from novalite.api.validation import BOOLEAN, NAME, PRINTABLE_DESCRIPTION_REGEX

# -- parameter types (nova/api/validation/parameter_types.py) ----------------------------------------

_UUID = {"type": "string", "format": "uuid"}
_DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 255,
                "pattern": PRINTABLE_DESCRIPTION_REGEX}
_IMAGE_ID_OR_EMPTY = {"oneOf": [_UUID, {"type": "string", "maxLength": 0}]}
_FLAVOR_REF = {"type": ["string", "integer"], "minLength": 1}
_METADATA = {
    "type": "object",
    "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}
_IP_ADDRESS = {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
_POSITIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1}
_NON_NEGATIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
_TAG = {"type": "string", "maxLength": 60, "pattern": "^[^,/]*$"}
_TRUSTED_CERTS = {"type": ["array", "null"], "minItems": 1, "maxItems": 50, "uniqueItems": True,
                  "items": {"type": "string", "minLength": 1}}
# A DNS label (2.90); from 2.94 an FQDN, as compute host names are.
_HOSTNAME = {"type": "string", "minLength": 2, "maxLength": 63,
             "pattern": "^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$"}
_FQDN = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}
# Checked for base64 by the handler (the shared format checker has no "base64").
USER_DATA_MAX = 65535
_USER_DATA = {"type": "string", "maxLength": USER_DATA_MAX}
_PERSONALITY = {
    "type": "array",
    "items": {"type": "object", "properties": {"path": {"type": "string"}, "contents": {"type": "string"}},
              "additionalProperties": False},
}
_SERVER_IDS = {"type": "array", "items": _UUID}
_HINTS = {
    "type": "object",
    "properties": {
        "group": {"oneOf": [_SERVER_IDS, _UUID]},
        "different_host": {"oneOf": [_UUID, _SERVER_IDS]},
        "same_host": {"type": ["string", "array"], "items": _UUID},
        "query": {"type": ["string", "object"]},
        "target_cell": NAME,
        "different_cell": {"type": ["string", "array"], "items": {"type": "string"}},
        "build_near_host_ip": _IP_ADDRESS,
        "cidr": {"type": "string", "pattern": "^/[0-9a-f.:]+$"},
    },
    "additionalProperties": True,  # Nova relaxed hints on purpose
}


def _networks_list(uuid: dict, tag: bool) -> dict:
    item = {"fixed_ip": _IP_ADDRESS, "port": {"oneOf": [_UUID, {"type": "null"}]}, "uuid": uuid}
    if tag:
        item["tag"] = _TAG
    return {"type": "array", "items": {"type": "object", "properties": item, "additionalProperties": False}}


def _networks_v237(tag: bool) -> dict:
    """2.37: a list, or "none"/"auto" (novalite has no networking: all three leave addresses empty)."""
    return {"oneOf": [_networks_list(_UUID, tag), {"type": "string", "enum": ["none", "auto"]}]}


_create_v21 = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": NAME,
                "imageRef": _IMAGE_ID_OR_EMPTY,
                "flavorRef": _FLAVOR_REF,
                "adminPass": {"type": "string"},
                "metadata": _METADATA,
                "networks": _networks_list({"type": "string"}, tag=False),
                "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
                "accessIPv4": {"type": "string", "format": "ipv4"},
                "accessIPv6": {"type": "string", "format": "ipv6"},
                "personality": _PERSONALITY,
                "availability_zone": NAME,
                "config_drive": BOOLEAN,
                "key_name": NAME,
                "min_count": _POSITIVE_INTEGER,
                "max_count": _POSITIVE_INTEGER,
                "return_reservation_id": BOOLEAN,
                "security_groups": {"type": "array", "items": {
                    "type": "object", "properties": {"name": NAME}, "additionalProperties": False}},
                "user_data": _USER_DATA,
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _HINTS,
        "OS-SCH-HNT:scheduler_hints": _HINTS,
    },
    "required": ["server"],
    "additionalProperties": False,
}


def _derive(base: dict, *, required: tuple[str, ...] = (), drop: tuple[str, ...] = (), **properties) -> dict:
    """A copy of ``base`` whose "server" gains ``properties`` and loses ``drop``."""
    schema = copy.deepcopy(base)
    server = schema["properties"]["server"]
    for name in drop:
        server["properties"].pop(name)
    server["properties"].update(properties)
    server["required"] = [*server["required"], *required]
    return schema


_create_v219 = _derive(_create_v21, description=_DESCRIPTION)
# 2.32 alone took tags on networks (and on BDMs); 2.33 dropped them by mistake, 2.42 restored them.
_create_v232 = _derive(_create_v219, networks=_networks_list({"type": "string"}, tag=True))
_create_v237 = _derive(_create_v219, required=("networks",), networks=_networks_v237(tag=False))
_create_v242 = _derive(_create_v237, networks=_networks_v237(tag=True))
_create_v252 = _derive(_create_v242, tags={"type": "array", "items": _TAG, "maxItems": 50})
_create_v257 = _derive(_create_v252, drop=("personality",))
_create_v263 = _derive(_create_v257, trusted_image_certificates=_TRUSTED_CERTS)
_create_v274 = _derive(_create_v263, host=_FQDN, hypervisor_hostname=_FQDN)
_create_v290 = _derive(_create_v274, hostname=_HOSTNAME)
_create_v294 = _derive(_create_v290, hostname=_FQDN)

create = [
    ("2.1", "2.18", _create_v21),
    ("2.19", "2.31", _create_v219),
    ("2.32", "2.32", _create_v232),
    ("2.33", "2.36", _create_v219),
    ("2.37", "2.41", _create_v237),
    ("2.42", "2.51", _create_v242),
    ("2.52", "2.56", _create_v252),
    ("2.57", "2.62", _create_v257),
    ("2.63", "2.73", _create_v263),
    ("2.74", "2.89", _create_v274),
    ("2.90", "2.93", _create_v290),
    ("2.94", "", _create_v294),
]

# -- GET /servers, /servers/detail -----------------------------------------------------------------


def _multi(schema: dict) -> dict:
    return {"type": "array", "items": schema}


_PARAM = _multi({"type": "string"})
_REGEX_PARAM = _multi({"type": "string", "format": "regex"})
_DATE_TIME = _multi({"type": "string", "format": "date-time"})

# Query parameters Nova refuses with 400 "Invalid filter field" (joined tables), kept through validation.
JOINED_TABLE_FILTERS = ("block_device_mapping", "services", "metadata", "system_metadata", "info_cache",
                        "security_groups", "pci_devices")
# Valid before 2.75 but ignored (dropped, with their sort_dir) rather than refused.
IGNORED_SORT_KEYS = (
    "architecture", "cell_name", "cleaned", "default_ephemeral_device", "default_swap_device", "deleted",
    "deleted_at", "disable_terminate", "ephemeral_gb", "ephemeral_key_uuid", "id", "key_data", "launched_on",
    "locked", "memory_mb", "os_type", "reservation_id", "root_gb", "shutdown_terminate", "user_data", "vcpus",
    "vm_mode",
)
IGNORED_SORT_KEYS_V273 = tuple(k for k in IGNORED_SORT_KEYS if k != "locked")
SORT_KEYS = (
    "access_ip_v4", "access_ip_v6", "auto_disk_config", "availability_zone", "config_drive", "created_at",
    "display_description", "display_name", "host", "hostname", "image_ref", "instance_type_id", "kernel_id",
    "key_name", "launch_index", "launched_at", "locked_by", "node", "power_state", "progress", "project_id",
    "ramdisk_id", "root_device_name", "task_state", "terminated_at", "updated_at", "user_id", "uuid", "vm_state",
)

_REGEX_FILTERS = ("kernel_id", "ramdisk_id", "hostname", "key_name", "power_state", "node", "flavor",
                  "reservation_id", "launched_at", "terminated_at", "availability_zone", "name", "display_name",
                  "description", "display_description", "locked_by", "root_device_name", "config_drive",
                  "access_ip_v4", "access_ip_v6", "auto_disk_config", "progress", "ip", "ip6", "created_at")
_EXACT_FILTERS = ("user_id", "project_id", "tenant_id", "launch_index", "image_ref", "image", "vm_state",
                  "task_state", "host", "uuid", "sort_dir", "all_tenants", "soft_deleted", "deleted", "status")

_index_v21 = {
    "type": "object",
    "properties": {
        **{name: _PARAM for name in _EXACT_FILTERS},
        **{name: _REGEX_PARAM for name in _REGEX_FILTERS},
        **{name: _PARAM for name in JOINED_TABLE_FILTERS},
        "changes-since": _DATE_TIME,
        "sort_key": _multi({"type": "string", "enum": [*SORT_KEYS, *IGNORED_SORT_KEYS]}),
        "limit": _multi(_NON_NEGATIVE_INTEGER),
        "marker": _multi({"type": "string"}),
    },
    # Unknown parameters are dropped before 2.75; "_"-prefixed ones are kept to be refused.
    "additionalProperties": True,
    "patternProperties": {"^_": _PARAM},
}


def _index(base: dict, **properties) -> dict:
    schema = copy.deepcopy(base)
    schema["properties"].update(properties)
    return schema


_index_v226 = _index(_index_v21, **{name: _REGEX_PARAM for name in ("tags", "tags-any", "not-tags",
                                                                   "not-tags-any")})
_index_v266 = _index(_index_v226, **{"changes-before": _DATE_TIME})
_index_v273 = _index(_index_v266, locked=_PARAM,
                     sort_key=_multi({"type": "string", "enum": ["locked", *SORT_KEYS, *IGNORED_SORT_KEYS_V273]}))
# 2.75: ignored sort keys and unknown parameters are refused.
_index_v275 = _index(_index_v273, sort_key=_multi({"type": "string", "enum": ["locked", *SORT_KEYS]}))
_index_v275["additionalProperties"] = False

index_query = [
    ("2.1", "2.25", _index_v21),
    ("2.26", "2.65", _index_v226),
    ("2.66", "2.72", _index_v266),
    ("2.73", "2.74", _index_v273),
    ("2.75", "", _index_v275),
]

# GET /servers/{id}: any query string until 2.102 refused unknown parameters.
show_query = [
    ("2.1", "2.101", {"type": "object", "properties": {}, "additionalProperties": True}),
    ("2.102", "", {"type": "object", "properties": {}, "additionalProperties": False}),
]
