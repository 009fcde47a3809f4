"""Server handlers (Nova's compute/servers.py), every microversion.

    GET    /servers, /servers/detail   list (filters, sort, paging; see handlers/server_filters.py)
    GET    /servers/{server_id}        show
    POST   /servers                    create: 202 with the new server (or its reservation) and Location
    DELETE /servers/{server_id}        204: deleting on its host, or at once when the host is not up
    POST   /servers/{server_id}/action os-start, os-stop (202) and evacuate (handlers/evacuate.py)

Nova's order in each request: body or query validation (400), the server (404), policy against its owner
(403), then the domain's checks (409 for a wrong state).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from novalite.api import links
from novalite.api.callers import requester
from novalite.api.handlers import evacuate, server_filters
from novalite.api.microversion import v
from novalite.api.passwords import generate_password
from novalite.api.policies import servers as policies
from novalite.api.schemas import servers as schemas
from novalite.api.validation import for_version, to_bool, validate_body, validate_query
from novalite.api.views import servers as server_views
from novalite.api.views.servers import ServerFacts, ViewPolicy
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.flavors import Caller, Flavor, FlavorNotFound, Flavors
from novalite.domain.hypervisors import Hypervisors
from novalite.domain.server_list import list_servers, metadata_and_faults
from novalite.domain.servers import Requester
from novalite.exceptions import BadRequest, Forbidden, NotFound
from novalite.uuidutils import is_uuid_like

V2_16, V2_19, V2_47, V2_71, V2_74, V2_90 = v("2.16"), v("2.19"), v("2.47"), v("2.71"), v("2.74"), v("2.90")


# -- who may see what ---------------------------------------------------------------------------------

def view_policy(req: ApiRequest, who: Requester, target: dict | None, *, show: bool) -> ViewPolicy:
    """The quiet policy checks of Nova's view builder; ``target`` None checks against the caller's
    project (the detail list), else against the server's (show)."""
    enforcer, context = req.app.enforcer, req.context
    host_status = unknown_only = False
    if req.version >= V2_16:
        host_status = enforcer.allows(context, policies.SHOW_HOST_STATUS, target)
        unknown_only = not host_status and enforcer.allows(context, policies.SHOW_HOST_STATUS_UNKNOWN_ONLY, target)
    return ViewPolicy(
        extended_attributes=enforcer.allows(context, policies.EXTENDED_ATTRIBUTES, target),
        host_status=host_status, host_status_unknown_only=unknown_only,
        flavor_extra_specs=req.version >= V2_47 and enforcer.allows(context, policies.SHOW_FLAVOR_EXTRA_SPECS),
        fault_details=who.is_admin, server_groups=show and req.version >= V2_71)


def full_views(req: ApiRequest, rows: list, policy: ViewPolicy) -> list[dict]:
    """Full views of ``rows``, their metadata, faults and host statuses read once for all."""
    metadata, faults = metadata_and_faults(req.app.engine, rows)
    statuses = None
    if policy.host_status or policy.host_status_unknown_only:
        statuses = req.app.servers.host_statuses(row.host for row in rows)
    views = []
    for row in rows:
        facts = ServerFacts(metadata=metadata.get(row.uuid, {}), fault=faults.get(row.uuid),
                            host_status=None if statuses is None else statuses.get(row.host, ""))
        views.append(server_views.full_view(req, row, facts, policy))
    return views


# -- GET /servers, /servers/detail --------------------------------------------------------------------

def _list(req: ApiRequest, *, detail: bool) -> Reply:
    query = server_filters.validated_query(req)
    req.app.enforcer.authorize(req.context, policies.DETAIL if detail else policies.INDEX)
    who = requester(req)
    found = server_filters.parse(req, query, who, detail=detail)
    rows = [] if found.nothing else list_servers(req.app.engine, found.filters, found.order, found.marker,
                                                  found.limit)
    if detail:
        listed = full_views(req, rows, view_policy(req, who, None, show=False))
    else:
        listed = [server_views.brief_view(req, row) for row in rows]
    body: dict = {"servers": listed}
    collection = "servers/detail" if detail else "servers"
    next_links = links.collection_links(req, query, collection, rows[-1].uuid if rows else None, len(rows))
    if next_links:
        body["servers_links"] = next_links
    return Reply(200, body)


def list_servers_brief(req: ApiRequest) -> Reply:
    return _list(req, detail=False)


def list_servers_detail(req: ApiRequest) -> Reply:
    return _list(req, detail=True)


# -- GET /servers/{server_id} ------------------------------------------------------------------------

