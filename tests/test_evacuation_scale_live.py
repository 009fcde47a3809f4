"""Evacuations under load, live: 200 fired at once never overcommit a target; openstacksdk drives it too.

Capacity is the scheduler's rule (domain/scheduler.py): (total − reserved) × ratio per resource, every
claim re-checked under the node's lock. The targets here have room for 80 m1.tiny each (RAM and vCPU
both bind at 80), so of 200 evacuations 160 land and 40 fail with Nova's NoValidHost (spec 6: migration
``error``, server ERROR) — and no target ever holds more than it has.
"""

from __future__ import annotations

import configparser
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import openstack as openstacksdk
import pytest
import requests

from novalite.cli.up import seed_flavors
from tests.clients import agent_process
from tests.stack import Stack, wait_until

TINY_MB, TINY_VCPUS = 512, 1  # m1.tiny
RESERVED_MB = 512
TARGET_ROOM = 80
SOURCE_ROOM = 200
TARGETS = ("compute2", "compute3")


def api(stack: Stack, method: str, path: str, version: str = "2.74", **kwargs) -> requests.Response:
    return requests.request(method, stack.endpoint + path, headers=stack.admin_headers(version), timeout=30,
                            **kwargs)


def servers_detail(stack: Stack) -> list[dict]:
    resp = api(stack, "GET", "/servers/detail?all_tenants=1")
    resp.raise_for_status()
    return resp.json()["servers"]


def start_compute_sized(stack: Stack, host: str, room: int) -> None:
    """A compute agent whose host has room for ``room`` m1.tiny servers (RAM and vCPUs both bind there)."""
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str
    conf.read(stack.config_file)
    if not conf.has_section("compute"):
        conf.add_section("compute")
    conf.set("compute", "memory_mb", str(RESERVED_MB + room * TINY_MB))
    conf.set("compute", "reserved_host_memory_mb", str(RESERVED_MB))
    conf.set("compute", "vcpus", str(room // 4))  # cpu_allocation_ratio 4.0
    conf.set("compute", "state_path", str(stack.root / ".novalite-compute"))
    path = stack.root / f"{host}.conf"
    with path.open("w") as out:
        conf.write(out)
    stack.spawn(["compute", "--host", host, "--config-file", str(path)], f"compute-{host}.log")


def boot_on(stack: Stack, host: str, count: int) -> set[str]:
    body = {"server": {"name": f"on-{host}", "flavorRef": "1", "imageRef": "", "networks": "none", "host": host,
                       "min_count": count, "max_count": count}}
    resp = api(stack, "POST", "/servers", json=body)
    assert resp.status_code == 202, resp.text
    wait_until(lambda: sum(1 for s in servers_detail(stack)
                           if s["status"] == "ACTIVE" and s["OS-EXT-SRV-ATTR:host"] == host) == count,
               timeout=60, what=f"{count} ACTIVE servers on {host}")
    return {s["id"] for s in servers_detail(stack) if s["OS-EXT-SRV-ATTR:host"] == host}


def kill_and_force_down(stack: Stack, host: str) -> None:
    proc = agent_process(stack, host)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    resp = api(stack, "PUT", "/os-services/force-down", version="2.11",
               json={"host": host, "binary": "nova-compute", "forced_down": True})
    assert resp.status_code == 200, resp.text


@pytest.fixture
def stack(make_stack) -> Stack:
    stack = make_stack()
    seed_flavors(stack.database_url)
    stack.start_scheduler()
    return stack


def test_200_parallel_evacuations_never_overcommit_a_target(stack):
    start_compute_sized(stack, "compute1", SOURCE_ROOM)
    for host in TARGETS:
        start_compute_sized(stack, host, TARGET_ROOM)
    stack.wait_for_computes("compute1", *TARGETS)
    ids = boot_on(stack, "compute1", SOURCE_ROOM)
    kill_and_force_down(stack, "compute1")

    def evacuate(server_id: str) -> int:
        return api(stack, "POST", f"/servers/{server_id}/action", version="2.68", json={"evacuate": {}}).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(evacuate, sorted(ids)))
    assert codes == [200] * SOURCE_ROOM

    def settled():
        servers = servers_detail(stack)
        return servers if all(s["status"] in ("ACTIVE", "ERROR") and s["OS-EXT-STS:task_state"] is None
                              for s in servers) else None

    servers = wait_until(settled, timeout=120, what="every evacuation finished or failed")
    by_host: dict[str, int] = {}
    for server in servers:
        if server["status"] == "ACTIVE":
            by_host[server["OS-EXT-SRV-ATTR:host"]] = by_host.get(server["OS-EXT-SRV-ATTR:host"], 0) + 1
    assert set(by_host) <= set(TARGETS)
    assert all(count <= TARGET_ROOM for count in by_host.values()), by_host
    assert sum(by_host.values()) == len(TARGETS) * TARGET_ROOM  # every bit of room used, none overused
    errors = [s for s in servers if s["status"] == "ERROR"]
    assert len(errors) == SOURCE_ROOM - len(TARGETS) * TARGET_ROOM
    assert all(s["fault"]["message"].startswith("No valid host was found.") for s in errors)
    statuses = [m["status"] for m in api(stack, "GET", "/os-migrations", version="2.59").json()["migrations"]]
    assert statuses.count("done") == len(TARGETS) * TARGET_ROOM
    assert statuses.count("error") == len(errors)


def test_openstacksdk_evacuate_server_and_servers_filtered_by_host(stack, sdk_env):
    for host in ("compute1", "compute2"):
        stack.start_compute(host)
    stack.wait_for_computes("compute1", "compute2")
    ids = boot_on(stack, "compute1", 3)
    conn = openstacksdk.connect(auth_type="admin_token", auth={"endpoint": stack.endpoint, "token": stack.admin_token})
    # openstacksdk spells Nova's ``host`` filter ``compute_host`` (a bare ``host=`` keyword is not a query
    # parameter to it: it filters client-side on an attribute servers do not have, against Nova too).
    listed = list(conn.compute.servers(details=True, all_projects=True, compute_host="compute1"))
    assert {s.id for s in listed} == ids
    assert {s.compute_host for s in listed} == {"compute1"}
    assert list(conn.compute.servers(details=True, all_projects=True, compute_host="compute2")) == []

    kill_and_force_down(stack, "compute1")
    for server_id in sorted(ids):
        conn.compute.evacuate_server(server_id)

    def moved():
        found = list(conn.compute.servers(details=True, all_projects=True, compute_host="compute2"))
        return found if len(found) == len(ids) and all(s.task_state is None for s in found) else None

    found = wait_until(moved, timeout=30, what="servers evacuated to compute2")
    assert {s.id for s in found} == ids
    # openstacksdk speaks up to 2.100, past 2.95: Nova leaves evacuated servers stopped there (spec 6).
    assert {s.status for s in found} == {"SHUTOFF"}
    assert list(conn.compute.servers(details=True, all_projects=True, compute_host="compute1")) == []
