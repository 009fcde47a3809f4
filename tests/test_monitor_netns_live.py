"""The fault monitor against hosts on a network: every compute agent in its own network namespace.

Each host is one compute agent in a namespace of its own (tests/netns.py: a veth to a bridge in the root
namespace, addresses in a private 10.231.n.0/24; tests/netstack.py: the stack on it and the samplers). The
API, the scheduler and — unless a test moves it — the monitor run in the root namespace and listen on the
bridge's address; each agent takes nudges on its own namespace's address ([compute] nudge_host). The fencer
is the ``command`` fencer as ``novalite up`` wires it: ``novalite simulated-host power-off {host}`` kills
the host's agent, confirms it is gone and shuts the host's guests down (what a power cut does to them).

Issue 4's network tests:

- a host fails, (a) by a partition: its link is cut while its agent keeps running, (b) by kill -9 of its
  agent → the monitor fences it (the partitioned agent is killed before anything else happens), forces it
  down and every server of the host is ACTIVE elsewhere, each evacuated once. A sampler reads, all along,
  every host's guests.json (the simulated hypervisor's state) and the servers API: no sample shows a
  server running on two live hosts (a fenced host's agent is dead and its guests shut down);
- the monitor's own link cut (the monitor in a namespace of its own): every host goes silent for it, the
  quorum gate holds ("held" in the journal), nothing is fenced, forced down or evacuated — also after the
  link is back;
- the partitioned host's return, once fenced and evacuated: its link comes back and its agent is started
  again (the host powered on), in either order. Nothing happens while only one of the two has happened
  (in particular, a host whose link is back but whose agent is dead sends no beat, so it has not returned);
  once both have, the agent destroys its evacuated copies, the evacuations go done → completed, and only then
  does the monitor force the host up and enable it. A second sampler reads the host's service and its
  evacuations all along, so the order is asserted from what was seen, not from the end state; the
  two-copies sampler keeps running through the whole return;
- a partition whose fencing fails (the fence command exits non-zero): no power-off confirmed, so nothing is
  forced down or evacuated; when the link comes back the host is healthy with its servers where they were.

Nova facts pinned: evacuation needs the source host forced down or down (spec 4.6, 6 step 10), and is
recorded as one "evacuate" instance action per server (spec 6); below 2.95 an evacuated ACTIVE server comes
back ACTIVE (spec 6; the monitor evacuates at 2.94); the source compute's restart completes its `done`
evacuations (spec 6) and force-up is refused while any remain (spec 3.6). The quorum rule, "fence before
evacuate" and the return's order (force up, then enable) are ha-anchors.md sections 2.2 and 9.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.netns import Network, require_netns
from tests.netstack import HOSTS, MONITOR, HostSample, HostSampler, NetStack, TwoCopiesSampler
from tests.stack import wait_until
from tests.test_monitor_recovery_live import (
    REFUSING_FENCE_SCRIPT,
    boot,
    evacuate_actions,
    guests_of,
    servers,
    service,
)

# The monitor acts through the public API only: it runs once, in the SQLite run (conftest.py).

SERVERS_ON_A = 50  # issue 4: 50 servers on host A
# How long a test watches for something that must NOT happen: two of the monitor's return checks
# (service.RETURN_CHECK_INTERVAL, 1 s) and over six detection windows (0.32 s each with the defaults).
QUIET_WINDOW = 2.0


@pytest.fixture
def net():
    require_netns()
    network = Network.create([*HOSTS, MONITOR])
    yield network
    network.close()  # after the stack (set up later, torn down first) has stopped every process inside


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
        began, samples_before = time.monotonic(), sampler.samples
        if failure == "partition":
            ns.net.cut(a)  # the agent keeps running, alone with its guests
        else:
            os.kill(agent.pid, signal.SIGKILL)

        def moved() -> bool:
            now = servers(ns.stack)
            return all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] != a for i in ids)

        wait_until(moved, timeout=20, interval=0.02, what=f"every server of {a} ACTIVE elsewhere")
        elapsed, samples_during = time.monotonic() - began, sampler.samples - samples_before
        wait_until(lambda: sampler.seen_elsewhere, timeout=5, what="a sample of the servers on their new hosts")
        time.sleep(0.2)  # a few samples of the settled state
    finally:
        sampler.stop()
    print(f"{failure} → {len(ids)} servers ACTIVE elsewhere: {elapsed:.2f} s; {samples_during} samples meanwhile, "
          f"{sampler.samples} in all")

    assert sampler.violations == [], sampler.violations[:5]
    # The sampler looked often enough while the servers moved to have caught two copies (a sample takes
    # 10-200 ms, by the machine's load).
    assert samples_during >= 5, (samples_during, sampler.errors[:3])
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


# -- the host's return -----------------------------------------------------------------------------------------

def assert_return_in_order(samples: list[HostSample], evacuated: int) -> None:
    """Every sample in a known phase, phases never going back, from forced down to enabled."""
    assert all(len(s.migrations) == evacuated for s in samples), {len(s.migrations) for s in samples}
    out_of_order = [s for s in samples if s.phase is None]
    assert out_of_order == [], out_of_order[:3]
    phases = [s.phase for s in samples]
    assert phases == sorted(phases), "the return went backwards: " + " ".join(map(str, phases))
    assert phases[0] == 0 and phases[-1] == 3, (phases[0], phases[-1])


def hold_still(ns: NetStack, host: str, why: str) -> None:
    """Nothing is to happen to ``host`` for QUIET_WINDOW: no journal event, still forced down and disabled
    with the monitor's "evacuated" marker. (An absence can only be watched for a while, not polled for.)"""
    before, logged = ns.kinds(host), len(ns.log())
    time.sleep(QUIET_WINDOW)
    said = [line for line in ns.log()[logged:].splitlines() if host in line]
    assert ns.kinds(host) == before, f"{why}: {ns.kinds(host)[len(before):]}; the monitor said:\n" + "\n".join(said)
    svc = service(ns.stack, host)
    assert svc["forced_down"] is True and svc["status"] == "disabled", (why, svc)
    assert svc["disabled_reason"].startswith("novalite-monitor: evacuated "), (why, svc["disabled_reason"])