def show(req: ApiRequest) -> Reply:
    validate_query(for_version(schemas.show_query, req.version), req.query)
    who = requester(req)
    row = req.app.servers.get(who, req.params["server_id"])
    target = {"project_id": row.project_id}
    req.app.enforcer.authorize(req.context, policies.SHOW, target=target)
    view = full_views(req, [row], view_policy(req, who, target, show=True))[0]
    return Reply(200, {"server": view})


# -- POST /servers -----------------------------------------------------------------------------------

def _check_base64(server: dict) -> None:
    """Nova's "base64" format of user_data: what base64.decodebytes reads."""
    value = server.get("user_data")
    if value is None:
        return
    try:
        base64.decodebytes(value.encode())
    except (binascii.Error, ValueError):
        raise BadRequest(f"Invalid input for field/attribute user_data. Value: {value}. "
                         f"{value!r} is not a 'base64'") from None


def _parse_zone(zone: str | None) -> tuple[str | None, str | None, str | None]:
    """Nova's parse_availability_zone: "zone", "zone:host", "zone:host:node" or "zone::node"."""
    host = node = None
    if zone and ":" in zone:
        colons = zone.count(":")
        if colons == 1:
            zone, host = zone.split(":")
        elif colons == 2 and "::" in zone:
            zone, node = zone.split("::")
        elif colons == 2:
            zone, host, node = zone.split(":")
        else:
            raise BadRequest("Invalid input received: Unable to parse availability_zone")
    return zone or None, host or None, node or None


def _host_of_node(req: ApiRequest, node: str, host: str | None) -> str:
    """The compute host of hypervisor ``node`` (one node per host in novalite); Nova's 400 when none."""
    try:
        states = Hypervisors(req.app.engine, req.app.settings).search(node)
    except NotFound:
        states = []
    hosts = [s.host for s in states if s.hypervisor_hostname == node and (host is None or s.host == host)]
    if not hosts:
        raise BadRequest(f"Compute host {host or node} could not be found.")
    return hosts[0]


def _destination(req: ApiRequest, server: dict, zone: str | None, target: dict) -> tuple[str | None, str | None,
                                                                                          bool]:
    """(zone, host, forced): an admin's "zone:host[:node]" is forced past the scheduler's filters; 2.74's
    host / hypervisor_hostname are requested (the filters still apply)."""
    zone, forced_host, forced_node = _parse_zone(zone)
    if forced_host or forced_node:
        req.app.enforcer.authorize(req.context, policies.CREATE_FORCED_HOST, target={})
    host, node = (server.get("host"), server.get("hypervisor_hostname")) if req.version >= V2_74 else (None, None)
    if host or node:
        req.app.enforcer.authorize(req.context, policies.REQUESTED_DESTINATION, target=target)
        if forced_host or forced_node:
            raise BadRequest("One mechanism with host and/or hypervisor_hostname and another mechanism with "
                             "zone:host:node are mutually exclusive.")
        return zone, _host_of_node(req, node, host) if node else host, False
    if forced_node:
        return zone, _host_of_node(req, forced_node, forced_host), True
    return zone, forced_host, forced_host is not None


def _check_networks(req: ApiRequest, networks, target: dict) -> None:
    """Nova's checks of requested networks (novalite has no networking, so none is attached)."""
    if networks is None or networks == "none" or networks == []:
        return
    if isinstance(networks, list):
        for network in networks:
            if network.get("port"):
                if network.get("fixed_ip") is not None:
                    raise BadRequest(f"Specified Fixed IP '{network['fixed_ip']}' cannot be used with port "
                                     f"'{network['port']}': the two cannot be specified together.")
            elif "uuid" not in network:
                raise BadRequest("Bad network format: missing 'uuid'")
            elif not (is_uuid_like(network["uuid"]) or is_uuid_like(network["uuid"].split("-", 1)[-1])):
                raise BadRequest(f"Bad networks format: network uuid is not in proper format ({network['uuid']})")
    req.app.enforcer.authorize(req.context, policies.CREATE_ATTACH_NETWORK, target=target)


def _flavor(req: ApiRequest, flavor_ref, who: Requester) -> Flavor:
    """flavorRef, an id or a link to one; a flavor the caller cannot use is Nova's 400."""
    flavor_id = urlsplit(str(flavor_ref)).path.split("/")[-1]
    try:
        flavor = Flavors(req.app.engine).get(flavor_id, Caller(who.project_id, who.is_admin))
    except FlavorNotFound as error:
        raise BadRequest(error.message) from None
    if flavor.disabled:
        raise BadRequest(f"Flavor {flavor.id} could not be found.")  # Nova names the internal id here
    return flavor


