"""The evacuate server action (spec 6; Nova's compute/evacuate.py), every microversion.

    POST /servers/{server_id}/action  {"evacuate": {...}}   (dispatched here by handlers/servers.py)

Nova's order: body schema (400) → the server (404) → policy against the server's owner (403) → from
2.95 every counted nova-compute must be at service version 62 or later (400), and the server will end
stopped → before 2.14 onSharedStorage and adminPass → 2.29–2.67 force needs a host (400) → the password →
the domain's checks (target host 404, same host 400, vm/task state 409, source still up 400) and the
evacuation itself (Servers.evacuate). 200, with {"adminPass"} below 2.14, else an empty body.

Servers.evacuate reads the server and runs this module's checks on it (``authorize``) inside the
evacuation's own transaction, so a call costs one database connection and one read of the server.
"""

from __future__ import annotations

from sqlalchemy import Row

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
    """The password the response carries (below 2.14), after Nova's checks of onSharedStorage and adminPass.
    From 2.14 none is returned, and novalite keeps no guest password, so none is generated."""
    if req.version >= V2_14:
        return None
    on_shared_storage = to_bool(body["onSharedStorage"])
    if "adminPass" in body:
        if on_shared_storage:
            raise BadRequest("admin password can't be changed on existing disk")
        return body["adminPass"]
    return None if on_shared_storage else generate_password()


def evacuate(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.evacuate, req.version), req.body)
    who = requester(req)
    body = req.body["evacuate"]
    host = body.get("host")
    target_state = states.STOPPED if req.version >= V2_95 else None
    force = req.version >= V2_29 and to_bool(body.get("force", False))  # a Nova boolean: the schema said so
    password: str | None = None

    def checks(server: Row) -> None:
        """Nova's steps between the server's read and the evacuation's own checks."""
        nonlocal password
        req.app.enforcer.authorize(req.context, policies.EVACUATE,
                                   target={"user_id": server.user_id, "project_id": server.project_id})
        if target_state is not None:
            _check_computes_stop_evacuated(req)
        if force and not host:
            raise BadRequest("Can't force to a non-provided destination")
        password = _password(req, body)

    # The server is read in the evacuation's own transaction, and checks() runs on it there: one connection.
    req.app.servers.evacuate(who, req.params["server_id"], host=host, force=force, target_state=target_state,
                             authorize=checks)
    if req.version < V2_14 and req.app.settings.api.enable_instance_password:
        return Reply(200, {"adminPass": password})
    return Reply(200, empty=True)
