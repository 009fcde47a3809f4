"""The compute agent does its host's work, live: real API (gunicorn), scheduler and `novalite compute` processes.

Servers are created, stopped, started, deleted and evacuated through novalite.domain.servers (the
API's own rules), placed by the `novalite scheduler` process, and done by the agents through their
simulated hypervisor, whose guests are read back from each host's guests.json. What each test pins:
Nova's compute manager (build, stop, start, terminate, rebuild with recreate=True), spec 6 (the
evacuation's migration lifecycle and the source's cleanup on restart), spec 3.6 (force-up refused
while `done` evacuations remain) and Nova's running-deleted reaper.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import signal
import time

import pytest
import requests

from novalite import config
from novalite.agent.virt.driver import GuestSpec
from novalite.agent.virt.simulated import SimulatedDriver
from novalite.db import api as services_db
from novalite.db import compute_nodes
from novalite.db import engine as db_engine
from novalite.db import servers as servers_db
from novalite.domain import states
from novalite.domain.conductor import Conductor
from novalite.domain.flavors import Flavors
from novalite.domain.servers import Requester, Servers
from tests.clients import agent_process
from tests.stack import Stack, wait_until

pytestmark = pytest.mark.live

ADMIN = Requester(user_id="admin", project_id="6f70656e737461636b", is_admin=True)
# Heartbeats every 0.5 s; a host is down only when forced (service_down_time stays long, so a killed
# agent's host still takes placements). Agents look for work every 30 s unless nudged, so every test
# that finishes in a few seconds shows the nudges at work.
POLL = 30.0
OPTIONS = {"report_interval": 0.5, "service_down_time": 60.0}


class Cloud:
    """A live stack plus the domain objects the tests drive it with."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.engine = db_engine.make_engine(stack.database_url)
        self.settings = config.load(stack.config_file, environ={})
        self.servers = Servers(self.engine, self.settings)
        self.flavor = Flavors(self.engine).create(name="small", memory_mb=512, vcpus=1, root_gb=1)

    def start_compute(self, host: str, wait: bool = True, **compute_options: str) -> None:
        """An agent for ``host``, with [compute] options of its own (e.g. spawn_time) if given; with
        ``wait``, returns once it heartbeats and its node is reported (it takes work from then on)."""
        svc = self.service(host)
        before = svc.report_count if svc is not None else -1
        path = self.stack.config_file
        if compute_options:
            conf = configparser.ConfigParser(interpolation=None)
            conf.optionxform = str
            conf.read(self.stack.config_file)
            # The same state directory as with the stack's own config file.
            conf.set("compute", "state_path", str(self.stack.root / ".novalite-compute"))
            for key, value in compute_options.items():
                conf.set("compute", key, value)
            path = self.stack.root / f"{host}.conf"
            with path.open("w") as out:
                conf.write(out)
        self.stack.spawn(["compute", "--host", host, "--config-file", str(path)], f"compute-{host}.log")
        if wait:
            wait_until(lambda: self.heartbeats(host) > before and self.node_reported(host), timeout=15,
                       what=f"{host}'s agent heartbeating")

    def heartbeats(self, host: str) -> int:
        svc = self.service(host)
        return svc.report_count if svc is not None else -1

    def node_reported(self, host: str) -> bool:
        with self.engine.connect() as conn:
            return compute_nodes.compute_node_get_by_host_and_nodename(conn, host, host) is not None

    def kill(self, host: str) -> None:
        proc = agent_process(self.stack, host)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def force_down(self, host: str, down: bool = True) -> requests.Response:
        return requests.put(self.stack.endpoint + "/os-services/force-down", headers=self.stack.admin_headers("2.11"),
                            json={"host": host, "binary": "nova-compute", "forced_down": down}, timeout=10)

    def create(self, host: str, count: int = 1) -> list[str]:
        rows = self.servers.create(ADMIN, name="vm", flavor=self.flavor, image_ref=None, requested_host=host,
                                   count=count)
        return [row.uuid for row in rows]

    def server(self, uuid: str):
        with self.engine.connect() as conn:
            return servers_db.instance_get(conn, uuid)

    def wait_for(self, uuids: list[str], vm_state: str, host: str | None = None, timeout: float = 10.0) -> None:
        def there():
            rows = [self.server(uuid) for uuid in uuids]
            return all(r is not None and r.vm_state == vm_state and r.task_state is None
                       and (host is None or r.host == host) for r in rows)

        wait_until(there, timeout=timeout, what=f"{len(uuids)} server(s) {vm_state} on {host or 'their host'}")

    def migrations(self, uuids: list[str]) -> list:
        with self.engine.connect() as conn:
            return [m for m in servers_db.migration_list(conn) if m.instance_uuid in uuids]

    def service(self, host: str):
        with self.engine.connect() as conn:
            return services_db.service_get_by_host_and_binary(conn, host, "nova-compute")

    def guests(self, host: str) -> dict[str, str]:
        """The host's simulated guests and their power states, from its state file."""
        path = self.stack.root / ".novalite-compute" / host / "guests.json"
        if not path.exists():
            return {}
        return {uuid: g["power_state"] for uuid, g in json.loads(path.read_text())["guests"].items()}

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def cloud(make_stack):
    stack = make_stack(extra_config={"compute": {"work_poll_interval": str(POLL)}}, **OPTIONS)
    stack.start_scheduler()
    cloud = Cloud(stack)
    yield cloud
    cloud.close()


