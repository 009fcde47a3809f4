"""A live stack on a network for the monitor's tests: every compute agent in its own network namespace.

``NetStack`` starts the scheduler and one compute agent per host of ``HOSTS``, each in its namespace of a
``tests.netns.Network`` (its nudges come to its own address); the API (and, unless a test moves it, the
monitor) listen on the bridge's address in the root namespace. The fencer is the ``command`` fencer as
``novalite up`` wires it: ``novalite simulated-host power-off {host}`` kills the host's agent, confirmed, and
shuts its guests down.

Two samplers run beside a test, each a thread polling until stopped:
- ``TwoCopiesSampler``: where each server runs — on a live host whose simulated hypervisor (guests.json)
  has it RUNNING, or ACTIVE on a live host per the servers API; a server on two live hosts at once is a
  violation;
- ``HostSampler``: one host's nova-compute service, then its evacuation migrations; ``HostSample.phase``
  places each sample in the order a host's return must follow.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from novalite.cli.up import seed_flavors
from novalite.monitor.journal import Event, Journal
from tests import zygote
from tests.clients import client_env, run_cli
from tests.netns import Network
from tests.stack import Stack, wait_until
from tests.test_monitor_recovery_live import api, servers, service

HOSTS = ("compute1", "compute2", "compute3", "compute4")
MONITOR = "monitor"  # the namespace the monitor runs in when its own link is to be cut


class NetStack:
    """A live stack whose compute agents run in ``net``'s namespaces; the monitor where ``monitor_in`` says."""

    def __init__(self, stack: Stack, net: Network, *, monitor_in: str | None):
        self.stack, self.net = stack, net
        self.monitor_ns = monitor_in
        self.agents: dict[str, zygote.Process] = {}
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

    def _spawn(self, where: str | None, args: list[str], log_name: str, **env: str) -> zygote.Process:
        """``novalite ARGS`` in ``where``'s namespace (None: the root one), as ``ip netns exec`` would run it."""
        return self.stack.spawn([*args, "--config-file", str(self.stack.config_file)], log_name,
                                env=client_env(**env), netns=self.net.namespace(where) if where else None)

    def start_agent(self, host: str) -> zygote.Process:
        # The process is the agent itself, in the host's namespace (its pid is the host's "power").
        # Its nudges must come to its own address: the real [compute] nudge_host option, for this agent only.
        proc = self._spawn(host, ["compute", "--host", host], f"compute-{host}.log",
                           NOVALITE_COMPUTE__NUDGE_HOST=self.net.address(host))
        self.agents[host] = proc
        return proc

    def start_monitor(self, **env: str) -> zygote.Process:
        """``env``: more of its environment, e.g. NOVALITE_MONITOR__FENCE_RETRY_INTERVAL (config overrides)."""
        proc = self._spawn(self.monitor_ns, ["monitor", "run"], "monitor.log",
                           OS_CLIENT_CONFIG_FILE=str(self.stack.root / "clouds.yaml"), **env)
        wait_until(lambda: all(f"host {h}: first heartbeat, from {self.net.address(h)}" in self.log()
                               for h in HOSTS), timeout=20, what="the monitor hearing every host from its namespace")
        wait_until(lambda: "monitor acting:" in self.log(), timeout=20, what="the monitor reaching the API")
        return proc

    def log(self) -> str:
        return self.stack.log("monitor.log")

    def agent_log(self, host: str) -> str:
        return self.stack.log(f"compute-{host}.log")

    def events(self, host: str, kind: str | None = None) -> list[Event]:
        """The monitor's journal of ``host``, oldest first."""
        journal = Journal(self.stack.root / "monitor.sqlite", readonly=True)
        try:
            return journal.events(host=host, kind=kind)
        finally:
            journal.close()

    def kinds(self, host: str) -> list[str]:
        return [e.kind for e in self.events(host)]

    def monitor_events(self, host: str) -> list[dict]:
        """`novalite monitor events --host HOST -f json`: the operator's view of the journal."""
        cli = ["novalite", "monitor", "events", "--config-file", str(self.stack.config_file), "--host", host,
               "-f", "json"]
        return json.loads(run_cli(cli, client_env()).stdout)

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


@dataclass(frozen=True)
class HostSample:
    """One look at a host: its nova-compute service, then (read after it) its evacuations' statuses."""

    forced_down: bool
    status: str
    migrations: tuple[str, ...]

    @property
    def completed(self) -> bool:
        return bool(self.migrations) and set(self.migrations) == {"completed"}

    @property
    def phase(self) -> int | None:
        """Where the return stands, in the only order allowed (spec 3.6, 6; ha-anchors 9 steps 6-7):
        0 forced down, evacuations not all completed; 1 forced down, all completed; 2 forced up, still disabled;
        3 forced up and enabled. None: a state outside that order (up or enabled before the cleanup, or
        enabled while forced down)."""
        if self.forced_down:
            return None if self.status == "enabled" else (1 if self.completed else 0)
        if not self.completed:
            return None
        return 3 if self.status == "enabled" else 2


class HostSampler(threading.Thread):
    """Samples, until stopped, one host's service and its evacuations. The service is read first: a sample
    showing the host forced up (or enabled) with an evacuation not yet completed therefore proves the
    monitor acted before the agent's cleanup, not a race between the two reads."""

    def __init__(self, stack: Stack, host: str):
        super().__init__(daemon=True, name=f"host-sampler-{host}")
        self.stack, self.host = stack, host
        self.samples: list[HostSample] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def sample(self) -> HostSample:
        svc = service(self.stack, self.host)
        resp = api(self.stack, "GET", f"/os-migrations?host={self.host}&migration_type=evacuation", version="2.59")
        resp.raise_for_status()
        statuses = tuple(sorted(m["status"] for m in resp.json()["migrations"]))
        return HostSample(svc["forced_down"], svc["status"], statuses)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as error:  # a slow API under load: the next sample is as good
                self.errors.append(repr(error))
            self._halt.wait(0.01)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def reached(self, phase: int) -> bool:
        return any(s.phase == phase for s in self.samples)
