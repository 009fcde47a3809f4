"""The evacuation's fast path: one read and one transaction per evacuate call, and placement passes that read
a batch of work once (domain/servers.py, domain/conductor.py, domain/scheduler.py's HostView).

What must not change with it: the checks and their order (tests/test_api_evacuate.py), a server evacuated at
most once however the calls race, and placements that never land on a host that is down or full. The
statement counts pinned here are the point of the fast path; SQLAlchemy's own events count them.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool

from novalite.domain import states
from novalite.domain.conductor import BATCH, Conductor
from novalite.domain.scheduler import RequestSpec, Scheduler
from novalite.domain.servers import Requester, Servers
from novalite.exceptions import BadRequest, Conflict
from tests.scripted_host import ScriptedHost, place
from tests.test_api_evacuate import boot_id, evacuate, evacuations, force_down, make_cloud, where

ADMIN = Requester(user_id="admin", project_id="6f70656e737461636b", is_admin=True, request_id="req-test")
ROOM = {"memory_mb": 512 * 400 + 512, "vcpus": 400, "local_gb": 800}  # 400 m1.tiny servers per host


@contextmanager
def counting():
    """Statements executed and connections checked out meanwhile, by every engine of this process (the API
    application's own among them)."""
    seen: Counter[str] = Counter()

    def statement(_conn, _cursor, sql, *_args):
        seen[sql.split(None, 1)[0].upper()] += 1

    def checkout(*_args):
        seen["checkouts"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Pool, "checkout", checkout)


def boot_many(cloud, host: str, count: int) -> list[str]:
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": "", "networks": "none", "host": host,
                       "min_count": count, "max_count": count}}
    assert cloud.api.request("POST", "/v2.1/servers", version="2.74", json=body).status_code == 202
    cloud.settle()
    listed = cloud.api.get(f"/v2.1/servers?host={host}&all_tenants=1&limit=1000", version="2.74").json["servers"]
    assert len(listed) == count
    return [s["id"] for s in listed]


@pytest.fixture
def cloud(tmp_path):
    made = make_cloud(tmp_path)
    for name in ("compute1", "compute2", "compute3"):
        made.hosts[name] = ScriptedHost(made.api, name, **ROOM)
    return made


def fail(cloud, host: str = "compute1") -> None:
    cloud.hosts[host].go_silent()
    assert force_down(cloud, host).status_code == 200


# -- the evacuate call -------------------------------------------------------------------------------------------

def test_an_evacuate_call_is_five_statements_on_one_connection(cloud):
    # The server with its host's compute service (one read), the schedulers' nudge addresses, the conditional
    # update, the action and the migration: one connection, one transaction.
    server = boot_id(cloud)
    fail(cloud)
    with counting() as seen:
        assert evacuate(cloud.api, server, version="2.94").status_code == 200
    assert (seen["SELECT"], seen["UPDATE"], seen["INSERT"], seen["checkouts"]) == (2, 1, 2, 1)


def domain_servers(cloud) -> Servers:
    """The domain's Servers over the cloud's database, as the API process holds it."""
    return Servers(cloud.api.engine, cloud.api.settings)


def test_a_server_moved_since_it_was_read_is_judged_again_where_it_is(cloud):
    # spec 6: the source must not be up. The server is read before the caller's checks run; should it be
    # evacuated and land elsewhere meanwhile, the conditional update (task_state, vm_state *and host*) misses
    # and the checks run again on the server as it is now: its new host is up, so 400, and no second migration.
    server = boot_id(cloud)
    fail(cloud)
    servers = domain_servers(cloud)

    def moved_meanwhile(row):
        assert row.host == "compute1"
        assert evacuate(cloud.api, server, version="2.94").status_code == 200
        cloud.settle()

    with pytest.raises(BadRequest) as refused:
        servers.evacuate(ADMIN, server, authorize=moved_meanwhile)
    status, now_on = where(cloud.api, server)
    assert status == "ACTIVE" and now_on != "compute1"
    assert str(refused.value) == f"Compute service of {now_on} is still in use."
    assert len(evacuations(cloud.api)) == 1


