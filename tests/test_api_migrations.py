"""GET /v2.1/os-migrations at every microversion (Nova's compute/migrations.py), checked against tempest's
response schemas (v2_1, v2_23, v2_59, v2_80 migrations).

Evacuation records come from real evacuations through the API; records of kinds novalite never makes
(resizes, live migrations, Nova's hidden cross-cell copies) are written with the db layer, as the API
test harness does for rows the API cannot create.
"""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import insert
from tempest.lib.api_schema.response.compute.v2_1 import migrations as v2_1
from tempest.lib.api_schema.response.compute.v2_23 import migrations as v2_23
from tempest.lib.api_schema.response.compute.v2_59 import migrations as v2_59
from tempest.lib.api_schema.response.compute.v2_80 import migrations as v2_80

from novalite.db import servers as db
from tests.api_client import MEMBER, OTHER_PROJECT, PROJECT, TEST_HOST, Api, assert_fault
from tests.test_api_evacuate import boot_id, conforms, evacuate, force_down, make_cloud

BASE_KEYS = {"created_at", "dest_compute", "dest_host", "dest_node", "id", "instance_uuid", "new_instance_type_id",
             "old_instance_type_id", "source_compute", "source_node", "status", "updated_at"}
HOST_KEYS = ("dest_compute", "dest_host", "dest_node", "source_compute", "source_node")
T0 = dt.datetime(2024, 5, 1, 12, 0, 0)


def add_migration(api: Api, *, status: str = "finished", migration_type: str = "resize", source: str = "compute1",
                  dest: str = "compute2", created_at: dt.datetime = T0, updated_at: dt.datetime | None = None,
                  hidden: bool = False, user_id: str = "u1", project_id: str = PROJECT,
                  instance_uuid: str | None = None) -> dict:
    values = dict(uuid=str(uuid.uuid4()), instance_uuid=instance_uuid or str(uuid.uuid4()), source_compute=source,
                  source_node=source, dest_compute=dest, dest_node=dest, dest_host="192.0.2.2", status=status,
                  migration_type=migration_type, old_instance_type_id=1, new_instance_type_id=2, hidden=hidden,
                  user_id=user_id, project_id=project_id, created_at=created_at, updated_at=updated_at, deleted=0)
    with api.engine.begin() as conn:
        conn.execute(insert(db.migrations).values(**values))
        return dict(db.migration_get(conn, values["uuid"])._mapping)


def listed(api: Api, version: str, query: str = "", **kwargs) -> list[dict]:
    result = api.get(f"/v2.1/os-migrations{'?' + query if query else ''}", version=version, **kwargs)
    assert result.status_code == 200, result.text
    return result.json["migrations"]


def uuids(api: Api, version: str = "2.59", query: str = "") -> list[str]:
    return [m["uuid"] for m in listed(api, version, query)]


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


# -- the view at each microversion ------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "schema", "keys"), [
    ("2.1", v2_1, BASE_KEYS),
    ("2.22", v2_1, BASE_KEYS),
    ("2.23", v2_23, BASE_KEYS | {"migration_type"}),
    ("2.58", v2_23, BASE_KEYS | {"migration_type"}),
    ("2.59", v2_59, BASE_KEYS | {"migration_type", "uuid"}),
    ("2.79", v2_59, BASE_KEYS | {"migration_type", "uuid"}),
    ("2.80", v2_80, BASE_KEYS | {"migration_type", "uuid", "user_id", "project_id"}),
    ("2.104", v2_80, BASE_KEYS | {"migration_type", "uuid", "user_id", "project_id"}),
])
def test_an_evacuation_record_at_each_microversion(tmp_path, version, schema, keys):
    # Nova's _output: 2.23 adds migration_type, 2.59 uuid, 2.80 user_id and project_id (of the request's
    # caller); an evacuation's record has no flavor ids (Nova's compute API evacuate creates it without).
    cloud = make_cloud(tmp_path, "compute1", "compute2")
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, server_id).status_code == 200
    cloud.settle()
    result = cloud.api.get("/v2.1/os-migrations", version=version)
    conforms(schema.list_migrations, result)
    [record] = result.json["migrations"]
    assert set(record) == keys
    assert (record["instance_uuid"], record["status"], record["source_compute"], record["source_node"],
            record["dest_compute"], record["dest_node"]) == (server_id, "done", "compute1", "compute1", "compute2",
                                                             "compute2")
    assert (record["old_instance_type_id"], record["new_instance_type_id"]) == (None, None)
    assert record["created_at"] <= record["updated_at"]
    if "migration_type" in keys:
        assert record["migration_type"] == "evacuation"
    if "user_id" in keys:
        assert (record["user_id"], record["project_id"]) == ("admin", PROJECT)


