"""The compute agents' internal interface (/agent/v1), authenticated by the agents' shared secret.

    POST /agent/v1/services                 {"host", "binary", "version"} → 200 {"service": {...}}
    PUT  /agent/v1/services/{uuid}/heartbeat                              → 204, 404 once deleted

Registration loads the existing record (forced_down and disabled are kept) or creates it.
"""

from __future__ import annotations

import jsonschema

from novalite.api.handlers.services import service_view
from novalite.api.microversion import MAX_VERSION
from novalite.api.validation import validate_body
from novalite.api.wsgi import ApiRequest, Reply

REGISTER = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"},
        "binary": {"type": "string", "enum": ["nova-compute"]},
        "version": {"type": "integer", "minimum": 0},
    },
    "required": ["host", "binary", "version"],
    "additionalProperties": False,
}
jsonschema.Draft4Validator.check_schema(REGISTER)


def register(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    validate_body(REGISTER, req.body)
    state = req.app.services.register(req.body["host"], req.body["binary"], req.body["version"])
    req.version = MAX_VERSION  # the agent learns its UUID and every flag
    return Reply(200, {"service": service_view(state, req)})


def heartbeat(req: ApiRequest) -> Reply:
    req.app.agent_auth.check(req.headers)
    req.app.services.heartbeat(req.params["service_uuid"])
    return Reply(204, empty=True)
