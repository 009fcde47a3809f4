"""A server's instance actions (Nova's compute/instance_actions.py), every microversion.

    GET /servers/{server_id}/os-instance-actions               the actions, newest first
    GET /servers/{server_id}/os-instance-actions/{request_id}  one action, with its events

    2.21  a deleted server's actions can be read
    2.51  events are shown to everyone who may show the action (the traceback only with ``events``)
    2.58  updated_at; limit/marker (a request id) paging with "links"; changes-since
    2.62  each event's hostId (hashed with the project), and its host with ``events``
    2.66  changes-before
    2.84  each event's details, with ``events:details``

Nova's order: query schema (400) → the server (404) → policy ``list``/``show`` on the server's project
(403) → (list) changes-since after changes-before: 400, unknown marker: 400; (show) unknown request id:
404 "Action <request_id> not found".
"""

from __future__ import annotations

import hashlib

from novalite.api.callers import requester
from novalite.api.handlers.migrations import parse_changes
from novalite.api.links import collection_links
from novalite.api.microversion import v
from novalite.api.policies import instance_actions as policies
from novalite.api.schemas import instance_actions as schemas
from novalite.api.validation import for_version, validate_query
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.instance_actions import InstanceActions
from novalite.exceptions import NotFound
from novalite.timeutils import isotime

V2_21, V2_51, V2_58, V2_62, V2_66, V2_84 = v("2.21"), v("2.51"), v("2.58"), v("2.62"), v("2.66"), v("2.84")


def host_id(host: str | None, project_id: str | None) -> str:
    """Nova's generate_hostid: sha224 of project id and host, "" when there is no host."""
    if not host:
        return ""
    return hashlib.sha224(((project_id or "") + host).encode()).hexdigest()


def _server(req: ApiRequest, actions: InstanceActions):
    return actions.server(requester(req), req.params["server_id"], read_deleted=req.version >= V2_21)


def action_view(row, req: ApiRequest) -> dict:
    view = {"action": row.action, "instance_uuid": row.instance_uuid, "request_id": row.request_id,
            "user_id": row.user_id, "project_id": row.project_id, "start_time": isotime(row.start_time),
            "message": row.message}
    if req.version >= V2_58:
        view["updated_at"] = isotime(row.updated_at)
    return view


def event_view(row, project_id: str | None, *, traceback: bool, host: bool, hashed_host: bool,
               details: bool) -> dict:
    view = {"event": row.event, "start_time": isotime(row.start_time), "finish_time": isotime(row.finish_time),
            "result": row.result}
    if traceback:
        view["traceback"] = row.traceback
    if host:
        view["host"] = row.host
    if hashed_host:
        view["hostId"] = host_id(row.host, project_id)
    if details:
        view["details"] = row.details
    return view


def _limit_and_marker(req: ApiRequest, query: dict[str, list[str]]) -> tuple[int, str | None]:
    limit, marker = query.get("limit"), query.get("marker")
    max_limit = req.app.settings.api.max_limit
    return (max_limit if limit is None else min(max_limit, int(limit[-1]))), (marker[-1] if marker else None)


def list_actions(req: ApiRequest) -> Reply:
    validate_query(for_version(schemas.index_query, req.version), req.query)
    actions = InstanceActions(req.app.engine)
    server = _server(req, actions)
    req.app.enforcer.authorize(req.context, policies.LIST, target={"project_id": server.project_id})
    if req.version < V2_58:
        return Reply(200, {"instanceActions": [action_view(row, req) for row in actions.list(server.uuid)]})
    query = req.query or {}
    changes_since, changes_before = parse_changes(query, since=True, before=req.version >= V2_66)
    limit, marker = _limit_and_marker(req, query)
    rows = actions.list(server.uuid, limit=limit, marker=marker, changes_since=changes_since,
                        changes_before=changes_before)
    views = [action_view(row, req) for row in rows]
    body: dict = {"instanceActions": views}
    links = collection_links(req, query, f"servers/{req.params['server_id']}/os-instance-actions",
                             views[-1]["request_id"] if views else None, len(views))
    if links:
        body["links"] = links
    return Reply(200, body)


def show_action(req: ApiRequest) -> Reply:
    validate_query(for_version(schemas.show_query, req.version), req.query)
    actions = InstanceActions(req.app.engine)
    server = _server(req, actions)
    target = {"project_id": server.project_id}
    req.app.enforcer.authorize(req.context, policies.SHOW, target=target)
    request_id = req.params["request_id"]
    row = actions.get(server.uuid, request_id)
    if row is None:
        raise NotFound(f"Action {request_id} not found")
    view = action_view(row, req)
    # Before 2.51 only those allowed ``events`` see events; from 2.51 everyone does, the traceback (and
    # from 2.62 the host) still only with ``events``; the hashed host id is everyone's from 2.62.
    all_of_them = req.app.enforcer.allows(req.context, policies.EVENTS, target)
    if all_of_them or req.version >= V2_51:
        details = req.version >= V2_84 and req.app.enforcer.allows(req.context, policies.EVENTS_DETAILS, target)
        project_id = row.project_id or server.project_id
        view["events"] = [event_view(event, project_id, traceback=all_of_them,
                                     host=all_of_them and req.version >= V2_62, hashed_host=req.version >= V2_62,
                                     details=details)
                          for event in actions.events(row.id)]
    return Reply(200, {"instanceAction": view})
