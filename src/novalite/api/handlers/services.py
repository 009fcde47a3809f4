"""os-services handlers (spec section 3): list, the legacy PUT actions, the 2.53 PUT and DELETE."""

from __future__ import annotations

from novalite.api.microversion import Version, v
from novalite.api.policies import services as policies
from novalite.api.schemas import services as schemas
from novalite.api.validation import for_version, to_bool, validate_body, validate_query
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.services import ServiceState
from novalite.exceptions import BadRequest, NotFound
from novalite.uuidutils import is_uuid_like

V2_11, V2_53 = v("2.11"), v("2.53")


def _authorize(req: ApiRequest, action: str) -> None:
    req.app.enforcer.authorize(req.context, action, target={})


def service_view(state: ServiceState, req: ApiRequest) -> dict:
    """One service as GET and the 2.53 PUT show it (service_views)."""
    return service_views([state], req.version)[0]


def service_views(states: list[tuple], version: Version) -> list[dict]:
    """Services as GET and the 2.53 PUT show them, keys in Nova's order (spec 3.2), from ServiceStates or the
    listing's rows in their field order (Services.list); one comprehension, the version compared once, as a
    listing of 10,000 needs."""
    by_uuid = version >= V2_53
    views = [{"binary": binary, "host": host, "id": uuid if by_uuid else id_, "zone": zone,
              "status": "disabled" if disabled else "enabled", "state": "up" if up else "down",
              "updated_at": updated_at, "disabled_reason": reason, "forced_down": bool(forced_down)}
             for id_, uuid, host, binary, zone, disabled, reason, forced_down, updated_at, up in states]
    if version < V2_11:  # forced_down appears with 2.11
        for view in views:
            del view["forced_down"]
    return views


def list_services(req: ApiRequest) -> Reply:
    query = validate_query(for_version(schemas.list_query, req.version), req.query)
    _authorize(req, policies.LIST)
    host = query.get("host", [""])[-1]
    binary = query.get("binary", [""])[-1]
    return Reply(200, {"services": service_views(req.app.services.list(host=host, binary=binary), req.version)})


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
