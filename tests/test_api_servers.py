"""The servers API (Nova's compute/servers.py): create, list, detail, show, delete, os-start/os-stop.

In process: compute hosts are ScriptedHost agents over the agent interface, and ``settle`` runs the
scheduler's placement pass and lets the hosts do their work. Response bodies are checked against
Tempest's schemas, chosen by Tempest's own microversion table (ServersClient.schema_versions_info).
"""

from __future__ import annotations

import hashlib

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as tempest_v21
from tempest.lib.common.rest_client import RestClient
from tempest.lib.services.compute.servers_client import ServersClient

from novalite.api.microversion import v
from tests.api_client import MEMBER, OTHER_PROJECT, PROJECT, TEST_HOST, Api, assert_fault
from tests.scripted_host import ScriptedHost, settle

OTHER_MEMBER = f"demo:{OTHER_PROJECT}"
ENDPOINT = f"http://{TEST_HOST}"
MISSING = "9d4c5a04-7c4d-4c70-bb8e-2b5b1d7bd6b4"
IMAGE = "70a599e0-31e7-49b7-b260-868f441e862b"
BOUNDARIES = ["2.1", "2.3", "2.9", "2.16", "2.19", "2.26", "2.47", "2.63", "2.71", "2.73", "2.75", "2.90", "2.96",
              "2.98", "2.100", "2.104"]
# Keys of the full view and the microversion they appear at (Nova's views/servers.py).
VERSIONED_KEYS = {"locked": "2.9", "description": "2.19", "tags": "2.26", "trusted_image_certificates": "2.63",
                  "locked_reason": "2.73", "pinned_availability_zone": "2.96", "scheduler_hints": "2.100"}


@pytest.fixture
def api(tmp_path) -> Api:
    api = Api(tmp_path)
    for flavor_id, ram in (("1", 512), ("2", 1024)):
        flavor = {"name": f"f{flavor_id}", "ram": ram, "vcpus": 1, "disk": 1, "id": flavor_id}
        assert api.request("POST", "/v2.1/flavors", json={"flavor": flavor}).status_code == 200
    return api


@pytest.fixture
def host(api) -> ScriptedHost:
    return ScriptedHost(api, "compute1")


# -- helpers -------------------------------------------------------------------------------------------

class _Resp(dict):
    """What Tempest's validate_response reads: the status and the headers."""

    def __init__(self, status: int, headers: dict):
        super().__init__({k.lower(): val for k, val in headers.items()})
        self.status = status


def tempest_schemas(version: str):
    """Tempest's servers schema module for ``version``, by the table its servers client uses."""
    for item in ServersClient.schema_versions_info:
        low, high = item["min"], item["max"]
        if (low is None or v(version) >= v(low)) and (high is None or v(version) <= v(high)):
            return item["schema"]
    raise LookupError(version)


def conforms(schema: dict, result) -> None:
    body = result.json if result.text else None
    RestClient.validate_response(schema, _Resp(result.status_code, result.headers), body)


def create(api: Api, version: str = "2.1", token: str = "", default_networks: bool = True, **server):
    body = {"name": "vm", "flavorRef": "1", "imageRef": IMAGE, **server}
    if default_networks and v(version) >= v("2.37"):
        body.setdefault("networks", "none")
    return api.request("POST", "/v2.1/servers", json={"server": body}, version=version, token=token)


def created(api: Api, version: str = "2.1", token: str = "", **server) -> str:
    result = create(api, version, token, **server)
    assert result.status_code == 202, result.text
    return result.json["server"]["id"]


def show(api: Api, server_id: str, version: str = "2.1", token: str = "") -> dict:
    result = api.get(f"/v2.1/servers/{server_id}", version=version, token=token)
    assert result.status_code == 200, result.text
    return result.json["server"]


def listed(api: Api, query: str = "", version: str = "2.1", token: str = "", detail: bool = False) -> list[dict]:
    path = "/v2.1/servers/detail" if detail else "/v2.1/servers"
    result = api.get(f"{path}?{query}" if query else path, version=version, token=token)
    assert result.status_code == 200, result.text
    return result.json["servers"]