def create(req: ApiRequest) -> Reply:
    validate_body(for_version(schemas.create, req.version), req.body)
    server = req.body["server"]
    _check_base64(server)
    password = server["adminPass"] if "adminPass" in server else generate_password()
    name = server["name"].strip()
    description = server.get("description") if req.version >= V2_19 else name
    min_count = int(server.get("min_count", 1))
    max_count = int(server.get("max_count", min_count))
    if min_count > max_count:
        raise BadRequest("min_count must be <= max_count")
    who = requester(req)
    target = {"project_id": who.project_id, "user_id": who.user_id,
              "availability_zone": server.get("availability_zone")}
    req.app.enforcer.authorize(req.context, policies.CREATE, target=target)
    if server.get("trusted_image_certificates"):
        req.app.enforcer.authorize(req.context, policies.CREATE_TRUSTED_CERTS, target=target)
    zone, host, forced = _destination(req, server, server.get("availability_zone"), target)
    image_ref = server.get("imageRef") or None
    _check_networks(req, server.get("networks"), target)
    flavor = _flavor(req, server["flavorRef"], who)
    if image_ref and flavor.root_gb == 0 and not req.app.enforcer.allows(req.context, policies.ZERO_DISK_FLAVOR,
                                                                        target):
        raise Forbidden("Only volume-backed servers are allowed for flavors with zero disk.")
    try:
        rows = req.app.servers.create(
            who, name=name, flavor=flavor, image_ref=image_ref, availability_zone=zone,
            metadata=server.get("metadata", {}), description=description, key_name=server.get("key_name"),
            count=max_count, requested_host=host, force_host=forced, access_ip_v4=server.get("accessIPv4"),
            access_ip_v6=server.get("accessIPv6"), user_data=server.get("user_data"),
            config_drive=to_bool(server.get("config_drive", False)),
            hostname=server.get("hostname") if req.version >= V2_90 else None)
    except NotFound as error:  # the requested host: Nova's ComputeHostNotFound is a 400 here
        raise BadRequest(error.message) from None
    if to_bool(server.get("return_reservation_id", False)):
        return Reply(202, {"reservation_id": rows[0].reservation_id})
    view = server_views.create_view(req, rows[0], server.get("security_groups", [{"name": "default"}]))
    if req.app.settings.api.enable_instance_password:
        view["adminPass"] = password
    return Reply(202, {"server": view}, headers={"Location": server_views.self_href(req, rows[0].uuid)})


# -- DELETE /servers/{server_id} ---------------------------------------------------------------------

def delete(req: ApiRequest) -> Reply:
    who = requester(req)
    row = req.app.servers.get(who, req.params.get("server_id", "detail"))
    req.app.enforcer.authorize(req.context, policies.DELETE,
                               target={"user_id": row.user_id, "project_id": row.project_id})
    req.app.servers.delete(who, row.uuid)
    return Reply(204)


# -- POST /servers/{server_id}/action ----------------------------------------------------------------

def _start(req: ApiRequest) -> Reply:
    who = requester(req)
    row = req.app.servers.get(who, req.params["server_id"])
    req.app.enforcer.authorize(req.context, policies.START, target={"user_id": row.user_id,
                                                                    "project_id": row.project_id})
    req.app.servers.start(who, row.uuid)
    return Reply(202, empty=True)


def _stop(req: ApiRequest) -> Reply:
    who = requester(req)
    row = req.app.servers.get(who, req.params["server_id"])
    req.app.enforcer.authorize(req.context, policies.STOP, target={"user_id": row.user_id,
                                                                   "project_id": row.project_id})
    req.app.servers.stop(who, row.uuid)
    return Reply(202, empty=True)


ACTIONS = {"os-start": _start, "os-stop": _stop, "evacuate": evacuate.evacuate}


def _action_name(body) -> str:
    """Nova's action_peek: the body's one key. Any other count is a malformed body; a one-item
    non-object (a list, a one-letter string) makes Nova's router give up with a 404."""
    if isinstance(body, dict) and len(body) == 1:
        return next(iter(body))
    if isinstance(body, (list, str)) and len(body) == 1 or isinstance(body, (int, float)):
        raise NotFound("The resource could not be found.")
    raise BadRequest("Malformed request body")


def action(req: ApiRequest) -> Reply:
    name = _action_name(req.body)
    handler = ACTIONS.get(name)
    if handler is None:
        raise BadRequest(f"There is no such action: {name}")
    return handler(req)
