"""The scheduler process (``novalite scheduler``, scheduler_service.py) and the safety it rests on.

Two parts:
- two placement passes (domain.conductor.Conductor) racing over the same pending servers and evacuations,
  on every backend: what makes several scheduler processes at once safe;
- live tests: a real API, real ``novalite scheduler`` processes and real ``novalite compute`` agents on
  127.0.0.1. Servers are recorded through the domain (Servers.create over the stack's database, which
  nudges every registered nova-scheduler exactly as the API does); placement is read back from the
  database: the server's host, its allocation, the conductor's instance-action event.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
import requests
import sqlalchemy as sa

from novalite import config
from novalite.db import engine as db_engine
from novalite.db import servers as servers_db
from novalite.db.models import Service
from novalite.domain import states
from novalite.domain.conductor import Conductor, PassResult
from novalite.domain.flavors import Flavor, Flavors
from novalite.domain.scheduler import Scheduler
from novalite.domain.servers import Requester, Servers
from novalite.domain.services import Services
from tests.clients import compute_microversion, tempest_services_client
from tests.stack import Stack, wait_until

ADMIN = Requester(user_id="admin", project_id="6f70656e737461636b", is_admin=True)
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
BUILD_EVENT = "conductor_schedule_and_build_instances"


class Cloud:
    """The control plane's domain over one database: what the API and a scheduler process hold."""

    def __init__(self, url: str, config_file=None):
        if config_file is None:
            db_engine.sync(url)
            self.settings = config.load(environ={"NOVALITE_DATABASE__CONNECTION": url,
                                                 "NOVALITE_API__AUTH_STRATEGY": "noauth2"})
        else:
            self.settings = config.load(config_file, environ={})
        self.engine = db_engine.make_engine(url)
        self.services = Services(self.engine, self.settings)
        self.servers = Servers(self.engine, self.settings)
        self.scheduler = Scheduler(self.engine, self.settings)

    def add_host(self, host: str, memory_mb: int = 65536) -> None:
        """Register host's nova-compute and report its node, as its agent does through /agent/v1."""
        service = self.services.register(host, "nova-compute", 1)
        self.services.report_node(service.uuid, host, {
            "hypervisor_type": "fake", "hypervisor_version": 1000, "cpu_info": "{}", "vcpus": 64,
            "memory_mb": memory_mb, "local_gb": 2000, "vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": 0,
            "running_vms": 0})

    def flavor(self, memory_mb: int = 512, name: str = "small") -> Flavor:
        return Flavors(self.engine).create(name=name, memory_mb=memory_mb, vcpus=1, root_gb=1)

    def boot(self, flavor: Flavor, count: int = 1, **kwargs) -> list[str]:
        return [row.uuid for row in self.servers.create(ADMIN, name="vm", flavor=flavor, image_ref=None,
                                                        count=count, **kwargs)]

    def server(self, uuid: str):
        with self.engine.connect() as conn:
            return servers_db.instance_get(conn, uuid)

    def fault(self, uuid: str):
        with self.engine.connect() as conn:
            return servers_db.latest_faults(conn, [uuid]).get(uuid)

    def events(self, uuid: str, action: str, event: str | None = None) -> list:
        """The events of the server's latest ``action`` (only those named ``event``, if given)."""
        with self.engine.connect() as conn:
            found = servers_db.action_latest(conn, uuid, action)
            events = servers_db.events_of(conn, found.id) if found else []
        return [e for e in events if event is None or e.event == event]

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def cloud(migrated_database_url):
    made = Cloud(migrated_database_url)
    yield made
    made.close()


def race(*passes: Conductor) -> list[PassResult]:
    """Run the passes in as many threads, released together."""
    gate = threading.Barrier(len(passes))
    results: list = [None] * len(passes)

    def run(i: int) -> None:
        gate.wait()
        results[i] = passes[i].place_pending()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(passes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(r, PassResult) for r in results), results
    return results


# -- two passes at once place each server once ----------------------------------------------------------