def names(api: Api, query: str = "", version: str = "2.1", token: str = "") -> list[str]:
    return [s["name"] for s in listed(api, query, version, token)]


def action(api: Api, server_id: str, body, version: str = "2.1", token: str = ""):
    return api.request("POST", f"/v2.1/servers/{server_id}/action", json=body, version=version, token=token)


def set_service(api: Api, host: ScriptedHost, **values) -> None:
    result = api.put(f"/v2.1/os-services/{host.uuid}", values, version="2.53")
    assert result.status_code == 200, result.text


# -- create ----------------------------------------------------------------------------------------------

def test_create_answers_202_with_links_password_and_location(api):
    # Nova: 202 {"server": {id, links, OS-DCF:diskConfig, security_groups, adminPass}}, Location = self link.
    result = create(api)
    conforms(tempest_v21.create_server_with_admin_pass, result)
    server = result.json["server"]
    assert server["security_groups"] == [{"name": "default"}] and len(server["adminPass"]) == 12
    assert result.headers["Location"] == f"{ENDPOINT}/v2.1/servers/{server['id']}"
    assert server["links"][1] == {"rel": "bookmark", "href": f"{ENDPOINT}/servers/{server['id']}"}


def test_create_keeps_a_given_password_and_leaves_it_out_when_disabled(tmp_path):
    # [api]enable_instance_password false: Nova leaves adminPass out of the create response.
    api = Api(tmp_path / "a")
    api.request("POST", "/v2.1/flavors", json={"flavor": {"name": "f", "ram": 512, "vcpus": 1, "disk": 1, "id": "1"}})
    assert create(api, adminPass="s3cret").json["server"]["adminPass"] == "s3cret"
    quiet = Api(tmp_path / "b", env={"NOVALITE_API__ENABLE_INSTANCE_PASSWORD": "false"})
    quiet.request("POST", "/v2.1/flavors", json={"flavor": {"name": "f", "ram": 512, "vcpus": 1, "disk": 1, "id": "1"}})
    result = create(quiet)
    conforms(tempest_v21.create_server, result)
    assert "adminPass" not in result.json["server"]


def test_new_server_builds_then_runs_on_the_host(api, host):
    # Nova: BUILD (building/scheduling, no host, hostId "") until placed; ACTIVE once its host spawned it;
    # hostId is sha224(project_id + host).
    server_id = created(api, metadata={"k": "v"})
    building = show(api, server_id)
    assert (building["status"], building["OS-EXT-STS:task_state"], building["hostId"]) == ("BUILD", "scheduling", "")
    assert building["OS-EXT-SRV-ATTR:host"] is None and building["addresses"] == {}
    settle(api, host)
    active = show(api, server_id)
    assert (active["status"], active["OS-EXT-STS:vm_state"], active["OS-EXT-STS:power_state"]) == ("ACTIVE",
                                                                                                    "active", 1)
    assert active["OS-EXT-SRV-ATTR:host"] == active["OS-EXT-SRV-ATTR:hypervisor_hostname"] == "compute1"
    assert active["hostId"] == hashlib.sha224(f"{PROJECT}compute1".encode()).hexdigest()
    assert active["OS-EXT-AZ:availability_zone"] == "nova" and active["OS-SRV-USG:launched_at"]
    assert active["metadata"] == {"k": "v"} and active["image"]["id"] == IMAGE


def test_multiple_create_shares_one_reservation(api):
    # Nova: min/max_count create max_count servers; return_reservation_id answers {"reservation_id"} only.
    result = create(api, max_count=3, return_reservation_id=True)
    assert result.status_code == 202 and list(result.json) == ["reservation_id"]
    reservation = result.json["reservation_id"]
    assert len(listed(api, f"reservation_id={reservation}")) == 3
    assert_fault(create(api, min_count=3, max_count=2), 400, "min_count must be <= max_count")


