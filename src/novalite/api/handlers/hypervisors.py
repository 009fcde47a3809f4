"""os-hypervisors handlers (spec section 8; Nova's compute/hypervisors.py), every microversion.

    GET /os-hypervisors, /os-hypervisors/detail   list; limit/marker paging and links from 2.33;
                                                   hypervisor_hostname_pattern, with_servers from 2.53
    GET /os-hypervisors/{id}                       show (integer id before 2.53, UUID from 2.53)
    GET /os-hypervisors/statistics                 2.1–2.87
    GET /os-hypervisors/{id}/uptime                2.1–2.87
    GET /os-hypervisors/{pattern}/search           2.1–2.52
    GET /os-hypervisors/{pattern}/servers          2.1–2.52

Nova's order in each request: query validation, (paging parameters,) policy, id check, lookup.
"""

from __future__ import annotations

import json

from novalite.api.links import collection_links
from novalite.api.microversion import v
from novalite.api.policies import hypervisors as policies
from novalite.api.schemas import hypervisors as schemas
from novalite.api.validation import for_version, to_bool, validate_query
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.hypervisors import (
    Hypervisors,
    HypervisorState,
    not_found,
    parse_integer,
)
from novalite.exceptions import BadRequest
from novalite.uuidutils import is_uuid_like

V2_28, V2_33, V2_53, V2_75, V2_87, V2_88 = v("2.28"), v("2.33"), v("2.53"), v("2.75"), v("2.87"), v("2.88")
COLLECTION = "os-hypervisors"


def _hypervisors(req: ApiRequest) -> Hypervisors:
    return Hypervisors(req.app.engine, req.app.settings)


def _authorize(req: ApiRequest, action: str) -> None:
    req.app.enforcer.authorize(req.context, action, target={})


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


# -- views ------------------------------------------------------------------------------------------

def hypervisor_view(state: HypervisorState, req: ApiRequest, *, detail: bool, with_servers: bool = False,
                    uptime: str | None = None) -> dict:
    """One hypervisor, keys in Nova's order (its _view_hypervisor)."""
    version = req.version
    new_ids = version >= V2_53
    view: dict = {
        "id": state.uuid if new_ids else state.id,
        "hypervisor_hostname": state.hypervisor_hostname,
        "state": "up" if state.up else "down",
        "status": "disabled" if state.disabled else "enabled",
    }
    if detail:
        view.update(hypervisor_type=state.hypervisor_type, hypervisor_version=state.hypervisor_version,
                    host_ip=state.host_ip)
        view["service"] = {"id": state.service_uuid if new_ids else state.service_id, "host": state.host,
                           "disabled_reason": state.disabled_reason}
    if detail and version <= V2_87:
        view.update(
            vcpus=state.vcpus, memory_mb=state.memory_mb, local_gb=state.local_gb, vcpus_used=state.vcpus_used,
            memory_mb_used=state.memory_mb_used, local_gb_used=state.local_gb_used, free_ram_mb=state.free_ram_mb,
            free_disk_gb=state.free_disk_gb, current_workload=state.current_workload,
            running_vms=state.running_vms, disk_available_least=state.disk_available_least,
        )
        # 2.28: cpu_info became an object instead of its JSON text.
        view["cpu_info"] = state.cpu_info if version < V2_28 else (json.loads(state.cpu_info) if state.cpu_info
                                                                    else {})
    if detail and version >= V2_88:
        view["uptime"] = uptime
    if state.servers:
        view["servers"] = [{"name": s.name, "uuid": s.uuid} for s in state.servers]
    elif with_servers and version >= V2_75:
        view["servers"] = []  # 2.75: always present when asked for
    return view


def _collection_links(req: ApiRequest, views: list[dict], detail: bool) -> list[dict]:
    last_id = str(views[-1]["id"]) if views else None
    return collection_links(req, req.query or {}, f"{COLLECTION}/detail" if detail else COLLECTION,
                            last_id, len(views))


# -- list and detail --------------------------------------------------------------------------------

def _limit_and_marker(req: ApiRequest, query: dict[str, list[str]]) -> tuple[int, str | None]:
    """Nova's common.get_limit_and_marker: limit capped at max_limit, the last value of each wins."""
    asked, max_limit = _last(query, "limit"), req.app.settings.api.max_limit
    limit = max_limit if asked is None else min(max_limit, parse_integer(asked))
    return limit, _last(query, "marker")


