"""os-hypervisors query schemas, by microversion range (Nova's schemas/hypervisors.py).

Before 2.53 unknown query parameters are ignored; from 2.53 they are refused. The deprecated
routes (statistics, uptime, search, servers) take any query string.
"""

from novalite.api.validation import BOOLEAN

_NON_NEGATIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
# Nova's parameter_types.fqdn: a host name, underscores allowed.
_FQDN = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}


def _single(schema: dict) -> dict:
    return {"type": "array", "items": schema, "maxItems": 1}


def _multi(schema: dict) -> dict:
    return {"type": "array", "items": schema}


_OPEN = {"type": "object", "properties": {}, "additionalProperties": True}

_index_v233 = {
    "type": "object",
    "properties": {"limit": _multi(_NON_NEGATIVE_INTEGER), "marker": _multi({"type": "string"})},
    "additionalProperties": True,
}
_index_v253 = {
    "type": "object",
    "properties": {
        "limit": _single(_NON_NEGATIVE_INTEGER),
        "marker": _single({"type": "string"}),
        "hypervisor_hostname_pattern": _single(_FQDN),
        "with_servers": _single(BOOLEAN),
    },
    "additionalProperties": False,
}
_show_v253 = {
    "type": "object",
    "properties": {"with_servers": _single(BOOLEAN)},
    "additionalProperties": False,
}

# (min, max, schema); "" leaves a side open. list and detail share these.
index_query = [("2.1", "2.32", _OPEN), ("2.33", "2.52", _index_v233), ("2.53", "", _index_v253)]
show_query = [("2.1", "2.52", _OPEN), ("2.53", "", _show_v253)]
any_query = [("2.1", "", {})]
