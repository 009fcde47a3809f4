"""The monitor's recovery of a failed host, against a live stack (API, scheduler, compute agents as processes).

The recovery is driven directly, as the monitor's service would after detection: the test kills a host's
agent with SIGKILL and hands ``Recovery.recover`` a HostFailed. The fencer is the real ``command`` fencer
running a real script (fence.sh below): it powers the "host" off by killing its agent's process group and
exits 0 only once that process is gone. The client is the monitor's own (``open_client``: keystoneauth with
the stack's admin token, OS_* variables as clients.md 4 sets them).

Nova facts pinned: evacuation needs the source forced down (spec 4.6, 6 step 10); below 2.95 an evacuated
server comes back as it was, ACTIVE, or SHUTOFF when it was stopped (spec 6), from 2.95 it lands SHUTOFF;
each evacuation is one "evacuate" instance action and one migration accepted → done (spec 6); a
NoValidHost evacuation leaves the server ERROR and its migration "error", and an ERROR server can be
evacuated again (spec 6 step 10); force-up is refused with 400 while `done` evacuations remain (spec 3.6);
disabled_reason is kept with forced_down through the 2.53 PUT (spec 3.4).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from novalite import config
from novalite.cli.up import seed_flavors
from novalite.monitor.detection import HostFailed
from novalite.monitor.fencing import load_fencer
from novalite.monitor.journal import Journal
from novalite.monitor.recovery import Recovery, open_client
from tests.clients import agent_process, client_env, run_cli, token_env
from tests.stack import Stack, wait_until

# The monitor acts through the public API only: it runs once, in the SQLite run (conftest.py).

FENCE_SCRIPT = """#!/bin/sh
# fence.sh HOST PGID: "power off" a simulated host by killing its agent's process group, and exit 0
# only once the agent is gone (the command fencer's contract: exit 0 = off, confirmed).
echo "$1" >> "$(dirname "$0")/fenced.log"
kill -9 -"$2" 2>/dev/null
for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || exit 0
    sleep 0.05
done
echo "$1 is still on" >&2
exit 1
"""
REFUSING_FENCE_SCRIPT = """#!/bin/sh
echo "$1" >> "$(dirname "$0")/fenced.log"
echo "BMC of $1: connection refused" >&2
exit 1
"""
RECOVER_SCRIPT = """
import asyncio, sys
from novalite import config
from novalite.monitor.fencing import load_fencer
from novalite.monitor.journal import Journal
from novalite.monitor.recovery import Recovery, open_client

async def main(config_file, host):
    settings = config.load(config_file)
    recovery = Recovery(open_client(), load_fencer(settings), Journal(settings.monitor.state_path), settings)
    await recovery.recover(host)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


# -- the stack ---------------------------------------------------------------------------------------------

def api(stack: Stack, method: str, path: str, version: str = "2.74", **kwargs) -> requests.Response:
    return requests.request(method, stack.endpoint + path, headers=stack.admin_headers(version), timeout=10,
                            **kwargs)


def start(make_stack, *hosts: str) -> Stack:
    stack = make_stack()
    seed_flavors(stack.database_url)
    stack.start_scheduler()
    for host in hosts:
        stack.start_compute(host)
    stack.wait_for_computes(*hosts)
    return stack


def servers(stack: Stack) -> dict[str, dict]:
    resp = api(stack, "GET", "/servers/detail?all_tenants=1")
    resp.raise_for_status()
    return {s["id"]: s for s in resp.json()["servers"]}


def boot(stack: Stack, host: str, count: int = 1, *, flavor: str = "1", metadata: dict | None = None,
         name: str = "vm") -> list[str]:
    """``count`` servers pinned to ``host`` (2.74's "host"), ACTIVE; their ids."""
    before = set(servers(stack))
    body = {"server": {"name": name, "flavorRef": flavor, "networks": "none", "host": host,
                       "min_count": count, "max_count": count, **({"metadata": metadata} if metadata else {})}}
    resp = api(stack, "POST", "/servers", json=body)
    assert resp.status_code == 202, resp.text

    def active():
        new = {i: s for i, s in servers(stack).items() if i not in before}
        return len(new) == count and all(s["status"] == "ACTIVE" for s in new.values()) and sorted(new)

    return wait_until(active, timeout=30, what=f"{count} ACTIVE servers on {host}")