def test_racing_evacuations_of_one_server_never_both_win(cloud):
    # Nova's expected_task_state: of concurrent evacuate calls for one server, all of which read it before any
    # of them updates it, exactly one records a migration; the others find it rebuilding (409).
    server = boot_id(cloud)
    fail(cloud)
    servers = domain_servers(cloud)
    callers = 8
    all_read = threading.Barrier(callers)
    outcomes: list[str] = []

    def call():
        try:
            servers.evacuate(ADMIN, server, authorize=lambda _row: all_read.wait(timeout=30))
            outcomes.append("accepted")
        except Conflict as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    conflict = f"Cannot 'evacuate' instance {server} while it is in task_state rebuilding"
    assert Counter(outcomes) == {"accepted": 1, conflict: callers - 1}
    assert len(evacuations(cloud.api)) == 1


# -- the placement pass --------------------------------------------------------------------------------------

def test_a_pass_places_a_batch_with_one_read_and_one_claim_transaction_each(cloud):
    ids = boot_many(cloud, "compute1", 60)
    fail(cloud)
    for server in ids:
        assert evacuate(cloud.api, server, version="2.94").status_code == 200
    conductor = Conductor(cloud.api.engine, cloud.api.settings)
    with counting() as seen:
        result = conductor.place_pending()
    assert (result.placed, result.failed) == (60, 0)
    # Per evacuation the claim: lock the node, re-read it, the allocation, the migration, the event and the
    # action's updated_at. Per batch: the pending builds and evacuations, their servers, their actions (builds'
    # and evacuations'), the nodes and the allocations held.
    assert seen["checkouts"] <= 60 + 3
    assert seen["SELECT"] + seen["UPDATE"] + seen["INSERT"] <= 60 * 6 + 7
    # The view counts its own claims, so the batch spreads as placements one at a time would (RAMWeigher).
    landed = Counter(where(cloud.api, server)[1] for server in ids)
    assert landed == {"compute1": 60}  # not moved yet: the hosts have not rebuilt them
    moved = Counter(m["dest_compute"] for m in evacuations(cloud.api))
    assert moved == {"compute2": 30, "compute3": 30}


def test_the_hosts_of_each_batch_are_told_before_the_next_batch_is_placed(cloud):
    ids = boot_many(cloud, "compute1", BATCH + 20)
    fail(cloud)
    for server in ids:
        assert evacuate(cloud.api, server, version="2.94").status_code == 200
    told: list[tuple[set[str], int]] = []

    def on_batch(hosts):
        told.append((set(hosts), len([m for m in evacuations(cloud.api) if m["status"] == "pre-migrating"])))

    result = Conductor(cloud.api.engine, cloud.api.settings).place_pending(on_batch=on_batch)
    assert result.placed == BATCH + 20
    assert [placed for _, placed in told] == [BATCH, BATCH + 20]
    assert told[0][0] == {"compute2", "compute3"}


def test_a_host_that_went_down_after_the_batch_was_read_gets_no_claim(cloud):
    # The view may be older than a claim: the claim re-runs the compute filter on the node as read under its
    # lock (spec 4.6: a forced-down host is not up), so nothing lands on a host that went down meanwhile.
    scheduler = Scheduler(cloud.api.engine, cloud.api.settings)
    spec = RequestSpec(consumer_uuid="c0ffee00-0000-4000-8000-000000000001", vcpus=1, memory_mb=512, disk_gb=1)
    view = scheduler.view([spec.consumer_uuid])
    best = scheduler.select_destination(
        RequestSpec(consumer_uuid="c0ffee00-0000-4000-8000-000000000002", vcpus=1, memory_mb=512, disk_gb=1),
        view=view).host
    assert force_down(cloud, best).status_code == 200
    assert scheduler.select_destination(spec, view=view).host != best


def test_a_forced_destination_skips_the_compute_filter_at_claim_time_too(cloud):
    # 2.29-2.67 force=true bypasses the filters (spec 6), so the claim's re-check does not apply either.
    server = boot_id(cloud)
    fail(cloud)
    cloud.api.put(f"/v2.1/os-services/{cloud.hosts['compute2'].uuid}", {"status": "disabled"}, version="2.53")
    assert evacuate(cloud.api, server, version="2.29", host="compute2", force=True).status_code == 200
    place(cloud.api)
    (migration,) = evacuations(cloud.api)
    assert (migration["status"], migration["dest_compute"]) == (states.MIGRATION_PRE_MIGRATING, "compute2")
