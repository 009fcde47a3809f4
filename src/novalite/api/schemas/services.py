"""os-services request schemas (spec sections 3.2–3.4)."""

from novalite.api.validation import BOOLEAN

_HOST = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}
_BINARY = {"type": "string", "minLength": 1, "maxLength": 255}
_REASON = {"type": "string", "minLength": 1, "maxLength": 255}

_legacy_v21 = {
    "type": "object",
    "properties": {"host": _HOST, "binary": _BINARY, "disabled_reason": _REASON},
    "required": ["host", "binary"],
    "additionalProperties": False,
}
_legacy_v211 = {
    **_legacy_v21,
    "properties": {**_legacy_v21["properties"], "forced_down": BOOLEAN},
}
_update_v253 = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["enabled", "disabled"]},
        "disabled_reason": _REASON,
        "forced_down": BOOLEAN,
    },
    "additionalProperties": False,
}

# (min, max, schema); "" leaves a side open.
legacy_update = [("2.1", "2.10", _legacy_v21), ("2.11", "2.52", _legacy_v211)]
update = [("2.53", "", _update_v253)]

_list_query = {
    "type": "object",
    "properties": {
        "host": {"type": "array", "items": {"type": "string"}},
        "binary": {"type": "array", "items": {"type": "string"}},
    },
}
list_query = [
    ("2.1", "2.74", {**_list_query, "additionalProperties": True}),
    ("2.75", "", {**_list_query, "additionalProperties": False}),
]
