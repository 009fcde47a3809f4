"""``novalite up --demo``: a few servers on the fresh stack, and the host failure to try on them.

Once every compute agent has reported its hypervisor, ``SERVERS_PER_HOST`` m1.tiny servers per host are
booted in one request (the scheduler spreads them), and once they are ACTIVE the steps of an evacuation
are printed: kill a host's agent, see Nova refuse to evacuate while the host still counts as up, force
it down, host-evacuate it, look at the result.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from novalite.client import ClientError, ComputeClient

SERVERS_PER_HOST = 3
FLAVOR = "m1.tiny"
NAME = "demo"
READY_TIMEOUT = 60.0  # seconds for the hosts to report, and again for the servers to become ACTIVE
POLL_INTERVAL = 0.5


class DemoFailed(Exception):
    pass


def connect(endpoint: str, token: str) -> ComputeClient:
    """A client of the stack's endpoint with its admin token (keystoneauth's admin_token plugin)."""
    from keystoneauth1 import adapter, session, token_endpoint

    compute = adapter.Adapter(session=session.Session(auth=token_endpoint.Token(endpoint, token)),
                              service_type="compute", endpoint_override=endpoint, user_agent="novalite-demo")
    client = ComputeClient(compute)
    client.negotiate(None)
    return client


def _wait(what: str, found: Callable[[], object], stopping: Callable[[], bool]) -> object:
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping():
        result = found()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {READY_TIMEOUT:.0f} s waiting for {what}")
        time.sleep(POLL_INTERVAL)
    raise DemoFailed("interrupted")


def boot_demo_servers(client: ComputeClient, hosts: list[str], stopping: Callable[[], bool]) -> Counter:
    """Boot SERVERS_PER_HOST servers per host once every host is up; returns how many landed where."""

    def hosts_up():
        up = {h["hypervisor_hostname"] for h in client.list_hypervisors() if h.get("state") == "up"}
        return set(hosts) <= up

    _wait(f"the hypervisors of {', '.join(hosts)}", hosts_up, stopping)
    count = SERVERS_PER_HOST * len(hosts)
    flavor = client.find_flavor(FLAVOR)
    first = client.create_server(NAME, str(flavor["id"]), min_count=count, max_count=count)
    reservation = client.get_server(first["id"]).get("OS-EXT-SRV-ATTR:reservation_id")

    def all_active():
        servers = client.list_servers(reservation_id=reservation) if reservation else client.list_servers(name=NAME)
        failed = [s for s in servers if s.get("status") == "ERROR"]
        if failed:
            fault = (failed[0].get("fault") or {}).get("message", "")
            raise DemoFailed(f"server {failed[0]['id']} went to ERROR {fault}".rstrip())
        if len(servers) >= count and all(s.get("status") == "ACTIVE" for s in servers):
            return Counter(s.get("OS-EXT-SRV-ATTR:host") for s in servers)
        return None

    return _wait(f"{count} ACTIVE servers", all_active, stopping)


def run_demo(endpoint: str, token: str, hosts: list[str], stopping: Callable[[], bool]) -> Counter | None:
    """Boot the demo servers and print where they went; a failure is reported, the stack keeps running."""
    print(f"demo: booting {SERVERS_PER_HOST * len(hosts)} {FLAVOR} servers named {NAME!r} …", flush=True)
    try:
        placed = boot_demo_servers(connect(endpoint, token), hosts, stopping)
    except (DemoFailed, ClientError) as error:
        print(f"demo: no demo servers: {error}", file=sys.stderr, flush=True)
        return None
    spread = ", ".join(f"{host} {placed[host]}" for host in sorted(placed, key=str))
    print(f"demo: {sum(placed.values())} servers ACTIVE ({spread})", flush=True)
    return placed


def next_steps(agent_pid: int, host: str, monitor: bool = False, data_dir: Path | None = None) -> str:
    """What to try on the demo servers, as commands to paste after the banner's export line: with the fault
    monitor, a kill and a look at what it did; without it (up --no-monitor), the evacuation by hand."""
    cli = Path(sys.executable).with_name("novalite")
    nl = f"{cli if cli.exists() else 'novalite'} --os-cloud novalite"
    if monitor:
        novalite = cli if cli.exists() else "novalite"
        where = f" --data-dir {data_dir}" if data_dir else ""
        steps = [
            (f"kill -9 {agent_pid}", f"{host} dies: the monitor fences it, forces it down and evacuates it"),
            (f"{nl} list --long", "a second later: every server runs elsewhere"),
            (f"{novalite} monitor events{where}", "what the monitor decided and did, and when"),
            (f"{novalite} compute --host {host}{where}",
             f"{host} returns: it cleans up, the monitor forces it up and enables it"),
        ]
        return _steps_text(steps)
    steps = [
        (f"kill -9 {agent_pid}", f"{host}'s compute agent dies"),
        (f"{nl} host-evacuate {host}", f"refused: {host} still counts as up"),
        (f"{nl} service-force-down {host}", "fence it: down at once"),
        # Below 2.95 an evacuated server comes back running; from 2.95 Nova leaves it stopped (spec 6).
        (f"{nl} --os-compute-api-version 2.94 host-evacuate {host}",
         "its servers move and run elsewhere: live progress, then a table"),
        (f"{nl} list --long", "where everything runs now"),
        (f"{nl} migration-list", "one evacuation migration per server"),
    ]
    return _steps_text(steps)


def _steps_text(steps: list[tuple[str, str]]) -> str:
    width = max(len(command) for command, _ in steps)
    return "\n".join(["Try a host failure (in a second terminal, after the export line above):",
                      *(f"  {command.ljust(width)}  # {why}" for command, why in steps)])
