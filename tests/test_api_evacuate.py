"""The evacuate server action through POST /v2.1/servers/{id}/action, every microversion (spec 6).

Servers are booted through the API and brought to ACTIVE by scripted hosts speaking the agent interface
(tests/scripted_host.py); the scheduler process's placement pass runs in-process. Each test names the
Nova fact it pins.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as tempest_servers
from tempest.lib.common.rest_client import RestClient

from tests.api_client import MEMBER, OTHER_PROJECT, Api, assert_fault
from tests.scripted_host import ScriptedHost, place, settle

FLAVOR = {"name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1, "id": "1"}
STILL_IN_USE = "Compute service of compute1 is still in use."
FORCE_UP_REFUSED = ("Unable to force up host compute1 as `done` evacuation migration records remain associated "
                    "with the host. Ensure the compute service has been restarted, allowing these records to move "
                    "to `completed` before retrying this request.")
# Nova's generate_password alphabet (no 0, 1, I, O, l, o).
PASSWORD_SYMBOLS = set("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
NOVA_BOOLEANS = ("[True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', "
                 "'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no']")


# -- helpers shared with test_api_migrations and test_api_instance_actions ---------------------------------

@dataclass
class Cloud:
    api: Api
    hosts: dict[str, ScriptedHost] = field(default_factory=dict)

    def add_host(self, name: str) -> ScriptedHost:
        self.hosts[name] = ScriptedHost(self.api, name)
        return self.hosts[name]

    def settle(self) -> None:
        settle(self.api, *self.hosts.values())


def make_cloud(root, *hosts: str, **api_options) -> Cloud:
    """An API with flavor "1" and scripted compute hosts."""
    api = Api(root, **api_options)
    assert api.request("POST", "/v2.1/flavors", json={"flavor": FLAVOR}).status_code == 200
    cloud = Cloud(api)
    for name in hosts:
        cloud.add_host(name)
    return cloud


def boot(cloud: Cloud, host: str | None = "compute1", token: str = "", settle_it: bool = True):
    """POST /servers (on ``host`` when given: admin's 2.74 ``host``); returns the response."""
    server = {"name": "vm", "flavorRef": "1", "imageRef": "", "networks": "none"}
    if host:
        server["host"] = host
    result = cloud.api.request("POST", "/v2.1/servers", version="2.74", token=token, json={"server": server})
    assert result.status_code == 202, result.text
    if settle_it:
        cloud.settle()
    return result


def boot_id(cloud: Cloud, host: str | None = "compute1", token: str = "", settle_it: bool = True) -> str:
    return boot(cloud, host, token, settle_it).json["server"]["id"]


def action(api: Api, server_id: str, body, version: str = "2.1", token: str = ""):
    return api.request("POST", f"/v2.1/servers/{server_id}/action", json=body, version=version, token=token)


def evacuate(api: Api, server_id: str, version: str = "2.68", token: str = "", **body):
    return action(api, server_id, {"evacuate": body}, version=version, token=token)


def show(api: Api, server_id: str) -> dict:
    result = api.get(f"/v2.1/servers/{server_id}", version="2.74")
    assert result.status_code == 200, result.text
    return result.json["server"]


def where(api: Api, server_id: str) -> tuple[str, str]:
    server = show(api, server_id)
    return server["status"], server["OS-EXT-SRV-ATTR:host"]


def force_down(cloud: Cloud, host: str, down: bool = True):
    return cloud.api.put(f"/v2.1/os-services/{cloud.hosts[host].uuid}", {"forced_down": down}, version="2.53")


def disable(cloud: Cloud, host: str) -> None:
    result = cloud.api.put(f"/v2.1/os-services/{cloud.hosts[host].uuid}", {"status": "disabled"}, version="2.53")
    assert result.status_code == 200, result.text


def evacuations(api: Api) -> list[dict]:
    result = api.get("/v2.1/os-migrations?migration_type=evacuation", version="2.59")
    assert result.status_code == 200, result.text
    return result.json["migrations"]


class TempestResponse(dict):
    """What tempest's RestClient.validate_response reads: the status and the (lower-cased) headers."""

    def __init__(self, result):
        super().__init__({name.lower(): value for name, value in result.headers.items()})
        self.status = result.status_code


def conforms(schema: dict, result) -> None:
    """Tempest's own check of a response against its schema (status code, body, format checkers)."""
    RestClient.validate_response(schema, TempestResponse(result), result.json if result.text else result.text)


# -- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture
def cloud(tmp_path) -> Cloud:
    return make_cloud(tmp_path, "compute1", "compute2")


# -- request schemas and the order of the checks ---------------------------------------------------------------

def in_evacuate(body: dict, message: str) -> str:
    """spec 3.7: an error inside the "evacuate" object names that field and shows its value."""
    return f"Invalid input for field/attribute evacuate. Value: {body}. {message}"


@pytest.mark.parametrize(("version", "body", "message"), [
    # spec 6: onSharedStorage is required before 2.14 and refused from 2.14
    ("2.1", {}, in_evacuate({}, "'onSharedStorage' is a required property")),
    ("2.13", {"host": "compute2"}, in_evacuate({"host": "compute2"}, "'onSharedStorage' is a required property")),
    ("2.14", {"onSharedStorage": False}, in_evacuate(
        {"onSharedStorage": False}, "Additional properties are not allowed ('onSharedStorage' was unexpected)")),
    # spec 6: force exists only from 2.29 to 2.67
    ("2.28", {"force": True}, in_evacuate({"force": True},
                                          "Additional properties are not allowed ('force' was unexpected)")),
    ("2.68", {"force": True}, in_evacuate({"force": True},
                                          "Additional properties are not allowed ('force' was unexpected)")),
    # spec 6: 2.95 has no targetState field
    ("2.95", {"targetState": "stopped"}, in_evacuate(
        {"targetState": "stopped"}, "Additional properties are not allowed ('targetState' was unexpected)")),
    # spec 3.7: Nova's boolean, fqdn and string parameter types, reported by field
    ("2.13", {"onSharedStorage": 1},
     "Invalid input for field/attribute onSharedStorage. Value: 1. 1 is not of type 'boolean', 'string'"),
    ("2.29", {"host": "compute2", "force": "maybe"},
     f"Invalid input for field/attribute force. Value: maybe. 'maybe' is not one of {NOVA_BOOLEANS}"),
    ("2.14", {"host": "a b"}, "Invalid input for field/attribute host. Value: a b. 'a b' does not match "
                              "'^[a-zA-Z0-9-._]*$'"),
    ("2.14", {"host": ""}, "Invalid input for field/attribute host. Value: . '' should be non-empty"),
    ("2.14", {"adminPass": 5}, "Invalid input for field/attribute adminPass. Value: 5. 5 is not of type 'string'"),
])
def test_body_schema_of_each_microversion_is_checked_before_the_server(cloud, version, body, message):
    # Nova validates the action body before the controller looks the server up: an unknown server id
    # still gets the schema's 400.
    assert_fault(evacuate(cloud.api, str(uuid.uuid4()), version=version, **body), 400, message)


def test_evacuate_value_must_be_an_object(cloud):
    result = action(cloud.api, str(uuid.uuid4()), {"evacuate": "now"}, version="2.68")
    assert_fault(result, 400, "Invalid input for field/attribute evacuate. Value: now. 'now' is not of type 'object'")


def test_unknown_server_is_404_even_for_a_non_admin(cloud):
    # spec 5: the server is fetched before the policy check, so a member learns "not found", not "forbidden".
    missing = str(uuid.uuid4())
    assert_fault(evacuate(cloud.api, missing, token=MEMBER), 404, f"Instance {missing} could not be found.")


def test_policy_is_admin_only_and_checked_against_the_server(tmp_path):
    # spec 5: os_compute_api:os-evacuate defaults to rule:context_is_admin; another project's server is
    # not found for a member (404), their own is forbidden (403).
    cloud = make_cloud(tmp_path, "compute1")
    own = boot_id(cloud, host=None, token=MEMBER)
    theirs = boot_id(cloud, host=None, token=f"demo:{OTHER_PROJECT}")
    cloud.add_host("compute2")
    force_down(cloud, "compute1")
    assert_fault(evacuate(cloud.api, own, token=MEMBER), 403,
                 "Policy doesn't allow os_compute_api:os-evacuate to be performed.")
    assert_fault(evacuate(cloud.api, theirs, token=MEMBER), 404, f"Instance {theirs} could not be found.")
    assert evacuations(cloud.api) == []
    assert evacuate(cloud.api, own).status_code == 200


def test_refused_while_the_source_compute_is_up(cloud):
    # spec 6 step 10 / 4.6: the source's compute service must not be up (400, not 409), and nothing is recorded.
    server_id = boot_id(cloud)
    assert_fault(evacuate(cloud.api, server_id), 400, STILL_IN_USE)
    assert_fault(evacuate(cloud.api, server_id, host="compute2"), 400, STILL_IN_USE)
    assert evacuations(cloud.api) == []
    assert where(cloud.api, server_id) == ("ACTIVE", "compute1")


def test_a_silent_source_counts_as_down(cloud):
    # spec 4.2: a compute whose last heartbeat is older than service_down_time is not up.
    server_id = boot_id(cloud)
    cloud.hosts["compute1"].go_silent()
    assert evacuate(cloud.api, server_id).status_code == 200
    cloud.settle()
    assert where(cloud.api, server_id) == ("ACTIVE", "compute2")


def test_target_host_must_be_another_compute_host(cloud):
    # spec 6 steps 8-9: an unknown host (or one without nova-compute) is 404, the server's own host 400;
    # both are checked before the source's liveness (compute1 is up here).
    server_id = boot_id(cloud)
    cloud.api.add_service("conductor1", "nova-conductor", "conductor")
    assert_fault(evacuate(cloud.api, server_id, host="nowhere"), 404, "Compute host nowhere not found.")
    assert_fault(evacuate(cloud.api, server_id, host="conductor1"), 404, "Compute host conductor1 not found.")
    assert_fault(evacuate(cloud.api, server_id, host="compute1"), 400, "The target host can't be the same one.")
    assert evacuations(cloud.api) == []


def test_a_server_on_no_host_evacuated_to_no_host_is_the_same_host(cloud):
    # spec 6 step 9, as Nova compares (instance.host == host): None == None is "the same one".
    unplaced = boot_id(cloud, settle_it=False)
    assert_fault(evacuate(cloud.api, unplaced), 400, "The target host can't be the same one.")


def test_vm_and_task_state_conflicts_come_before_the_liveness_check(cloud):
    # spec 6 step 10: vm_state active/stopped/error and no task_state, else 409 (compute1 is up here, so the
    # 409 shows the state check comes first).
    building = boot_id(cloud, settle_it=False)
    place(cloud.api)  # on compute1, not spawned yet
    assert_fault(evacuate(cloud.api, building), 409,
                 f"Cannot 'evacuate' instance {building} while it is in vm_state building")
    cloud.settle()
    assert action(cloud.api, building, {"os-stop": None}).status_code == 202
    assert_fault(evacuate(cloud.api, building), 409,
                 f"Cannot 'evacuate' instance {building} while it is in task_state powering-off")


# -- the evacuation's life ----------------------------------------------------------------------------------

def test_forced_down_source_evacuation_to_completed_and_force_up(cloud):
    # spec 6: accepted → (claim) pre-migrating → done → completed when the source restarts; spec 3.6: no
    # force-up while done evacuations remain; 2.14+: 200 with an empty body (tempest's evacuate_server).
    server_id = boot_id(cloud)
    assert force_down(cloud, "compute1").status_code == 200
    result = evacuate(cloud.api, server_id)
    assert result.status_code == 200 and result.text == ""
    conforms(tempest_servers.evacuate_server, result)
    [accepted] = evacuations(cloud.api)
    assert (accepted["status"], accepted["instance_uuid"]) == ("accepted", server_id)
    assert (accepted["source_compute"], accepted["source_node"], accepted["dest_compute"]) == (
        "compute1", "compute1", None)
    assert where(cloud.api, server_id) == ("REBUILD", "compute1")

    cloud.settle()
    assert where(cloud.api, server_id) == ("ACTIVE", "compute2")
    [done] = evacuations(cloud.api)
    assert (done["uuid"], done["status"], done["dest_compute"], done["dest_node"]) == (
        accepted["uuid"], "done", "compute2", "compute2")

    assert_fault(force_down(cloud, "compute1", down=False), 400, FORCE_UP_REFUSED)
    assert cloud.hosts["compute1"].restart_cleanup() == 1
    assert [m["status"] for m in evacuations(cloud.api)] == ["completed"]
    assert force_down(cloud, "compute1", down=False).status_code == 200


def test_no_valid_host_errors_the_migration_and_the_server(tmp_path):
    # spec 6: a scheduling failure (NoValidHost) makes the migration "error" and the server ERROR, with
    # Nova's fault.
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, server_id).status_code == 200
    cloud.settle()
    assert [m["status"] for m in evacuations(cloud.api)] == ["error"]
    server = show(cloud.api, server_id)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ERROR", "compute1")
    assert server["fault"]["code"] == 500
    assert server["fault"]["message"].startswith("No valid host was found.")