def test_links_only_on_live_migrations_in_progress(api):
    # Nova's _output (2.23+): self and bookmark links to /servers/{uuid}/migrations/{id} for a live
    # migration queued, preparing, running or post-migrating, and for nothing else.
    running = add_migration(api, migration_type="live-migration", status="running")
    add_migration(api, migration_type="live-migration", status="completed")
    add_migration(api, migration_type="resize", status="running")
    result = api.get("/v2.1/os-migrations", version="2.23")
    conforms(v2_23.list_migrations, result)
    linked = {m["id"]: m["links"] for m in result.json["migrations"] if "links" in m}
    path = f"servers/{running['instance_uuid']}/migrations/{running['id']}"
    assert linked == {running["id"]: [{"rel": "self", "href": f"http://{TEST_HOST}/v2.1/{path}"},
                                      {"rel": "bookmark", "href": f"http://{TEST_HOST}/{path}"}]}
    assert all("links" not in m for m in listed(api, "2.22"))


def test_hidden_migrations_are_never_listed(api):
    # Nova's _output drops hidden records (cross-cell resize copies) at every version and filter.
    shown = add_migration(api)
    add_migration(api, hidden=True)
    assert uuids(api) == [shown["uuid"]]
    assert [m["id"] for m in listed(api, "2.1")] == [shown["id"]]
    assert listed(api, "2.1", "hidden=1") == []
    assert [m["id"] for m in listed(api, "2.1", "hidden=0")] == [shown["id"]]


# -- filters ------------------------------------------------------------------------------------------------------

def test_filters(api):
    # Nova's migration_get_all_by_filters: host is either end (and then source_compute is ignored),
    # source_compute the source, status / migration_type / instance_uuid exact; the last value of a repeated
    # parameter counts.
    a = add_migration(api, source="h1", dest="h2", status="finished", migration_type="resize")
    b = add_migration(api, source="h2", dest="h3", status="error", migration_type="evacuation")
    c = add_migration(api, source="h3", dest="h1", status="finished", migration_type="live-migration")
    for version in ("2.1", "2.59", "2.80"):
        def ids(query: str) -> set[int]:
            return {m["id"] for m in listed(api, version, query)}  # noqa: B023 - called at once

        assert ids("host=h1") == {a["id"], c["id"]}
        assert ids("source_compute=h2") == {b["id"]}
        assert ids("host=h1&source_compute=h2") == {a["id"], c["id"]}
        assert ids("status=finished") == {a["id"], c["id"]}
        assert ids("status=error&status=finished") == {a["id"], c["id"]}
        assert ids("migration_type=evacuation") == {b["id"]}
        assert ids(f"instance_uuid={c['instance_uuid']}") == {c["id"]}
        assert ids("host=nowhere") == set()


def test_before_2_59_any_parameter_is_accepted_and_known_ones_still_filter(api):
    # Nova's schema is open before 2.59 and every parameter reaches the database filters, so user_id,
    # project_id, node and uuid filter there too; unknown ones change nothing.
    a = add_migration(api, user_id="u1", source="h1")
    b = add_migration(api, user_id="u2", project_id=OTHER_PROJECT, source="h2")
    assert {m["id"] for m in listed(api, "2.1", "foo=bar")} == {a["id"], b["id"]}
    assert [m["id"] for m in listed(api, "2.58", "user_id=u2")] == [b["id"]]
    assert [m["id"] for m in listed(api, "2.58", f"project_id={OTHER_PROJECT}")] == [b["id"]]
    assert [m["id"] for m in listed(api, "2.58", "node=h1")] == [a["id"]]
    assert [m["id"] for m in listed(api, "2.58", f"uuid={b['uuid']}")] == [b["id"]]


