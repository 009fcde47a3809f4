"""The fault monitor against hosts on a network: every compute agent in its own network namespace.

Each host is one compute agent in a namespace of its own (tests/netns.py: a veth to a bridge in the root
namespace, addresses in a private 10.231.n.0/24). The API, the scheduler and — unless a test moves it —
the monitor run in the root namespace and listen on the bridge's address; each agent takes nudges on its
own namespace's address ([compute] nudge_host). The fencer is the ``command`` fencer as ``novalite up``
wires it: ``novalite simulated-host power-off {host}`` kills the host's agent and confirms it is gone.

Issue 4's network tests:

- a host fails, (a) by a partition: its link is cut while its agent keeps running, (b) by kill -9 of its
  agent → the monitor fences it (the partitioned agent is killed before anything else happens), forces it
  down and every server of the host is ACTIVE elsewhere, each evacuated once. A sampler reads, all along,
  every host's guests.json (the simulated hypervisor's state) and the servers API: no sample shows a
  server running on two live hosts (a fenced host's agent is dead: its stale copy runs nowhere);
- the monitor's own link cut (the monitor in a namespace of its own): every host goes silent for it, the
  quorum gate holds ("held" in the journal), nothing is fenced, forced down or evacuated — also after the
  link is back.

Nova facts pinned: evacuation needs the source host forced down or down (spec 4.6, 6 step 10), and is
recorded as one "evacuate" instance action per server (spec 6); below 2.95 an evacuated ACTIVE server comes
back ACTIVE (spec 6; the monitor evacuates at 2.94). The quorum rule and "fence before evacuate" are
ha-anchors.md sections 2.2 and 9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from novalite.cli.up import seed_flavors
from novalite.monitor.journal import Journal
from tests.clients import client_env
from tests.netns import Network, require_netns
from tests.stack import Stack, wait_until
from tests.test_monitor_recovery_live import api, boot, evacuate_actions, servers, service

HOSTS = ("compute1", "compute2", "compute3", "compute4")
MONITOR = "monitor"  # the namespace the monitor runs in when its own link is to be cut
SERVERS_ON_A = 50  # issue 4: 50 servers on host A


@pytest.fixture
def net():
    require_netns()
    network = Network.create([*HOSTS, MONITOR])
    yield network
    network.close()  # after the stack (set up later, torn down first) has stopped every process inside


class NetStack:
    """A live stack whose compute agents run in ``net``'s namespaces; the monitor where ``monitor_in`` says."""

    def __init__(self, stack: Stack, net: Network, *, monitor_in: str | None):
        self.stack, self.net = stack, net
        self.monitor_ns = monitor_in
        self.agents: dict[str, subprocess.Popen] = {}
        seed_flavors(stack.database_url)
        stack.configure_monitor(listen_host=net.address(monitor_in) if monitor_in else net.gateway,
                                compute={"spawn_time": "0"})
        stack.start_scheduler()  # in the root namespace, with the API: its nudges come from there
        for host in HOSTS:
            self.start_agent(host)
        stack.wait_for_computes(*HOSTS)
        # A server pinned to a host is placed only once the host's node is reported, a moment after its service.
        wait_until(lambda: set(HOSTS) <= {h["hypervisor_hostname"] for h in api(stack, "GET", "/os-hypervisors")
                                           .json()["hypervisors"]}, timeout=20, what="every host's node")

    def _spawn(self, where: str | None, args: list[str], log_name: str, **env: str) -> subprocess.Popen:
        log = (self.stack.root / "logs" / log_name).open("ab")
        prefix = self.net.exec_prefix(where) if where else []
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "novalite.cli.main", *args,
                                 "--config-file", str(self.stack.config_file)],
                                stdout=log, stderr=subprocess.STDOUT, env=client_env(**env), start_new_session=True)
        self.stack.procs.append(proc)  # stopped by Stack.close()
        return proc

    def start_agent(self, host: str) -> subprocess.Popen:
        # `ip netns exec` execs the command: the process is the agent itself (its pid is the host's "power").
        # Its nudges must come to its own address: the real [compute] nudge_host option, for this agent only.
        proc = self._spawn(host, ["compute", "--host", host], f"compute-{host}.log",
                           NOVALITE_COMPUTE__NUDGE_HOST=self.net.address(host))
        self.agents[host] = proc
        return proc

    def start_monitor(self) -> subprocess.Popen:
        proc = self._spawn(self.monitor_ns, ["monitor", "run"], "monitor.log",
                           OS_CLIENT_CONFIG_FILE=str(self.stack.root / "clouds.yaml"))
        wait_until(lambda: all(f"host {h}: first heartbeat, from {self.net.address(h)}" in self.log()
                               for h in HOSTS), timeout=20, what="the monitor hearing every host from its namespace")
        wait_until(lambda: "monitor acting:" in self.log(), timeout=20, what="the monitor reaching the API")
        return proc

    def log(self) -> str:
        return self.stack.log("monitor.log")

    def kinds(self, host: str) -> list[str]:
        journal = Journal(self.stack.root / "monitor.sqlite", readonly=True)
        try:
            return [e.kind for e in journal.events(host=host)]
        finally:
            journal.close()

    def running_guests(self, host: str) -> set[str]:
        """The servers the host's simulated hypervisor has RUNNING (its guests.json, rewritten atomically)."""
        path = self.stack.root / ".novalite-compute" / host / "guests.json"
        if not path.exists():
            return set()
        guests = json.loads(path.read_text())["guests"]
        return {uuid for uuid, g in guests.items() if g["power_state"] == "RUNNING"}


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TwoCopiesSampler(threading.Thread):
    """Samples, until stopped, where each server runs: on a *live* host (its agent alive through the whole
    sample) whose guests.json has it RUNNING, or per the servers API (ACTIVE on a live host). Any sample
    with one server running on two live hosts is recorded as a violation."""

    def __init__(self, ns: NetStack, ids: set[str]):
        super().__init__(daemon=True, name="two-copies-sampler")
        self.ns, self.ids = ns, ids
        self.samples = 0
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.seen_elsewhere = False  # a sample where a server of A runs on another live host
        self._halt = threading.Event()

    def sample(self) -> None:
        pids = {h: p.pid for h, p in self.ns.agents.items()}
        live_before = {h for h, pid in pids.items() if is_alive(pid)}
        api_view = servers(self.ns.stack)
        running = {h: self.ns.running_guests(h) for h in HOSTS}
        live = live_before & {h for h, pid in pids.items() if is_alive(pid)}
        for server_id in self.ids:
            on = {h for h in live if server_id in running[h]}
            seen = api_view.get(server_id)
            if seen and seen["status"] == "ACTIVE" and seen["OS-EXT-SRV-ATTR:host"] in live:
                on.add(seen["OS-EXT-SRV-ATTR:host"])
            if len(on) > 1:
                self.violations.append(f"sample {self.samples}: {server_id} running on {sorted(on)}")
            if on - {HOSTS[0]}:
                self.seen_elsewhere = True
        self.samples += 1

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.sample()
            except Exception as error:  # a torn read or a slow API: the next sample is as good
                self.errors.append(repr(error))
            self._halt.wait(0.01)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@pytest.fixture
