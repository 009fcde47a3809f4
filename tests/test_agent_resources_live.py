"""A real compute agent reports its host's hypervisor record, and keeps its guests across restarts.

Issue 3 §1: capacity (vcpus, memory_mb, local_gb) reported as the host's hypervisor record; the
simulated hypervisor's guests keep their state in a local file across agent restarts. The record is
read back from the database (novalite.db.compute_nodes), not through os-hypervisors.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from novalite.agent.virt.driver import GuestSpec, PowerState
from novalite.agent.virt.simulated import STATE_FILE, SimulatedDriver
from novalite.db import compute_nodes
from novalite.db import engine as db_engine
from tests.stack import wait_until

pytestmark = pytest.mark.live

FAST = {"report_interval": 0.2, "service_down_time": 1.0}


def compute_options(state_path, interval: float = 0.3) -> dict:
    return {"DEFAULT": {"update_resources_interval": str(interval)},
            "compute": {"state_path": str(state_path), "vcpus": "8", "memory_mb": "16384", "local_gb": "200"}}


def node_of(stack, host: str):
    engine = db_engine.make_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            return compute_nodes.compute_node_get_by_host_and_nodename(conn, host, host)
    finally:
        engine.dispose()


def add_guests(state_dir, host: str, specs: list[GuestSpec], power_off: tuple[str, ...] = ()) -> None:
    """Put guests in a host's state file through the driver, as an agent would have left them."""

    async def main():
        driver = SimulatedDriver(state_dir=state_dir)
        await driver.init_host(host)
        for spec in specs:
            await driver.spawn(spec)
        for uuid in power_off:
            await driver.power_off(uuid)

    asyncio.run(main())


def spec(n: int) -> GuestSpec:
    return GuestSpec(uuid=f"11111111-0000-0000-0000-{n:012d}", name=f"vm{n}", vcpus=2, memory_mb=1024, root_gb=10)


def test_agent_reports_its_node_at_start_and_then_periodically(make_stack, tmp_path):
    stack = make_stack(extra_config=compute_options(tmp_path / "state"), **FAST)
    stack.start_compute("compute1")
    node = wait_until(lambda: node_of(stack, "compute1"), timeout=15, what="compute1's hypervisor record")
    assert node.hypervisor_hostname == "compute1"  # one node, named after the host
    assert (node.hypervisor_type, node.hypervisor_version) == ("fake", 1000)
    assert (node.vcpus, node.memory_mb, node.local_gb) == (8, 16384, 200)
    assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used, node.running_vms) == (0, 512, 0, 0)
    assert node.disk_available_least == 200
    assert json.loads(node.cpu_info)["topology"]["sockets"] == 8
    # What the scheduler needs: the host's reserved amounts and its allocation ratios (Nova's defaults).
    assert (node.reserved_host_cpus, node.reserved_host_memory_mb, node.reserved_host_disk_mb) == (0, 512, 0)
    assert (node.cpu_allocation_ratio, node.ram_allocation_ratio, node.disk_allocation_ratio) == (4.0, 1.0, 1.0)
    first = node.updated_at
    wait_until(lambda: node_of(stack, "compute1").updated_at not in (None, first), timeout=5,
               what="a second report after update_resources_interval")


def test_allocation_ratios_come_from_the_hosts_configuration(make_stack, tmp_path):
    options = compute_options(tmp_path / "state")
    options["compute"].update(cpu_allocation_ratio="16.0", ram_allocation_ratio="1.5", disk_allocation_ratio="0.9")
    stack = make_stack(extra_config=options, **FAST)
    stack.start_compute("compute1")
    node = wait_until(lambda: node_of(stack, "compute1"), timeout=15, what="compute1's hypervisor record")
    assert (node.cpu_allocation_ratio, node.ram_allocation_ratio, node.disk_allocation_ratio) == (16.0, 1.5, 0.9)


def test_a_restarted_agent_keeps_its_guests_and_reports_them(make_stack, tmp_path):
    state_path = tmp_path / "state"
    add_guests(state_path / "compute1", "compute1", [spec(1), spec(2), spec(3)], power_off=(spec(3).uuid,))
    stack = make_stack(extra_config=compute_options(state_path), **FAST)
    agent = stack.start_compute("compute1")
    wait_until(lambda: (n := node_of(stack, "compute1")) and n.running_vms == 3, timeout=15,
               what="compute1 reporting its 3 guests")
    node = node_of(stack, "compute1")
    # A stopped guest keeps its resources, as in Nova.
    assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (6, 512 + 3 * 1024, 30)

    # The agent dies hard; a guest is added while it is down; the new agent finds all four.
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    add_guests(state_path / "compute1", "compute1", [spec(4)])
    stack.start_compute("compute1")
    wait_until(lambda: node_of(stack, "compute1").running_vms == 4, timeout=15,
               what="the restarted compute1 reporting 4 guests")
    saved = json.loads((state_path / "compute1" / STATE_FILE).read_text())["guests"]
    assert {u: g["power_state"] for u, g in saved.items()} == {
        spec(1).uuid: PowerState.RUNNING.name, spec(2).uuid: PowerState.RUNNING.name,
        spec(3).uuid: PowerState.SHUTDOWN.name, spec(4).uuid: PowerState.RUNNING.name,
    }


def test_two_agents_sharing_one_config_keep_separate_guests(make_stack, tmp_path):
    # `novalite up` runs compute1..N from one config file: each host has its own state dir.
    state_path = tmp_path / "state"
    add_guests(state_path / "compute1", "compute1", [spec(1)])
    stack = make_stack(extra_config=compute_options(state_path), **FAST)
    stack.start_compute("compute1")
    stack.start_compute("compute2")
    wait_until(lambda: node_of(stack, "compute1") and node_of(stack, "compute2"), timeout=15,
               what="both hypervisor records")
    assert node_of(stack, "compute1").running_vms == 1
    assert node_of(stack, "compute2").running_vms == 0


def test_default_state_dir_is_beside_the_config_file(make_stack):
    stack = make_stack(extra_config={"DEFAULT": {"update_resources_interval": "0.3"}}, **FAST)
    stack.start_compute("compute1")
    wait_until(lambda: node_of(stack, "compute1"), timeout=15, what="compute1's hypervisor record")
    assert (stack.root / ".novalite-compute" / "compute1").is_dir()