def test_spawn_stop_start_and_delete_are_done_by_the_hosts_agent(cloud):
    # Nova's compute manager: build → ACTIVE/running; stop → SHUTOFF/shutdown; start → ACTIVE/running;
    # delete with the host up → the host destroys the guest, then the record goes.
    cloud.start_compute("compute1")
    asked = time.monotonic()
    [uuid] = cloud.create("compute1")
    cloud.wait_for([uuid], states.ACTIVE, host="compute1")
    # Nudged by the scheduler, not found by the 30 s poll.
    assert time.monotonic() - asked < 5
    row = cloud.server(uuid)
    assert (row.power_state, row.launched_at is not None) == (states.RUNNING, True)
    assert cloud.guests("compute1") == {uuid: "RUNNING"}

    cloud.servers.stop(ADMIN, uuid)
    cloud.wait_for([uuid], states.STOPPED)
    assert (cloud.server(uuid).power_state, cloud.guests("compute1")) == (states.SHUTDOWN, {uuid: "SHUTDOWN"})

    cloud.servers.start(ADMIN, uuid)
    cloud.wait_for([uuid], states.ACTIVE)
    assert (cloud.server(uuid).power_state, cloud.guests("compute1")) == (states.RUNNING, {uuid: "RUNNING"})

    cloud.servers.delete(ADMIN, uuid)
    assert cloud.server(uuid).task_state == states.DELETING  # the host is up: its agent deletes (not local)
    wait_until(lambda: cloud.server(uuid) is None, timeout=5, what="the server deleted by its host")
    assert cloud.guests("compute1") == {}
    events = {}
    with cloud.engine.connect() as conn:
        for action in servers_db.actions_of(conn, uuid):
            events[action.action] = [(e.event, e.result) for e in servers_db.events_of(conn, action.id)]
    assert ("compute__do_build_and_run_instance", "Success") in events["create"]
    assert events["stop"] == [("compute_stop_instance", "Success")]
    assert events["start"] == [("compute_start_instance", "Success")]


