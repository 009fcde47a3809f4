"""Flavor request schemas, keyed by microversion range (Nova's schemas/flavors.py).

Key order matters: jsonschema reports the first failing keyword in schema order, so properties
come before ``required`` and ``additionalProperties``, as in Nova.
"""

from novalite.api.validation import BOOLEAN, NAME, PRINTABLE_DESCRIPTION_REGEX

# Sort keys Nova accepts on GET /flavors and /flavors/detail (changing them needs a microversion).
VALID_SORT_KEYS = [
    "created_at", "description", "disabled", "ephemeral_gb", "flavorid", "id", "is_public", "memory_mb",
    "name", "root_gb", "rxtx_factor", "swap", "updated_at", "vcpu_weight", "vcpus",
]
VALID_SORT_DIR = ["asc", "desc"]

MAX_INT = 0x7FFFFFFF  # nova.db.constants.MAX_INT
SQL_SP_FLOAT_MAX = 3.40282e38  # nova.db.constants.SQL_SP_FLOAT_MAX

# Integers or digit strings; validation compares digit strings as numbers, as Nova does.
_POSITIVE = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_INT}
_NON_NEGATIVE = {**_POSITIVE, "minimum": 0}

_create_flavor_properties = {
    "name": NAME,
    # Leading and trailing spaces are refused; numbers are allowed and become strings.
    "id": {
        "type": ["string", "number", "null"],
        "minLength": 1, "maxLength": 255,
        "pattern": "^(?! )[a-zA-Z0-9. _-]+(?<! )$",
    },
    "ram": _POSITIVE,
    "vcpus": _POSITIVE,
    "disk": _NON_NEGATIVE,
    "OS-FLV-EXT-DATA:ephemeral": _NON_NEGATIVE,
    "swap": _NON_NEGATIVE,
    # A positive float: anything above 0 (Draft 4 spells Nova's exclusiveMinimum this way).
    "rxtx_factor": {
        "type": ["number", "string"],
        "pattern": r"^[0-9]+(\.[0-9]+)?$",
        "minimum": 0, "exclusiveMinimum": True,
        "maximum": SQL_SP_FLOAT_MAX,
    },
    "os-flavor-access:is_public": BOOLEAN,
}

# 2.55: a description, up to the 64 KiB of the TEXT column.
_DESCRIPTION = {
    "type": ["string", "null"], "minLength": 0, "maxLength": 65535,
    "pattern": PRINTABLE_DESCRIPTION_REGEX,
}


def _create(properties: dict) -> dict:
    return {
        "type": "object",
        "properties": {
            "flavor": {
                "type": "object",
                "properties": properties,
                # "id" stays optional: absent or null means "generate a UUID".
                "required": ["name", "ram", "vcpus", "disk"],
                "additionalProperties": False,
            },
        },
        "required": ["flavor"],
        "additionalProperties": False,
    }


_update_v255 = {
    "type": "object",
    "properties": {
        "flavor": {
            "type": "object",
            "properties": {"description": _DESCRIPTION},
            "required": ["description"],
            "additionalProperties": False,
        },
    },
    "required": ["flavor"],
    "additionalProperties": False,
}

# (min, max, schema); "" leaves a side open.
create = [
    ("2.1", "2.54", _create(_create_flavor_properties)),
    ("2.55", "", _create({**_create_flavor_properties, "description": _DESCRIPTION})),
]
update = [("2.55", "", _update_v255)]


def _values(items: dict) -> dict:
    return {"type": "array", "items": items}


_NON_NEGATIVE_QUERY = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
_list_query = {
    "type": "object",
    "properties": {
        "limit": _values(_NON_NEGATIVE_QUERY),
        "marker": _values({"type": "string"}),
        "is_public": _values({"type": "string"}),
        "minRam": _values({"type": "string"}),
        "minDisk": _values({"type": "string"}),
        "sort_key": _values({"type": "string", "enum": VALID_SORT_KEYS}),
        "sort_dir": _values({"type": "string", "enum": VALID_SORT_DIR}),
    },
}
list_query = [
    ("2.1", "2.74", {**_list_query, "additionalProperties": True}),
    ("2.75", "", {**_list_query, "additionalProperties": False}),
]
# GET /flavors/{id} ignores every query parameter at every version.
show_query = [("2.1", "", {"type": "object", "properties": {}, "additionalProperties": True})]
