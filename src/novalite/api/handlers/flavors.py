"""Flavor handlers: list, detail, show, create, update (2.55+) and delete, in Nova's order of checks.

Body shapes by microversion (Nova's views/flavors.py):
- 2.1: id, name, ram, disk, swap ("" when 0), OS-FLV-EXT-DATA:ephemeral, OS-FLV-DISABLED:disabled,
  vcpus, os-flavor-access:is_public, rxtx_factor, links;
- 2.55: description (also in the brief list), and PUT /flavors/{id} to change it;
- 2.61: extra_specs in full bodies, if os-flavor-extra-specs:index allows the caller;
- 2.75: swap 0 instead of "", and unknown list query parameters are refused.
"""

from __future__ import annotations

from novalite.api import links
from novalite.api.microversion import v
from novalite.api.policies import flavors as policies
from novalite.api.schemas import flavors as schemas
from novalite.api.validation import for_version, to_bool, validate_body, validate_query
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.flavors import Caller, Flavor, Flavors, ListFilters
from novalite.exceptions import BadRequest

V2_55, V2_61, V2_75 = v("2.55"), v("2.61"), v("2.75")
COLLECTION = "flavors"
# oslo.utils strutils.bool_from_string(strict=True), used for the is_public filter.
_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


def _flavors(req: ApiRequest) -> Flavors:
    return Flavors(req.app.engine)


def _caller(req: ApiRequest) -> Caller:
    context = req.context
    return Caller(project_id=context.project_id if context else None,
                  is_admin=bool(context and context.is_admin))


def _flavor_id(req: ApiRequest) -> str:
    # /flavors/detail is its own route for GET; other methods there act on a flavor named
    # "detail", as Nova's router falls through to /flavors/{id}.
    return req.params.get("flavor_id", "detail")


def _shows_extra_specs(req: ApiRequest) -> bool:
    return req.version >= V2_61 and req.app.enforcer.allows(req.context, policies.EXTRA_SPECS_INDEX)


# -- views ------------------------------------------------------------------------------------------

def brief_view(req: ApiRequest, flavor: Flavor) -> dict:
    view = {"id": flavor.flavorid, "name": flavor.name,
            "links": links.resource_links(req, COLLECTION, flavor.flavorid)}
    if req.version >= V2_55:
        view["description"] = flavor.description
    return view


def full_view(req: ApiRequest, flavor: Flavor, *, extra_specs: bool, description: bool) -> dict:
    view = {
        "id": flavor.flavorid,
        "name": flavor.name,
        "ram": flavor.memory_mb,
        "disk": flavor.root_gb,
        "swap": flavor.swap or (0 if req.version >= V2_75 else ""),
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": flavor.disabled,
        "vcpus": flavor.vcpus,
        "os-flavor-access:is_public": flavor.is_public,
        "rxtx_factor": flavor.rxtx_factor or "",
        "links": links.resource_links(req, COLLECTION, flavor.flavorid),
    }
    if description:
        view["description"] = flavor.description
    if extra_specs:
        view["extra_specs"] = flavor.extra_specs
    return view


# -- GET /flavors, /flavors/detail -------------------------------------------------------------------

def _parse_is_public(value: str | None) -> bool | None:
    if value is None:
        return True  # only public flavors unless asked otherwise
    if value.lower() == "none":
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRequest(f"Invalid is_public filter [{value}]")


def _int_filter(query: dict[str, list[str]], name: str) -> int | None:
    if name not in query:
        return None
    value = query[name][-1]
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Invalid {name} filter [{value}]") from None


def _list_filters(req: ApiRequest, query: dict[str, list[str]]) -> ListFilters:
    """Nova's _get_flavors, in its order; the last value of a repeated parameter counts."""
    def last(name: str) -> str | None:
        return query[name][-1] if name in query else None

    max_limit = req.app.settings.api.max_limit
    limit = min(max_limit, int(last("limit"))) if "limit" in query else max_limit
    filters = ListFilters(sort_key=last("sort_key") or "flavorid", sort_dir=last("sort_dir") or "asc",
                          limit=limit, marker=last("marker"))
    # Only admins choose public/private/all; for others the domain keeps public + their project's.
    if _caller(req).is_admin:
        filters.is_public = _parse_is_public(last("is_public"))
    filters.min_memory_mb = _int_filter(query, "minRam")
    filters.min_root_gb = _int_filter(query, "minDisk")
    return filters


