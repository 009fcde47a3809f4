"""Host groups with different recovery policies, end to end: the real ``novalite monitor run`` process, real agents
beating to it, the command fencer that ``novalite up`` wires (``novalite simulated-host power-off``).

Group a (``a-*``) is Masakari's reserved_host segment with per-VM opt-in (ha-anchors.md 1.2, 1.3 step 2): its
spare a-spare first, only servers with metadata ha=true move, and every target stays inside the group (the
monitor names a host of the group; Nova's scheduler still checks it, spec 6 step 11: no force from 2.68); a
server the group has no room for stays where it is (fallback = none), though another group has room. Group b
is notify-only: its failure is journaled and nothing is done to it (Doctor's "notify, let the consumer act",
ha-anchors 0.3). ``novalite monitor events`` shows which group and which rule decided each step.
"""

from __future__ import annotations

import json
import os
import signal

from novalite.cli.up import seed_flavors
from novalite.monitor.journal import Journal
from tests.clients import agent_process, client_env, run_cli
from tests.stack import Stack, wait_until
from tests.test_monitor_live import start_monitor
from tests.test_monitor_recovery_live import api, boot, evacuate_actions, servers, service

# The monitor acts through the public API only: it runs once, in the SQLite run (conftest.py).

HOSTS = ("a-1", "a-2", "a-spare", "b-1", "b-2")
GROUPS = {
    "host_group:a": {"hosts": "a-*", "reserved_hosts": "a-spare", "evacuable_metadata_key": "ha",
                     "targets": "group", "fallback": "none", "leave_disabled": "true"},
    "host_group:b": {"hosts": "b-1, b-2", "recovery_method": "notify"},
}
# Each simulated host has 2048 MB for guests (2560 − 512 reserved): four m1.tiny (512 MB).
COMPUTE = {"memory_mb": "2560"}


def grouped_stack(make_stack, groups: dict, hosts: tuple[str, ...]) -> Stack:
    stack = make_stack()
    seed_flavors(stack.database_url)
    stack.configure_monitor(compute=COMPUTE)
    # One quick retry: a server no host of its group has room for is given up soon.
    monitor = {**stack.extra_config["monitor"], "evacuation_retries": "1", "evacuation_retry_delay": "0.2"}
    stack.extra_config = {**stack.extra_config, **groups, "monitor": monitor}
    stack.write_config()
    stack.start_scheduler()
    for host in hosts:
        stack.start_compute(host)
    stack.wait_for_computes(*hosts)
    return stack


def events(stack: Stack, host: str) -> list:
    journal = Journal(stack.root / "monitor.sqlite", readonly=True)
    try:
        return journal.events(host=host)
    finally:
        journal.close()


def kinds(stack: Stack, host: str) -> list[str]:
    return [e.kind for e in events(stack, host)]


def free_ram(stack: Stack) -> dict[str, int]:
    resp = api(stack, "GET", "/os-hypervisors/detail", version="2.87")
    resp.raise_for_status()
    return {h["service"]["host"]: h["free_ram_mb"] for h in resp.json()["hypervisors"]}


def kill_agent(stack: Stack, host: str) -> None:
    os.killpg(agent_process(stack, host).pid, signal.SIGKILL)


def monitor_events(stack: Stack, host: str) -> list[dict]:
    proc = run_cli(["novalite", "monitor", "events", "--config-file", str(stack.config_file), "--host", host,
                    "-f", "json"], client_env())
    return json.loads(proc.stdout)


