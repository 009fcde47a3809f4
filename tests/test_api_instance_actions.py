"""GET /v2.1/servers/{id}/os-instance-actions[/{request_id}] at every microversion (Nova's
compute/instance_actions.py), checked against tempest's servers schemas (v2_1, v2_51, v2_58, v2_62, v2_84).

Actions are recorded by real requests (create, stop, evacuate, delete); their events by the scheduler
pass and the scripted hosts, as Nova's conductor and computes record theirs.
"""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as v2_1
from tempest.lib.api_schema.response.compute.v2_51 import servers as v2_51
from tempest.lib.api_schema.response.compute.v2_58 import servers as v2_58
from tempest.lib.api_schema.response.compute.v2_62 import servers as v2_62
from tempest.lib.api_schema.response.compute.v2_84 import servers as v2_84

from tests.api_client import MEMBER, OTHER_PROJECT, PROJECT, TEST_HOST, assert_fault
from tests.test_api_evacuate import Cloud, action, boot, boot_id, conforms, evacuate, force_down, make_cloud

EVENT_KEYS = {"event", "start_time", "finish_time", "result"}
ACTION_KEYS = {"action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message"}


def actions_path(server_id: str, request_id: str = "") -> str:
    return f"/v2.1/servers/{server_id}/os-instance-actions" + (f"/{request_id}" if request_id else "")


def request_id_of(result) -> str:
    return result.headers["x-openstack-request-id"]


def host_id(host: str, project_id: str = PROJECT) -> str:
    """Nova's generate_hostid."""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


@pytest.fixture
def evacuated(tmp_path) -> tuple[Cloud, str, str]:
    """A member's server on compute1, evacuated by the admin to compute2: (cloud, server id, request id)."""
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud, host=None, token=MEMBER)
    cloud.add_host("compute2")
    force_down(cloud, "compute1")
    result = evacuate(cloud.api, server_id)
    assert result.status_code == 200
    cloud.settle()
    return cloud, server_id, request_id_of(result)


def test_each_request_records_its_action_under_its_request_id(tmp_path):
    # Nova's instance action request_id is the request's x-openstack-request-id; the list is newest first
    # and carries the caller's user and project (tempest v2_1 list_instance_actions).
    cloud = make_cloud(tmp_path, "compute1", "compute2")
    created = boot(cloud)
    server_id = created.json["server"]["id"]
    stopped = action(cloud.api, server_id, {"os-stop": None})
    assert stopped.status_code == 202
    cloud.settle()
    force_down(cloud, "compute1")
    evacuated = evacuate(cloud.api, server_id)
    result = cloud.api.get(actions_path(server_id))
    conforms(v2_1.list_instance_actions, result)
    assert [(a["action"], a["request_id"]) for a in result.json["instanceActions"]] == [
        ("evacuate", request_id_of(evacuated)), ("stop", request_id_of(stopped)), ("create", request_id_of(created))]
    for listed in result.json["instanceActions"]:
        assert set(listed) == ACTION_KEYS
        assert (listed["instance_uuid"], listed["user_id"], listed["project_id"]) == (server_id, "admin", PROJECT)


