"""GET /servers and /servers/detail query parameters, read as Nova's _get_servers and compute API get_all
read them (the listing itself is novalite.domain.server_list).

In Nova's order: unknown parameters dropped (refused from 2.75) → for callers without
allow_all_filters, every filter but Nova's short list silently dropped → joined-table and "_" filters
refused → status turned into vm/task states (2.38: an unknown status is a 400) → changes-since/before →
deleted → all_tenants (its own policy) or the caller's project → paging → sort keys (some ignored, host
and node for admins only) → the filters renamed to instance columns.

novalite servers have no addresses and no tags: an ip/ip6 filter, or tags/tags-any, matches nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from oslo_utils import timeutils

from novalite.api.microversion import v
from novalite.api.policies import servers as policies
from novalite.api.schemas import servers as schemas
from novalite.api.validation import for_version, validate_query
from novalite.api.wsgi import ApiRequest
from novalite.domain import states
from novalite.domain.flavors import Caller, FlavorNotFound, Flavors
from novalite.domain.server_list import sort_order
from novalite.domain.servers import Requester
from novalite.exceptions import BadRequest, Forbidden
from novalite.timeutils import naive_utc

V2_5, V2_26, V2_38, V2_66, V2_73 = v("2.5"), v("2.26"), v("2.38"), v("2.66"), v("2.73")
PAGING_AND_SORTING = ("sort_key", "sort_dir", "limit", "marker")
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
# oslo.utils strutils.bool_from_string
_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


@dataclass
class Listing:
    """What to list: instance-column filters (novalite.domain.server_list), order and page."""

    filters: dict[str, Any] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)
    marker: str | None = None
    limit: int | None = None
    nothing: bool = False  # a filter no server can match


def validated_query(req: ApiRequest) -> dict[str, list[str]]:
    """The query after Nova's schema: unknown parameters dropped (2.1–2.74), but "_"-prefixed ones kept
    so they can be refused."""
    schema = for_version(schemas.index_query, req.version)
    validate_query(schema, req.query)
    known = schema["properties"]
    if schema["additionalProperties"] is False:
        return dict(req.query)
    return {name: values for name, values in req.query.items() if name in known or name.startswith("_")}


def _strict_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    acceptable = ", ".join(f"'{s}'" for s in sorted(_TRUE + _FALSE))
    raise BadRequest(f"Invalid input received: Unrecognized value '{value}', acceptable values are: {acceptable}")


def _non_admin_options(req: ApiRequest) -> tuple[str, ...]:
    """The filters callers without allow_all_filters keep (Nova's _get_server_search_options)."""
    options = ("reservation_id", "name", "status", "image", "flavor", "ip", "changes-since", "all_tenants")
    if req.version >= V2_5:
        options += ("ip6",)
    if req.version >= V2_26:
        options += TAG_FILTERS
    if req.version >= V2_66:
        options += ("changes-before",)
    if req.version >= V2_73:
        options += ("locked",)
    return options


def _search_options(req: ApiRequest, query: dict[str, list[str]]) -> dict[str, Any]:
    search = {name: values[-1] for name, values in query.items()}
    if req.app.enforcer.allows(req.context, policies.ALLOW_ALL_FILTERS):
        for name in PAGING_AND_SORTING:
            search.pop(name, None)
    else:
        allowed = _non_admin_options(req)
        search = {name: value for name, value in search.items() if name in allowed}
    for name in search:
        if name in schemas.JOINED_TABLE_FILTERS or name.startswith("_"):
            raise BadRequest(f"Invalid filter field: {name}.")
    return search


def _time(value: str) -> dt.datetime:
    return naive_utc(timeutils.parse_isotime(value))


def _changes(search: dict[str, Any]) -> None:
    if "changes-since" in search:
        search["changes-since"] = _time(search["changes-since"])
    if "changes-before" in search:
        search["changes-before"] = _time(search["changes-before"])
        since = search.get("changes-since")
        if since and search["changes-before"] < since:
            raise BadRequest("The value of changes-since must be less than or equal to changes-before.")


def _deleted(search: dict[str, Any], who: Requester) -> None:
    """Live servers only, unless asked for deleted ones (admins) or for changes (which show deletions)."""
    if "deleted" not in search:
        if "changes-since" not in search and "changes-before" not in search:
            search["deleted"] = False
    else:
        search["deleted"] = search["deleted"].strip().lower() in _TRUE
    if search.get("vm_state") == [states.DELETED]:
        if not who.is_admin:
            raise Forbidden("Only administrators may list deleted instances")
        search["deleted"] = True


def _all_tenants(search: dict[str, Any]) -> bool:
    """Nova's is_all_tenants: a present but empty all_tenants counts as true."""
    value = search.pop("all_tenants", None)
    if value:
        return _strict_bool(value)
    return value is not None


def _order(req: ApiRequest, query: dict[str, list[str]], who: Requester) -> list[tuple[str, str]]:
    keys = [key.strip() for key in query.get("sort_key", [])] or ["created_at"]
    dirs = [d.strip() for d in query.get("sort_dir", [])] or ["desc"]
    ignored = schemas.IGNORED_SORT_KEYS_V273 if req.version >= V2_73 else schemas.IGNORED_SORT_KEYS
    for key in list(keys):
        if key in ignored:
            index = keys.index(key)
            if len(dirs) > index:
                dirs.pop(index)
            keys.pop(index)
        elif key in ("host", "node") and not who.is_admin:
            raise Forbidden(f"Only administrators can sort servers by {key}")
    return sort_order(keys, dirs)


def _columns(req: ApiRequest, search: dict[str, Any], who: Requester, listing: Listing) -> None:
    """Nova's compute API remapping of search options to instance columns."""
    for name, value in search.items():
        if name == "image":
            listing.filters["image_ref"] = value
        elif name == "name":
            listing.filters["display_name"] = value
        elif name == "tenant_id":
            listing.filters["project_id"] = value
        elif name == "flavor":
            try:
                flavor = Flavors(req.app.engine).get(value, Caller(who.project_id, who.is_admin))
            except FlavorNotFound:
                listing.nothing = True
                continue
            listing.filters["instance_type_id"] = flavor.id
        elif name in ("ip", "ip6", "tags", "tags-any"):
            listing.nothing = True
        elif name not in ("not-tags", "not-tags-any", "soft_deleted"):
            listing.filters[name] = value


def parse(req: ApiRequest, query: dict[str, list[str]], who: Requester, *, detail: bool) -> Listing:
    search = _search_options(req, query)
    search.pop("status", None)
    if "status" in query:
        vm_states, task_states = states.task_and_vm_states_of(query["status"])
        if not vm_states and not task_states:
            if req.version >= V2_38:
                raise BadRequest("Invalid status value")
            return Listing(nothing=True)
        search["vm_state"] = vm_states
        if "default" not in task_states:
            search["task_state"] = task_states
    _changes(search)
    _deleted(search, who)
    all_tenants = _all_tenants(search)
    if "locked" in search:
        search["locked"] = _strict_bool(search["locked"])
    if all_tenants:
        req.app.enforcer.authorize(req.context, policies.DETAIL_ALL_TENANTS if detail else policies.INDEX_ALL_TENANTS)
    else:
        search.pop("tenant_id", None)
        if who.project_id:
            search["project_id"] = who.project_id
        else:
            search["user_id"] = who.user_id
    max_limit = req.app.settings.api.max_limit
    limit = min(max_limit, int(query["limit"][-1])) if "limit" in query else max_limit
    marker = query["marker"][-1] if "marker" in query else None
    listing = Listing(order=_order(req, query, who), marker=marker, limit=limit)
    _columns(req, search, who, listing)
    return listing