def stop_server(stack: Stack, server_id: str) -> None:
    assert api(stack, "POST", f"/servers/{server_id}/action", json={"os-stop": None}).status_code == 202
    wait_until(lambda: servers(stack)[server_id]["status"] == "SHUTOFF", what=f"{server_id} SHUTOFF")


def service(stack: Stack, host: str) -> dict:
    return next(s for s in stack.services() if s["host"] == host and s["binary"] == "nova-compute")


def kill_agent(stack: Stack, host: str) -> None:
    proc = agent_process(stack, host)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def evacuate_actions(stack: Stack, server_id: str) -> list[dict]:
    resp = api(stack, "GET", f"/servers/{server_id}/os-instance-actions", version="2.21")
    resp.raise_for_status()
    return [a for a in resp.json()["instanceActions"] if a["action"] == "evacuate"]


def evacuations(stack: Stack, server_id: str) -> list[str]:
    resp = api(stack, "GET", f"/os-migrations?instance_uuid={server_id}&migration_type=evacuation", version="2.59")
    resp.raise_for_status()
    return [m["status"] for m in sorted(resp.json()["migrations"], key=lambda m: m["id"])]


def guests_of(stack: Stack, host: str) -> set[str]:
    path = stack.root / ".novalite-compute" / host / "guests.json"
    return set(json.loads(path.read_text())["guests"]) if path.exists() else set()


# -- the monitor ---------------------------------------------------------------------------------------------

def configure_monitor(stack: Stack, *, fence: str = FENCE_SCRIPT, **monitor: str) -> Path:
    """[monitor] and [fence:<host>] in the stack's config file: the command fencer runs fence.sh with each
    running agent's process group; returns where fence.sh logs the hosts it was asked to fence."""
    script = stack.root / "fence.sh"
    script.write_text(fence)
    script.chmod(0o755)
    fences = {f"fence:{proc.args[3]}": {"command": f"{script} {{host}} {proc.pid}"}
              for proc in stack.procs if proc.args[1:3] == ["compute", "--host"] and proc.poll() is None}
    stack.extra_config = {**stack.extra_config, **fences, "monitor": {
        "fencer": "command", "fence_timeout": "15", "state_path": str(stack.root / "monitor.sqlite"),
        "evacuation_timeout": "60", **monitor}}
    stack.write_config()
    return stack.root / "fenced.log"


@pytest.fixture
def monitor_env(monkeypatch, sdk_env):
    """What open_client reads: keystoneauth's admin_token plugin with the stack's token and endpoint."""
    def use(stack: Stack) -> None:
        for key, value in token_env(stack).items():
            if key.startswith("OS_"):
                monkeypatch.setenv(key, value)
    return use


def settings_of(stack: Stack) -> config.Settings:
    return config.load(str(stack.config_file))


async def with_recovery(stack: Stack, work, version: str | None = None):
    """Run ``work(recovery, journal)`` with a fresh Recovery built as the monitor builds it."""
    settings = settings_of(stack)
    client = open_client()
    if version is not None:
        from novalite.client import ApiVersion

        client.version = ApiVersion.parse(version)
    journal = Journal(settings.monitor.state_path)
    recovery = Recovery(client, load_fencer(settings), journal, settings)
    try:
        return await work(recovery, journal)
    finally:
        recovery.close()
        journal.close()


def failure(host: str) -> HostFailed:
    now = time.time()
    return HostFailed(host=host, last_beat_wall=now - 0.4, detected_wall=now, silence_seconds=0.4)


