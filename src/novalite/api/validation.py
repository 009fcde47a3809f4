"""Request validation with jsonschema, reporting errors in Nova's words (spec section 3.7).

Schemas are kept per resource in novalite.api.schemas, keyed by microversion range; this module
only picks the schema for a version and turns the first jsonschema error into Nova's 400.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from novalite.api.microversion import Version, v
from novalite.exceptions import BadRequest

# Nova's "boolean" parameter type: a JSON boolean or one of these strings; integers are refused.
BOOLEAN = {
    "type": ["boolean", "string"],
    "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
             False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"],
}
_TRUE_STRINGS = {"true", "1", "on", "yes"}

_validators: dict[int, jsonschema.protocols.Validator] = {}


def to_bool(value: Any) -> bool:
    """Nova's strutils.bool_from_string for a value the BOOLEAN schema already accepted."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE_STRINGS


def for_version(versioned: list[tuple[str, str, dict]], version: Version) -> dict:
    """The schema of the range [min, max] (inclusive; "" for unbounded) that holds ``version``."""
    for low, high, schema in versioned:
        if (not low or version >= v(low)) and (not high or version <= v(high)):
            return schema
    raise LookupError(f"no schema for {version}")


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    found = _validators.get(id(schema))
    if found is None:
        found = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
        _validators[id(schema)] = found
    return found


def _validate(schema: dict, instance: Any, *, is_body: bool) -> None:
    """Nova's _SchemaValidator: the first error, named by its field (body) or parameter (query)."""
    try:
        _validator(schema).validate(instance)
    except jsonschema.ValidationError as error:
        if not error.path:
            raise BadRequest(error.message) from None
        # A body error names its innermost field; a query error the parameter, the first path
        # item (the second is the index into that parameter's list of values).
        if is_body:
            where = f"field/attribute {error.path.pop()}"
        else:
            where = f"query parameters {error.path.popleft()}"
        raise BadRequest(f"Invalid input for {where}. Value: {error.instance}. {error.message}") from None


def validate_body(schema: dict, body: Any) -> None:
    _validate(schema, body, is_body=True)


def validate_query(schema: dict, params: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Validate query parameters (each a list of values); unknown ones are dropped when allowed.

    ``params`` is None when the query string is not UTF-8, which Nova refuses here (spec 3.2).
    """
    if params is None:
        raise BadRequest("Query string is not UTF-8 encoded")
    _validate(schema, params, is_body=False)
    if schema.get("additionalProperties", True) is not False:
        known = schema.get("properties", {})
        params = {k: vals for k, vals in params.items() if k in known}
    return params