def test_target_host_is_pinned_and_still_filtered(tmp_path):
    # spec 6 step 11: with a host and no force the scheduler is pinned to it but still checks it, so a
    # disabled target fails although compute3 would do.
    cloud = make_cloud(tmp_path, "compute1", "compute2", "compute3")
    first, second = boot_id(cloud), boot_id(cloud)
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, first, host="compute3").status_code == 200
    assert [m["dest_compute"] for m in evacuations(cloud.api)] == ["compute3"]
    cloud.settle()
    assert where(cloud.api, first) == ("ACTIVE", "compute3")

    disable(cloud, "compute2")
    assert evacuate(cloud.api, second, host="compute2").status_code == 200
    cloud.settle()
    assert where(cloud.api, second) == ("ERROR", "compute1")
    assert [m["status"] for m in evacuations(cloud.api)] == ["error", "done"]


def test_forced_target_host_bypasses_the_filters_from_2_29_to_2_67(tmp_path):
    # spec 6 steps 6 and 11: force needs a host (400), and a forced host skips the scheduler's filters.
    cloud = make_cloud(tmp_path, "compute1", "compute2", "compute3")
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    disable(cloud, "compute2")
    for version in ("2.29", "2.67"):
        assert_fault(evacuate(cloud.api, server_id, version=version, force=True), 400,
                     "Can't force to a non-provided destination")
        assert_fault(evacuate(cloud.api, server_id, version=version, force="yes"), 400,
                     "Can't force to a non-provided destination")
    assert evacuations(cloud.api) == []
    assert evacuate(cloud.api, server_id, version="2.67", host="compute2", force="True").status_code == 200
    cloud.settle()
    assert where(cloud.api, server_id) == ("ACTIVE", "compute2")