def recover(stack: Stack, host: str, version: str | None = None):
    async def work(recovery, journal):
        return await recovery.recover(host, failure(host))
    return asyncio.run(with_recovery(stack, work, version))


def journal_of(stack: Stack) -> Journal:
    return Journal(stack.root / "monitor.sqlite", readonly=True)


def kinds(events) -> list[str]:
    return [e.kind for e in events]


# -- the tests -------------------------------------------------------------------------------------------------

# The monitor's own microversion (2.94, open_client's), and 2.52: the legacy force-down and
# disable-log-reason requests instead of the 2.53 PUT (spec 3.3, 3.4).
@pytest.mark.parametrize("version", [None, "2.52"])
def test_recover_fences_forces_down_disables_and_moves_every_server_once(make_stack, monitor_env, version):
    stack = start(make_stack, "compute1", "compute2", "compute3")
    monitor_env(stack)
    ids = boot(stack, "compute1", 6)
    stop_server(stack, ids[0])  # a stopped server stays stopped (spec 6, below 2.95)
    fenced_log = configure_monitor(stack)
    kill_agent(stack, "compute1")

    result = recover(stack, "compute1", version)

    assert (result.outcome, result.moved, result.failed, result.skipped) == ("recovered", 6, 0, 0), result
    assert fenced_log.read_text().split() == ["compute1"]
    svc = service(stack, "compute1")
    assert svc["forced_down"] is True and svc["state"] == "down" and svc["status"] == "disabled"
    assert svc["disabled_reason"].startswith(f"novalite-monitor: evacuated {result.recovery_id} at ")
    assert svc["disabled_reason"].endswith(": 6 moved, 0 failed")
    now = servers(stack)
    assert {now[i]["OS-EXT-SRV-ATTR:host"] for i in ids} <= {"compute2", "compute3"}
    assert now[ids[0]]["status"] == "SHUTOFF"
    assert all(now[i]["status"] == "ACTIVE" for i in ids[1:])
    for server_id in ids:
        assert len(evacuate_actions(stack, server_id)) == 1
        assert evacuations(stack, server_id) == ["done"]
    assert guests_of(stack, "compute2") | guests_of(stack, "compute3") == set(ids)
    assert not guests_of(stack, "compute2") & guests_of(stack, "compute3")

    journal = journal_of(stack)
    events = journal.events(host="compute1")
    assert kinds(events)[:4] == ["detected", "fenced", "forced_down", "disabled"]  # fencing first
    assert kinds(events)[-1] == "recovered"
    assert {e.recovery_id for e in events} == {result.recovery_id}
    for kind in ("planned", "evacuation_accepted", "landed"):
        assert sorted(e.server for e in events if e.kind == kind) == sorted(ids), kind
    assert events[0].detail["silence_seconds"] == 0.4
    assert next(e for e in events if e.kind == "disabled").detail["reason"].startswith(
        f"novalite-monitor: recovering {result.recovery_id} since ")
    assert [r.recovery_id for r in journal.recoveries()] == [result.recovery_id]

    # `novalite monitor events` lists the recovery's history from the journal.
    cli = ["novalite", "monitor", "events", "--config-file", str(stack.config_file)]
    listed = json.loads(run_cli([*cli, "--host", "compute1", "-f", "json"], client_env()).stdout)
    assert [e["kind"] for e in listed] == kinds(events)
    assert listed[0]["recovery_id"] == result.recovery_id and listed[0]["at"].endswith("Z")
    table = run_cli([*cli, "--recovery", result.recovery_id], client_env()).stdout
    assert "| Time" in table and table.count("evacuation_accepted") == 6 and "recovered" in table