def test_events_by_microversion_and_role(evacuated):
    # Nova's show: before 2.51 events only with os-instance-actions:events (admin); from 2.51 for everyone
    # who may show the action, the traceback still admin's; 2.58 updated_at; 2.62 hostId for all and host
    # for admins; 2.84 details with events:details (admin). Events come newest first.
    cloud, server_id, request_id = evacuated
    path = actions_path(server_id, request_id)

    def shown(version: str, token: str, schema: dict) -> dict:
        result = cloud.api.get(path, version=version, token=token)
        conforms(schema, result)
        return result.json["instanceAction"]

    member = shown("2.50", MEMBER, v2_1.show_instance_action)
    assert set(member) == ACTION_KEYS and (member["action"], member["request_id"]) == ("evacuate", request_id)

    admin = shown("2.1", "", v2_1.show_instance_action)
    assert [(e["event"], e["result"]) for e in admin["events"]] == [
        ("compute_rebuild_instance", "Success"), ("conductor_rebuild_server", "Success")]
    assert all(set(e) == EVENT_KEYS | {"traceback"} and e["traceback"] is None for e in admin["events"])

    assert all(set(e) == EVENT_KEYS for e in shown("2.51", MEMBER, v2_51.show_instance_action)["events"])
    assert set(shown("2.58", MEMBER, v2_58.show_instance_action)) == ACTION_KEYS | {"events", "updated_at"}

    member_62 = shown("2.62", MEMBER, v2_62.show_instance_action)["events"]
    assert [(set(e), e["hostId"]) for e in member_62] == [
        (EVENT_KEYS | {"hostId"}, host_id("compute2")), (EVENT_KEYS | {"hostId"}, host_id("scheduler"))]
    admin_62 = shown("2.62", "", v2_62.show_instance_action)["events"]
    assert [(e["host"], e["hostId"]) for e in admin_62] == [("compute2", host_id("compute2")),
                                                            ("scheduler", host_id("scheduler"))]
    assert "details" not in admin_62[0]

    assert all("details" not in e for e in shown("2.84", MEMBER, v2_84.show_instance_action)["events"])
    admin_84 = shown("2.84", "", v2_84.show_instance_action)["events"]
    assert all(set(e) == EVENT_KEYS | {"traceback", "host", "hostId", "details"} for e in admin_84)


def test_a_failed_step_is_an_error_event_with_its_traceback(tmp_path):
    # Nova's action_event_finish: an Error result marks the action's message "Error"; the traceback is
    # shown with os-instance-actions:events only.
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud, host=None, token=MEMBER)
    force_down(cloud, "compute1")
    request_id = request_id_of(evacuate(cloud.api, server_id))
    cloud.settle()  # no other host: NoValidHost
    shown = cloud.api.get(actions_path(server_id, request_id), version="2.84").json["instanceAction"]
    assert shown["message"] == "Error"
    [event] = shown["events"]
    assert (event["event"], event["result"]) == ("conductor_rebuild_server", "Error")
    assert event["traceback"].startswith("No valid host was found.")
    member = cloud.api.get(actions_path(server_id, request_id), version="2.84", token=MEMBER).json
    assert member["instanceAction"]["message"] == "Error" and "traceback" not in member["instanceAction"]["events"][0]


def test_unknown_action_server_and_project(evacuated):
    # Nova: "Action <request_id> not found" (404); the server is looked up first, so another project's
    # server and an unknown one are "Instance ... could not be found."
    cloud, server_id, _request_id = evacuated
    assert_fault(cloud.api.get(actions_path(server_id, "req-nope")), 404, "Action req-nope not found")
    missing = str(uuid.uuid4())
    assert_fault(cloud.api.get(actions_path(missing)), 404, f"Instance {missing} could not be found.")
    outsider = f"demo:{OTHER_PROJECT}"
    for path in (actions_path(server_id), actions_path(server_id, "req-nope")):
        assert_fault(cloud.api.get(path, token=outsider), 404, f"Instance {server_id} could not be found.")
    assert cloud.api.get(actions_path(server_id), token=MEMBER).status_code == 200


def test_a_deleted_servers_actions_from_2_21(tmp_path):
    # Nova 2.21: the server is read with deleted ones included, so its actions (delete last) stay readable.
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud)
    deleted = cloud.api.delete(f"/v2.1/servers/{server_id}")
    assert deleted.status_code == 204
    cloud.settle()
    assert_fault(cloud.api.get(actions_path(server_id), version="2.20"), 404,
                 f"Instance {server_id} could not be found.")
    result = cloud.api.get(actions_path(server_id), version="2.21")
    assert [(a["action"], a["request_id"]) for a in result.json["instanceActions"]][0] == (
        "delete", request_id_of(deleted))
    shown = cloud.api.get(actions_path(server_id, request_id_of(deleted)), version="2.21").json["instanceAction"]
    assert [e["event"] for e in shown["events"]] == ["compute_terminate_instance"]


