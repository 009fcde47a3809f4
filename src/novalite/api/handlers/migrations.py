"""GET /os-migrations (Nova's compute/migrations.py), every microversion.

    2.1    the records' columns; any query parameter, the known filters apply
    2.23   migration_type, and self/bookmark links on live migrations in progress
    2.59   uuid; newest first (created_at, id); limit/marker paging with "migrations_links";
           changes-since; unknown parameters refused
    2.66   changes-before
    2.80   user_id and project_id, as keys and as filters

Nova's order: query schema (400) → policy ``index`` (403) → listing all or another project's migrations
needs ``index:all_projects`` (403) → without ``index:host`` the hosts and nodes are null → the listing
(changes-since after changes-before: 400; unknown marker: 400). Hidden migrations are never shown.
"""

from __future__ import annotations

from oslo_utils import timeutils

from novalite.api.links import collection_links, resource_links
from novalite.api.microversion import v
from novalite.api.policies import migrations as policies
from novalite.api.schemas import migrations as schemas
from novalite.api.validation import for_version, to_bool, validate_query
from novalite.api.wsgi import ApiRequest, Reply
from novalite.domain.migrations import MigrationFilters, Migrations
from novalite.exceptions import BadRequest
from novalite.timeutils import isotime, naive_utc

V2_23, V2_59, V2_66, V2_80 = v("2.23"), v("2.59"), v("2.66"), v("2.80")
COLLECTION = "os-migrations"
LIVE_MIGRATION_IN_PROGRESS = ("queued", "preparing", "running", "post-migrating")
_HOST_KEYS = ("dest_compute", "dest_host", "dest_node", "source_compute", "source_node")


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def parse_changes(query: dict[str, list[str]], *, since: bool, before: bool):
    """(changes-since, changes-before) as naive UTC, each only where the version takes it (Nova drops
    them before); 400 when changes-before is earlier than changes-since."""
    def parsed(name: str, allowed: bool):
        text = _last(query, name)
        return naive_utc(timeutils.parse_isotime(text)) if allowed and text is not None else None

    changes_since, changes_before = parsed("changes-since", since), parsed("changes-before", before)
    if changes_since and changes_before and changes_before < changes_since:
        raise BadRequest("The value of changes-since must be less than or equal to changes-before.")
    return changes_since, changes_before


def migration_view(row, req: ApiRequest, *, add_host: bool) -> dict:
    """One migration, keys as Nova's _output leaves them at this version."""
    view = {
        "created_at": isotime(row.created_at), "dest_compute": row.dest_compute, "dest_host": row.dest_host,
        "dest_node": row.dest_node, "id": row.id, "instance_uuid": row.instance_uuid,
        "new_instance_type_id": row.new_instance_type_id, "old_instance_type_id": row.old_instance_type_id,
        "source_compute": row.source_compute, "source_node": row.source_node, "status": row.status,
        "updated_at": isotime(row.updated_at),
    }
    if not add_host:
        view.update(dict.fromkeys(_HOST_KEYS))
    if req.version >= V2_23:
        view["migration_type"] = row.migration_type
        if row.migration_type == "live-migration" and row.status in LIVE_MIGRATION_IN_PROGRESS:
            view["links"] = resource_links(req, f"servers/{row.instance_uuid}/migrations", str(row.id))
    if req.version >= V2_59:
        view["uuid"] = row.uuid
    if req.version >= V2_80:
        view["user_id"] = row.user_id
        view["project_id"] = row.project_id
    return view


def _limit_and_marker(req: ApiRequest, query: dict[str, list[str]]) -> tuple[int, str | None]:
    """Nova's common.get_limit_and_marker: limit capped at [api]max_limit."""
    asked, max_limit = _last(query, "limit"), req.app.settings.api.max_limit
    return (max_limit if asked is None else min(max_limit, int(asked))), _last(query, "marker")


def _filters(query: dict[str, list[str]], changes_since, changes_before) -> MigrationFilters:
    # Nova hands every query parameter to the database layer, which knows these; before 2.59 the schema
    # lets any through, so user_id, project_id, node and uuid filter there too.
    known = {name: _last(query, name) for name in ("status", "host", "source_compute", "node", "migration_type",
                                                   "instance_uuid", "user_id", "project_id", "uuid")}
    return MigrationFilters(**known, changes_since=changes_since, changes_before=changes_before)


def list_migrations(req: ApiRequest) -> Reply:
    validate_query(for_version(schemas.index_query, req.version), req.query)
    query = req.query or {}
    paged = req.version >= V2_59
    limit, marker = _limit_and_marker(req, query) if paged else (None, None)
    context, enforcer = req.context, req.app.enforcer
    enforcer.authorize(context, policies.INDEX)
    project_id = _last(query, "project_id")
    if not project_id or project_id != context.project_id:
        enforcer.authorize(context, policies.INDEX_ALL_PROJECTS)
    add_host = enforcer.allows(context, policies.INDEX_HOST)
    changes_since, changes_before = parse_changes(query, since=paged, before=req.version >= V2_66)
    hidden = _last(query, "hidden")
    if hidden is not None and to_bool(hidden):
        rows = []  # only hidden migrations match, and the API never shows those
    else:
        rows = Migrations(req.app.engine).list(_filters(query, changes_since, changes_before), newest_first=paged,
                                               limit=limit, marker=marker)
    views = [migration_view(row, req, add_host=add_host) for row in rows if not row.hidden]
    body: dict = {"migrations": views}
    if paged:
        links = collection_links(req, query, COLLECTION, views[-1]["uuid"] if views else None, len(views))
        if links:
            body["migrations_links"] = links
    return Reply(200, body)