@pytest.mark.parametrize(("version", "query", "message"), [
    ("2.59", "foo=bar", "Additional properties are not allowed ('foo' was unexpected)"),
    ("2.65", "changes-before=2024-01-01T00:00:00Z",
     "Additional properties are not allowed ('changes-before' was unexpected)"),
    ("2.79", "user_id=u1", "Additional properties are not allowed ('user_id' was unexpected)"),
    ("2.59", "limit=-1", "Invalid input for query parameters limit. Value: -1. '-1' does not match '^[0-9]*$'"),
    ("2.59", "limit=1&limit=2", "Invalid input for query parameters limit. Value: ['1', '2']. "
                                "['1', '2'] is too long"),
    ("2.59", "changes-since=yesterday",
     "Invalid input for query parameters changes-since. Value: yesterday. 'yesterday' is not a 'date-time'"),
])
def test_from_2_59_the_query_is_strict(api, version, query, message):
    # Nova's list_query_params_v259/v266/v280: additionalProperties false, single values, date-time format.
    assert_fault(api.get(f"/v2.1/os-migrations?{query}", version=version), 400, message)


def test_2_80_user_and_project_filters(api):
    # Nova 2.80: user_id and project_id filter and show.
    a = add_migration(api, user_id="u1")
    b = add_migration(api, user_id="u2", project_id=OTHER_PROJECT)
    assert uuids(api, "2.80", "user_id=u2") == [b["uuid"]]
    assert uuids(api, "2.80", f"project_id={PROJECT}") == [a["uuid"]]
    assert uuids(api, "2.80", f"project_id={PROJECT}&user_id=u2") == []
    assert {(m["user_id"], m["project_id"]) for m in listed(api, "2.80")} == {("u1", PROJECT),
                                                                             ("u2", OTHER_PROJECT)}


# -- order and paging ------------------------------------------------------------------------------------------

def test_order_newest_first_from_2_59(api):
    # Nova's get_migrations_sorted from 2.59: created_at desc, then id desc; before, the database's order.
    first = add_migration(api, created_at=T0)
    later = add_migration(api, created_at=T0 + dt.timedelta(hours=1))
    tie = add_migration(api, created_at=T0)
    assert uuids(api) == [later["uuid"], tie["uuid"], first["uuid"]]
    assert [m["id"] for m in listed(api, "2.58")] == [first["id"], later["id"], tie["id"]]


def test_paging_with_limit_and_marker(api):
    # Nova 2.59: limit/marker (a migration uuid) and "migrations_links" with a next link when a page is full.
    rows = [add_migration(api, created_at=T0 + dt.timedelta(minutes=i)) for i in range(5)]
    newest_first = [r["uuid"] for r in reversed(rows)]
    # Tempest's v2_59 schema has no "migrations_links" (its tests never fill a page): checked on a partial one.
    conforms(v2_59.list_migrations, api.get("/v2.1/os-migrations?limit=6", version="2.59"))
    result = api.get("/v2.1/os-migrations?limit=2", version="2.59")
    assert [m["uuid"] for m in result.json["migrations"]] == newest_first[:2]
    [link] = result.json["migrations_links"]
    assert link["rel"] == "next"
    href = urlsplit(link["href"])
    assert f"{href.scheme}://{href.netloc}{href.path}" == f"http://{TEST_HOST}/v2.1/os-migrations"
    assert parse_qs(href.query) == {"limit": ["2"], "marker": [newest_first[1]]}
    assert uuids(api, "2.59", href.query) == newest_first[2:4]
    last = api.get(f"/v2.1/os-migrations?limit=2&marker={newest_first[3]}", version="2.59").json
    assert ([m["uuid"] for m in last["migrations"]], "migrations_links" in last) == (newest_first[4:], False)
    assert "migrations_links" not in api.get("/v2.1/os-migrations", version="2.59").json
    # Before 2.59 there is no paging at all.
    assert len(listed(api, "2.58", "limit=2")) == 5