def test_two_concurrent_passes_place_each_new_server_exactly_once(cloud):
    # Nova records a build's host with instance.save(expected_task_state=SCHEDULING); novalite's conductor
    # does it in the claim's transaction, so the second pass to reach a server records nothing and its
    # claim is rolled back: one allocation and one host per server, no fault, one build event.
    for host in ("compute1", "compute2", "compute3"):
        cloud.add_host(host)
    uuids = cloud.boot(cloud.flavor(), count=40)
    first, second = race(Conductor(cloud.engine, cloud.settings, "scheduler1"),
                         Conductor(cloud.engine, cloud.settings, "scheduler2"))
    assert first.placed + second.placed == 40
    assert first.failed == second.failed == 0
    for uuid in uuids:
        row = cloud.server(uuid)
        (allocation,) = cloud.scheduler.allocations(uuid)
        assert row.host == allocation.host and row.node == allocation.hypervisor_hostname
        assert (row.vm_state, row.task_state) == (states.BUILDING, states.SPAWNING)
        assert cloud.fault(uuid) is None
        assert [(e.event, e.result) for e in cloud.events(uuid, "create")] == [(BUILD_EVENT, "Success")]


def test_a_pass_that_loses_the_race_on_a_full_cloud_records_no_failure(cloud):
    # One host, so the losing pass finds no other node for a server the winner has just placed: that
    # NoValidHost is not the server's (Nova would not fault a server another conductor built), so the
    # loser neither errors it nor counts or logs it as failed.
    cloud.add_host("compute1")
    uuids = cloud.boot(cloud.flavor(), count=40)
    first, second = race(Conductor(cloud.engine, cloud.settings, "scheduler1"),
                         Conductor(cloud.engine, cloud.settings, "scheduler2"))
    assert (first.placed + second.placed, first.failed + second.failed) == (40, 0)
    for uuid in uuids:
        assert cloud.server(uuid).host == "compute1" and cloud.fault(uuid) is None
        assert len(cloud.scheduler.allocations(uuid)) == 1


@pytest.mark.parametrize("targets", [("compute1", "compute2"), ("compute1",)], ids=["two-targets", "one-target"])
def test_two_concurrent_passes_move_each_evacuation_exactly_once(cloud, targets):
    # spec 6: an evacuation gets one destination (migration accepted → pre-migrating); the source
    # allocation stays until the source's cleanup, so each server holds exactly two. With one target the
    # losing pass finds no room left for a server already moved: no failure of its own.
    for host in ("source", *targets):
        cloud.add_host(host)
    uuids = cloud.boot(cloud.flavor(), count=30, requested_host="source", force_host=True)
    assert Conductor(cloud.engine, cloud.settings).place_pending().placed == 30
    with cloud.engine.begin() as conn:
        for uuid in uuids:  # as the source's agent reports them built
            servers_db.instance_update(conn, uuid, vm_state=states.ACTIVE, task_state=None)
    cloud.services.set_forced_down_by_host("source", "nova-compute", True)
    migrations = {uuid: cloud.servers.evacuate(ADMIN, uuid).uuid for uuid in uuids}

    first, second = race(Conductor(cloud.engine, cloud.settings, "scheduler1"),
                         Conductor(cloud.engine, cloud.settings, "scheduler2"))
    assert (first.placed + second.placed, first.failed + second.failed) == (30, 0)
    for uuid, migration_uuid in migrations.items():
        with cloud.engine.connect() as conn:
            migration = servers_db.migration_get(conn, migration_uuid)
        assert migration.status == states.MIGRATION_PRE_MIGRATING
        held = Counter(a.host for a in cloud.scheduler.allocations(uuid))
        assert held == {"source": 1, migration.dest_compute: 1}
        assert cloud.server(uuid).task_state == states.REBUILDING
        assert [e.event for e in cloud.events(uuid, "evacuate")] == ["conductor_rebuild_server"]


# -- live: the process -------------------------------------------------------------------------------------

def _stack(make_stack, poll_interval: float, **kwargs) -> Stack:
    return make_stack(extra_config={"scheduler": {"poll_interval": str(poll_interval)}}, **kwargs)