@pytest.mark.parametrize("order", ["link-then-power", "power-then-link"])
def test_a_partitioned_host_returns_forced_up_and_enabled_only_after_its_evacuations_completed(netstack, order):
    # Spec 6: the source compute's restart destroys its evacuated copies and completes the `done` migrations;
    # spec 3.6: force-up is refused while any remain; ha-anchors 9, steps 6-7: force up, then enable.
    ns, a = netstack, HOSTS[0]
    ids = set(boot(ns.stack, a, SERVERS_ON_A))
    ns.start_monitor()
    copies = TwoCopiesSampler(ns, ids)
    copies.start()
    host = HostSampler(ns.stack, a)
    try:
        wait_until(lambda: copies.samples >= 3, timeout=10, what="the sampler running")
        fenced = ns.agents[a]
        ns.net.cut(a)
        wait_until(lambda: "recovered" in ns.kinds(a), timeout=30, what=f"the recovery of {a}")
        assert fenced.wait(timeout=5) == -signal.SIGKILL  # the fencer stopped the host's processes
        ns.net.power_off(a)  # and the rest of its power-off: before the link returns, nothing queued is sent
        assert guests_of(ns.stack, a) == ids and ns.running_guests(a) == set()  # its guests died with its power
        host.start()
        wait_until(lambda: host.samples, timeout=10, what="the host sampler running")

        if order == "link-then-power":
            ns.net.mend(a)  # the link is back, the host still off: nothing beats
            hold_still(ns, a, "the link is back but the host is off")
            began = time.monotonic()
            ns.net.power_on(a)
            ns.start_agent(a)
        else:
            logged = len(ns.agent_log(a))
            ns.net.power_on(a)
            ns.start_agent(a)  # powered on behind the cut link: it can neither register nor beat
            wait_until(lambda: "cannot register" in ns.agent_log(a)[logged:], timeout=20,
                       what=f"{a}'s agent trying to reach the API")
            hold_still(ns, a, "the host is on but its link is still cut")
            began = time.monotonic()
            ns.net.mend(a)

        wait_until(lambda: "enabled" in ns.kinds(a), timeout=30, what=f"{a} enabled again")
        elapsed = time.monotonic() - began
        wait_until(lambda: host.reached(3), timeout=10, what=f"a sample of {a} enabled")
        time.sleep(0.2)  # a few samples of the settled state
    finally:
        host.stop()
        copies.stop()
    print(f"{order}: {a} back and enabled {elapsed:.2f} s after its return; {len(host.samples)} host samples, "
          f"{copies.samples} copy samples; phases seen {sorted({s.phase for s in host.samples})}")

    assert copies.violations == [], copies.violations[:5]
    assert copies.samples >= 20, (copies.samples, copies.errors[:3])
    assert_return_in_order(host.samples, SERVERS_ON_A)
    assert guests_of(ns.stack, a) == set()  # every evacuated copy destroyed on A, not merely stopped
    assert ns.agent_log(a).count("destroyed the local copy of") == SERVERS_ON_A
    now = servers(ns.stack)
    assert all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] in HOSTS[1:] for i in ids)
    assert all(len(evacuate_actions(ns.stack, i)) == 1 for i in ids), "a server was evacuated twice"
    svc = service(ns.stack, a)
    assert (svc["forced_down"], svc["status"], svc["disabled_reason"]) == (False, "enabled", None)
    wait_until(lambda: service(ns.stack, a)["state"] == "up", timeout=15, what=f"{a} up")

    events = ns.monitor_events(a)
    kinds = [e["kind"] for e in events]
    returned = [k for k in kinds[kinds.index("recovered") + 1:] if k != "force_up_refused"]
    assert returned == ["host_returned", "forced_up", "enabled"], kinds
    assert len({e["recovery_id"] for e in events if e["kind"] in ("fenced", "host_returned", "enabled")}) == 1
    assert f"return of {a}: enabled" in ns.log()