def test_a_failed_driver_call_becomes_the_servers_fault(cloud):
    # Nova records a failed operation as an instance fault (message and traceback) and clears task_state;
    # a failed stop leaves the server as it was.
    cloud.start_compute("compute1")
    [uuid] = cloud.create("compute1")
    cloud.wait_for([uuid], states.ACTIVE)
    # The hypervisor loses the guest while the agent is away (its state file no longer has it).
    cloud.kill("compute1")
    path = cloud.stack.root / ".novalite-compute" / "compute1" / "guests.json"
    data = json.loads(path.read_text())
    del data["guests"][uuid]
    path.write_text(json.dumps(data))
    cloud.start_compute("compute1")
    cloud.servers.stop(ADMIN, uuid)
    cloud.wait_for([uuid], states.ACTIVE)
    with cloud.engine.connect() as conn:
        fault = servers_db.latest_faults(conn, [uuid])[uuid]
    assert (fault.code, fault.message) == (500, f"Instance {uuid} could not be found.")
    assert "GuestNotFound" in fault.details and "Traceback" in fault.details


def test_work_without_a_nudge_is_found_by_the_next_poll(make_stack):
    # A lost nudge only delays the work to the agent's next look ([compute] work_poll_interval).
    stack = make_stack(extra_config={"compute": {"work_poll_interval": "1.0"}}, **OPTIONS)
    cloud = Cloud(stack)
    try:
        cloud.start_compute("compute1")
        [uuid] = cloud.create("compute1")  # no scheduler runs: nobody is nudged
        assert Conductor(cloud.engine, cloud.settings).place_pending().hosts == {"compute1"}  # nor nudges
        cloud.wait_for([uuid], states.ACTIVE, timeout=5)
    finally:
        cloud.close()


def test_an_agent_killed_mid_spawn_finishes_the_builds_after_restart(cloud):
    # The work is the database's: what a dead agent left unfinished is still listed, and its restart does it.
    cloud.start_compute("compute1", spawn_time="3")
    uuids = cloud.create("compute1", count=3)
    wait_until(lambda: all(f"spawn of {u} started" in cloud.stack.log("compute-compute1.log") for u in uuids),
               timeout=10, what="three spawns under way")
    cloud.kill("compute1")
    assert {cloud.server(u).task_state for u in uuids} == {states.SPAWNING}
    assert cloud.guests("compute1") == {}  # a guest still booting is not on the hypervisor yet
    cloud.start_compute("compute1", spawn_time="0")
    cloud.wait_for(uuids, states.ACTIVE, host="compute1")
    assert cloud.guests("compute1") == {u: "RUNNING" for u in uuids}


def test_a_spawn_done_before_a_crash_is_not_done_again(cloud):
    # The guest was created but the agent died before reporting it: the spawn counts as done (the guest
    # is there), rather than failing on "already exists" or creating a second one.
    cloud.start_compute("compute1")
    cloud.kill("compute1")
    [uuid] = cloud.create("compute1")
    wait_until(lambda: cloud.server(uuid).task_state == states.SPAWNING, timeout=10, what="placed on compute1")
    row = cloud.server(uuid)

    async def spawned_before_the_crash():
        driver = SimulatedDriver(state_dir=cloud.stack.root / ".novalite-compute" / "compute1")
        await driver.init_host("compute1")
        await driver.spawn(GuestSpec(uuid=uuid, name=f"instance-{row.id:08x}", vcpus=1, memory_mb=512, root_gb=1))

    asyncio.run(spawned_before_the_crash())
    cloud.start_compute("compute1")
    cloud.wait_for([uuid], states.ACTIVE, host="compute1")
    assert cloud.guests("compute1") == {uuid: "RUNNING"}
    assert f"spawn of {uuid}: the guest is already here" in cloud.stack.log("compute-compute1.log")