def test_unconfirmed_fencing_stops_the_recovery_before_any_action(make_stack, monitor_env):
    # Nova's evacuate precondition: "the failed host must be fenced" (ha-anchors 4); an unfenced host is
    # neither forced down nor evacuated.
    stack = start(make_stack, "compute1", "compute2")
    monitor_env(stack)
    ids = boot(stack, "compute1", 2)
    fenced_log = configure_monitor(stack, fence=REFUSING_FENCE_SCRIPT)
    kill_agent(stack, "compute1")

    result = recover(stack, "compute1")

    assert result.outcome == "fence-failed" and "connection refused" in result.reason
    assert fenced_log.read_text().split() == ["compute1"]
    svc = service(stack, "compute1")
    assert (svc["forced_down"], svc["status"]) == (False, "enabled")
    assert all(servers(stack)[i]["OS-EXT-SRV-ATTR:host"] == "compute1" for i in ids)
    assert all(evacuate_actions(stack, i) == [] for i in ids)
    assert kinds(journal_of(stack).events(host="compute1")) == ["detected", "fence_failed"]


def test_operator_disabled_host_is_left_alone(make_stack, monitor_env):
    # Issue 4's gate: hosts an operator disabled are left alone (not fenced, not forced down, not evacuated).
    stack = start(make_stack, "compute1", "compute2")
    monitor_env(stack)
    ids = boot(stack, "compute1", 2)
    resp = api(stack, "PUT", f"/os-services/{service(stack, 'compute1')['id']}", version="2.53",
               json={"status": "disabled", "disabled_reason": "maintenance: disk swap"})
    assert resp.status_code == 200, resp.text
    fenced_log = configure_monitor(stack)
    kill_agent(stack, "compute1")

    result = recover(stack, "compute1")

    assert result.outcome == "held" and result.reason.startswith("operator-disabled:")
    assert not fenced_log.exists()  # not even fenced
    svc = service(stack, "compute1")
    assert (svc["forced_down"], svc["disabled_reason"]) == (False, "maintenance: disk swap")
    assert all(servers(stack)[i]["OS-EXT-SRV-ATTR:host"] == "compute1" for i in ids)
    events = journal_of(stack).events(host="compute1")
    assert kinds(events) == ["held"] and events[0].detail["rule"] == "operator-disabled"


def test_resume_after_the_monitor_was_killed_mid_recovery_evacuates_nothing_twice(make_stack, monitor_env):
    # The disabled_reason marker is the recovery's state (ha-anchors 2.2, RHOSO's resume-safe evacuation);
    # each evacuation is one "evacuate" instance action (spec 6 step 11), so their count per server proves
    # no server was evacuated twice.
    count = 30
    stack = start(make_stack, "compute1", "compute2", "compute3")
    monitor_env(stack)
    ids = boot(stack, "compute1", count)
    configure_monitor(stack, evacuation_workers="1")
    kill_agent(stack, "compute1")

    # The first monitor: a process of its own, killed with SIGKILL once some evacuations were accepted.
    first = subprocess.Popen([sys.executable, "-c", RECOVER_SCRIPT, str(stack.config_file), "compute1"],
                             env=token_env(stack), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def accepted():
            if first.poll() is not None:
                raise AssertionError(f"the first monitor exited {first.returncode}: {first.stdout.read()}")
            path = stack.root / "monitor.sqlite"
            if not path.exists():
                return False
            journal = journal_of(stack)
            try:
                return len(journal.events(kind="evacuation_accepted")) >= 3
            except sqlite3.OperationalError:  # created, its table not yet
                return False
            finally:
                journal.close()

        wait_until(accepted, timeout=60, interval=0.005, what="3 evacuations accepted")
    finally:
        first.kill()
        first.wait(timeout=10)
    journal = journal_of(stack)
    before = len(journal.events(kind="evacuation_accepted"))
    assert 3 <= before < count, "the first monitor finished before it was killed: nothing to resume"
    svc = service(stack, "compute1")
    assert svc["forced_down"] and svc["disabled_reason"].startswith("novalite-monitor: recovering ")

    async def work(recovery, _):
        return await recovery.resume()

    results = asyncio.run(with_recovery(stack, work))

    assert [(r.host, r.outcome, r.moved, r.failed) for r in results] == [("compute1", "recovered", count, 0)]
    now = servers(stack)
    assert all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] != "compute1" for i in ids)
    for server_id in ids:  # never evacuated twice
        assert len(evacuate_actions(stack, server_id)) == 1, server_id
        assert evacuations(stack, server_id) == ["done"]
    events = journal.events(host="compute1")
    assert {e.recovery_id for e in events} == {results[0].recovery_id}
    assert kinds(events).count("resumed") == 1 and kinds(events).count("fenced") == 1
    accepted_servers = [e.server for e in events if e.kind == "evacuation_accepted"]
    assert len(accepted_servers) == len(set(accepted_servers))  # none accepted twice, across both monitors
    # The killed monitor may have had an evacuation accepted by Nova without living to note it: the second
    # found that server in flight or already moved, and did not evacuate it again.
    found_moving = {e.server for e in events if e.kind == "in_flight" or e.detail.get("already")}
    assert set(accepted_servers) | found_moving == set(ids)
    assert service(stack, "compute1")["disabled_reason"].startswith(
        f"novalite-monitor: evacuated {results[0].recovery_id} at ")