def _list(req: ApiRequest, *, detail: bool) -> Reply:
    query = validate_query(for_version(schemas.index_query, req.version), req.query)
    limit, marker, paged = None, None, req.version >= V2_33
    if paged:
        limit, marker = _limit_and_marker(req, query)
    _authorize(req, policies.LIST_DETAIL if detail else policies.LIST)
    pattern, with_servers = None, False
    if req.version >= V2_53:
        pattern = _last(query, "hypervisor_hostname_pattern")
        with_servers = to_bool(_last(query, "with_servers") or False)
    if pattern is not None:
        if "limit" in query or marker:
            raise BadRequest("Paging over hypervisors with the hypervisor_hostname_pattern query parameter "
                             "is not supported.")
        paged = False  # a next link would fail the check above
        states = _hypervisors(req).search(pattern, with_servers=with_servers)
    else:
        states = _hypervisors(req).list(limit=limit, marker=marker, with_servers=with_servers)
    views = [hypervisor_view(s, req, detail=detail, with_servers=with_servers) for s in states]
    body: dict = {"hypervisors": views}
    if paged:
        links = _collection_links(req, views, detail)
        if links:
            body["hypervisors_links"] = links
    return Reply(200, body)


def list_hypervisors(req: ApiRequest) -> Reply:
    return _list(req, detail=False)


def list_detail(req: ApiRequest) -> Reply:
    return _list(req, detail=True)


# -- one hypervisor ---------------------------------------------------------------------------------

def _check_id(req: ApiRequest, hypervisor_id: str) -> None:
    """A UUID from 2.53 (else 400), an integer before (else 404)."""
    if req.version >= V2_53:
        if not is_uuid_like(hypervisor_id):
            raise BadRequest(f"Invalid uuid {hypervisor_id}")
    elif parse_integer(hypervisor_id) is None:
        raise not_found(hypervisor_id)


def show(req: ApiRequest) -> Reply:
    query = validate_query(for_version(schemas.show_query, req.version), req.query)
    with_servers = req.version >= V2_53 and to_bool(_last(query, "with_servers") or False)
    _authorize(req, policies.SHOW)
    hypervisor_id = req.params["hypervisor_id"]
    _check_id(req, hypervisor_id)
    hypervisors = _hypervisors(req)
    state = hypervisors.get(hypervisor_id, with_servers=with_servers)
    uptime = hypervisors.uptime_in_detail(state) if req.version >= V2_88 else None
    return Reply(200, {"hypervisor": hypervisor_view(state, req, detail=True, with_servers=with_servers,
                                                     uptime=uptime)})


def uptime(req: ApiRequest) -> Reply:
    """2.1–2.87. Never 200 today: 400 for a host that is not up, else 501 (the simulated driver)."""
    validate_query(for_version(schemas.any_query, req.version), req.query)
    _authorize(req, policies.UPTIME)
    hypervisor_id = req.params["hypervisor_id"]
    _check_id(req, hypervisor_id)
    state, text = _hypervisors(req).uptime(hypervisor_id)
    return Reply(200, {"hypervisor": {**hypervisor_view(state, req, detail=False), "uptime": text}})


# -- deprecated routes ------------------------------------------------------------------------------

def search(req: ApiRequest) -> Reply:
    """2.1–2.52: hypervisors whose hostname contains the pattern (2.53 moved this to a query parameter)."""
    validate_query(for_version(schemas.any_query, req.version), req.query)
    _authorize(req, policies.SEARCH)
    states = _hypervisors(req).search(req.params["hypervisor_id"])
    return Reply(200, {"hypervisors": [hypervisor_view(s, req, detail=False) for s in states]})


def servers(req: ApiRequest) -> Reply:
    """2.1–2.52: the search, with each hypervisor's servers (the key only when it has some)."""
    validate_query(for_version(schemas.any_query, req.version), req.query)
    _authorize(req, policies.SERVERS)
    states = _hypervisors(req).search(req.params["hypervisor_id"], with_servers=True)
    return Reply(200, {"hypervisors": [hypervisor_view(s, req, detail=False) for s in states]})


def statistics(req: ApiRequest) -> Reply:
    """2.1–2.87: sums over the hypervisors of enabled compute services."""
    validate_query(for_version(schemas.any_query, req.version), req.query)
    _authorize(req, policies.STATISTICS)
    return Reply(200, {"hypervisor_statistics": _hypervisors(req).statistics()})
