"""Request validation with jsonschema, reporting errors in Nova's words (spec section 3.7).

Schemas are kept per resource in novalite.api.schemas, keyed by microversion range; this module
only picks the schema for a version and turns the first jsonschema error into Nova's 400.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import jsonschema
from oslo_utils import timeutils

from novalite.api.microversion import Version, v
from novalite.exceptions import BadRequest

# Nova's "boolean" parameter type: a JSON boolean or one of these strings; integers are refused.
BOOLEAN = {
    "type": ["boolean", "string"],
    "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
             False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"],
}
_TRUE_STRINGS = {"true", "1", "on", "yes"}


def _is_printable(char: str) -> bool:
    """Nova's rule: not "other" (control codes...) and no separator but the horizontal space kind."""
    category = unicodedata.category(char)
    return not category.startswith("C") and (not category.startswith("Z") or category == "Zs")


# Nova builds these from the Basic Multilingual Plane only, so characters above U+FFFF are refused.
_BMP = [chr(i) for i in range(0xFFFF)]
_PRINTABLE = "".join(c for c in _BMP if _is_printable(c))
_PRINTABLE_WS = "".join(c for c in _BMP if unicodedata.category(c) == "Zs")
_VALID_NAME = re.compile(
    f"^(?![{re.escape(_PRINTABLE_WS)}])[{re.escape(_PRINTABLE)}]*(?<![{re.escape(_PRINTABLE_WS)}])$"
)
# Nova's parameter_types.valid_description_regex, used as a plain "pattern".
PRINTABLE_DESCRIPTION_REGEX = f"^[{re.escape(_PRINTABLE)}]*$"


class InvalidName(Exception):
    """A "name" format failure; its message replaces jsonschema's (Nova's exception.InvalidName)."""


_FORMAT_CHECKER = jsonschema.FormatChecker()


@_FORMAT_CHECKER.checks("name", raises=InvalidName)
def _check_name(instance: Any) -> bool:
    if isinstance(instance, str) and _VALID_NAME.search(instance):
        return True
    raise InvalidName("An invalid 'name' value was provided. The name must be: printable characters. "
                      "Can not start or end with whitespace.")


@_FORMAT_CHECKER.checks("date-time")
def _check_date_time(instance: Any) -> bool:
    """Nova's "date-time" format (changes-since, changes-before): what oslo.utils' parse_isotime reads."""
    try:
        timeutils.parse_isotime(instance)
    except ValueError:
        return False
    return True


# Nova's parameter_types.name: printable, no leading or trailing whitespace.
NAME = {"type": "string", "minLength": 1, "maxLength": 255, "format": "name"}


def _number_from_str(value: Any) -> int | float | None:
    try:
        return int(value)
    except (ValueError, TypeError):
        try:
            return float(value)
        except (ValueError, TypeError):
            return None


def _numeric_bound(keyword: str):
    """Nova compares digit strings (e.g. "10") with minimum/maximum as numbers; other strings pass."""
    original = jsonschema.Draft4Validator.VALIDATORS[keyword]

    def check(validator, bound, instance, schema):
        number = _number_from_str(instance)
        if number is None:
            return
        yield from original(validator, bound, number, schema) or ()

    return check


_NovaValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"minimum": _numeric_bound("minimum"), "maximum": _numeric_bound("maximum")}
)

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


def _validator(schema: dict, cls: type = _NovaValidator) -> jsonschema.protocols.Validator:
    found = _validators.get(id(schema))
    if found is None:
        found = cls(schema, format_checker=_FORMAT_CHECKER)
        _validators[id(schema)] = found
    return found


def _validate(schema: dict, instance: Any, *, is_body: bool, cls: type = _NovaValidator) -> None:
    """Nova's _SchemaValidator: the first error, named by its field (body) or parameter (query)."""
    try:
        _validator(schema, cls).validate(instance)
    except jsonschema.ValidationError as error:
        if isinstance(error.cause, InvalidName):
            raise BadRequest(str(error.cause)) from None
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


def validate_internal_body(schema: dict, body: Any) -> None:
    """For novalite's own interfaces (/agent/v1): plain Draft 4, without Nova's numeric quirk
    (Nova compares minimum/maximum against int(value), so 0.9 counts as 0)."""
    _validate(schema, body, is_body=True, cls=jsonschema.Draft4Validator)


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