def fence_fails(ns: NetStack, host: str) -> Path:
    """``host``'s fence command exits 1 without powering anything off (a BMC that does not answer); returns
    where it logs each call. Set before the monitor starts: it reads its fencers once."""
    script = ns.stack.root / "fence-fails.sh"
    script.write_text(REFUSING_FENCE_SCRIPT)
    script.chmod(0o755)
    ns.stack.extra_config = {**ns.stack.extra_config, f"fence:{host}": {"command": f"{script} {{host}}"}}
    ns.stack.write_config()
    return ns.stack.root / "fenced.log"


def test_a_partition_whose_fencing_fails_is_left_alone_and_the_host_returns_with_its_servers(netstack):
    # ha-anchors 9, step 1: nothing happens before the power-off is confirmed; without it the partitioned
    # host may still run its servers, so evacuating them would run them twice.
    ns, a = netstack, HOSTS[0]
    ids = set(boot(ns.stack, a, 10))
    fenced_log = fence_fails(ns, a)
    ns.start_monitor(NOVALITE_MONITOR__FENCE_RETRY_INTERVAL="0.5")  # the BMC may answer later: ask again
    copies = TwoCopiesSampler(ns, ids)
    copies.start()
    try:
        wait_until(lambda: copies.samples >= 3, timeout=10, what="the sampler running")
        ns.net.cut(a)  # the agent keeps running, alone with its guests
        wait_until(lambda: "fence_failed" in ns.kinds(a), timeout=20, what=f"the fencing of {a} failing")
        time.sleep(QUIET_WINDOW)  # nothing but fencing again may follow the failed fencing: watch for a while
        assert set(ns.kinds(a)) == {"detected", "fence_failed", "fence_retry"}, ns.kinds(a)
        assert ns.kinds(a).count("fence_failed") >= 2, ns.kinds(a)
        svc = service(ns.stack, a)
        assert (svc["forced_down"], svc["status"]) == (False, "enabled")
        assert ns.agents[a].poll() is None  # not powered off: it runs on behind the cut

        ns.net.mend(a)
        wait_until(lambda: f"return of {a}: not-ours" in ns.log(), timeout=15, what=f"the monitor hearing {a} again")
        # Healthy: the host takes new work again (the scheduler's nudge reaches it, its result comes back).
        newcomer = set(boot(ns.stack, a, 1, name="after-the-partition"))
    finally:
        copies.stop()

    assert copies.violations == [], copies.violations[:5]
    assert copies.samples >= 20, (copies.samples, copies.errors[:3])
    assert set(fenced_log.read_text().split()) == {a}
    assert "exit status 1" in ns.events(a, kind="fence_failed")[0].detail["detail"]
    # No force-down, no disable, no evacuation, and no "return" to make: the monitor never took the host over.
    # Its fencing was tried again and again under one recovery, until the host was heard again.
    assert set(ns.kinds(a)) == {"detected", "fence_failed", "fence_retry"}, ns.kinds(a)
    assert {e["kind"] for e in ns.monitor_events(a)} == {"detected", "fence_failed", "fence_retry"}
    assert len({e.recovery_id for e in ns.events(a)}) == 1
    tries = len(fenced_log.read_text().split())
    time.sleep(1.0)
    assert len(fenced_log.read_text().split()) == tries  # heard again: no more fencing
    svc = service(ns.stack, a)
    assert (svc["forced_down"], svc["status"], svc["state"]) == (False, "enabled", "up")
    now = servers(ns.stack)
    assert all(now[i]["status"] == "ACTIVE" and now[i]["OS-EXT-SRV-ATTR:host"] == a for i in ids | newcomer)
    assert ns.running_guests(a) == ids | newcomer
    assert all(evacuate_actions(ns.stack, i) == [] for i in ids)
    assert ns.agents[a].poll() is None
    for other in HOSTS[1:]:
        assert ns.kinds(other) == []