@pytest.mark.parametrize("leave_disabled", [False, True])
def test_host_return_forces_up_only_after_the_evacuations_completed(make_stack, monitor_env, leave_disabled):
    # Spec 3.6 (bug 1922053): force-up is a 400 while `done` evacuations remain; the source compute's restart
    # completes them (spec 6), then force-up and enable (ha-anchors 9, step 6-7; RHOSO's LEAVE_DISABLED).
    stack = start(make_stack, "compute1", "compute2")
    monitor_env(stack)
    ids = boot(stack, "compute1", 3)
    configure_monitor(stack, leave_disabled=str(leave_disabled).lower(), poll_interval="0.1")
    kill_agent(stack, "compute1")
    rid = recover(stack, "compute1").recovery_id
    journal = journal_of(stack)

    async def work(recovery, _):
        returning = asyncio.ensure_future(recovery.host_returned("compute1"))
        # Spec 3.6: refused while the `done` evacuations remain, i.e. until compute1's agent restarts.
        while not journal.events(host="compute1", kind="force_up_refused"):
            assert not returning.done(), returning.result()
            await asyncio.sleep(0.05)
        assert service(stack, "compute1")["forced_down"] is True
        stack.start_compute("compute1")
        return await asyncio.wait_for(returning, 60)

    outcome = asyncio.run(with_recovery(stack, work))

    assert outcome == ("left-disabled" if leave_disabled else "enabled")
    refused = journal.events(host="compute1", kind="force_up_refused")
    assert "`done` evacuation migration records remain" in refused[0].detail["reason"]
    assert all(evacuations(stack, i) == ["completed"] for i in ids)
    svc = service(stack, "compute1")
    assert svc["forced_down"] is False
    last = "left_disabled" if leave_disabled else "enabled"
    assert kinds(journal.events(host="compute1"))[-4:] == ["host_returned", "force_up_refused", "forced_up", last]
    if leave_disabled:
        assert svc["status"] == "disabled"
        assert svc["disabled_reason"].startswith(f"novalite-monitor: returned {rid} at ")
    else:
        assert (svc["status"], svc["disabled_reason"]) == ("enabled", None)
    wait_until(lambda: service(stack, "compute1")["state"] == "up", timeout=30, what="compute1 up")
    assert guests_of(stack, "compute1") == set()  # its copies were destroyed on restart