def test_force_false_without_host_lets_the_scheduler_choose(cloud):
    # spec 6 step 6: only force=true needs a host.
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, server_id, version="2.29", force=False).status_code == 200
    cloud.settle()
    assert where(cloud.api, server_id) == ("ACTIVE", "compute2")


def test_stopped_server_stays_stopped(cloud):
    # spec 6: a server that was stopped is powered off again on the destination.
    server_id = boot_id(cloud)
    assert action(cloud.api, server_id, {"os-stop": None}).status_code == 202
    cloud.settle()
    assert where(cloud.api, server_id) == ("SHUTOFF", "compute1")
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, server_id, version="2.94").status_code == 200
    cloud.settle()
    assert where(cloud.api, server_id) == ("SHUTOFF", "compute2")


def test_from_2_95_an_active_server_ends_stopped(cloud):
    # spec 6 steps 3-4: at 2.95 the target state is stopped; at 2.94 an active server stays active.
    old, new = boot_id(cloud), boot_id(cloud)
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, old, version="2.94").status_code == 200
    result = evacuate(cloud.api, new, version="2.95")
    assert result.status_code == 200 and result.text == ""
    cloud.settle()
    assert where(cloud.api, old) == ("ACTIVE", "compute2")
    assert where(cloud.api, new) == ("SHUTOFF", "compute2")