@pytest.mark.parametrize("version, server, message", [
    ("2.1", {"flavorRef": None}, "Invalid input for field/attribute flavorRef. Value: None. "
                                 "None is not of type 'string', 'integer'"),
    ("2.1", {"name": " padded"}, "An invalid 'name' value was provided. The name must be: printable characters. "
                                 "Can not start or end with whitespace."),
    ("2.1", {"imageRef": "cirros"}, "Invalid input for field/attribute imageRef. Value: cirros. "
                                    "'cirros' is not valid under any of the given schemas"),
    ("2.1", {"user_data": "not base64!"}, "Invalid input for field/attribute user_data. Value: not base64!. "
                                          "'not base64!' is not a 'base64'"),
    ("2.1", {"flavorRef": "99"}, "Flavor 99 could not be found."),
    ("2.1", {"flavorRef": f"{ENDPOINT}/flavors/98"}, "Flavor 98 could not be found."),
    ("2.1", {"availability_zone": "elsewhere"}, "The requested availability zone is not available"),
    ("2.1", {"availability_zone": "a:b:c:d"}, "Invalid input received: Unable to parse availability_zone"),
    ("2.74", {"host": "nowhere"}, "Compute host nowhere could not be found."),
    ("2.74", {"hypervisor_hostname": "nowhere"}, "Compute host nowhere could not be found."),
    ("2.74", {"host": "compute1", "availability_zone": "nova:compute1"},
     "One mechanism with host and/or hypervisor_hostname and another mechanism with zone:host:node are "
     "mutually exclusive."),
])
def test_create_refusals_in_novas_words(api, host, version, server, message):
    # Nova's create: schema (jsonschema's words), then zone parsing, 2.74's destination, the flavor (a 400
    # here, not a 404) and the zone; nothing is created.
    assert_fault(create(api, version, **server), 400, message)
    assert listed(api, "all_tenants=1") == []


@pytest.mark.parametrize("version, key, value", [
    ("2.18", "description", "d"), ("2.73", "host", "compute1"), ("2.1", "block_device_mapping_v2", []),
])
def test_create_refuses_properties_its_version_lacks(api, version, key, value):
    # Nova's schemas: description from 2.19, host from 2.74; no block devices in novalite (no volumes).
    server = {"name": "vm", "flavorRef": "1", "imageRef": IMAGE, key: value}
    if v(version) >= v("2.37"):
        server["networks"] = "none"
    result = api.request("POST", "/v2.1/servers", json={"server": server}, version=version)
    assert_fault(result, 400, f"Invalid input for field/attribute server. Value: {server}. "
                              f"Additional properties are not allowed ('{key}' was unexpected)")


def test_networks_are_required_from_2_37_and_none_or_auto_accepted(api):
    # Nova 2.37: "networks" is required, a list or "none"/"auto" (novalite has no networking: no addresses).
    assert_fault(create(api, "2.37", default_networks=False), 400, "Invalid input for field/attribute server. Value: "
                 f"{{'name': 'vm', 'flavorRef': '1', 'imageRef': '{IMAGE}'}}. 'networks' is a required property")
    for networks in ("none", "auto", [{"uuid": IMAGE}]):
        assert create(api, "2.37", networks=networks).status_code == 202
    assert_fault(create(api, "2.1", networks=[{"uuid": "bad"}]), 400,
                 "Bad networks format: network uuid is not in proper format (bad)")


def test_description_defaults_to_the_name_before_2_19(api):
    # Nova: below 2.19 the description is set to the name; from 2.19 it is what was asked (or null).
    old = created(api, "2.18", name="named")
    new = created(api, "2.19", name="other", description="about it")
    bare = created(api, "2.19", name="bare")
    assert [show(api, s, "2.19")["description"] for s in (old, new, bare)] == ["named", "about it", None]


def test_members_may_not_choose_hosts(api, host):
    # compute:servers:create:requested_destination (2.74 host) and os_compute_api:servers:create:forced_host
    # ("zone:host") are admin rules.
    assert_fault(create(api, "2.74", MEMBER, host="compute1"), 403,
                 "Policy doesn't allow compute:servers:create:requested_destination to be performed.")
    assert_fault(create(api, "2.1", MEMBER, availability_zone="nova:compute1"), 403,
                 "Policy doesn't allow os_compute_api:servers:create:forced_host to be performed.")
    assert created(api, "2.1", MEMBER)