def _wait_for_nodes(stack: Stack, *hosts: str) -> None:
    def reported():
        resp = requests.get(stack.endpoint + "/os-hypervisors", headers=stack.admin_headers("2.53"), timeout=5)
        return {h["hypervisor_hostname"] for h in resp.json()["hypervisors"]} >= set(hosts)

    wait_until(reported, timeout=30, what=f"the nodes of {hosts}")


@pytest.fixture
def live_cloud():
    made: list[Cloud] = []

    def make(stack: Stack) -> Cloud:
        made.append(Cloud(stack.database_url, stack.config_file))
        return made[-1]

    yield make
    for cloud in made:
        cloud.close()


def _placed(cloud: Cloud, uuid: str):
    row = cloud.server(uuid)
    return row if row.host is not None else None


def _stop(proc) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=15)


@pytest.mark.live
def test_a_nudge_places_a_new_server_long_before_the_poll(make_stack, live_cloud):
    # The API nudges every registered nova-scheduler after recording a server (domain/servers.py); with a
    # 60 s poll only the nudge can place it within 2 s.
    stack = _stack(make_stack, poll_interval=60)
    stack.start_scheduler()
    for host in ("compute1", "compute2"):
        stack.start_compute(host)
    _wait_for_nodes(stack, "compute1", "compute2")
    cloud = live_cloud(stack)
    flavor = cloud.flavor()
    (warm_up,) = cloud.boot(flavor)  # placed by the start-up pass or by its nudge
    wait_until(lambda: _placed(cloud, warm_up), timeout=10, what="the first server placed")

    started = time.monotonic()
    (uuid,) = cloud.boot(flavor)
    row = wait_until(lambda: _placed(cloud, uuid), timeout=10, what="the server placed")
    assert time.monotonic() - started < 2.0
    assert row.host in ("compute1", "compute2")
    (allocation,) = cloud.scheduler.allocations(uuid)
    assert allocation.host == row.host
    # Nova's instance-action event of the conductor's build, recorded by the scheduler's host.
    assert [(e.result, e.host) for e in cloud.events(uuid, "create", BUILD_EVENT)] == [("Success", "scheduler")]


@pytest.mark.live
def test_without_nudges_the_poll_still_places_the_server(make_stack, live_cloud):
    # A nudge may be lost (UDP): the poll every [scheduler] poll_interval is the backstop.
    stack = _stack(make_stack, poll_interval=0.5)
    stack.start_scheduler()
    stack.start_compute("compute1")
    _wait_for_nodes(stack, "compute1")
    cloud = live_cloud(stack)
    with cloud.engine.begin() as conn:  # every nudge now goes to the discard port, where nobody listens
        conn.execute(sa.update(Service.__table__).where(Service.__table__.c.binary == "nova-scheduler")
                     .values(nudge_address="127.0.0.1:9"))
    (uuid,) = cloud.boot(cloud.flavor())
    row = wait_until(lambda: _placed(cloud, uuid), timeout=10, what="the server placed by the poll")
    assert row.host == "compute1"


@pytest.mark.live
def test_scheduler_service_is_listed_as_nova_scheduler_and_goes_down_when_stopped(make_stack):
    # spec 3.2: os-services lists nova-scheduler in zone "internal"; spec 4.3: it heartbeats every
    # report_interval (updated_at moves), and once it stops it is down after service_down_time.
    stack = _stack(make_stack, poll_interval=1, report_interval=0.5, service_down_time=2)
    proc = stack.start_scheduler("controller1")

    def listed():
        with compute_microversion("2.53"):  # tempest validates the body against its 2.53 schema
            return tempest_services_client(stack).list_services(binary="nova-scheduler")["services"]

    (service,) = listed()
    assert {k: service[k] for k in ("binary", "host", "zone", "status", "state", "forced_down")} == {
        "binary": "nova-scheduler", "host": "controller1", "zone": "internal", "status": "enabled",
        "state": "up", "forced_down": False}
    seen = {service["updated_at"]}
    wait_until(lambda: seen.add(listed()[0]["updated_at"]) or len(seen) >= 3, timeout=10,
               what="two more heartbeats")
    # Nova only lets nova-compute records be updated through the API.
    resp = requests.put(f"{stack.endpoint}/os-services/{service['id']}", json={"forced_down": True},
                        headers=stack.admin_headers("2.53"), timeout=5)
    assert resp.status_code == 400
    assert "Updating a nova-scheduler service is not supported" in resp.json()["badRequest"]["message"]

    assert _stop(proc) == 0  # SIGTERM: a clean stop
    assert "nova-scheduler on controller1 stopped" in stack.log("scheduler-controller1.log")
    wait_until(lambda: listed()[0]["state"] == "down", timeout=10, what="the stopped scheduler shown down")


