"""The evacuate action's request body, by microversion range (spec 6; Nova's schemas/evacuate.py).

    2.1–2.13   host, adminPass, onSharedStorage (required)
    2.14–2.28  host, adminPass
    2.29–2.67  host, adminPass, force
    2.68+      host, adminPass (2.95 adds nothing to the body: the stopped target state is implied)

Unknown keys are refused at both levels, so onSharedStorage from 2.14 and force from 2.68 are 400s.
"""

import copy

from novalite.api.validation import BOOLEAN

# Nova's parameter_types.fqdn: a host name, underscores and dots allowed.
_FQDN = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}
_ADMIN_PASSWORD = {"type": "string"}

_v21 = {
    "type": "object",
    "properties": {
        "evacuate": {
            "type": "object",
            "properties": {"host": _FQDN, "onSharedStorage": BOOLEAN, "adminPass": _ADMIN_PASSWORD},
            "required": ["onSharedStorage"],
            "additionalProperties": False,
        },
    },
    "required": ["evacuate"],
    "additionalProperties": False,
}

_v214 = copy.deepcopy(_v21)
del _v214["properties"]["evacuate"]["properties"]["onSharedStorage"]
del _v214["properties"]["evacuate"]["required"]

_v229 = copy.deepcopy(_v214)
_v229["properties"]["evacuate"]["properties"]["force"] = BOOLEAN

_v268 = copy.deepcopy(_v214)

# (min, max, schema); "" leaves a side open.
evacuate = [("2.1", "2.13", _v21), ("2.14", "2.28", _v214), ("2.29", "2.67", _v229), ("2.68", "", _v268)]