def test_paging_from_2_58(tmp_path):
    # Nova 2.58: limit, marker (a request id) and a "links" next link; changes-since; an unknown marker is
    # 400 "Marker None could not be found." (Nova reports the failed lookup's result).
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud)
    for _ in range(2):
        assert action(cloud.api, server_id, {"os-stop": None}).status_code == 202
        cloud.settle()
        assert action(cloud.api, server_id, {"os-start": None}).status_code == 202
        cloud.settle()
    everything = cloud.api.get(actions_path(server_id), version="2.58")
    conforms(v2_58.list_instance_actions, everything)
    ids = [a["request_id"] for a in everything.json["instanceActions"]]
    assert [a["action"] for a in everything.json["instanceActions"]] == ["start", "stop", "start", "stop", "create"]
    assert all(a["updated_at"] >= a["start_time"] for a in everything.json["instanceActions"])

    page = cloud.api.get(actions_path(server_id) + "?limit=2", version="2.58")
    conforms(v2_58.list_instance_actions, page)
    assert [a["request_id"] for a in page.json["instanceActions"]] == ids[:2]
    [link] = page.json["links"]
    href = urlsplit(link["href"])
    assert (link["rel"], f"{href.scheme}://{href.netloc}{href.path}") == (
        "next", f"http://{TEST_HOST}/v2.1/servers/{server_id}/os-instance-actions")
    assert parse_qs(href.query) == {"limit": ["2"], "marker": [ids[1]]}
    following = cloud.api.get(f"{actions_path(server_id)}?{href.query}", version="2.58").json
    assert [a["request_id"] for a in following["instanceActions"]] == ids[2:4]
    tail = cloud.api.get(f"{actions_path(server_id)}?limit=2&marker={ids[3]}", version="2.58").json
    assert ([a["request_id"] for a in tail["instanceActions"]], "links" in tail) == (ids[4:], False)

    assert_fault(cloud.api.get(actions_path(server_id) + "?marker=req-nope", version="2.58"), 400,
                 "Marker None could not be found.")
    future = cloud.api.get(actions_path(server_id) + "?changes-since=2999-01-01T00:00:00Z", version="2.58")
    assert future.json["instanceActions"] == []
    # Before 2.58 the query is open and nothing pages.
    assert len(cloud.api.get(actions_path(server_id) + "?limit=1&foo=1", version="2.57").json["instanceActions"]) == 5


@pytest.mark.parametrize(("version", "query", "message"), [
    ("2.58", "foo=1", "Additional properties are not allowed ('foo' was unexpected)"),
    ("2.65", "changes-before=2024-01-01T00:00:00Z",
     "Additional properties are not allowed ('changes-before' was unexpected)"),
    ("2.58", "limit=x", "Invalid input for query parameters limit. Value: x. 'x' does not match '^[0-9]*$'"),
    ("2.66", "changes-before=soon",
     "Invalid input for query parameters changes-before. Value: soon. 'soon' is not a 'date-time'"),
    ("2.66", "changes-since=2024-01-02T00:00:00Z&changes-before=2024-01-01T00:00:00Z",
     "The value of changes-since must be less than or equal to changes-before."),
])
def test_list_query_from_2_58(tmp_path, version, query, message):
    # Nova's index_query_v258 / v266 (additionalProperties false) and its changes-since ≤ changes-before rule.
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud)
    assert_fault(cloud.api.get(f"{actions_path(server_id)}?{query}", version=version), 400, message)


def test_changes_before_from_2_66(tmp_path):
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud)
    assert cloud.api.get(actions_path(server_id) + "?changes-before=2000-01-01T00:00:00Z",
                         version="2.66").json["instanceActions"] == []
    assert len(cloud.api.get(actions_path(server_id) + "?changes-before=2999-01-01T00:00:00Z",
                             version="2.66").json["instanceActions"]) == 1