def _listed(req: ApiRequest) -> tuple[list[Flavor], dict[str, list[str]]]:
    query = validate_query(for_version(schemas.list_query, req.version), req.query)
    return _flavors(req).list(_caller(req), _list_filters(req, query)), query


def _page(req: ApiRequest, key: str, views: list[dict], flavors: list[Flavor], query, collection: str) -> Reply:
    body: dict = {key: views}
    last_id = flavors[-1].flavorid if flavors else None
    next_links = links.collection_links(req, query, collection, last_id, len(flavors))
    if next_links:
        body["flavors_links"] = next_links
    return Reply(200, body)


def list_flavors(req: ApiRequest) -> Reply:
    flavors, query = _listed(req)
    return _page(req, "flavors", [brief_view(req, f) for f in flavors], flavors, query, COLLECTION)


def list_flavors_detail(req: ApiRequest) -> Reply:
    flavors, query = _listed(req)
    extra_specs = _shows_extra_specs(req)
    views = [full_view(req, f, extra_specs=extra_specs, description=req.version >= V2_55) for f in flavors]
    return _page(req, "flavors", views, flavors, query, f"{COLLECTION}/detail")


# -- GET /flavors/{flavor_id} ------------------------------------------------------------------------

def show(req: ApiRequest) -> Reply:
    validate_query(for_version(schemas.show_query, req.version), req.query)
    flavor = _flavors(req).get(_flavor_id(req), _caller(req))
    view = full_view(req, flavor, extra_specs=_shows_extra_specs(req), description=req.version >= V2_55)
    return Reply(200, {"flavor": view})


# -- GET /flavors/{flavor_id}/os-extra_specs (read only; OSC reads it for every flavor show) -------

def list_extra_specs(req: ApiRequest) -> Reply:
    req.app.enforcer.authorize(req.context, policies.EXTRA_SPECS_INDEX,
                               target={"project_id": req.context.project_id if req.context else None})
    flavor = _flavors(req).get(req.params["flavor_id"], _caller(req))
    return Reply(200, {"extra_specs": flavor.extra_specs})


# -- POST /flavors -----------------------------------------------------------------------------------

def create(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.create, req.version), req.body)
    req.app.enforcer.authorize(req.context, policies.CREATE, target={})
    values = req.body["flavor"]
    description = values.get("description") if req.version >= V2_55 else None
    flavor = _flavors(req).create(
        name=values["name"], flavorid=values.get("id"), memory_mb=values["ram"], vcpus=values["vcpus"],
        root_gb=values["disk"], ephemeral_gb=values.get("OS-FLV-EXT-DATA:ephemeral", 0),
        swap=values.get("swap", 0), rxtx_factor=values.get("rxtx_factor", 1.0),
        is_public=to_bool(values.get("os-flavor-access:is_public", True)), description=description,
    )
    # Nova answers 200 (not 201); a new flavor has no extra specs yet.
    view = full_view(req, flavor, extra_specs=_shows_extra_specs(req), description=req.version >= V2_55)
    return Reply(200, {"flavor": view})


# -- PUT /flavors/{flavor_id}, 2.55+ -----------------------------------------------------------------

def update(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.update, req.version), req.body)
    req.app.enforcer.authorize(req.context, policies.UPDATE, target={})
    flavors = _flavors(req)
    flavor_id = _flavor_id(req)
    flavors.get(flavor_id, _caller(req))  # a flavor the caller cannot see is not found
    flavor = flavors.update_description(flavor_id, req.body["flavor"]["description"])
    return Reply(200, {"flavor": full_view(req, flavor, extra_specs=_shows_extra_specs(req), description=True)})


# -- DELETE /flavors/{flavor_id} ---------------------------------------------------------------------

def delete(req: ApiRequest) -> Reply:
    req.app.enforcer.authorize(req.context, policies.DELETE, target={})
    _flavors(req).delete(_flavor_id(req))
    # Nova answers 202 with no body (kept for compatibility; 204 would fit better).
    return Reply(202, empty=True)