@pytest.mark.live
def test_no_valid_host_puts_the_server_in_error_with_novas_fault(make_stack, live_cloud):
    # Nova's conductor, on NoValidHost from the scheduler: vm_state ERROR, no task_state, a fault with
    # code 500 and "No valid host was found. There are not enough hosts available."; the build event
    # is an Error.
    stack = _stack(make_stack, poll_interval=60)
    stack.start_scheduler()
    stack.start_compute("compute1")
    _wait_for_nodes(stack, "compute1")
    cloud = live_cloud(stack)
    (uuid,) = cloud.boot(cloud.flavor(memory_mb=10 ** 6, name="huge"))
    row = wait_until(lambda: (r := cloud.server(uuid)).vm_state == states.ERROR and r, timeout=10,
                     what="the server in error")
    assert (row.task_state, row.host) == (None, None)
    fault = cloud.fault(uuid)
    assert (fault.code, fault.message) == (500, NO_VALID_HOST)
    assert [(e.event, e.result) for e in cloud.events(uuid, "create")] == [(BUILD_EVENT, "Error")]
    assert cloud.scheduler.allocations(uuid) == []


@pytest.mark.live
def test_two_scheduler_processes_place_a_burst_once_each(make_stack, live_cloud):
    # Both schedulers are nudged for every server (Servers.nudge_scheduler); each server still gets
    # exactly one host and one allocation.
    stack = _stack(make_stack, poll_interval=0.2)
    stack.start_scheduler("scheduler1")
    stack.start_scheduler("scheduler2")
    for host in ("compute1", "compute2"):
        stack.start_compute(host)
    _wait_for_nodes(stack, "compute1", "compute2")
    cloud = live_cloud(stack)
    uuids = cloud.boot(cloud.flavor(), count=30)
    wait_until(lambda: all(_placed(cloud, uuid) for uuid in uuids), timeout=30, what="30 servers placed")
    for uuid in uuids:
        (allocation,) = cloud.scheduler.allocations(uuid)
        assert allocation.host == cloud.server(uuid).host
        (event,) = cloud.events(uuid, "create", BUILD_EVENT)
        assert event.host in ("scheduler1", "scheduler2")


@pytest.mark.live
@pytest.mark.only_backend("postgresql")
def test_database_outage_is_logged_and_the_next_pass_places(make_stack, migrated_database_url):
    # A pass that cannot reach the database is logged and retried; the process survives the outage.
    url = migrated_database_url
    name = url.rsplit("/", 1)[1]
    stack = _stack(make_stack, poll_interval=0.3, database_url=url, start=False)
    cloud = Cloud(url, stack.config_file)
    try:
        cloud.add_host("compute1")
        flavor = cloud.flavor()
        proc = stack.start_scheduler()
        cloud.engine.dispose()
        admin = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :name"), {"name": name})
            wait_until(lambda: "placement pass failed" in stack.log("scheduler-scheduler.log"), timeout=15,
                       what="the failed pass logged")
            assert proc.poll() is None
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            admin.dispose()
        (uuid,) = cloud.boot(flavor)
        assert wait_until(lambda: _placed(cloud, uuid), timeout=15, what="the server placed").host == "compute1"
        # The pass logs that it works again once it has returned, just after the placement it committed.
        wait_until(lambda: "placement passes work again" in stack.log("scheduler-scheduler.log"), timeout=15,
                   what="the recovery logged")
        assert _stop(proc) == 0
    finally:
        stack.close()
        cloud.close()