def test_admin_places_a_server_on_a_chosen_host(api, host):
    other = ScriptedHost(api, "compute2")
    forced = created(api, availability_zone="nova:compute2")
    requested = created(api, "2.74", host="compute2")
    by_node = created(api, "2.74", hypervisor_hostname="compute2")
    settle(api, host, other)
    assert {show(api, s)["OS-EXT-SRV-ATTR:host"] for s in (forced, requested, by_node)} == {"compute2"}


def test_no_valid_host_leaves_the_server_in_error_with_its_fault(api, host):
    # Nova: a scheduling failure is vm_state error with a fault {code, created, message}; a 500's details
    # are for admins only.
    big = {"name": "big", "ram": 65536, "vcpus": 1, "disk": 1, "id": "big"}
    api.request("POST", "/v2.1/flavors", json={"flavor": big})
    server_id = created(api, flavorRef="big")
    settle(api, host)
    for token in ("", MEMBER):
        result = api.get(f"/v2.1/servers/{server_id}", version="2.1", token=token)
        conforms(tempest_schemas("2.1").get_server, result)
        server = result.json["server"]
        assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ERROR", None)
        assert server["fault"]["code"] == 500 and server["fault"]["message"].startswith("No valid host was found.")
        assert "progress" not in server


# -- show and detail at every microversion ----------------------------------------------------------------

@pytest.mark.parametrize("version", BOUNDARIES)
def test_bodies_conform_to_tempest_at_every_boundary(api, host, version):
    # Tempest's schemas refuse unknown keys: each version shows exactly its keys, for admins and members,
    # for running, stopped and building servers; server_groups only in show (Nova 2.71).
    active, stopped = created(api, version), created(api, version)
    building = created(api, version)
    settle(api, host)
    assert action(api, stopped, {"os-stop": None}, version).status_code == 202
    settle(api, host)
    created(api, version, flavorRef="2")  # still building: no host, no progress of placement
    schemas = tempest_schemas(version)
    for token in ("", MEMBER):
        for server_id in (active, stopped, building):
            conforms(schemas.get_server, api.get(f"/v2.1/servers/{server_id}", version=version, token=token))
        conforms(schemas.list_servers, api.get("/v2.1/servers", version=version, token=token))
        conforms(schemas.list_servers_detail, api.get("/v2.1/servers/detail", version=version, token=token))
    server = show(api, active, version)
    for key, since in VERSIONED_KEYS.items():
        assert (key in server) == (v(version) >= v(since)), key
    assert ("server_groups" in server) == (v(version) >= v("2.71"))
    assert ("host_status" in server) == (v(version) >= v("2.16"))
    assert all("server_groups" not in s for s in listed(api, version=version, detail=True))