def test_an_error_server_comes_back_active_even_from_2_95(cloud):
    # spec 6: an ERROR server is rebuilt active; 2.95's stopped target does not apply to it.
    boot_failure = boot(cloud, settle_it=False).json["server"]["id"]
    cloud.hosts["compute1"].failing.add(boot_failure)
    cloud.settle()
    assert where(cloud.api, boot_failure) == ("ERROR", "compute1")
    force_down(cloud, "compute1")
    cloud.hosts["compute1"].failing.clear()
    assert evacuate(cloud.api, boot_failure, version="2.95").status_code == 200
    cloud.settle()
    assert where(cloud.api, boot_failure) == ("ACTIVE", "compute2")


def test_2_95_needs_every_counted_compute_at_service_version_62(cloud):
    # spec 6 step 3: below version 62 the request is refused with Nova's dict-as-message; spec 4.6:
    # forced-down services are left out of the minimum.
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    old = cloud.api.register("compute-old", version=61).json["service"]
    assert_fault(evacuate(cloud.api, server_id, version="2.95"), 400, "{'currently': 61, 'expected': 62}")
    assert evacuations(cloud.api) == []
    assert cloud.api.put(f"/v2.1/os-services/{old['id']}", {"forced_down": True}, version="2.53").status_code == 200
    assert evacuate(cloud.api, server_id, version="2.95").status_code == 200


