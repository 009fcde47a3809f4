"""Hosts in network namespaces for live tests: each one a namespace with one veth to a bridge in the root one.

    with Network.create(["compute1", "compute2"]) as net:
        net.address("compute1")              # 10.231.<n>.11, inside the namespace
        net.gateway                          # 10.231.<n>.1, the bridge in the root namespace
        net.namespace("compute1")            # its namespace's name: run a process "on" the host there
        net.cut("compute1") / net.mend("compute1")   # the host's link down / up (from the root side)
        net.power_off("compute1") / net.power_on("compute1")   # the host's own NIC down / up (inside)

Everything lives in one private /24 (10.231.<n>.0/24, <n> picked so it is used by no interface here) and
every name carries a random tag, so concurrent test runs do not meet. ``close()`` (and leaving the ``with``)
deletes the namespaces and the bridge — the veth pairs go with them — also after a failed test.
``require_netns()`` skips the calling test when this process may not create namespaces.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from dataclasses import dataclass, field

import pytest

SUBNET_PREFIX = "10.231"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def require_netns() -> None:
    """Skip the test unless ``ip netns add`` works here (root, or CAP_NET_ADMIN + CAP_SYS_ADMIN)."""
    probe = f"nlprobe{secrets.token_hex(3)}"
    try:
        result = _ip("netns", "add", probe, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"network namespaces unavailable: `ip` cannot run ({error})")
    if result.returncode != 0:
        pytest.skip(f"network namespaces unavailable: `ip netns add` is not permitted ({result.stderr.strip()})")
    _ip("netns", "del", probe, check=False)


def _free_subnet() -> int:
    """A third octet n such that no interface of the root namespace has an address in 10.231.n.0/24."""
    used = _ip("-4", "-o", "addr", "show").stdout
    taken = {ipaddress.ip_interface(word).network for line in used.splitlines() for word in line.split()
             if word.count(".") == 3 and "/" in word}
    for _ in range(200):
        n = 1 + secrets.randbelow(254)
        if ipaddress.ip_network(f"{SUBNET_PREFIX}.{n}.0/24") not in taken:
            return n
    raise RuntimeError(f"no free {SUBNET_PREFIX}.x.0/24 subnet")


@dataclass
class Network:
    """A bridge in the root namespace (the gateway address) and one namespace per host, veth-attached."""

    tag: str
    subnet: int
    hosts: list[str] = field(default_factory=list)
    _created_ns: list[str] = field(default_factory=list)
    _bridge_up: bool = False

    @classmethod
    def create(cls, hosts: list[str]) -> Network:
        net = cls(tag=secrets.token_hex(2), subnet=_free_subnet())
        try:
            _ip("link", "add", net.bridge, "type", "bridge")
            net._bridge_up = True
            _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
            _ip("link", "set", net.bridge, "up")
            for host in hosts:
                net.add(host)
        except BaseException:
            net.close()
            raise
        return net

    # -- names and addresses -----------------------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"nl{self.tag}br"

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    def namespace(self, host: str) -> str:
        return f"nl{self.tag}-{host}"

    def _index(self, host: str) -> int:
        return self.hosts.index(host)

    def address(self, host: str) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.{11 + self._index(host)}"

    def veth(self, host: str) -> str:
        """The root side of the host's link (interface names: at most 15 characters)."""
        return f"nl{self.tag}v{self._index(host)}"

    # -- building and cutting -------------------------------------------------------------------------------

    def add(self, host: str) -> None:
        if len(self.hosts) >= 200:
            raise ValueError("at most 200 hosts per network")
        self.hosts.append(host)
        ns, outside, inside = self.namespace(host), self.veth(host), f"nl{self.tag}p{self._index(host)}"
        _ip("netns", "add", ns)
        self._created_ns.append(ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", inside, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, *hosts: str) -> None:
        """The hosts' links down at the bridge: nothing in or out, the processes inside keep running."""
        for host in hosts:
            _ip("link", "set", self.veth(host), "down")

    def mend(self, *hosts: str) -> None:
        for host in hosts:
            _ip("link", "set", self.veth(host), "up")

    def power_off(self, host: str) -> None:
        """What powering the host off does to its network, beyond stopping its processes (a fencer's job):
        its NIC goes down, and with it whatever the kernel still held to send. A namespace outlives the
        processes in it, where a real host's kernel dies with its power: without this, datagrams a killed
        process sent while the link was cut (queued while the gateway's address cannot be resolved, up to
        3 s of them) still go out once the link returns, as if from the dead process."""
        _ip("-n", self.namespace(host), "link", "set", "eth0", "down")

    def power_on(self, host: str) -> None:
        _ip("-n", self.namespace(host), "link", "set", "eth0", "up")

    def close(self) -> None:
        """Delete every namespace (their veths go with them) and the bridge; never raises."""
        for host in self.hosts:  # deleting one end of a veth pair deletes both, wherever the other is
            _ip("link", "del", self.veth(host), check=False)
        for ns in reversed(self._created_ns):
            _ip("netns", "del", ns, check=False)
        self._created_ns.clear()
        if self._bridge_up:
            _ip("link", "del", self.bridge, check=False)
            self._bridge_up = False

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