def test_flavor_is_linked_before_2_47_and_embedded_after(api, host):
    # Nova 2.47: the flavor the server was built with, embedded; extra_specs for project readers.
    server_id = created(api)
    assert show(api, server_id, "2.46")["flavor"] == {
        "id": "1", "links": [{"rel": "bookmark", "href": f"{ENDPOINT}/flavors/1"}]}
    assert show(api, server_id, "2.47", MEMBER)["flavor"] == {
        "vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "f1", "extra_specs": {}}


def test_flavor_extra_specs_follow_their_policy(tmp_path):
    # os_compute_api:servers:show:flavor-extra-specs is checked quietly: the key is dropped.
    policy = tmp_path / "policy.yaml"
    policy.write_text('"os_compute_api:servers:show:flavor-extra-specs": "!"\n')
    api = Api(tmp_path / "run", env={"NOVALITE_OSLO_POLICY__POLICY_FILE": str(policy)})
    api.request("POST", "/v2.1/flavors", json={"flavor": {"name": "f", "ram": 512, "vcpus": 1, "disk": 1, "id": "1"}})
    assert "extra_specs" not in show(api, created(api), "2.47")["flavor"]


def test_image_properties_from_2_98(api):
    # Nova: the image is {id, bookmark link}, "" when booted without one; 2.98 adds its properties.
    server_id = created(api)
    assert "properties" not in show(api, server_id, "2.97")["image"]
    assert show(api, server_id, "2.98")["image"] == {
        "id": IMAGE, "links": [{"rel": "bookmark", "href": f"{ENDPOINT}/images/{IMAGE}"}], "properties": {}}
    assert show(api, created(api, imageRef=""))["image"] == ""


def test_members_do_not_see_extended_attributes_but_see_the_hostname_from_2_90(api, host):
    # os_compute_api:os-extended-server-attributes is admin-only; 2.90 shows OS-EXT-SRV-ATTR:hostname to all.
    server_id = created(api, name="My Server")
    settle(api, host)
    admin = show(api, server_id, "2.3")
    assert admin["OS-EXT-SRV-ATTR:instance_name"].startswith("instance-")
    assert admin["OS-EXT-SRV-ATTR:hostname"] == "my-server" and admin["OS-EXT-SRV-ATTR:launch_index"] == 0
    member = show(api, server_id, "2.89", MEMBER)
    assert not [key for key in member if key.startswith("OS-EXT-SRV-ATTR:")]
    assert [key for key in show(api, server_id, "2.90", MEMBER) if key.startswith("OS-EXT-SRV-ATTR:")] == [
        "OS-EXT-SRV-ATTR:hostname"]


def test_hostname_can_be_given_from_2_90(api):
    # Nova 2.90: "hostname" on create sets OS-EXT-SRV-ATTR:hostname.
    server_id = created(api, "2.90", hostname="web-1")
    assert show(api, server_id, "2.90", MEMBER)["OS-EXT-SRV-ATTR:hostname"] == "web-1"


def test_host_status_follows_the_compute_service(api, host):
    # Spec 4.8: forced_down → DOWN (even when disabled), disabled → MAINTENANCE, up → UP, silent → UNKNOWN,
    # no host → "".
    server_id = created(api)
    assert show(api, server_id, "2.16")["host_status"] == ""
    settle(api, host)
    assert show(api, server_id, "2.16")["host_status"] == "UP"
    set_service(api, host, status="disabled")
    assert show(api, server_id, "2.16")["host_status"] == "MAINTENANCE"
    set_service(api, host, forced_down=True)
    assert show(api, server_id, "2.16")["host_status"] == "DOWN"
    assert listed(api, version="2.16", detail=True)[0]["host_status"] == "DOWN"
    set_service(api, host, forced_down=False, status="enabled")
    host.go_silent()
    assert show(api, server_id, "2.16")["host_status"] == "UNKNOWN"
    assert "host_status" not in show(api, server_id, "2.15")


def test_members_see_host_status_only_as_policy_allows(tmp_path):
    # show:host_status is admin-only; show:host_status:unknown-only lets a caller see UNKNOWN and nothing else.
    policy = tmp_path / "policy.yaml"
    policy.write_text('"os_compute_api:servers:show:host_status:unknown-only": "@"\n')
    api = Api(tmp_path / "run", env={"NOVALITE_OSLO_POLICY__POLICY_FILE": str(policy)})
    api.request("POST", "/v2.1/flavors", json={"flavor": {"name": "f", "ram": 512, "vcpus": 1, "disk": 1, "id": "1"}})
    host = ScriptedHost(api, "compute1")
    server_id = created(api)
    settle(api, host)
    assert "host_status" not in show(api, server_id, "2.16", MEMBER)
    host.go_silent()
    assert show(api, server_id, "2.16", MEMBER)["host_status"] == "UNKNOWN"
    assert listed(api, version="2.16", token=MEMBER, detail=True)[0]["host_status"] == "UNKNOWN"


def test_members_see_no_host_status_by_default(api, host):
    server_id = created(api)
    settle(api, host)
    host.go_silent()
    assert "host_status" not in show(api, server_id, "2.16", MEMBER)


def test_show_query_is_strict_from_2_102(api):
    # Nova's show_query_v2102: additionalProperties false.
    server_id = created(api)
    assert api.get(f"/v2.1/servers/{server_id}?foo=1", version="2.101").status_code == 200
    assert_fault(api.get(f"/v2.1/servers/{server_id}?foo=1", version="2.102"), 400,
                 "Additional properties are not allowed ('foo' was unexpected)")


# -- other projects --------------------------------------------------------------------------------------

def test_a_member_cannot_reach_another_projects_server(api, host):
    # Nova: another project's server is "not found" to non-admins, whatever the request.
    server_id = created(api, token=OTHER_MEMBER)
    missing = f"Instance {server_id} could not be found."
    assert_fault(api.get(f"/v2.1/servers/{server_id}", token=MEMBER), 404, missing)
    assert_fault(api.delete(f"/v2.1/servers/{server_id}", token=MEMBER), 404, missing)
    assert_fault(action(api, server_id, {"os-stop": None}, token=MEMBER), 404, missing)
    assert listed(api, token=MEMBER) == [] and listed(api) == []
    assert [s["id"] for s in listed(api, "all_tenants=True")] == [server_id]
    assert show(api, server_id)["tenant_id"] == OTHER_PROJECT


# -- list filters ----------------------------------------------------------------------------------------

@pytest.fixture
def host2(api) -> ScriptedHost:
    return ScriptedHost(api, "compute2")


@pytest.fixture
def fleet(api, host, host2):
    """alpha and charlie on compute1, bravo on compute2 (flavor 2), delta in another project."""
    ids = {"alpha": created(api, name="alpha", availability_zone="nova:compute1"),
           "bravo": created(api, name="bravo", flavorRef="2", availability_zone="nova:compute2"),
           "charlie": created(api, name="charlie", availability_zone="nova:compute1"),
           "delta": created(api, token=OTHER_MEMBER, name="delta")}
    settle(api, host, host2)
    return ids


def test_list_is_newest_first_and_sorts_as_asked(api, fleet):
    # Nova: created_at desc by default; ignored sort keys dropped before 2.75; host/node sorting is for
    # admins; an unknown direction is InvalidInput.
    assert names(api) == ["charlie", "bravo", "alpha"]
    assert names(api, "sort_key=display_name&sort_dir=asc") == ["alpha", "bravo", "charlie"]
    assert names(api, "sort_key=id") == ["charlie", "bravo", "alpha"]  # an ignored key before 2.75
    assert_fault(api.get("/v2.1/servers?sort_key=host", token=MEMBER), 403,
                 "Only administrators can sort servers by host")
    assert_fault(api.get("/v2.1/servers?sort_dir=up"), 400,
                 "Invalid input received: Unknown sort direction, must be 'desc' or 'asc'")


def test_list_filters_by_name_flavor_host_and_status(api, fleet, host2):
    # Nova: name is a regex, flavor an id (unknown: empty list), host admin-only (dropped for others),
    # status maps to vm_state (ACTIVE includes powering-off), unknown status [] before 2.38 and 400 after.
    assert names(api, "name=^al") == ["alpha"]
    assert names(api, "flavor=2") == ["bravo"] and names(api, "flavor=nope") == []
    assert names(api, "host=compute2") == ["bravo"]
    assert names(api, "host=compute2", token=MEMBER) == ["charlie", "bravo", "alpha"]  # dropped for members
    assert names(api, "ip=10.0.0.1") == []  # no server has an address
    assert action(api, fleet["bravo"], {"os-stop": None}).status_code == 202
    assert names(api, "status=active") == ["charlie", "bravo", "alpha"]  # still active, powering off
    settle(api, host2)
    assert names(api, "status=SHUTOFF") == ["bravo"]
    assert names(api, "status=nonsense", "2.37") == []
    assert_fault(api.get("/v2.1/servers?status=nonsense", version="2.38"), 400, "Invalid status value")


def test_list_all_tenants_and_project_filters(api, fleet):
    # Nova: all_tenants (present or true) needs its own policy; tenant_id only counts with all_tenants;
    # a value strutils cannot read is a 400.
    assert names(api, "all_tenants=1") == ["delta", "charlie", "bravo", "alpha"]
    assert names(api, f"all_tenants&project_id={OTHER_PROJECT}") == ["delta"]
    assert names(api, f"tenant_id={OTHER_PROJECT}") == ["charlie", "bravo", "alpha"]  # needs all_tenants
    assert_fault(api.get("/v2.1/servers?all_tenants=1", token=MEMBER), 403,
                 "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.")
    assert_fault(api.get("/v2.1/servers/detail?all_tenants=1", token=MEMBER), 403,
                 "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed.")
    assert_fault(api.get("/v2.1/servers?all_tenants=maybe"), 400,
                 "Invalid input received: Unrecognized value 'maybe', acceptable values are: '0', '1', 'f', "
                 "'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'")


def test_list_pages_with_limit_and_marker(api, fleet):
    # Nova: a full page carries a next link; the marker continues after that server in the same order.
    first = api.get("/v2.1/servers?limit=2&sort_key=display_name&sort_dir=asc")
    assert [s["name"] for s in first.json["servers"]] == ["alpha", "bravo"]
    # Nova's next link: the query's parameters sorted, then the marker.
    assert first.json["servers_links"] == [{"rel": "next", "href": f"{ENDPOINT}/v2.1/servers?limit=2&"
                                            f"sort_dir=asc&sort_key=display_name&marker={fleet['bravo']}"}]
    rest = api.get(f"/v2.1/servers?limit=2&sort_key=display_name&sort_dir=asc&marker={fleet['bravo']}")
    assert [s["name"] for s in rest.json["servers"]] == ["charlie"] and "servers_links" not in rest.json
    detail = api.get("/v2.1/servers/detail?limit=1", version="2.47")
    conforms(tempest_schemas("2.47").list_servers_detail, detail)
    assert detail.json["servers_links"][0]["href"].startswith(f"{ENDPOINT}/v2.1/servers/detail?limit=1&marker=")
    assert_fault(api.get("/v2.1/servers?marker=nope"), 400, "marker [nope] not found")


def test_deleted_servers_are_listed_only_when_asked(api, fleet, host):
    # Nova: changes-since lists recent deletions (status DELETED); deleted=true is an admin filter;
    # status=DELETED is refused to non-admins.
    assert api.delete(f"/v2.1/servers/{fleet['alpha']}").status_code == 204
    settle(api, host)
    assert names(api) == ["charlie", "bravo"]
    changed = listed(api, "changes-since=2000-01-01T00:00:00Z", detail=True)
    assert {s["name"]: s["status"] for s in changed} == {"charlie": "ACTIVE", "bravo": "ACTIVE", "alpha": "DELETED"}
    assert names(api, "deleted=true") == ["alpha"]
    assert names(api, "deleted=true", token=MEMBER) == ["charlie", "bravo"]  # an admin-only filter
    assert_fault(api.get("/v2.1/servers?status=deleted", token=MEMBER), 403,
                 "Only administrators may list deleted instances")
    assert_fault(api.get("/v2.1/servers?changes-since=yesterday"), 400,
                 "Invalid input for query parameters changes-since. Value: yesterday. 'yesterday' is not a "
                 "'date-time'")
    assert_fault(api.get("/v2.1/servers?changes-since=2020-01-02&changes-before=2020-01-01", version="2.66"),
                 400, "The value of changes-since must be less than or equal to changes-before.")


def test_unknown_list_parameters_are_dropped_then_refused_from_2_75(api, fleet):
    # Nova: unknown parameters dropped before 2.75 and refused after; "_" and joined-table filters are
    # "Invalid filter field" for admins and silently dropped for others.
    assert names(api, "foo=1", "2.74") == ["charlie", "bravo", "alpha"]
    # Nova's 2.75 schema keeps its "^_" pattern, so jsonschema words the refusal this way.
    assert_fault(api.get("/v2.1/servers?foo=1", version="2.75"), 400,
                 "'foo' does not match any of the regexes: '^_'")
    assert_fault(api.get("/v2.1/servers?_hidden=1", version="2.74"), 400, "Invalid filter field: _hidden.")
    assert_fault(api.get("/v2.1/servers?metadata=x", version="2.74"), 400, "Invalid filter field: metadata.")
    assert names(api, "_hidden=1", "2.74", MEMBER) == ["charlie", "bravo", "alpha"]


# -- stop, start, delete ----------------------------------------------------------------------------------

def test_stop_and_start_go_through_the_host(api, host):
    # Nova: 202; the host powers the server off (SHUTOFF, power_state 4) and on again; a wrong state is 409.
    server_id = created(api)
    settle(api, host)
    conforms(tempest_v21.server_actions_common_schema, action(api, server_id, {"os-stop": None}))
    assert show(api, server_id)["OS-EXT-STS:task_state"] == "powering-off"
    assert_fault(action(api, server_id, {"os-stop": None}), 409,
                 f"Cannot 'stop' instance {server_id} while it is in task_state powering-off")
    settle(api, host)
    stopped = show(api, server_id)
    assert (stopped["status"], stopped["OS-EXT-STS:power_state"]) == ("SHUTOFF", 4)
    assert_fault(action(api, server_id, {"os-stop": None}), 409,
                 f"Cannot 'stop' instance {server_id} while it is in vm_state stopped")
    assert action(api, server_id, {"os-start": None}, token=MEMBER).status_code == 202
    settle(api, host)
    assert show(api, server_id)["status"] == "ACTIVE"
    assert_fault(action(api, server_id, {"os-start": None}), 409,
                 f"Cannot 'start' instance {server_id} while it is in vm_state active")


def test_delete_waits_for_an_up_host(api, host):
    # Nova: the host destroys the server first; until then it shows task_state deleting.
    server_id = created(api)
    settle(api, host)
    result = api.delete(f"/v2.1/servers/{server_id}", token=MEMBER)
    conforms(tempest_v21.delete_server, result)
    assert show(api, server_id)["OS-EXT-STS:task_state"] == "deleting"
    settle(api, host)
    assert_fault(api.get(f"/v2.1/servers/{server_id}"), 404, f"Instance {server_id} could not be found.")


def test_delete_on_a_down_host_is_local_and_frees_its_room(api, host):
    # Spec 4.6: a server whose host is down is deleted by the API at once (Nova's local delete), and what
    # it held on the host is released: a server that did not fit before fits now.
    api.request("POST", "/v2.1/flavors", json={"flavor": {"name": "big", "ram": 20000, "vcpus": 1, "disk": 1,
                                                          "id": "big"}})
    first = created(api, flavorRef="big")
    settle(api, host)
    second = created(api, flavorRef="big")
    settle(api, host)
    assert show(api, second)["status"] == "ERROR"  # no room while the first holds the host
    host.go_silent()
    assert api.delete(f"/v2.1/servers/{first}").status_code == 204
    assert api.get(f"/v2.1/servers/{first}").status_code == 404
    host.heartbeat()
    third = created(api, flavorRef="big")
    settle(api, host)
    assert (show(api, third)["status"], show(api, third)["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "compute1")


# -- the action dispatcher --------------------------------------------------------------------------------

def test_action_bodies_need_exactly_one_known_key(api):
    # Nova's action_peek: one top-level key, else "Malformed request body"; unknown → "There is no such action".
    server_id = created(api)
    assert_fault(action(api, server_id, {"reboot": {"type": "HARD"}}), 400, "There is no such action: reboot")
    assert_fault(action(api, server_id, {"os-stop": None, "os-start": None}), 400, "Malformed request body")
    assert_fault(action(api, server_id, {}), 400, "Malformed request body")
    assert_fault(api.request("POST", f"/v2.1/servers/{server_id}/action"), 400, "Malformed request body")
    assert_fault(action(api, MISSING, {"os-start": None}), 404, f"Instance {MISSING} could not be found.")


def test_evacuate_is_dispatched_to_its_handler(api, host):
    # os_compute_api:os-evacuate is checked against the server after it is found (spec 5, 6).
    server_id = created(api, token=MEMBER)
    assert_fault(action(api, server_id, {"evacuate": {}}, "2.95", MEMBER), 403,
                 "Policy doesn't allow os_compute_api:os-evacuate to be performed.")
    assert_fault(action(api, MISSING, {"evacuate": {}}, "2.95"), 404, f"Instance {MISSING} could not be found.")


def test_deleting_detail_is_deleting_a_server_named_detail(api):
    # Nova's router sends DELETE /servers/detail to delete(id="detail").
    assert_fault(api.delete("/v2.1/servers/detail"), 404, "Instance detail could not be found.")
