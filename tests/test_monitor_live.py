"""The fault monitor as it runs: the real ``novalite monitor run`` process, real agents heartbeating to it.

API, scheduler, compute agents and the monitor are separate processes on 127.0.0.1. The fencer is the
``command`` fencer wired as ``novalite up`` wires it: ``novalite simulated-host power-off {host}`` kills the
host's agent and confirms it is gone. Issue 4's story, end to end:

- kill -9 of a host's agent → the monitor detects it, fences, forces the host down, disables it with its
  marker and moves every server; each server is evacuated exactly once (one "evacuate" instance action);
- the host returns (its agent restarts, cleans up, beats again) → forced up and enabled by the monitor;
- the monitor killed with SIGKILL mid-recovery and started again → the recovery finishes, no server is
  evacuated twice;
- every host silent at once (here: all agents stopped with SIGSTOP, which is what a monitor cut off from
  the hosts sees) → the quorum gate holds: nothing is fenced, nothing is forced down.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from novalite.cli.up import seed_flavors
from novalite.monitor.journal import Journal
from tests import zygote
from tests.clients import agent_process, client_env
from tests.stack import Stack, wait_until
from tests.test_monitor_recovery_live import api, boot, evacuate_actions, guests_of, servers, service

# The monitor acts through the public API only: it runs once, in the SQLite run (conftest.py).

HOSTS = ("compute1", "compute2", "compute3")


def monitored_stack(make_stack, *, spawn_time: float = 0.0) -> Stack:
    """A stack whose agents beat to a monitor (not started yet: ``start_monitor``)."""
    stack = make_stack()
    seed_flavors(stack.database_url)
    stack.configure_monitor(compute={"spawn_time": str(spawn_time)})
    stack.start_scheduler()
    for host in HOSTS:
        stack.start_compute(host)
    stack.wait_for_computes(*HOSTS)
    return stack


def start_monitor(stack: Stack, hosts: tuple[str, ...] = HOSTS, log_name: str = "monitor.log") -> zygote.Process:
    env = client_env(OS_CLIENT_CONFIG_FILE=str(stack.root / "clouds.yaml"))
    proc = stack.spawn(["monitor", "run", "--config-file", str(stack.config_file)], log_name, env=env)
    # Ready once every running host's first heartbeat reached it (its log says so).
    wait_until(lambda: all(f"host {h}: first heartbeat" in stack.log(log_name) for h in hosts), timeout=20,
               what="the monitor hearing every host")
    return proc


def kinds(stack: Stack, host: str) -> list[str]:
    journal = Journal(stack.root / "monitor.sqlite", readonly=True)
    try:
        return [e.kind for e in journal.events(host=host)]
    finally:
        journal.close()


def all_moved(stack: Stack, ids: set[str], source: str) -> bool:
    now = servers(stack)
    return all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] != source for i in ids)


@pytest.fixture
def stack(make_stack) -> Stack:
    return monitored_stack(make_stack)


def test_kill_9_the_monitor_recovers_the_host_and_lets_it_back(stack):
    ids = set(boot(stack, "compute1", 20))
    start_monitor(stack)

    killed = agent_process(stack, "compute1")
    began = time.monotonic()
    os.killpg(killed.pid, signal.SIGKILL)
    wait_until(lambda: all_moved(stack, ids, "compute1"), timeout=30, interval=0.02,
               what="every server ACTIVE off compute1")
    elapsed = time.monotonic() - began
    print(f"kill -9 → 20 servers ACTIVE elsewhere: {elapsed:.2f} s")

    compute1 = service(stack, "compute1")
    assert compute1["forced_down"] is True and compute1["status"] == "disabled"
    assert compute1["disabled_reason"].startswith("novalite-monitor: ")
    assert all(len(evacuate_actions(stack, i)) == 1 for i in ids)
    wait_until(lambda: "recovered" in kinds(stack, "compute1"), timeout=10, what="the recovery journaled")
    steps = kinds(stack, "compute1")
    assert steps.index("detected") < steps.index("fenced") < steps.index("forced_down") < steps.index("recovered")
    assert steps.count("landed") == 20

    # The host returns: its agent cleans up before it beats, then the monitor forces it up and enables it.
    stack.start_compute("compute1")
    wait_until(lambda: (lambda s: not s["forced_down"] and s["status"] == "enabled")(service(stack, "compute1")),
               timeout=30, what="compute1 forced up and enabled by the monitor")
    assert guests_of(stack, "compute1") == set()
    statuses = {m["status"] for m in api(stack, "GET", "/os-migrations", version="2.59").json()["migrations"]}
    assert statuses == {"completed"}
    assert kinds(stack, "compute1")[-3:] == ["host_returned", "forced_up", "enabled"]


def test_monitor_killed_mid_recovery_finishes_it_after_restart_without_evacuating_twice(make_stack):
    # Rebuilds take a second on the targets, so the monitor can be killed while evacuations are in flight.
    stack = monitored_stack(make_stack, spawn_time=1.0)
    ids = set(boot(stack, "compute1", 8))
    monitor = start_monitor(stack)
    os.killpg(agent_process(stack, "compute1").pid, signal.SIGKILL)
    wait_until(lambda: "evacuation_accepted" in kinds(stack, "compute1"), timeout=20, interval=0.01,
               what="evacuations under way")
    os.killpg(monitor.pid, signal.SIGKILL)
    monitor.wait(timeout=10)
    assert "recovered" not in kinds(stack, "compute1")

    # A new monitor process over the same journal and the same cloud; compute1 is dead and stays silent.
    start_monitor(stack, hosts=("compute2", "compute3"), log_name="monitor-2.log")
    wait_until(lambda: all_moved(stack, ids, "compute1"), timeout=30, what="every server ACTIVE off compute1")
    wait_until(lambda: "recovered" in kinds(stack, "compute1"), timeout=10, what="the recovery finished")
    assert "resumed" in kinds(stack, "compute1")
    assert all(len(evacuate_actions(stack, i)) == 1 for i in ids), "a server was evacuated twice"


def test_every_host_silent_at_once_is_held_by_the_gates_and_nothing_is_fenced(stack):
    ids = set(boot(stack, "compute1", 2))
    start_monitor(stack)
    agents = [agent_process(stack, h) for h in HOSTS]
    for proc in agents:
        os.killpg(proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: "held" in kinds(stack, "compute1"), timeout=10, what="the monitor holding")
        time.sleep(1.0)  # several gate cycles
    finally:
        for proc in agents:
            os.killpg(proc.pid, signal.SIGCONT)
    for host in HOSTS:
        assert "fenced" not in kinds(stack, host)
        assert all(k == "held" for k in kinds(stack, host))
    assert all(proc.poll() is None for proc in agents)  # nobody powered off
    assert not any(s["forced_down"] for s in stack.services() if s["binary"] == "nova-compute")
    assert {s["OS-EXT-SRV-ATTR:host"] for i, s in servers(stack).items() if i in ids} == {"compute1"}


def test_a_clean_agent_stop_is_not_a_failure(stack):
    # An operator restarting an agent (SIGTERM) must not get the host fenced and its servers moved: the agent
    # says "leave" as it stops. Its servers stay; once it is back, nothing happened.
    ids = set(boot(stack, "compute1", 2))
    start_monitor(stack)
    stopping = agent_process(stack, "compute1")
    os.killpg(stopping.pid, signal.SIGTERM)
    stopping.wait(timeout=10)
    wait_until(lambda: "host compute1 left" in stack.log("monitor.log"), timeout=5, what="the monitor seeing it leave")
    time.sleep(1.5)  # three detection windows
    assert kinds(stack, "compute1") == []
    assert service(stack, "compute1")["forced_down"] is False
    stack.start_compute("compute1")
    wait_until(lambda: "host compute1: its agent restarted" in stack.log("monitor.log"), timeout=20,
               what="compute1 beating again")
    assert kinds(stack, "compute1") == []
    assert {s["OS-EXT-SRV-ATTR:host"] for i, s in servers(stack).items() if i in ids} == {"compute1"}
