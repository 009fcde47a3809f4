"""os-hypervisors and os-availability-zone (spec section 8), in process, at every microversion boundary.

Hypervisors come to exist the public way: a compute registers (POST /agent/v1/services) and reports
its node (PUT /agent/v1/services/{uuid}/nodes/{nodename}). Instances are written with the db layer
until the servers API exists.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import insert

from novalite.db import api as db
from novalite.timeutils import utcnow
from tests.api_client import AGENT_SECRET, MEMBER, PROJECT, Api, assert_fault

CPU_INFO = {"arch": "x86_64", "model": "simulated", "topology": {"cores": 4, "sockets": 1, "threads": 2}}
LIST_KEYS = ["id", "hypervisor_hostname", "state", "status"]
DETAIL_KEYS_21 = [*LIST_KEYS, "hypervisor_type", "hypervisor_version", "host_ip", "service", "vcpus", "memory_mb",
                  "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used", "free_ram_mb", "free_disk_gb",
                  "current_workload", "running_vms", "disk_available_least", "cpu_info"]
DETAIL_KEYS_288 = [*LIST_KEYS, "hypervisor_type", "hypervisor_version", "host_ip", "service", "uptime"]
STATS_KEYS = ["count", "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
              "free_ram_mb", "free_disk_gb", "current_workload", "running_vms", "disk_available_least"]
MISSING_UUID = "c4726392-27de-4ff9-b2e0-5aa1d08a520f"
NOT_SUPPORTED = "The requested functionality is not supported."


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


def report_node(api: Api, service_uuid: str, nodename: str, **overrides) -> dict:
    body = {"hypervisor_type": "simulated", "hypervisor_version": 1000, "host_ip": "192.0.2.10",
            "cpu_info": CPU_INFO, "vcpus": 16, "memory_mb": 32768, "local_gb": 500, "vcpus_used": 2,
            "memory_mb_used": 4608, "local_gb_used": 20, "running_vms": 2, "disk_available_least": 480,
            **overrides}
    result = api.client.simulate_put(f"/agent/v1/services/{service_uuid}/nodes/{nodename}", json=body,
                                     headers={"X-Agent-Token": AGENT_SECRET})
    assert result.status_code == 200, result.text
    return result.json["node"]


def compute_with_node(api: Api, host: str, **overrides) -> tuple[dict, dict]:
    """A registered nova-compute on ``host`` and its reported node (named like the host)."""
    service = api.compute(host)
    return service, report_node(api, service["id"], host, **overrides)


def node_ids(api: Api) -> dict[str, int]:
    """hypervisor_hostname → the integer id shown before 2.53."""
    return {h["hypervisor_hostname"]: h["id"] for h in hypervisors(api, "2.52")}


def hypervisors(api: Api, version: str, path: str = "/v2.1/os-hypervisors", **kwargs) -> list[dict]:
    result = api.get(path, version=version, **kwargs)
    assert result.status_code == 200, result.text
    return result.json["hypervisors"]


def add_instance(api: Api, host: str) -> tuple[int, str]:
    instance_uuid = str(uuid.uuid4())
    with api.engine.begin() as conn:
        result = conn.execute(insert(db.instances).values(
            uuid=instance_uuid, host=host, node=host, vm_state="active", created_at=utcnow(), deleted=0))
    return result.inserted_primary_key[0], instance_uuid


def force_down(api: Api, service_uuid: str, forced: bool = True) -> None:
    result = api.put(f"/v2.1/os-services/{service_uuid}", {"forced_down": forced}, version="2.53")
    assert result.status_code == 200, result.text


def disable(api: Api, service_uuid: str, reason: str = "maintenance") -> None:
    result = api.put(f"/v2.1/os-services/{service_uuid}", {"status": "disabled", "disabled_reason": reason},
                     version="2.53")
    assert result.status_code == 200, result.text


# == list and detail ================================================================================

def test_empty_list_at_every_version(api):
    for version in ("2.1", "2.33", "2.53", "2.88"):
        result = api.get("/v2.1/os-hypervisors", version=version)
        assert (result.status_code, result.json) == (200, {"hypervisors": []})


def test_list_at_21_has_integer_ids_and_four_keys(api):
    compute_with_node(api, "cmp1")
    (hyp,) = hypervisors(api, "2.1")
    assert list(hyp) == LIST_KEYS
    assert isinstance(hyp["id"], int)
    assert hyp | {"id": 0} == {"id": 0, "hypervisor_hostname": "cmp1", "state": "up", "status": "enabled"}


def test_list_ids_become_node_uuids_at_253(api):
    # spec 8: from 2.53 the id is the compute node UUID
    _service, node = compute_with_node(api, "cmp1")
    assert hypervisors(api, "2.53")[0]["id"] == node["uuid"]
    assert isinstance(hypervisors(api, "2.52")[0]["id"], int)


def test_detail_at_21_cpu_info_is_json_text_and_service_id_an_integer(api):
    service, _node = compute_with_node(api, "cmp1")
    (hyp,) = hypervisors(api, "2.1", "/v2.1/os-hypervisors/detail")
    assert list(hyp) == DETAIL_KEYS_21
    assert json.loads(hyp["cpu_info"]) == CPU_INFO
    row_id = next(r["id"] for r in api.rows() if r["uuid"] == service["id"])
    assert hyp["service"] == {"id": row_id, "host": "cmp1", "disabled_reason": None}
    assert {k: hyp[k] for k in ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
                                "free_ram_mb", "free_disk_gb", "current_workload", "running_vms",
                                "disk_available_least", "hypervisor_type", "hypervisor_version", "host_ip")} == {
        "vcpus": 16, "memory_mb": 32768, "local_gb": 500, "vcpus_used": 2, "memory_mb_used": 4608,
        "local_gb_used": 20, "free_ram_mb": 32768 - 4608, "free_disk_gb": 480, "current_workload": 0,
        "running_vms": 2, "disk_available_least": 480, "hypervisor_type": "simulated", "hypervisor_version": 1000,
        "host_ip": "192.0.2.10"}


def test_cpu_info_is_an_object_from_228(api):
    compute_with_node(api, "cmp1")
    assert isinstance(hypervisors(api, "2.27", "/v2.1/os-hypervisors/detail")[0]["cpu_info"], str)
    assert hypervisors(api, "2.28", "/v2.1/os-hypervisors/detail")[0]["cpu_info"] == CPU_INFO


def test_detail_service_id_is_the_service_uuid_from_253(api):
    service, node = compute_with_node(api, "cmp1")
    (hyp,) = hypervisors(api, "2.53", "/v2.1/os-hypervisors/detail")
    assert hyp["id"] == node["uuid"]
    assert hyp["service"] == {"id": service["id"], "host": "cmp1", "disabled_reason": None}


def test_detail_drops_statistics_and_adds_null_uptime_at_288(api):
    # spec 8: 2.88 drops the statistics fields and adds uptime; the simulated driver cannot tell it
    compute_with_node(api, "cmp1")
    assert list(hypervisors(api, "2.87", "/v2.1/os-hypervisors/detail")[0]) == DETAIL_KEYS_21
    (hyp,) = hypervisors(api, "2.88", "/v2.1/os-hypervisors/detail")
    assert list(hyp) == DETAIL_KEYS_288
    assert hyp["uptime"] is None


# == state and status come from the host's nova-compute service (spec 8, 4.6, 4.7) ==================

def test_forced_down_service_gives_state_down_in_list_detail_and_show(api):
    service, node = compute_with_node(api, "cmp1")
    compute_with_node(api, "cmp2")
    force_down(api, service["id"])
    states = {h["hypervisor_hostname"]: h["state"] for h in hypervisors(api, "2.53")}
    assert states == {"cmp1": "down", "cmp2": "up"}
    assert hypervisors(api, "2.53", "/v2.1/os-hypervisors/detail")[0]["state"] == "down"
    assert api.get(f"/v2.1/os-hypervisors/{node['uuid']}", version="2.53").json["hypervisor"]["state"] == "down"
    force_down(api, service["id"], False)
    assert hypervisors(api, "2.53")[0]["state"] == "up"


def test_heartbeat_older_than_service_down_time_gives_state_down(api):
    # spec 4.2: the same "is up" rule as os-services
    service, _node = compute_with_node(api, "cmp1")
    old = utcnow() - dt.timedelta(seconds=120)
    api.set_times(service["id"], created_at=old, last_seen_up=old)
    assert hypervisors(api, "2.1")[0]["state"] == "down"
    assert api.services()[0]["state"] == "down"


def test_disabled_service_gives_status_disabled_and_its_reason_in_detail(api):
    service, _node = compute_with_node(api, "cmp1")
    disable(api, service["id"], "maintenance")
    (hyp,) = hypervisors(api, "2.53", "/v2.1/os-hypervisors/detail")
    assert (hyp["status"], hyp["state"], hyp["service"]["disabled_reason"]) == ("disabled", "up", "maintenance")


def test_node_of_a_deleted_service_is_left_out_and_not_found(api):
    service, node = compute_with_node(api, "cmp1")
    compute_with_node(api, "cmp2")
    assert api.delete(f"/v2.1/os-services/{service['id']}", version="2.53").status_code == 204
    assert [h["hypervisor_hostname"] for h in hypervisors(api, "2.53")] == ["cmp2"]
    assert_fault(api.get(f"/v2.1/os-hypervisors/{node['uuid']}", version="2.53"), 404,
                 f"Hypervisor with ID '{node['uuid']}' could not be found.")


# == show ===========================================================================================

def test_show_by_integer_id_before_253_and_by_uuid_from_253(api):
    compute_with_node(api, "cmp1")
    _service, node = compute_with_node(api, "cmp2")
    hyp_id = node_ids(api)["cmp2"]
    result = api.get(f"/v2.1/os-hypervisors/{hyp_id}", version="2.52")
    assert result.status_code == 200
    assert result.json["hypervisor"]["hypervisor_hostname"] == "cmp2"
    assert list(result.json["hypervisor"]) == DETAIL_KEYS_21
    result = api.get(f"/v2.1/os-hypervisors/{node['uuid']}", version="2.53")
    assert (result.json["hypervisor"]["id"], result.json["hypervisor"]["hypervisor_hostname"]) == (node["uuid"], "cmp2")


def test_show_errors_before_253_are_404s(api):
    _service, node = compute_with_node(api, "cmp1")
    for bad in ("abc", node["uuid"], "999"):
        assert_fault(api.get(f"/v2.1/os-hypervisors/{bad}", version="2.52"), 404,
                     f"Hypervisor with ID '{bad}' could not be found.")


def test_show_from_253_needs_a_uuid_and_404s_an_unknown_one(api):
    compute_with_node(api, "cmp1")
    assert_fault(api.get("/v2.1/os-hypervisors/1", version="2.53"), 400, "Invalid uuid 1")
    assert_fault(api.get(f"/v2.1/os-hypervisors/{MISSING_UUID}", version="2.53"), 404,
                 f"Hypervisor with ID '{MISSING_UUID}' could not be found.")


def test_show_with_servers_from_253_and_empty_list_from_275(api):
    _service, node = compute_with_node(api, "cmp1")
    path = f"/v2.1/os-hypervisors/{node['uuid']}"
    assert "servers" not in api.get(path, version="2.53", params={"with_servers": "true"}).json["hypervisor"]
    assert api.get(path, version="2.75", params={"with_servers": "true"}).json["hypervisor"]["servers"] == []
    assert "servers" not in api.get(path, version="2.75").json["hypervisor"]
    instance_id, instance_uuid = add_instance(api, "cmp1")
    servers = api.get(path, version="2.53", params={"with_servers": "1"}).json["hypervisor"]["servers"]
    # Nova names a server on its hypervisor by instance_name_template, "instance-%08x" % id.
    assert servers == [{"name": f"instance-{instance_id:08x}", "uuid": instance_uuid}]


def test_show_query_is_strict_from_253(api):
    _service, node = compute_with_node(api, "cmp1")
    path = f"/v2.1/os-hypervisors/{node['uuid']}"
    result = api.get(path, version="2.53", params={"foo": "bar"})
    assert result.status_code == 400
    assert "Additional properties are not allowed" in result.json["badRequest"]["message"]
    assert api.get(f"/v2.1/os-hypervisors/{node_ids(api)['cmp1']}", version="2.52",
                   params={"foo": "bar"}).status_code == 200
    result = api.get(path, version="2.53", params={"with_servers": "maybe"})
    assert result.status_code == 400
    assert result.json["badRequest"]["message"].startswith("Invalid input for query parameters with_servers.")


# == hypervisor_hostname_pattern and with_servers (2.53), host-evacuate's query (clients.md 1.4) ====

def test_pattern_and_with_servers_is_what_host_evacuate_reads(api):
    compute_with_node(api, "cmp1")
    compute_with_node(api, "cmp10")
    compute_with_node(api, "other")
    _id, instance_uuid = add_instance(api, "cmp10")
    found = hypervisors(api, "2.53", params={"hypervisor_hostname_pattern": "cmp1", "with_servers": "True"})
    # A substring match (Nova's LIKE '%pattern%'): host-evacuate --strict checks the hostname itself.
    assert [h["hypervisor_hostname"] for h in found] == ["cmp1", "cmp10"]
    assert "servers" not in found[0]
    assert [s["uuid"] for s in found[1]["servers"]] == [instance_uuid]
    found = hypervisors(api, "2.75", params={"hypervisor_hostname_pattern": "cmp1", "with_servers": "True"})
    assert found[0]["servers"] == []


def test_pattern_matching_nothing_is_404(api):
    compute_with_node(api, "cmp1")
    assert_fault(api.get("/v2.1/os-hypervisors", version="2.53", params={"hypervisor_hostname_pattern": "zzz"}),
                 404, "No hypervisor matching 'zzz' could be found.")


def test_pattern_refuses_paging(api):
    compute_with_node(api, "cmp1")
    for extra in ({"limit": "1"}, {"marker": MISSING_UUID}):
        assert_fault(api.get("/v2.1/os-hypervisors", version="2.53",
                             params={"hypervisor_hostname_pattern": "cmp", **extra}), 400,
                     "Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.")


def test_pattern_is_ignored_before_253_and_unknown_parameters_refused_from_253(api):
    compute_with_node(api, "cmp1")
    compute_with_node(api, "cmp2")
    assert len(hypervisors(api, "2.52", params={"hypervisor_hostname_pattern": "cmp1"})) == 2
    result = api.get("/v2.1/os-hypervisors", version="2.53", params={"foo": "1"})
    assert result.status_code == 400
    assert "Additional properties are not allowed ('foo' was unexpected)" in result.json["badRequest"]["message"]


def test_with_servers_lists_every_hypervisor_with_its_servers(api):
    compute_with_node(api, "cmp1")
    compute_with_node(api, "cmp2")
    add_instance(api, "cmp2")
    add_instance(api, "cmp2")
    found = hypervisors(api, "2.53", "/v2.1/os-hypervisors/detail", params={"with_servers": "yes"})
    assert [len(h.get("servers", [])) for h in found] == [0, 2]


# == paging (2.33) ==================================================================================

def test_limit_and_marker_page_by_id_with_next_links_from_233(api):
    for host in ("cmp1", "cmp2", "cmp3"):
        compute_with_node(api, host)
    ids = node_ids(api)
    result = api.get("/v2.1/os-hypervisors", version="2.33", params={"limit": "2"})
    body = result.json
    assert [h["hypervisor_hostname"] for h in body["hypervisors"]] == ["cmp1", "cmp2"]
    assert body["hypervisors_links"] == [
        {"rel": "next", "href": f"http://falconframework.org/v2.1/os-hypervisors?limit=2&marker={ids['cmp2']}"}]
    result = api.get("/v2.1/os-hypervisors/detail", version="2.33", params={"limit": "2", "marker": str(ids["cmp2"])})
    assert [h["hypervisor_hostname"] for h in result.json["hypervisors"]] == ["cmp3"]
    assert "hypervisors_links" not in result.json
    # Before 2.33 limit is ignored and no links appear.
    body = api.get("/v2.1/os-hypervisors", version="2.32", params={"limit": "1"}).json
    assert (len(body["hypervisors"]), "hypervisors_links" in body) == (3, False)


def test_marker_is_a_uuid_from_253_and_links_keep_the_project_in_the_url(api):
    nodes = [compute_with_node(api, host)[1] for host in ("cmp1", "cmp2")]
    result = api.get(f"/v2.1/{PROJECT}/os-hypervisors", version="2.53", params={"limit": "1"})
    (link,) = result.json["hypervisors_links"]
    assert link["href"] == (f"http://falconframework.org/v2.1/{PROJECT}/os-hypervisors"
                            f"?limit=1&marker={nodes[0]['uuid']}")
    page = hypervisors(api, "2.53", params={"marker": nodes[0]["uuid"]})
    assert [h["id"] for h in page] == [nodes[1]["uuid"]]


def test_unknown_marker_and_bad_limit_are_400(api):
    compute_with_node(api, "cmp1")
    assert_fault(api.get("/v2.1/os-hypervisors", version="2.53", params={"marker": MISSING_UUID}), 400,
                 f"marker [{MISSING_UUID}] not found")
    assert_fault(api.get("/v2.1/os-hypervisors", version="2.33", params={"marker": "999"}), 400,
                 "marker [999] not found")
    result = api.get("/v2.1/os-hypervisors", version="2.53", params={"limit": "-1"})
    assert result.status_code == 400
    assert result.json["badRequest"]["message"].startswith("Invalid input for query parameters limit.")


def test_limit_zero_returns_an_empty_page(api):
    compute_with_node(api, "cmp1")
    assert api.get("/v2.1/os-hypervisors", version="2.53", params={"limit": "0"}).json == {"hypervisors": []}


# == deprecated routes: search, servers (<2.53), statistics, uptime (<2.88) ===========================

def test_search_and_servers_routes_until_252(api):
    compute_with_node(api, "cmp1")
    compute_with_node(api, "other")
    instance_id, instance_uuid = add_instance(api, "cmp1")
    found = hypervisors(api, "2.52", "/v2.1/os-hypervisors/cmp/search")
    assert [(list(h), h["hypervisor_hostname"]) for h in found] == [(LIST_KEYS, "cmp1")]
    found = hypervisors(api, "2.1", "/v2.1/os-hypervisors/cmp/servers")
    assert found[0]["servers"] == [{"name": f"instance-{instance_id:08x}", "uuid": instance_uuid}]
    # A hypervisor without servers has no servers key on this route.
    assert "servers" not in hypervisors(api, "2.52", "/v2.1/os-hypervisors/oth/servers")[0]
    for route in ("search", "servers"):
        assert_fault(api.get(f"/v2.1/os-hypervisors/zzz/{route}", version="2.1"), 404,
                     "No hypervisor matching 'zzz' could be found.")


@pytest.mark.parametrize("route", ["search", "servers"])
def test_search_and_servers_routes_are_gone_from_253(api, route):
    compute_with_node(api, "cmp1")
    result = api.get(f"/v2.1/os-hypervisors/cmp1/{route}", version="2.53")
    assert_fault(result, 404, "The resource could not be found.")
    assert result.headers["X-OpenStack-Nova-API-Version"] == "2.53"


def test_statistics_sum_the_nodes_of_enabled_services_until_287(api):
    compute_with_node(api, "cmp1")
    compute_with_node(api, "cmp2", vcpus=8, vcpus_used=1, disk_available_least=None)
    service3, _ = compute_with_node(api, "cmp3")
    disable(api, service3["id"])
    stats = api.get("/v2.1/os-hypervisors/statistics", version="2.87").json["hypervisor_statistics"]
    assert list(stats) == STATS_KEYS
    assert stats == {"count": 2, "vcpus": 24, "memory_mb": 65536, "local_gb": 1000, "vcpus_used": 3,
                     "memory_mb_used": 9216, "local_gb_used": 40, "free_ram_mb": 65536 - 9216, "free_disk_gb": 960,
                     "current_workload": 0, "running_vms": 4, "disk_available_least": 480}
    assert_fault(api.get("/v2.1/os-hypervisors/statistics", version="2.88"), 404, "The resource could not be found.")


def test_statistics_of_no_hypervisor_are_zeros(api):
    stats = api.get("/v2.1/os-hypervisors/statistics").json["hypervisor_statistics"]
    assert stats == dict.fromkeys(STATS_KEYS, 0)


def test_uptime_of_an_up_simulated_host_is_501_and_of_a_down_host_400(api):
    # Nova's answer when the virt driver cannot tell (NotImplementedError) and when the host is down.
    service, node = compute_with_node(api, "cmp1")
    hyp_id = node_ids(api)["cmp1"]
    assert_fault(api.get(f"/v2.1/os-hypervisors/{hyp_id}/uptime", version="2.1"), 501, NOT_SUPPORTED)
    assert_fault(api.get(f"/v2.1/os-hypervisors/{node['uuid']}/uptime", version="2.87"), 501, NOT_SUPPORTED)
    force_down(api, service["id"])
    assert_fault(api.get(f"/v2.1/os-hypervisors/{hyp_id}/uptime", version="2.1"), 400,
                 "Compute service of cmp1 is unavailable at this time.")
    assert_fault(api.get(f"/v2.1/os-hypervisors/{node['uuid']}/uptime", version="2.53"), 400,
                 "Compute service of cmp1 is unavailable at this time.")
    assert_fault(api.get(f"/v2.1/os-hypervisors/{node['uuid']}/uptime", version="2.88"), 404,
                 "The resource could not be found.")
    assert_fault(api.get("/v2.1/os-hypervisors/abc/uptime", version="2.1"), 404,
                 "Hypervisor with ID 'abc' could not be found.")


# == policy =========================================================================================

@pytest.mark.parametrize(("path", "version", "rule"), [
    ("/v2.1/os-hypervisors", "2.1", "list"),
    ("/v2.1/os-hypervisors/detail", "2.53", "list-detail"),
    ("/v2.1/os-hypervisors/statistics", "2.1", "statistics"),
    (f"/v2.1/os-hypervisors/{MISSING_UUID}", "2.53", "show"),
    ("/v2.1/os-hypervisors/1/uptime", "2.1", "uptime"),
    ("/v2.1/os-hypervisors/cmp/search", "2.1", "search"),
    ("/v2.1/os-hypervisors/cmp/servers", "2.1", "servers"),
])
def test_every_route_is_admin_only_by_default(api, path, version, rule):
    # Nova checks the policy before the id, so a missing hypervisor is still a 403 for a member.
    assert_fault(api.get(path, version=version, token=MEMBER), 403,
                 f"Policy doesn't allow os_compute_api:os-hypervisors:{rule} to be performed.")


# == os-availability-zone ===========================================================================

def test_zones_list_hides_the_internal_zone_and_is_open_to_members(api):
    api.compute("cmp1")
    api.add_service("ctl", "nova-scheduler", "scheduler")
    result = api.get("/v2.1/os-availability-zone", token=MEMBER)
    assert result.json == {"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]}


def test_zone_is_available_while_any_service_in_it_is_enabled_whatever_its_liveness(api):
    # Nova's rule (nova/availability_zones.py): enabled services make a zone available; up/down does not.
    service = api.compute("cmp1")
    force_down(api, service["id"])
    zone = api.get("/v2.1/os-availability-zone").json["availabilityZoneInfo"][0]
    assert zone["zoneState"] == {"available": True}
    disable(api, service["id"])
    zone = api.get("/v2.1/os-availability-zone").json["availabilityZoneInfo"][0]
    assert zone == {"zoneName": "nova", "zoneState": {"available": False}, "hosts": None}


def test_zone_detail_shows_enabled_services_per_host_with_liveness(api):
    cmp1 = api.compute("cmp1")
    cmp2 = api.compute("cmp2")
    api.add_service("ctl", "nova-scheduler", "scheduler")
    api.add_service("ctl", "nova-osapi_compute")
    force_down(api, cmp1["id"])
    disable(api, cmp2["id"])
    info = api.get("/v2.1/os-availability-zone/detail").json["availabilityZoneInfo"]
    assert [z["zoneName"] for z in info] == ["nova", "internal"]
    nova, internal = info
    assert nova["zoneState"] == {"available": True}
    assert list(nova["hosts"]) == ["cmp1"]
    assert nova["hosts"]["cmp1"]["nova-compute"] | {"updated_at": None} == {
        "available": False, "active": True, "updated_at": None}
    assert internal["hosts"] == {"ctl": {"nova-scheduler": {"available": True, "active": True, "updated_at": None}}}


def test_zone_detail_is_admin_only(api):
    assert_fault(api.get("/v2.1/os-availability-zone/detail", token=MEMBER), 403,
                 "Policy doesn't allow os_compute_api:os-availability-zone:detail to be performed.")


def test_aggregates_list_is_empty(api):
    assert api.get("/v2.1/os-aggregates").json == {"aggregates": []}