def test_2_95_refused_when_no_compute_counts(tmp_path):
    # Nova's get_minimum_version_all_cells reports 0 when no service counts.
    cloud = make_cloud(tmp_path, "compute1")
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    assert_fault(evacuate(cloud.api, server_id, version="2.95"), 400, "{'currently': 0, 'expected': 62}")


# -- adminPass before 2.14 ----------------------------------------------------------------------------------------

def test_below_2_14_the_response_carries_the_admin_password(cloud):
    # spec 6 step 5 and Response: a given adminPass is returned; without one and without shared storage a
    # password is generated (Nova's generate_password: 12 characters of its alphabet); on shared storage
    # without adminPass there is none (null); adminPass with shared storage is 400.
    given, generated, shared = boot_id(cloud), boot_id(cloud), boot_id(cloud)
    force_down(cloud, "compute1")
    assert_fault(evacuate(cloud.api, given, version="2.13", onSharedStorage="true", adminPass="secret"), 400,
                 "admin password can't be changed on existing disk")

    result = evacuate(cloud.api, given, version="2.13", onSharedStorage=False, adminPass="secret")
    assert (result.status_code, result.json) == (200, {"adminPass": "secret"})
    conforms(tempest_servers.evacuate_server_with_admin_pass, result)

    result = evacuate(cloud.api, generated, version="2.1", onSharedStorage="False", host="compute2")
    password = result.json["adminPass"]
    assert len(password) == 12 and set(password) <= PASSWORD_SYMBOLS
    conforms(tempest_servers.evacuate_server_with_admin_pass, result)

    result = evacuate(cloud.api, shared, version="2.13", onSharedStorage=True)
    assert (result.status_code, result.json) == (200, {"adminPass": None})
    cloud.settle()
    assert {where(cloud.api, s) for s in (given, generated, shared)} == {("ACTIVE", "compute2")}


def test_admin_password_is_not_returned_when_instance_passwords_are_disabled(tmp_path):
    # spec 6 Response: [api] enable_instance_password false → 200 with no body, below 2.14 too.
    cloud = make_cloud(tmp_path, "compute1", "compute2", env={"NOVALITE_API__ENABLE_INSTANCE_PASSWORD": "false"})
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    result = evacuate(cloud.api, server_id, version="2.13", onSharedStorage=False)
    assert (result.status_code, result.text) == (200, "")


def test_admin_token_evacuates_too(tmp_path):
    # spec 5: the policy is rule:context_is_admin; the admin token of auth_strategy=token carries the role.
    cloud = make_cloud(tmp_path, "compute1", "compute2", auth_strategy="token")
    server_id = boot_id(cloud)
    force_down(cloud, "compute1")
    assert evacuate(cloud.api, server_id, version="2.14", host="compute2").status_code == 200
    cloud.settle()
    assert where(cloud.api, server_id) == ("ACTIVE", "compute2")
