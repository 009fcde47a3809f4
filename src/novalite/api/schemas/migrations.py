"""GET /os-migrations query schemas, by microversion range (Nova's schemas/migrations.py).

Before 2.59 any parameter is accepted (and the known filters apply); from 2.59 only these, with paging
and changes-since; 2.66 adds changes-before, 2.80 user_id and project_id.
"""

import copy

_NON_NEGATIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
_DATE_TIME = {"type": "string", "format": "date-time"}


def _single(schema: dict) -> dict:
    return {"type": "array", "items": schema, "maxItems": 1}


_MULTI_STRING = {"type": "array", "items": {"type": "string"}}

_v20 = {
    "type": "object",
    "properties": {name: _MULTI_STRING
                   for name in ("hidden", "host", "instance_uuid", "source_compute", "status", "migration_type")},
    "additionalProperties": True,
}
_v259 = copy.deepcopy(_v20)
_v259["properties"].update(limit=_single(_NON_NEGATIVE_INTEGER), marker=_single({"type": "string"}))
_v259["properties"]["changes-since"] = _single(_DATE_TIME)
_v259["additionalProperties"] = False
_v266 = copy.deepcopy(_v259)
_v266["properties"]["changes-before"] = _single(_DATE_TIME)
_v280 = copy.deepcopy(_v266)
_v280["properties"].update(user_id=_single({"type": "string"}), project_id=_single({"type": "string"}))

# (min, max, schema); "" leaves a side open.
index_query = [("2.1", "2.58", _v20), ("2.59", "2.65", _v259), ("2.66", "2.79", _v266), ("2.80", "", _v280)]
