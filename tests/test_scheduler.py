"""The scheduler (domain/scheduler.py) on every backend: filters, weigher, pinning, forcing, claims.

Issue 3 §3: servers and evacuations go to hosts that are up, enabled and have room, and concurrent
placements never overcommit a host. Hosts and nodes are made through Services.register and
report_node, the domain side of the agent interface, so the rows are the agents' rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from novalite import config
from novalite.db import engine as db_engine
from novalite.db.models import Service
from novalite.domain.scheduler import (
    HostState,
    Inventory,
    RequestSpec,
    Scheduler,
    compute_filter,
)
from novalite.domain.services import Services
from novalite.exceptions import NoValidHost


class Cloud:
    def __init__(self, url: str):
        db_engine.sync(url)
        self.settings = config.load(environ={"NOVALITE_DATABASE__CONNECTION": url,
                                             "NOVALITE_API__AUTH_STRATEGY": "noauth2"})
        self.engine = db_engine.make_engine(url)
        self.services = Services(self.engine, self.settings)
        self.scheduler = Scheduler(self.engine, self.settings)

    def add_host(self, host: str, *, vcpus: int = 16, memory_mb: int = 8192, local_gb: int = 100,
                 **inventory) -> str:
        """Register host's nova-compute and report its one node (named like the host); the node's UUID."""
        service = self.services.register(host, "nova-compute", 1)
        row = self.services.report_node(service.uuid, host, {
            "hypervisor_type": "simulated", "hypervisor_version": 1, "cpu_info": "{}",
            "vcpus": vcpus, "memory_mb": memory_mb, "local_gb": local_gb,
            "vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": 0, "running_vms": 0, **inventory,
        })
        return row.uuid

    def allocated(self) -> dict[str, dict[str, int]]:
        """host → summed allocations, as the scheduler sees them."""
        return {s.host: {"memory_mb": s.memory_mb.used, "vcpus": s.vcpus.used, "disk_gb": s.disk_gb.used}
                for s in self.scheduler.host_states()}


@pytest.fixture
def cloud(migrated_database_url):
    made = Cloud(migrated_database_url)
    yield made
    made.engine.dispose()


def spec(memory_mb: int = 1024, vcpus: int = 1, disk_gb: int = 10, **kwargs) -> RequestSpec:
    return RequestSpec(consumer_uuid=kwargs.pop("consumer_uuid", str(uuid.uuid4())), vcpus=vcpus,
                       memory_mb=memory_mb, disk_gb=disk_gb, **kwargs)


# -- compute_filter: up and enabled (spec 4.6, 4.7) ------------------------------------------------------

def test_forced_down_host_is_not_chosen(cloud):
    # spec 4.6: ComputeFilter rejects hosts that are not up; forced_down makes a host not up
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2")
    cloud.services.set_forced_down_by_host("compute1", "nova-compute", True)
    assert cloud.scheduler.select_destination(spec()).host == "compute2"


def test_disabled_host_is_not_chosen_though_up(cloud):
    # spec 4.7: disabled only stops scheduling; ComputeFilter rejects it
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2")
    cloud.services.set_disabled_by_host("compute1", "nova-compute", True, "maintenance")
    assert cloud.scheduler.select_destination(spec()).host == "compute2"


def test_host_without_a_recent_heartbeat_is_not_chosen(cloud):
    # spec 4.2: last heartbeat = last_seen_up, else created_at; older than service_down_time is down
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2")
    long_ago = dt.datetime(2020, 1, 1)
    with cloud.engine.begin() as conn:
        conn.execute(sa.update(Service.__table__).where(Service.__table__.c.host == "compute1")
                     .values(created_at=long_ago, last_seen_up=long_ago))
    assert cloud.scheduler.select_destination(spec()).host == "compute2"


def test_node_without_a_compute_service_is_rejected():
    lone = HostState(node_id=1, node_uuid="u", host="h", nodename="h", generation=0,
                     vcpus=Inventory(4, 0, 1.0, 0), memory_mb=Inventory(4096, 0, 1.0, 0),
                     disk_gb=Inventory(10, 0, 1.0, 0), has_service=False, up=False, disabled=False,
                     disabled_reason=None, availability_zone="nova")
    assert compute_filter(lone, spec()) == "has no nova-compute service"


# -- availability_zone_filter ------------------------------------------------------------------------

def test_every_compute_host_is_in_the_default_zone(cloud):
    cloud.add_host("compute1")
    assert cloud.scheduler.select_destination(spec(availability_zone="nova")).host == "compute1"
    with pytest.raises(NoValidHost, match="There are not enough hosts available"):
        cloud.scheduler.select_destination(spec(availability_zone="az2"))


# -- capacity: (total − reserved) × allocation_ratio − allocations, and requested ≤ total -------------------

def test_ram_capacity_counts_reserved_ratio_and_allocations_not_reported_use(cloud):
    # (4096 − 1024) × 1.5 = 4608 MB claimable; memory_mb_used as reported is not read
    cloud.add_host("compute1", memory_mb=4096, reserved_host_memory_mb=1024, ram_allocation_ratio=1.5,
                   memory_mb_used=4000)
    placed = [cloud.scheduler.select_destination(spec(memory_mb=1536)) for _ in range(3)]
    assert {s.host for s in placed} == {"compute1"}
    with pytest.raises(NoValidHost):
        cloud.scheduler.select_destination(spec(memory_mb=1))
    assert cloud.allocated()["compute1"]["memory_mb"] == 4608


def test_core_filter_uses_cpu_allocation_ratio(cloud):
    cloud.add_host("compute1", vcpus=4, reserved_host_cpus=2, cpu_allocation_ratio=4.0)
    for _ in range(8):
        cloud.scheduler.select_destination(spec(memory_mb=1, vcpus=1, disk_gb=0))
    with pytest.raises(NoValidHost):
        cloud.scheduler.select_destination(spec(memory_mb=1, vcpus=1, disk_gb=0))


def test_disk_filter_rounds_reserved_disk_up_to_whole_gb(cloud):
    # Nova converts reserved_host_disk_mb to GB rounding up: 1 MB reserved costs 1 GB
    cloud.add_host("compute1", local_gb=20, reserved_host_disk_mb=1)
    cloud.scheduler.select_destination(spec(memory_mb=1, disk_gb=19))
    with pytest.raises(NoValidHost):
        cloud.scheduler.select_destination(spec(memory_mb=1, disk_gb=1))


def test_overcommit_never_gives_one_server_more_than_the_host_has(cloud):
    # placement's max_unit: requested ≤ total, whatever the ratio
    cloud.add_host("compute1", memory_mb=4096, ram_allocation_ratio=10.0)
    with pytest.raises(NoValidHost):
        cloud.scheduler.select_destination(spec(memory_mb=4097))


def test_a_zero_request_needs_no_room(cloud):
    cloud.add_host("compute1", local_gb=0)
    assert cloud.scheduler.select_destination(spec(disk_gb=0)).host == "compute1"


# -- weigher ---------------------------------------------------------------------------------------------

def test_most_free_ram_wins_and_placements_spread(cloud):
    cloud.add_host("compute1", memory_mb=8192)
    cloud.add_host("compute2", memory_mb=6144, reserved_host_memory_mb=0)
    cloud.add_host("compute3", memory_mb=8192, reserved_host_memory_mb=4096)
    hosts = [cloud.scheduler.select_destination(spec(memory_mb=1024)).host for _ in range(6)]
    # free: 8192, 6144, 4096 → compute1 ×3 (down to 5120), then 2 and 1 alternate, compute3 last
    assert hosts == ["compute1", "compute1", "compute1", "compute2", "compute1", "compute2"]


# -- pinning (force=false) and forcing (force=true), spec 6 -----------------------------------------------

def test_pinned_host_is_used_even_with_less_free_ram(cloud):
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2", memory_mb=4096)
    assert cloud.scheduler.select_destination(spec(requested_host="compute2")).host == "compute2"


def test_pinned_host_still_runs_the_filters(cloud):
    # spec 6: with force false and a host given, the scheduler still checks it
    cloud.add_host("compute1")
    cloud.add_host("compute2")
    cloud.services.set_disabled_by_host("compute2", "nova-compute", True, None)
    with pytest.raises(NoValidHost) as caught:
        cloud.scheduler.select_destination(spec(requested_host="compute2"))
    assert caught.value.message == "No valid host was found. There are not enough hosts available."
    assert caught.value.code == 500


def test_forced_host_bypasses_filters_but_is_claimed(cloud):
    # spec 6: with force true the scheduler is bypassed; the destination is still claimed
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2", memory_mb=2048)
    cloud.services.set_disabled_by_host("compute2", "nova-compute", True, "maintenance")
    first = spec(memory_mb=2048, force_host="compute2")
    assert cloud.scheduler.move_claim(first).host == "compute2"
    assert cloud.allocated()["compute2"]["memory_mb"] == 2048
    second = spec(memory_mb=1024, force_host="compute2")
    with pytest.raises(NoValidHost) as caught:
        cloud.scheduler.move_claim(second)
    assert caught.value.message == (
        f"No valid host was found. Unable to move instance {second.consumer_uuid} to host compute2. "
        "There is not enough capacity on the host for the instance.")


def test_unknown_requested_host_is_no_valid_host(cloud):
    cloud.add_host("compute1")
    with pytest.raises(NoValidHost, match="not enough hosts"):
        cloud.scheduler.select_destination(spec(requested_host="nowhere"))


def test_pinning_and_forcing_together_is_a_programming_error():
    with pytest.raises(ValueError):
        spec(requested_host="a", force_host="a")


# -- evacuation claims, release ------------------------------------------------------------------------

def test_move_claim_keeps_the_source_allocation_until_its_cleanup(cloud):
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2")
    server = spec(memory_mb=2048)
    assert cloud.scheduler.select_destination(server).host == "compute1"
    cloud.services.set_forced_down_by_host("compute1", "nova-compute", True)
    evacuation = spec(memory_mb=2048, consumer_uuid=server.consumer_uuid, ignore_hosts=("compute1",))
    assert cloud.scheduler.move_claim(evacuation).host == "compute2"
    assert [a.host for a in cloud.scheduler.allocations(server.consumer_uuid)] == ["compute1", "compute2"]
    # the source compute restarts and cleans up (spec 6): only its allocation goes
    assert cloud.scheduler.release(server.consumer_uuid, host="compute1") == 1
    assert [a.host for a in cloud.scheduler.allocations(server.consumer_uuid)] == ["compute2"]
    assert cloud.allocated()["compute1"]["memory_mb"] == 0


def test_ignored_source_host_is_never_the_destination(cloud):
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2")
    assert cloud.scheduler.move_claim(spec(ignore_hosts=("compute1",))).host == "compute2"
    with pytest.raises(NoValidHost):
        cloud.scheduler.move_claim(spec(ignore_hosts=("compute1", "compute2")))


def test_a_consumer_is_never_placed_twice_on_one_node(cloud):
    cloud.add_host("compute1", memory_mb=16384)
    cloud.add_host("compute2")
    server = spec()
    assert cloud.scheduler.select_destination(server).host == "compute1"
    assert cloud.scheduler.move_claim(server).host == "compute2"


def test_release_gives_the_room_back(cloud):
    cloud.add_host("compute1", memory_mb=2048)
    server = spec(memory_mb=2048)
    cloud.scheduler.select_destination(server)
    with pytest.raises(NoValidHost):
        cloud.scheduler.select_destination(spec(memory_mb=2048))
    assert cloud.scheduler.release(server.consumer_uuid) == 1
    assert cloud.scheduler.release(server.consumer_uuid) == 0
    assert cloud.scheduler.select_destination(spec(memory_mb=2048)).host == "compute1"


# -- atomic claims -------------------------------------------------------------------------------------

def test_a_claim_is_judged_on_usage_at_claim_time_not_at_read_time(cloud):
    cloud.add_host("compute1", memory_mb=3072)
    (stale,) = cloud.scheduler.host_states()  # 3072 MB free when read
    cloud.scheduler.select_destination(spec(memory_mb=2048))
    lost = cloud.scheduler.claim(spec(memory_mb=2048), stale)
    assert lost == "ram_filter: does not have 2048 MB RAM usable, it only has 1024 MB RAM usable"
    assert cloud.scheduler.claim(spec(memory_mb=1024), stale) is None
    assert cloud.allocated()["compute1"]["memory_mb"] == 3072


def test_every_claim_moves_the_generation_on(cloud):
    cloud.add_host("compute1", memory_mb=2048)
    (before,) = cloud.scheduler.host_states()
    cloud.scheduler.select_destination(spec(memory_mb=1024))
    (after,) = cloud.scheduler.host_states()
    assert after.generation == before.generation + 1


def test_release_moves_the_generation_on(cloud):
    cloud.add_host("compute1", memory_mb=2048)
    server = spec(memory_mb=1024)
    cloud.scheduler.select_destination(server)
    (before,) = cloud.scheduler.host_states()
    cloud.scheduler.release(server.consumer_uuid)
    (after,) = cloud.scheduler.host_states()
    assert after.generation == before.generation + 1


def _run_in_parallel(work, count: int) -> list:
    """Run work(i) for i < count in as many threads, released together; results in order."""
    results: list = [None] * count
    gate = threading.Barrier(count)

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = work(i)
        except NoValidHost as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


# (host, memory_mb, reserved_host_memory_mb, ram_allocation_ratio) → 1024 MB slots; RAM is the limit
LIMITED = [("compute1", 8192, 512, 1.0), ("compute2", 6144, 0, 1.0), ("compute3", 4096, 0, 1.5)]
SLOTS = {"compute1": 7, "compute2": 6, "compute3": 6}


def _limited_hosts(cloud: Cloud) -> None:
    for host, memory_mb, reserved, ratio in LIMITED:
        cloud.add_host(host, memory_mb=memory_mb, reserved_host_memory_mb=reserved, ram_allocation_ratio=ratio)


def test_200_parallel_placements_never_overcommit(cloud):
    # issue 3 §3: concurrent placements never overcommit a host; exactly as many succeed as fit
    _limited_hosts(cloud)
    results = _run_in_parallel(lambda i: cloud.scheduler.select_destination(spec(memory_mb=1024)), 200)
    placed = Counter(r.host for r in results if not isinstance(r, NoValidHost))
    refused = [r for r in results if isinstance(r, NoValidHost)]
    assert placed == SLOTS
    assert len(refused) == 200 - sum(SLOTS.values())
    assert {r.reason for r in refused} == {"There are not enough hosts available."}
    assert {h: a["memory_mb"] for h, a in cloud.allocated().items()} == {h: n * 1024 for h, n in SLOTS.items()}


def test_200_parallel_evacuations_from_one_host_never_overcommit_a_target(cloud):
    # issue 3 tests: 200 evacuations fired in parallel from one host never overcommit any target
    cloud.add_host("source", vcpus=256, memory_mb=256 * 1024, local_gb=4000)
    _limited_hosts(cloud)
    servers = [spec(memory_mb=1024, requested_host="source") for _ in range(200)]
    for server in servers:
        cloud.scheduler.select_destination(server)
    cloud.services.set_forced_down_by_host("source", "nova-compute", True)

    def evacuate(i: int):
        server = servers[i]
        return cloud.scheduler.move_claim(spec(memory_mb=1024, consumer_uuid=server.consumer_uuid,
                                               ignore_hosts=("source",)))

    results = _run_in_parallel(evacuate, 200)
    placed = Counter(r.host for r in results if not isinstance(r, NoValidHost))
    assert placed == SLOTS
    allocated = cloud.allocated()
    assert allocated["source"]["memory_mb"] == 200 * 1024  # source allocations stay until its cleanup
    for host, memory_mb, reserved, ratio in LIMITED:
        assert allocated[host]["memory_mb"] <= (memory_mb - reserved) * ratio


# -- logging (style.md §3: a reader can find why a host was rejected) -------------------------------------

def test_every_rejection_is_logged_with_the_filter_name(cloud, caplog):
    cloud.add_host("compute1")
    cloud.add_host("compute2", memory_mb=2048, reserved_host_memory_mb=1536)
    cloud.add_host("compute3")
    cloud.services.set_disabled_by_host("compute1", "nova-compute", True, "maintenance")
    cloud.services.set_forced_down_by_host("compute3", "nova-compute", True)
    caplog.set_level(logging.DEBUG, logger="novalite.scheduler")
    with pytest.raises(NoValidHost):
        cloud.scheduler.select_destination(spec(memory_mb=1024, ignore_hosts=("nowhere",)))
    text = caplog.text
    assert "compute_filter: (compute1, compute1) rejected: is disabled, reason: maintenance" in text
    assert "compute_filter: (compute3, compute3) rejected: has not been heard from" in text
    assert "ram_filter: (compute2, compute2) rejected: does not have 1024 MB RAM usable" in text
    assert "Filtering removed all hosts for the request with instance ID" in text