def test_evacuation_runs_on_the_destination_and_the_returning_source_cleans_up_before_its_first_heartbeat(cloud):
    # Spec 6: rebuild on the destination (a stopped server is powered off again), migrations `done`;
    # spec 3.6: force-up refused while they are `done`; spec 6 "On restart, the source compute …": the
    # returning source destroys its copies and completes the migrations — before its first heartbeat, so
    # it never counts as up while it holds a second copy of a server running elsewhere.
    cloud.start_compute("compute1")
    cloud.start_compute("compute2")
    uuids = cloud.create("compute1", count=4)
    cloud.wait_for(uuids, states.ACTIVE, host="compute1")
    stopped = uuids[0]
    cloud.servers.stop(ADMIN, stopped)
    cloud.wait_for([stopped], states.STOPPED)

    cloud.kill("compute1")
    assert cloud.force_down("compute1").status_code == 200
    for uuid in uuids:
        cloud.servers.evacuate(ADMIN, uuid)
    cloud.wait_for(uuids[1:], states.ACTIVE, host="compute2")
    cloud.wait_for([stopped], states.STOPPED, host="compute2")
    assert cloud.guests("compute2") == {**{u: "RUNNING" for u in uuids[1:]}, stopped: "SHUTDOWN"}
    assert {m.status for m in cloud.migrations(uuids)} == {states.MIGRATION_DONE}
    assert set(cloud.guests("compute1")) == set(uuids)  # the dead host's copies are still there
    refused = cloud.force_down("compute1", down=False)
    assert refused.status_code == 400 and "`done` evacuation migration records remain" in refused.text

    before = cloud.heartbeats("compute1")
    cloud.start_compute("compute1", wait=False)
    first = wait_until(lambda: (s := cloud.service("compute1")).report_count > before and s, timeout=10,
                       interval=0.01, what="compute1's first heartbeat after its restart")
    assert first.report_count == before + 1  # caught at its first heartbeat (they come every 0.5 s)
    migrations = cloud.migrations(uuids)
    assert {m.status for m in migrations} == {states.MIGRATION_COMPLETED}
    assert max(m.updated_at for m in migrations) <= first.last_seen_up
    assert cloud.guests("compute1") == {}
    assert len(cloud.guests("compute2")) == len(uuids)
    assert cloud.force_down("compute1", down=False).status_code == 200


def test_a_guest_of_a_server_deleted_while_its_host_was_down_is_reaped_on_restart(cloud):
    # Nova: a delete while the host is down is done in the database at once (local delete); the guest
    # left on the host is destroyed when the host comes back (the running-deleted reaper).
    cloud.start_compute("compute1")
    kept, deleted = cloud.create("compute1", count=2)
    cloud.wait_for([kept, deleted], states.ACTIVE)
    cloud.kill("compute1")
    assert cloud.force_down("compute1").status_code == 200
    cloud.servers.delete(ADMIN, deleted)
    assert cloud.server(deleted) is None  # local delete
    assert set(cloud.guests("compute1")) == {kept, deleted}
    cloud.start_compute("compute1")
    assert cloud.guests("compute1") == {kept: "RUNNING"}  # reaped before its first heartbeat


def test_a_hundred_evacuations_land_on_the_target_and_their_migrations_complete(make_stack):
    # With instant boots, a hundred rebuilds at once (their results go back in batches: test_agent_work;
    # how long they take: bench/evacuation.py).
    room = {"vcpus": "64", "memory_mb": "65536"}  # for 100 servers of 1 vCPU and 512 MB
    stack = make_stack(extra_config={"compute": {"work_poll_interval": str(POLL), **room}}, **OPTIONS)
    cloud = Cloud(stack)
    try:
        cloud.start_compute("compute1")
        cloud.start_compute("compute2")
        placer = Conductor(cloud.engine, cloud.settings)
        uuids = cloud.create("compute1", count=100)
        placer.place_pending()
        cloud.servers.nudge_hosts(["compute1"])
        cloud.wait_for(uuids, states.ACTIVE, host="compute1", timeout=30)
        cloud.kill("compute1")
        assert cloud.force_down("compute1").status_code == 200
        for uuid in uuids:
            cloud.servers.evacuate(ADMIN, uuid)
        assert placer.place_pending().placed == 100
        cloud.servers.nudge_hosts(["compute2"])
        cloud.wait_for(uuids, states.ACTIVE, host="compute2", timeout=30)
        assert {m.status for m in cloud.migrations(uuids)} == {states.MIGRATION_DONE}
        assert len(cloud.guests("compute2")) == 100
    finally:
        cloud.close()