def netstack(net, make_stack) -> NetStack:
    return NetStack(make_stack(bind_host=net.gateway), net, monitor_in=None)


@pytest.mark.parametrize("failure", ["partition", "kill-9"])
def test_a_failed_host_in_its_namespace_is_fenced_and_its_servers_run_elsewhere_never_twice(netstack, failure):
    ns, a = netstack, HOSTS[0]
    ids = set(boot(ns.stack, a, SERVERS_ON_A))
    assert ns.running_guests(a) == ids
    ns.start_monitor()
    sampler = TwoCopiesSampler(ns, ids)
    sampler.start()
    try:
        wait_until(lambda: sampler.samples >= 3, timeout=10, what="the sampler running")
        agent = ns.agents[a]
        began = time.monotonic()
        if failure == "partition":
            ns.net.cut(a)  # the agent keeps running, alone with its guests
        else:
            os.kill(agent.pid, signal.SIGKILL)

        def moved() -> bool:
            now = servers(ns.stack)
            return all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] != a for i in ids)

        wait_until(moved, timeout=20, interval=0.02, what=f"every server of {a} ACTIVE elsewhere")
        elapsed = time.monotonic() - began
        wait_until(lambda: sampler.seen_elsewhere, timeout=5, what="a sample of the servers on their new hosts")
        time.sleep(0.2)  # a few samples of the settled state
    finally:
        sampler.stop()
    print(f"{failure} → {len(ids)} servers ACTIVE elsewhere: {elapsed:.2f} s; {sampler.samples} samples")

    assert sampler.violations == [], sampler.violations[:5]
    assert sampler.samples >= 20, (sampler.samples, sampler.errors[:3])
    assert agent.wait(timeout=5) == -signal.SIGKILL  # partitioned: the fencer killed it; kill-9: the test did
    svc = service(ns.stack, a)
    assert svc["forced_down"] is True and svc["status"] == "disabled"
    assert svc["disabled_reason"].startswith("novalite-monitor: ")
    now = servers(ns.stack)
    assert {now[i]["OS-EXT-SRV-ATTR:host"] for i in ids} <= set(HOSTS[1:])
    landed = set().union(*(ns.running_guests(h) for h in HOSTS[1:]))
    assert ids <= landed  # the hypervisors of the other hosts run them
    assert all(len(evacuate_actions(ns.stack, i)) == 1 for i in ids), "a server was evacuated twice"
    wait_until(lambda: "recovered" in ns.kinds(a), timeout=10, what="the recovery journaled")
    steps = ns.kinds(a)
    assert steps.index("detected") < steps.index("fenced") < steps.index("forced_down") < steps.index("recovered")
    for other in HOSTS[1:]:
        assert ns.kinds(other) == [] and ns.agents[other].poll() is None


def test_the_monitor_cut_off_from_every_host_holds_and_nothing_happens_after_the_link_returns(net, make_stack):
    ns = NetStack(make_stack(bind_host=net.gateway), net, monitor_in=MONITOR)
    placed = {h: set(boot(ns.stack, h, 2, name=f"on-{h}")) for h in HOSTS[:2]}
    ns.start_monitor()

    ns.net.cut(MONITOR)  # the monitor's own link: it reaches neither the hosts nor the API
    wait_until(lambda: all("held" in ns.kinds(h) for h in HOSTS), timeout=10, what="the monitor holding every host")
    time.sleep(1.0)  # many gate cycles while cut off
    ns.net.mend(MONITOR)
    # Back on the network: each host's beats resume; none of them is a host the monitor recovered.
    wait_until(lambda: all(f"return of {h}: not-ours" in ns.log() for h in HOSTS), timeout=15,
               what="the monitor hearing every host again")
    time.sleep(0.5)

    for host in HOSTS:
        assert set(ns.kinds(host)) == {"held"}, (host, ns.kinds(host))
        assert ns.agents[host].poll() is None  # nobody powered off
    assert "quorum" in ns.log()
    assert not any(s["forced_down"] for s in ns.stack.services() if s["binary"] == "nova-compute")
    assert all(s["status"] == "enabled" for s in ns.stack.services() if s["binary"] == "nova-compute")
    now = servers(ns.stack)
    for host, ids in placed.items():
        assert all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] == host for i in ids)
        assert all(evacuate_actions(ns.stack, i) == [] for i in ids)