def test_spare_hosts_first_while_they_have_room_in_priority_order(make_stack, monitor_env):
    # Masakari's reserved_host method enables the (disabled) reserved host and evacuates to it; Nova checks an
    # explicit evacuate host with the scheduler (spec 6 step 11, no force from 2.68). Spares are filled by
    # priority (RHOSO's restart_priority) while their free RAM holds the flavor, the rest go to the scheduler.
    stack = start(make_stack, "compute1", "compute2", "compute3")
    monitor_env(stack)
    # compute3 is the spare: fill it so that 1536 MB stay free (32768 − 512 reserved − 30720): 3 m1.tiny.
    for flavor in ("5", "4", "3", "2"):
        boot(stack, "compute3", flavor=flavor, name=f"filler{flavor}")
    priorities = [2, 5, 1, 4, 3]
    ids = {p: boot(stack, "compute1", metadata={"novalite:priority": str(p)}, name=f"p{p}")[0] for p in priorities}

    def spare_free_ram():
        resp = api(stack, "GET", "/os-hypervisors/detail", version="2.87")
        found = [h for h in resp.json()["hypervisors"] if h["service"]["host"] == "compute3"]
        return found and found[0]["free_ram_mb"] == 1536

    wait_until(spare_free_ram, timeout=30, what="compute3's report of its use")
    # A spare kept out of normal scheduling: disabled by the operator (Masakari's reserved hosts).
    resp = api(stack, "PUT", f"/os-services/{service(stack, 'compute3')['id']}", version="2.53",
               json={"status": "disabled", "disabled_reason": "reserved spare"})
    assert resp.status_code == 200, resp.text
    configure_monitor(stack, reserved_hosts="compute3", evacuation_workers="1")
    kill_agent(stack, "compute1")

    result = recover(stack, "compute1")

    assert (result.outcome, result.moved) == ("recovered", 5)
    now = servers(stack)
    assert {p: now[ids[p]]["OS-EXT-SRV-ATTR:host"] for p in priorities} == {
        5: "compute3", 4: "compute3", 3: "compute3", 2: "compute2", 1: "compute2"}
    assert all(now[i]["status"] == "ACTIVE" for i in ids.values())
    assert service(stack, "compute3")["status"] == "enabled"
    events = journal_of(stack).events(host="compute1")
    by_server = {v: k for k, v in ids.items()}
    assert [by_server[e.server] for e in events if e.kind == "planned"] == [5, 4, 3, 2, 1]
    assert [(by_server[e.server], e.detail["target"]) for e in events if e.kind == "evacuation_accepted"] == [
        (5, "compute3"), (4, "compute3"), (3, "compute3"), (2, None), (1, None)]
    assert [e.detail["spare"] for e in events if e.kind == "spare_enabled"] == ["compute3"]
    # With one worker the evacuate requests reached Nova in priority order.
    started = sorted((evacuate_actions(stack, ids[p])[0]["start_time"], p) for p in priorities)
    assert [p for _, p in started] == [5, 4, 3, 2, 1]


def test_only_servers_that_opted_in_are_evacuated(make_stack, monitor_env):
    # RHOSO's evacuable tagging (ha-anchors 2.2), by server metadata here; the metadata is Nova's server body.
    stack = start(make_stack, "compute1", "compute2")
    monitor_env(stack)
    chosen = boot(stack, "compute1", 2, metadata={"evacuable": "true"}, name="in")
    left = boot(stack, "compute1", 2, name="out") + boot(stack, "compute1", metadata={"evacuable": "no"}, name="no")
    configure_monitor(stack, evacuable_metadata_key="evacuable")
    kill_agent(stack, "compute1")

    result = recover(stack, "compute1")

    assert (result.outcome, result.moved, result.skipped) == ("recovered", 2, 3)
    now = servers(stack)
    assert all(now[i]["OS-EXT-SRV-ATTR:host"] == "compute2" and now[i]["status"] == "ACTIVE" for i in chosen)
    assert all(now[i]["OS-EXT-SRV-ATTR:host"] == "compute1" and evacuate_actions(stack, i) == [] for i in left)
    skipped = [e for e in journal_of(stack).events(host="compute1") if e.kind == "skipped"]
    assert sorted(e.server for e in skipped) == sorted(left)
    assert {e.detail["rule"] for e in skipped} == {"opt-in"}


