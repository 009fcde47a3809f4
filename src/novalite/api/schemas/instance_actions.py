"""os-instance-actions query schemas, by microversion range (Nova's schemas/instance_actions.py).

The list takes any parameter before 2.58; from 2.58 only limit, marker (a request id) and changes-since,
and from 2.66 changes-before. The show takes any.
"""

import copy

_NON_NEGATIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
_DATE_TIME = {"type": "string", "format": "date-time"}


def _single(schema: dict) -> dict:
    return {"type": "array", "items": schema, "maxItems": 1}


_OPEN = {"type": "object", "properties": {}, "additionalProperties": True}
_index_v258 = {
    "type": "object",
    "properties": {"limit": _single(_NON_NEGATIVE_INTEGER), "marker": _single({"type": "string"}),
                   "changes-since": _single(_DATE_TIME)},
    "additionalProperties": False,
}
_index_v266 = copy.deepcopy(_index_v258)
_index_v266["properties"]["changes-before"] = _single(_DATE_TIME)

# (min, max, schema); "" leaves a side open.
index_query = [("2.1", "2.57", _OPEN), ("2.58", "2.65", _index_v258), ("2.66", "", _index_v266)]
show_query = [("2.1", "", _OPEN)]