def test_unknown_marker_is_400(api):
    add_migration(api)
    missing = str(uuid.uuid4())
    assert_fault(api.get(f"/v2.1/os-migrations?marker={missing}", version="2.59"), 400,
                 f"Marker {missing} could not be found.")


def test_pages_are_cut_at_max_limit(tmp_path):
    # Nova's get_limit_and_marker: limit is at most [api] max_limit, and a full page gets a next link.
    api = Api(tmp_path, env={"NOVALITE_API__MAX_LIMIT": "2"})
    for i in range(3):
        add_migration(api, created_at=T0 + dt.timedelta(minutes=i))
    body = api.get("/v2.1/os-migrations?limit=50", version="2.59").json
    assert len(body["migrations"]) == 2 and body["migrations_links"][0]["rel"] == "next"


def test_changes_since_and_changes_before(api):
    # Nova: changes-since (2.59) and changes-before (2.66) bound updated_at, inclusively; a record never
    # updated matches neither; before 2.59 changes-since is dropped.
    never = add_migration(api, updated_at=None)
    early = add_migration(api, updated_at=T0)
    late = add_migration(api, updated_at=T0 + dt.timedelta(days=1))
    assert set(uuids(api, "2.59", "changes-since=2024-05-01T12:00:00Z")) == {early["uuid"], late["uuid"]}
    assert uuids(api, "2.59", "changes-since=2024-05-01T12:00:01Z") == [late["uuid"]]
    assert uuids(api, "2.66", "changes-before=2024-05-01T12:00:00") == [early["uuid"]]
    assert uuids(api, "2.66", "changes-since=2024-05-01T13:00:00%2B01:00&changes-before=2024-05-01T12:00:00Z") == [
        early["uuid"]]
    assert {m["id"] for m in listed(api, "2.58", "changes-since=2030-01-01T00:00:00Z")} == {
        never["id"], early["id"], late["id"]}
    assert_fault(api.get("/v2.1/os-migrations?changes-since=2024-05-02T00:00:00Z&changes-before=2024-05-01T00:00:00Z",
                         version="2.66"), 400,
                 "The value of changes-since must be less than or equal to changes-before.")


# -- policy ---------------------------------------------------------------------------------------------------

def keystone(roles: str, project: str = PROJECT) -> dict:
    return {"X-Identity-Status": "Confirmed", "X-User-Id": "u1", "X-Project-Id": project, "X-Roles": roles}


def test_members_may_not_list(api):
    # Nova's os_compute_api:os-migrations:index defaults to rule:project_manager_or_admin.
    assert_fault(api.get("/v2.1/os-migrations", token=MEMBER), 403,
                 "Policy doesn't allow os_compute_api:os-migrations:index to be performed.")


def test_a_project_manager_lists_their_project_without_hosts(tmp_path):
    # Nova 32.0.0's split: a manager may list only their own project's migrations (2.80's project_id
    # filter, else index:all_projects 403) and sees no hosts or nodes (index:host); admin sees all.
    api = Api(tmp_path, auth_strategy="keystone", keystone_headers=True)
    mine = add_migration(api)
    add_migration(api, project_id=OTHER_PROJECT)
    manager = keystone("manager,member,reader")
    result = api.get(f"/v2.1/os-migrations?project_id={PROJECT}", token=None, headers=manager, version="2.80")
    conforms(v2_80.list_migrations, result)
    [record] = result.json["migrations"]
    assert record["uuid"] == mine["uuid"]
    assert {key: record[key] for key in HOST_KEYS} == dict.fromkeys(HOST_KEYS)
    for query in ("", f"?project_id={OTHER_PROJECT}"):
        assert_fault(api.get(f"/v2.1/os-migrations{query}", token=None, headers=manager, version="2.80"), 403,
                     "Policy doesn't allow os_compute_api:os-migrations:index:all_projects to be performed.")
    admin = api.get("/v2.1/os-migrations", token=None, headers=keystone("admin,member,reader"), version="2.80")
    assert {m["source_compute"] for m in admin.json["migrations"]} == {"compute1"}
    assert len(admin.json["migrations"]) == 2
