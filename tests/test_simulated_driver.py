"""The simulated hypervisor (agent/virt/simulated.py): guests, their state file, capacity and timing.

Issue 3 §1: a driver interface named after Nova's ComputeDriver; a simulated hypervisor whose guests
keep their state in a local file across agent restarts, with spawn and stop times (0 by default); its
capacity reported as the host's hypervisor record.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import jsonschema
import pytest

from novalite.agent.resources import node_report
from novalite.agent.virt import load_driver, simulated
from novalite.agent.virt.driver import GuestNotFound, GuestSpec, PowerState
from novalite.agent.virt.simulated import GuestExists, SimulatedDriver, StateFileError
from novalite.api.handlers.agent import NODE_REPORT

pytestmark = pytest.mark.no_database

HOST = "compute1"


def guest(n: int, vcpus: int = 1, memory_mb: int = 512, root_gb: int = 1, ephemeral_gb: int = 0) -> GuestSpec:
    return GuestSpec(uuid=f"00000000-0000-0000-0000-{n:012d}", name=f"vm{n}", vcpus=vcpus,
                     memory_mb=memory_mb, root_gb=root_gb, ephemeral_gb=ephemeral_gb, image_ref="img")


def run(coro_fn, tmp_path, **options):
    """Run ``coro_fn(driver)`` on a fresh driver (host compute1, state in tmp_path) in its own event loop."""

    async def main():
        driver = SimulatedDriver(state_dir=tmp_path, **options)
        await driver.init_host(HOST)
        return await coro_fn(driver)

    return asyncio.run(main())


def saved_guests(tmp_path) -> dict:
    return json.loads((tmp_path / simulated.STATE_FILE).read_text())["guests"]


def test_spawned_guest_runs_and_is_listed(tmp_path):
    async def scenario(d):
        await d.spawn(guest(1))
        return await d.get_info(guest(1).uuid), await d.list_instance_uuids()

    info, uuids = run(scenario, tmp_path)
    assert info.power_state == PowerState.RUNNING
    assert uuids == [guest(1).uuid]
    assert saved_guests(tmp_path)[guest(1).uuid]["power_state"] == "RUNNING"


def test_spawning_an_existing_uuid_is_refused(tmp_path):
    async def scenario(d):
        await d.spawn(guest(1))
        with pytest.raises(GuestExists):
            await d.spawn(guest(1))
        return await d.list_instance_uuids()

    assert run(scenario, tmp_path) == [guest(1).uuid]


def test_destroy_is_idempotent(tmp_path):
    async def scenario(d):
        await d.spawn(guest(1))
        await d.destroy(guest(1).uuid)
        await d.destroy(guest(1).uuid)
        await d.destroy("no-such-guest")
        with pytest.raises(GuestNotFound):
            await d.get_info(guest(1).uuid)
        return await d.list_instance_uuids()

    assert run(scenario, tmp_path) == []
    assert saved_guests(tmp_path) == {}


def test_power_cycle(tmp_path):
    async def scenario(d):
        await d.spawn(guest(1))
        await d.power_off(guest(1).uuid)
        off = (await d.get_info(guest(1).uuid)).power_state
        await d.power_off(guest(1).uuid)  # already off: nothing to do
        await d.power_on(guest(1).uuid)
        on = (await d.get_info(guest(1).uuid)).power_state
        return off, on

    assert run(scenario, tmp_path) == (PowerState.SHUTDOWN, PowerState.RUNNING)


@pytest.mark.parametrize("operation", ["power_off", "power_on", "get_info"])
def test_operations_on_an_unknown_guest_raise_guest_not_found(tmp_path, operation):
    async def scenario(d):
        with pytest.raises(GuestNotFound):
            await getattr(d, operation)("no-such-guest")

    run(scenario, tmp_path)


def test_guests_survive_a_new_driver_on_the_same_state_file(tmp_path):
    # Issue 3 §1: guests keep their state in a local file across agent restarts.
    async def before(d):
        for n in (1, 2, 3):
            await d.spawn(guest(n))
        await d.power_off(guest(2).uuid)
        await d.destroy(guest(3).uuid)

    async def after(d):
        return {u: (await d.get_info(u)).power_state for u in await d.list_instance_uuids()}

    run(before, tmp_path)
    assert run(after, tmp_path) == {guest(1).uuid: PowerState.RUNNING, guest(2).uuid: PowerState.SHUTDOWN}


def test_a_failed_write_leaves_the_old_file_whole_and_the_change_undone(tmp_path, monkeypatch):
    async def first(d):
        await d.spawn(guest(1))

    run(first, tmp_path)
    before = (tmp_path / simulated.STATE_FILE).read_bytes()

    def crash(src, dst):
        raise OSError("disk gone at the rename")

    async def second(d):
        monkeypatch.setattr(simulated.os, "replace", crash)
        with pytest.raises(OSError, match="disk gone"):
            await d.spawn(guest(2))
        with pytest.raises(OSError, match="disk gone"):
            await d.power_off(guest(1).uuid)
        monkeypatch.undo()
        return {u: (await d.get_info(u)).power_state for u in await d.list_instance_uuids()}

    # In memory as on disk: guest 2 was never made, guest 1 still runs.
    assert run(second, tmp_path) == {guest(1).uuid: PowerState.RUNNING}
    assert (tmp_path / simulated.STATE_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [simulated.STATE_FILE]  # no temporary file left


def test_the_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(simulated.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(simulated.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))[1])
    simulated.write_atomically(tmp_path / "f.json", "{}")
    # the file's data, then the name, then the directory entry
    assert events == ["fsync", "rename", "fsync"]
    assert (tmp_path / "f.json").read_text() == "{}"


def test_a_temporary_file_left_by_a_crash_is_ignored(tmp_path):
    async def first(d):
        await d.spawn(guest(1))

    run(first, tmp_path)
    (tmp_path / f".{simulated.STATE_FILE}.abc123.tmp").write_text('{"format": 1, "gue')  # a torn write

    async def uuids(d):
        return await d.list_instance_uuids()

    assert run(uuids, tmp_path) == [guest(1).uuid]


def test_an_unreadable_state_file_stops_the_driver_rather_than_forgetting_guests(tmp_path):
    (tmp_path / simulated.STATE_FILE).write_text("not json")
    with pytest.raises(StateFileError, match="cannot read the simulated guests"):
        run(lambda d: asyncio.sleep(0), tmp_path)


def test_resources_count_reservations_and_every_guest(tmp_path):
    async def scenario(d):
        await d.spawn(guest(1, vcpus=2, memory_mb=2048, root_gb=20))
        await d.spawn(guest(2, vcpus=4, memory_mb=4096, root_gb=40, ephemeral_gb=10))
        await d.power_off(guest(2).uuid)  # a stopped guest keeps its resources, as in Nova
        assert d.get_available_nodes() == [HOST]
        return await d.get_available_resource(HOST)

    res = run(scenario, tmp_path, vcpus=8, memory_mb=16384, local_gb=200,
              reserved_host_memory_mb=512, reserved_host_disk_mb=2048)
    assert res.hypervisor_hostname == HOST
    assert (res.hypervisor_type, res.hypervisor_version) == ("fake", 1000)  # as Nova's fake driver
    assert (res.vcpus, res.memory_mb, res.local_gb) == (8, 16384, 200)
    assert res.vcpus_used == 6
    assert res.memory_mb_used == 512 + 2048 + 4096
    assert res.local_gb_used == 2 + 20 + 50
    assert res.disk_available_least == 200 - 72
    assert res.running_vms == 2
    assert res.cpu_info["topology"]["sockets"] == 8
    # What the agent interface accepts (it validates with Draft 4, as the whole API does).
    jsonschema.Draft4Validator(NODE_REPORT).validate(node_report(res))


def test_default_capacity_and_reserved_memory(tmp_path):
    res = run(lambda d: d.get_available_resource(HOST), tmp_path)
    assert (res.vcpus, res.memory_mb, res.local_gb) == (16, 32768, 500)
    assert (res.vcpus_used, res.memory_mb_used, res.local_gb_used, res.running_vms) == (0, 512, 0, 0)


def test_an_unknown_node_is_refused(tmp_path):
    async def scenario(d):
        with pytest.raises(ValueError, match="not a node"):
            await d.get_available_resource("compute2")

    run(scenario, tmp_path)


def test_spawn_time_is_honoured_and_a_booting_guest_holds_its_resources(tmp_path):
    async def scenario(d):
        started = time.monotonic()
        booting = asyncio.create_task(d.spawn(guest(1, memory_mb=1024)))
        await asyncio.sleep(0.05)
        during = (await d.get_info(guest(1).uuid)).power_state, (await d.get_available_resource(HOST)).memory_mb_used
        assert simulated.STATE_FILE not in os.listdir(tmp_path)  # not saved until it has booted
        await booting
        return during, time.monotonic() - started

    (state, used), elapsed = run(scenario, tmp_path, spawn_time=0.3)
    assert (state, used) == (PowerState.NOSTATE, 512 + 1024)
    assert elapsed >= 0.3


def test_guests_boot_in_parallel_and_share_writes(tmp_path, monkeypatch):
    writes = []
    real_write = simulated.write_atomically
    monkeypatch.setattr(simulated, "write_atomically", lambda p, t: (writes.append(p), real_write(p, t))[1])

    async def scenario(d):
        started = time.monotonic()
        await asyncio.gather(*(d.spawn(guest(n)) for n in range(50)))
        return time.monotonic() - started

    elapsed = run(scenario, tmp_path, spawn_time=0.2)
    assert elapsed < 1.0  # 50 boots of 0.2 s at once, not one after another
    assert len(saved_guests(tmp_path)) == 50
    assert len(writes) <= 3  # waiting changes go out together


def test_stop_time_is_honoured(tmp_path):
    async def scenario(d):
        await d.spawn(guest(1))
        started = time.monotonic()
        await d.power_off(guest(1).uuid)
        return time.monotonic() - started

    assert run(scenario, tmp_path, stop_time=0.2) >= 0.2


def test_spawn_and_stop_take_no_time_by_default(tmp_path):
    async def scenario(d):
        started = time.monotonic()
        for n in range(20):
            await d.spawn(guest(n))
            await d.power_off(guest(n).uuid)
            await d.destroy(guest(n).uuid)
        return time.monotonic() - started

    assert run(scenario, tmp_path) < 2.0


def test_a_cancelled_spawn_leaves_no_guest(tmp_path):
    async def scenario(d):
        booting = asyncio.create_task(d.spawn(guest(1)))
        await asyncio.sleep(0.05)
        booting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await booting
        return await d.list_instance_uuids()

    assert run(scenario, tmp_path, spawn_time=5) == []


def test_load_driver_selects_by_name(tmp_path):
    assert isinstance(load_driver("simulated", state_dir=tmp_path), SimulatedDriver)
    with pytest.raises(ValueError, match="unknown compute_driver 'libvirt'; known: simulated"):
        load_driver("libvirt")