def test_failed_evacuations_are_retried_until_room_appears(make_stack, monitor_env):
    # Spec 6: NoValidHost leaves the migration "error" and the server ERROR with a fault; ERROR is one of the
    # vm_states evacuate accepts, so the retry is a new evacuation, and only one of them succeeds.
    stack = start(make_stack, "compute1")
    monitor_env(stack)
    ids = boot(stack, "compute1", 3)
    configure_monitor(stack, evacuation_retries="6", evacuation_retry_delay="0.5")
    kill_agent(stack, "compute1")

    async def work(recovery, journal):
        recovering = asyncio.ensure_future(recovery.recover("compute1", failure("compute1")))
        # No other host: each evacuation fails (NoValidHost: the server goes ERROR, spec 6).
        while {e.server for e in journal.events(kind="evacuation_failed")} != set(ids):
            assert not recovering.done(), recovering.result()
            await asyncio.sleep(0.05)
        stack.start_compute("compute2")  # room appears
        return await asyncio.wait_for(recovering, 90)

    result = asyncio.run(with_recovery(stack, work))

    assert (result.outcome, result.moved, result.failed) == ("recovered", 3, 0)
    now = servers(stack)
    assert all(now[i]["OS-EXT-SRV-ATTR:host"] == "compute2" and now[i]["status"] == "ACTIVE" for i in ids)
    journal = journal_of(stack)
    for server_id in ids:
        tries = evacuations(stack, server_id)
        assert tries[-1] == "done" and set(tries[:-1]) == {"error"} and len(tries) >= 2, tries
        accepted = [e for e in journal.events(kind="evacuation_accepted") if e.server == server_id]
        assert len(evacuate_actions(stack, server_id)) == len(accepted) == len(tries)
        failed = [e for e in journal.events(kind="evacuation_failed") if e.server == server_id]
        assert "No valid host" in failed[0].detail["reason"]
        assert any(e.kind == "retry" and e.server == server_id for e in journal.events())


def test_at_2_95_servers_landing_shutoff_are_started_again(make_stack, monitor_env):
    # Spec 6: from 2.95 Nova stops an evacuated ACTIVE server on the destination; the monitor restores the
    # status each server had, so a monitor pinned at 2.95+ still brings running servers back running.
    stack = start(make_stack, "compute1", "compute2")
    monitor_env(stack)
    ids = boot(stack, "compute1", 3)
    stop_server(stack, ids[0])
    configure_monitor(stack)
    kill_agent(stack, "compute1")

    result = recover(stack, "compute1", version="2.95")

    assert (result.outcome, result.moved) == ("recovered", 3)
    journal = journal_of(stack)
    landed = {e.server: e.detail["status"] for e in journal.events(kind="landed")}
    assert landed == {i: "SHUTOFF" for i in ids}
    restored = {e.server: e.detail["action"] for e in journal.events(kind="power_restored")}
    assert restored == {ids[1]: "start", ids[2]: "start"}
    wait_until(lambda: [servers(stack)[i]["status"] for i in ids] == ["SHUTOFF", "ACTIVE", "ACTIVE"],
               timeout=30, what="the running servers started again")


def test_monitor_events_without_a_journal_says_where_it_looked(tmp_path):
    conf = tmp_path / "novalite.conf"
    conf.write_text(f"[api]\nauth_strategy = noauth2\n[monitor]\nstate_path = {tmp_path / 'none.sqlite'}\n")
    proc = run_cli(["novalite", "monitor", "events", "--config-file", str(conf)], client_env(), expect_rc=1)
    assert f"no journal at {tmp_path / 'none.sqlite'}" in proc.stderr


@pytest.mark.parametrize(("option", "value"), [("poll_interval", 0), ("evacuation_workers", 0),
                                               ("evacuation_retries", -1), ("force_up_timeout", 0)])
def test_recovery_refuses_options_that_cannot_work(option, value):
    from novalite.monitor.recovery import check_options

    opts = config.MonitorOpts()
    check_options(opts)  # the defaults are fine
    setattr(opts, option, value)
    with pytest.raises(ValueError, match=f"\\[monitor\\] {option}"):
        check_options(opts)
