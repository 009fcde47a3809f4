"""os-services handlers (spec section 3): list, the legacy PUT actions, the 2.53 PUT and DELETE."""

from __future__ import annotations

from novalite.api.microversion import v
from novalite.api.policies import services as policies
from novalite.api.schemas import services as schemas
from novalite.api.validation import for_version, to_bool, validate_body, validate_query
from novalite.api.views.services import service_views
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.services import ServiceState
from novalite.exceptions import BadRequest, NotFound
from novalite.uuidutils import is_uuid_like

V2_53 = v("2.53")


def _authorize(req: ApiRequest, action: str) -> None:
    req.app.enforcer.authorize(req.context, action, target={})


def service_view(state: ServiceState, req: ApiRequest) -> dict:
    """One service as GET and the 2.53 PUT show it."""
    return service_views([state], req.version)[0]


def list_services(req: ApiRequest) -> Reply:
    query = validate_query(for_version(schemas.list_query, req.version), req.query)
    _authorize(req, policies.LIST)
    host = query.get("host", [""])[-1]
    binary = query.get("binary", [""])[-1]
    listed = req.app.services.listing(host=host, binary=binary)
    return Reply(200, {"services": req.app.listed_services_json(listed, req.version, whole=not host and not binary)})


# -- PUT /os-services/{action}, 2.1–2.52 ------------------------------------------------------------

def _enable(req: ApiRequest, host: str, binary: str) -> dict:
    req.app.services.set_disabled_by_host(host, binary, disabled=False, reason=None)
    return {"host": host, "binary": binary, "status": "enabled"}


def _disable(req: ApiRequest, host: str, binary: str) -> dict:
    req.app.services.set_disabled_by_host(host, binary, disabled=True, reason=None)
    return {"host": host, "binary": binary, "status": "disabled"}


def _disable_log_reason(req: ApiRequest, host: str, binary: str) -> dict:
    reason = req.body.get("disabled_reason")
    if reason is None:
        raise BadRequest("Missing disabled reason field")
    req.app.services.set_disabled_by_host(host, binary, disabled=True, reason=reason)
    return {"host": host, "binary": binary, "status": "disabled", "disabled_reason": reason}


def _force_down(req: ApiRequest, host: str, binary: str) -> dict:
    if "forced_down" not in req.body:
        raise BadRequest("Missing forced_down field")
    forced_down = to_bool(req.body["forced_down"])
    req.app.services.set_forced_down_by_host(host, binary, forced_down)
    return {"host": host, "binary": binary, "forced_down": forced_down}


LEGACY_ACTIONS = {
    "enable": ("2.1", _enable),
    "disable": ("2.1", _disable),
    "disable-log-reason": ("2.1", _disable_log_reason),
    "force-down": ("2.11", _force_down),
}


def legacy_update(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.legacy_update, req.version), req.body)
    _authorize(req, policies.UPDATE)
    found = LEGACY_ACTIONS.get(req.params["service_id"])
    if found is None or req.version < v(found[0]):
        raise NotFound("Unknown action")
    _since, action = found
    return Reply(200, {"service": action(req, req.body["host"], req.body["binary"])})


# -- PUT /os-services/{service_uuid}, 2.53+ ---------------------------------------------------------

def update(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.update, req.version), req.body)
    service_id = req.params["service_id"]
    if not is_uuid_like(service_id):
        raise BadRequest(f"Invalid uuid {service_id}")
    _authorize(req, policies.UPDATE)
    forced_down = req.body.get("forced_down")
    state = req.app.services.update_by_uuid(
        service_id,
        status=req.body.get("status"),
        disabled_reason=req.body.get("disabled_reason"),
        forced_down=None if forced_down is None else to_bool(forced_down),
    )
    return Reply(200, {"service": service_view(state, req)})


# -- DELETE /os-services/{id} -----------------------------------------------------------------------

def delete(req: ApiRequest) -> Reply:
    _authorize(req, policies.DELETE)
    service_id = req.params["service_id"]
    if req.version >= V2_53:
        if not is_uuid_like(service_id):
            raise BadRequest(f"Invalid uuid {service_id}")
        req.app.services.delete(service_id)
    else:
        try:
            numeric = int(service_id)
        except ValueError:
            raise BadRequest("Invalid input received: id must be an integer") from None
        req.app.services.delete(numeric)
    return Reply(204, empty=True)
