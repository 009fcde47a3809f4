"""The evacuate server action (spec 6; Nova's compute/evacuate.py), every microversion.

    POST /servers/{server_id}/action  {"evacuate": {...}}   (dispatched here by handlers/servers.py)

Nova's order: body schema (400) → the server (404) → policy against the server's owner (403) → from
2.95 every counted nova-compute must be at service version 62 or later (400), and the server will end
stopped → before 2.14 onSharedStorage and adminPass → 2.29–2.67 force needs a host (400) → the password →
the domain's checks (target host 404, same host 400, vm/task state 409, source still up 400) and the
evacuation itself (Servers.evacuate). 200, with {"adminPass"} below 2.14, else an empty body.
"""

from __future__ import annotations

from novalite.api.callers import requester
from novalite.api.microversion import v
from novalite.api.passwords import generate_password
from novalite.api.policies import evacuate as policies
from novalite.api.schemas import evacuate as schemas
from novalite.api.validation import for_version, to_bool, validate_body
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain import states
from novalite.exceptions import BadRequest

V2_14, V2_29, V2_95 = v("2.14"), v("2.29"), v("2.95")
# Nova's MIN_VER_NOVA_COMPUTE_EVACUATE_STOPPED (spec 6 step 3).
MIN_COMPUTE_VERSION_EVACUATE_STOPPED = 62
def _check_computes_stop_evacuated(req: ApiRequest) -> None:
    """2.95 leaves evacuated servers stopped, which computes older than Nova's service version 62 do not
    know to do. Nova's refusal passes a dict where a message belongs, so the message is the dict's text."""
    minimum = req.app.services.minimum_version()
    if minimum < MIN_COMPUTE_VERSION_EVACUATE_STOPPED:
        raise BadRequest(str({"currently": minimum, "expected": MIN_COMPUTE_VERSION_EVACUATE_STOPPED}))


def _password(req: ApiRequest, body: dict) -> str | None:
    if req.version >= V2_14:
        return body["adminPass"] if "adminPass" in body else generate_password()
    on_shared_storage = to_bool(body["onSharedStorage"])
    if "adminPass" in body:
        if on_shared_storage:
            raise BadRequest("admin password can't be changed on existing disk")
        return body["adminPass"]
    return None if on_shared_storage else generate_password()


def evacuate(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.evacuate, req.version), req.body)
    who = requester(req)
    server = req.app.servers.get(who, req.params["server_id"])
    req.app.enforcer.authorize(req.context, policies.EVACUATE,
                               target={"user_id": server.user_id, "project_id": server.project_id})
    body = req.body["evacuate"]
    host = body.get("host")
    target_state = None
    if req.version >= V2_95:
        _check_computes_stop_evacuated(req)
        target_state = states.STOPPED
    force = False
    if req.version >= V2_29:
        force = to_bool(body.get("force", False))
        if force and not host:
            raise BadRequest("Can't force to a non-provided destination")
    password = _password(req, body)
    req.app.servers.evacuate(who, server.uuid, host=host, force=force, target_state=target_state)
    if req.version < V2_14 and req.app.settings.api.enable_instance_password:
        return Reply(200, {"adminPass": password})
    return Reply(200, empty=True)