def test_two_groups_spare_first_opt_in_inside_the_group_and_notify_only(make_stack):
    stack = grouped_stack(make_stack, GROUPS, HOSTS)
    # Group a has room for two m1.tiny: one on its spare, one on a-2; b-2 (group b) has room for four.
    boot(stack, "a-spare", 3, name="filler")
    boot(stack, "a-2", 3, name="filler")
    ha = {p: boot(stack, "a-1", metadata={"ha": "true", "novalite:priority": str(p)}, name=f"ha{p}")[0]
          for p in (3, 2, 1)}
    plain = boot(stack, "a-1", name="plain")[0]
    on_b1 = set(boot(stack, "b-1", 2, name="b"))
    wait_until(lambda: (lambda r: (r["a-spare"], r["a-2"], r["b-2"]) == (512, 512, 2048))(free_ram(stack)),
               timeout=30, what="the hosts' reports of their use")
    # The spare is kept out of normal scheduling, as Masakari's reserved hosts are.
    resp = api(stack, "PUT", f"/os-services/{service(stack, 'a-spare')['id']}", version="2.53",
               json={"status": "disabled", "disabled_reason": "reserved spare of group a"})
    assert resp.status_code == 200, resp.text
    start_monitor(stack, hosts=HOSTS)

    # Group b: notify-only. Journaled, not fenced, not forced down, nothing evacuated.
    kill_agent(stack, "b-1")
    wait_until(lambda: "notified" in kinds(stack, "b-1"), timeout=20, what="b-1's failure journaled")
    assert kinds(stack, "b-1") == ["detected", "notified"]
    detected, notified = events(stack, "b-1")
    assert (detected.detail["policy"], detected.detail["recovery_method"]) == ("[host_group:b]", "notify")
    assert detected.detail["policy_rule"] == "host-group: b-1 is in [host_group:b] (hosts 'b-1')"
    assert notified.detail["rule"] == "notify-only" and "not fenced" in notified.detail["reason"]
    b1 = service(stack, "b-1")
    assert (b1["forced_down"], b1["status"]) == (False, "enabled")
    assert all(servers(stack)[i]["OS-EXT-SRV-ATTR:host"] == "b-1" and not evacuate_actions(stack, i) for i in on_b1)

    # Group a: fenced, forced down; the opted-in servers by priority to the spare while it has room, then to
    # the group's other host; the last one finds no room in the group and is not sent elsewhere.
    kill_agent(stack, "a-1")
    wait_until(lambda: "recovered" in kinds(stack, "a-1"), timeout=30, what="a-1's recovery")
    now = servers(stack)
    assert {p: now[i]["OS-EXT-SRV-ATTR:host"] for p, i in ha.items()} == {3: "a-spare", 2: "a-2", 1: "a-1"}
    assert now[ha[3]]["status"] == now[ha[2]]["status"] == "ACTIVE"
    # ha1 is planned nowhere. A retry reads the group's room again, and the hypervisors' reports may not show
    # ha2's landing yet: it may name a-2, which Nova's scheduler refuses (no room). Either way it stays on a-1.
    assert evacuate_actions(stack, plain) == []
    assert now[plain]["OS-EXT-SRV-ATTR:host"] == now[ha[1]]["OS-EXT-SRV-ATTR:host"] == "a-1"
    assert "b-2" not in {s["OS-EXT-SRV-ATTR:host"] for s in now.values()}  # nothing left the group
    assert service(stack, "a-spare")["status"] == "enabled"
    assert service(stack, "a-1")["forced_down"] is True
    assert kinds(stack, "b-1") == ["detected", "notified"]  # b-1 still alone

    # The journal, as `novalite monitor events` lists it, cites the group and the rule of every decision.
    listed = monitor_events(stack, "a-1")
    by_kind = {}
    for event in listed:
        by_kind.setdefault(event["kind"], []).append(event)
    assert by_kind["detected"][0]["detail"]["policy"] == "[host_group:a]"
    assert by_kind["detected"][0]["detail"]["targets"] == "group"
    skipped = by_kind["skipped"]
    assert [e["server"] for e in skipped] == [plain]
    assert skipped[0]["detail"]["rule"] == "opt-in" and skipped[0]["detail"]["policy"] == "[host_group:a]"
    rules = {e["server"]: e["detail"]["target_rule"].split(":")[0] for e in by_kind["planned"]}
    assert rules == {ha[3]: "reserved-host", ha[2]: "group-host", ha[1]: "fallback"}
    assert {e["server"] for e in by_kind["evacuation_accepted"]} == {ha[3], ha[2]}
    assert [e["detail"]["spare"] for e in by_kind["spare_enabled"]] == ["a-spare"]
    gave_up = by_kind["gave_up"]
    assert [e["server"] for e in gave_up] == [ha[1]] and gave_up[0]["detail"]["policy"] == "[host_group:a]"
    assert gave_up[0]["detail"]["rule"].startswith("fallback: no up and enabled host of [host_group:a] has room")
    assert "fallback = none" in gave_up[0]["detail"]["rule"]
    recovered = by_kind["recovered"][0]["detail"]
    assert (recovered["moved"], recovered["failed"], recovered["skipped"]) == (2, 1, 1)

    # a-1 returns: forced up, and left disabled by group a's leave_disabled.
    stack.start_compute("a-1")
    wait_until(lambda: "left_disabled" in kinds(stack, "a-1"), timeout=30, what="a-1's return")
    a1 = service(stack, "a-1")
    assert a1["forced_down"] is False and a1["status"] == "disabled"
    assert "left disabled ([host_group:a] leave_disabled)" in a1["disabled_reason"]


def test_the_monitor_refuses_to_start_when_two_groups_patterns_claim_a_known_host(make_stack):
    # Two patterns may share names; the loader cannot know which hosts exist, the monitor can (os-services).
    groups = {"host_group:racks": {"hosts": "rack1-*"}, "host_group:gpus": {"hosts": "*-gpu"}}
    stack = grouped_stack(make_stack, groups, ("rack1-gpu",))
    env = client_env(OS_CLIENT_CONFIG_FILE=str(stack.root / "clouds.yaml"))
    proc = run_cli(["novalite", "monitor", "run", "--config-file", str(stack.config_file)], env, expect_rc=1)
    assert ("novalite monitor: configuration error: rack1-gpu is in two host groups, [host_group:gpus] "
            "(hosts '*-gpu') and [host_group:racks] (hosts 'rack1-*')") in proc.stderr

