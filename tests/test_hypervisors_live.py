"""os-hypervisors and os-availability-zone through the real clients, against a live novalite API.

Hypervisor records are reported through the agents' interface (POST /agent/v1/services, then
PUT /agent/v1/services/{uuid}/nodes/{nodename}), as an agent does, so these tests do not depend on
agents reporting by themselves. Instances are written to the stack's database until servers exist.
"""

from __future__ import annotations

import uuid

import openstack as openstacksdk
import pytest
import requests
from sqlalchemy import create_engine, insert
from tempest.lib import exceptions as tempest_exc
from tempest.lib.services.compute.availability_zone_client import AvailabilityZoneClient
from tempest.lib.services.compute.hypervisor_client import HypervisorClient

from novalite.db import api as db
from novalite.timeutils import utcnow
from tests import databases
from tests.clients import FixedAuthProvider, compute_microversion, nova, openstack, openstack_json, parse_table
from tests.stack import Stack

pytestmark = pytest.mark.live

HOSTS = ("cmp1", "cmp2", "other")


def register_with_node(stack: Stack, host: str) -> tuple[dict, dict]:
    headers = {"X-Agent-Token": stack.agent_token}
    resp = requests.post(f"{stack.url}/agent/v1/services", headers=headers, timeout=5,
                         json={"host": host, "binary": "nova-compute", "version": 1})
    assert resp.status_code == 200, resp.text
    service = resp.json()["service"]
    resp = requests.put(f"{stack.url}/agent/v1/services/{service['id']}/nodes/{host}", headers=headers, timeout=5,
                        json={"hypervisor_type": "simulated", "hypervisor_version": 1000, "host_ip": "127.0.0.1",
                              "cpu_info": {"arch": "x86_64"}, "vcpus": 16, "memory_mb": 32768, "local_gb": 500,
                              "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0, "running_vms": 0,
                              "disk_available_least": 500})
    assert resp.status_code == 200, resp.text
    return service, resp.json()["node"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("hypervisors-live")
    # A long service_down_time: the registered services never heartbeat, and must stay "up".
    with databases.for_module(root) as database_url:
        live = Stack(root=root / "stack", database_url=database_url, service_down_time=3600)
        try:
            live.start_api()
            live.nodes = {host: register_with_node(live, host) for host in HOSTS}
            engine = create_engine(live.database_url)
            live.instance_uuid = str(uuid.uuid4())
            with engine.begin() as conn:
                live.instance_id = conn.execute(insert(db.instances).values(
                    uuid=live.instance_uuid, host="cmp2", node="cmp2", vm_state="active", created_at=utcnow(),
                    deleted=0,
                )).inserted_primary_key[0]
            engine.dispose()
            yield live
        finally:
            live.close()


def node_uuid(stack: Stack, host: str) -> str:
    return stack.nodes[host][1]["uuid"]


# -- nova CLI (python-novaclient 18) --------------------------------------------------------------------

def test_nova_hypervisor_list_at_the_negotiated_version_shows_node_uuids(stack):
    rows = parse_table(nova(stack, "hypervisor-list").stdout)
    assert {r["Hypervisor hostname"]: r["ID"] for r in rows} == {h: node_uuid(stack, h) for h in HOSTS}
    assert {(r["State"], r["Status"]) for r in rows} == {("up", "enabled")}
    rows = parse_table(nova(stack, "hypervisor-list", version="2.52").stdout)
    assert all(r["ID"].isdigit() for r in rows)


@pytest.mark.parametrize("version", ["2.52", None])
def test_nova_hypervisor_servers_finds_the_hosts_servers_as_host_evacuate_does(stack, version):
    # clients.md 1.4: <2.53 GET /os-hypervisors/<host>/servers; >=2.53 ?hypervisor_hostname_pattern=&with_servers
    rows = parse_table(nova(stack, "hypervisor-servers", "cmp2", version=version).stdout)
    assert [(r["ID"], r["Name"], r["Hypervisor Hostname"]) for r in rows] == [
        (stack.instance_uuid, f"instance-{stack.instance_id:08x}", "cmp2")]
    assert parse_table(nova(stack, "hypervisor-servers", "cmp1", version=version).stdout) == []


def test_nova_hypervisor_show_and_stats_before_288(stack):
    out = nova(stack, "hypervisor-show", node_uuid(stack, "cmp1"), version="2.87").stdout
    fields = {r["Property"]: r["Value"] for r in parse_table(out)}
    assert (fields["hypervisor_hostname"], fields["state"], fields["vcpus"]) == ("cmp1", "up", "16")
    stats = {r["Property"]: r["Value"] for r in parse_table(nova(stack, "hypervisor-stats", version="2.87").stdout)}
    assert (stats["count"], stats["vcpus"]) == ("3", "48")


# -- openstack CLI (OSC 10; the SDK negotiates the Hypervisor resource's maximum, 2.88) -----------------------

def test_openstack_hypervisor_list_and_show(stack):
    listed = openstack_json(stack, "hypervisor", "list")
    assert {h["Hypervisor Hostname"]: h["ID"] for h in listed} == {h: node_uuid(stack, h) for h in HOSTS}
    assert {(h["Hypervisor Type"], h["Host IP"], h["State"]) for h in listed} == {("simulated", "127.0.0.1", "up")}
    shown = openstack_json(stack, "hypervisor", "show", "cmp1")
    assert (shown["hypervisor_hostname"], shown["state"], shown["status"], shown["service_host"]) == (
        "cmp1", "up", "enabled", "cmp1")
    assert shown["aggregates"] == []
    # Before 2.88 OSC asks for the uptime; the simulated driver's 501 is tolerated by OSC.
    shown = openstack_json(stack, "hypervisor", "show", node_uuid(stack, "cmp2"), version="2.53")
    assert (shown["hypervisor_hostname"], shown["vcpus"]) == ("cmp2", 16)
    matching = openstack_json(stack, "hypervisor", "list", "--matching", "cmp")
    assert sorted(h["Hypervisor Hostname"] for h in matching) == ["cmp1", "cmp2"]


def test_openstack_availability_zone_list(stack):
    zones = openstack_json(stack, "availability", "zone", "list", "--compute")
    assert {(z["Zone Name"], z["Zone Status"]) for z in zones} == {("nova", "available")}


# -- openstacksdk --------------------------------------------------------------------------------------

def test_sdk_hypervisors_with_details(stack):
    conn = openstacksdk.connect(auth_type="admin_token", auth={"endpoint": stack.endpoint, "token": stack.admin_token})
    found = {h.name: h for h in conn.compute.hypervisors(details=True)}
    assert set(found) == set(HOSTS)
    assert found["cmp1"].id == node_uuid(stack, "cmp1")
    assert found["cmp1"].service_details["host"] == "cmp1"
    assert found["cmp1"].uptime is None
    matched = list(conn.compute.hypervisors(hypervisor_hostname_pattern="cmp2", with_servers=True))
    assert [s["uuid"] for s in matched[0].servers] == [stack.instance_uuid]


# -- tempest.lib: the clients' requests and Tempest's response schemas ------------------------------------------

@pytest.mark.parametrize("version", ["2.1", "2.28", "2.33", "2.52", "2.53", "2.75"])
def test_tempest_hypervisor_client_schemas(stack, version):
    client = HypervisorClient(FixedAuthProvider(stack.endpoint, stack.admin_token), "compute", "RegionOne")
    with compute_microversion(version):
        listed = client.list_hypervisors()["hypervisors"]
        detailed = client.list_hypervisors(detail=True)["hypervisors"]
        assert len(listed) == len(detailed) == 3
        shown = client.show_hypervisor(detailed[0]["id"])["hypervisor"]
        assert shown["hypervisor_hostname"] == detailed[0]["hypervisor_hostname"]
        client.show_hypervisor_statistics()
        with pytest.raises(tempest_exc.NotImplemented):
            client.show_hypervisor_uptime(detailed[0]["id"])
        if version in ("2.1", "2.28", "2.33", "2.52"):
            assert len(client.search_hypervisor("cmp")["hypervisors"]) == 2
            servers = client.list_servers_on_hypervisor("cmp2")["hypervisors"][0]["servers"]
            assert [s["uuid"] for s in servers] == [stack.instance_uuid]
        else:
            with pytest.raises(tempest_exc.NotFound):
                client.search_hypervisor("cmp")
            found = client.list_hypervisors(hypervisor_hostname_pattern="cmp2", with_servers=True)["hypervisors"]
            assert [s["uuid"] for s in found[0]["servers"]] == [stack.instance_uuid]


def test_tempest_availability_zone_client_schemas(stack):
    client = AvailabilityZoneClient(FixedAuthProvider(stack.endpoint, stack.admin_token), "compute", "RegionOne")
    for version in ("2.1", "2.53", "2.96"):
        with compute_microversion(version):
            zones = client.list_availability_zones()["availabilityZoneInfo"]
            assert [z["zoneName"] for z in zones] == ["nova"]
            detail = client.list_availability_zones(detail=True)["availabilityZoneInfo"]
            assert set(detail[0]["hosts"]) == set(HOSTS)


def test_unauthenticated_request_is_401_and_osc_matching_nothing_fails(stack):
    resp = requests.get(f"{stack.endpoint}/os-hypervisors", headers={"X-Auth-Token": "wrong"}, timeout=5)
    assert resp.status_code == 401
    openstack(stack, "hypervisor", "list", "--matching", "nomatch", expect_rc=1)
