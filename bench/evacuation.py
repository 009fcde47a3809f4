"""Time from force-down to every server ACTIVE elsewhere, for N servers on one failed host.

A real stack (the same ``tests/stack.py`` the live tests use: ``novalite api`` under gunicorn, ``novalite
scheduler``, ``novalite compute`` agents with the simulated driver, spawn time 0, SQLite in WAL mode
unless --database-url) on 127.0.0.1. For each N, a fresh stack with --hosts compute hosts; each run:

1. boots N servers (m1.tiny) on one host (POST /servers at 2.74 with ``host``) and waits until ACTIVE;
2. kills that host's agent with SIGKILL (the failure);
3. t0: PUT /os-services/force-down (2.11), then POST evacuate (2.68, ``{"evacuate": {}}``) for every
   server from --clients concurrent connections, as a fault monitor would;
4. polls GET /servers?host=<failed host> until it is empty and every server is ACTIVE elsewhere: t_end.

Reported per N over the runs: median and p99 (the nearest-rank p99: with fewer than 100 runs, the
maximum) of t_end − t0 and of the time until every evacuate call was answered (accepted); and, median
per server, the CPU time (user + system, from /proc) of the API's gunicorn master and workers and of
this process's clients until accepted (the force-down and the evacuate calls), and of the scheduler and
the surviving agents until t_end; a loaded machine inflates these far less than it inflates wall times.
Between runs the failed host's agent restarts (it cleans up its evacuated copies), it is forced up again
and the servers are deleted.

    .venv/bin/python bench/evacuation.py                      # N = 10, 100, 1000
    .venv/bin/python bench/evacuation.py --sizes 100 --runs 20
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from novalite.cli.up import seed_flavors  # noqa: E402
from tests.clients import agent_process  # noqa: E402
from tests.stack import Stack, wait_until  # noqa: E402

DEFAULT_RUNS = {10: 10, 100: 10, 1000: 3}
TARGET = (100, 1.0)  # issue 3: 100 servers ACTIVE elsewhere within 1 s of force-down


ROLES = ("api", "scheduler", "compute")  # the stack's processes, by their novalite subcommand
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def cpu_by_process_group() -> dict[int, float]:
    """CPU seconds (user + system) of every live process, summed by process group: the stack starts each
    process in a session of its own, so a group is one process with its children (gunicorn's workers)."""
    out: dict[int, float] = defaultdict(float)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state): pgrp is 5, utime 14, stime 15
        out[int(fields[2])] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


class CpuMeter:
    """CPU seconds each role of the stack (and this process) spent between start() and stop()."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def start(self) -> None:
        self.groups, self.own = cpu_by_process_group(), time.process_time()

    def lap(self) -> dict[str, float]:
        now = cpu_by_process_group()
        spent = {role: 0.0 for role in ROLES}
        for proc in self.stack.procs:
            if proc.poll() is None and proc.args[3] in spent:
                spent[proc.args[3]] += now.get(proc.pid, 0.0) - self.groups.get(proc.pid, 0.0)
        spent["client"] = time.process_time() - self.own
        return spent


class Bench:
    def __init__(self, stack: Stack, hosts: list[str], clients: int):
        self.stack = stack
        self.hosts = hosts
        self.session = requests.Session()
        self.pool = ThreadPoolExecutor(max_workers=clients)
        self.sessions = [requests.Session() for _ in range(clients)]
        self.cpu = CpuMeter(stack)

    def call(self, method: str, path: str, version: str, session: requests.Session | None = None, **kwargs):
        resp = (session or self.session).request(method, self.stack.endpoint + path, timeout=60,
                                                 headers=self.stack.admin_headers(version), **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp

    def servers_on(self, host: str) -> list[dict]:
        return self.call("GET", f"/servers/detail?all_tenants=1&host={host}", "2.74").json()["servers"]

    def boot(self, host: str, count: int) -> list[str]:
        body = {"server": {"name": "bench", "flavorRef": "1", "imageRef": "", "networks": "none", "host": host,
                           "min_count": count, "max_count": count}}
        self.call("POST", "/servers", "2.74", json=body)
        wait_until(lambda: sum(s["status"] == "ACTIVE" for s in self.servers_on(host)) == count, timeout=300,
                   interval=0.2, what=f"{count} servers ACTIVE on {host}")
        return [s["id"] for s in self.servers_on(host)]

    def evacuate_all(self, ids: list[str]) -> None:
        def one(index_id):
            index, server_id = index_id
            session = self.sessions[index % len(self.sessions)]
            self.call("POST", f"/servers/{server_id}/action", "2.68", session=session, json={"evacuate": {}})

        list(self.pool.map(one, enumerate(ids)))

    def run(self, source: str, count: int) -> dict[str, float]:
        ids = self.boot(source, count)
        proc = agent_process(self.stack, source)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

        self.cpu.start()
        t0 = time.perf_counter()
        self.call("PUT", "/os-services/force-down", "2.11",
                  json={"host": source, "binary": "nova-compute", "forced_down": True})
        self.evacuate_all(ids)
        accepted = time.perf_counter() - t0
        until_accepted = self.cpu.lap()
        while True:
            brief = self.call("GET", f"/servers?all_tenants=1&host={source}", "2.74").json()["servers"]
            if not brief:
                break
            time.sleep(0.005)
        done = time.perf_counter() - t0
        until_done = self.cpu.lap()
        cpu = {"api": until_accepted["api"], "client": until_accepted["client"],
               "scheduler": until_done["scheduler"], "compute": until_done["compute"]}
        servers = [s for s in self.call("GET", "/servers/detail?all_tenants=1", "2.74").json()["servers"]
                   if s["id"] in set(ids)]
        bad = [s for s in servers if s["status"] != "ACTIVE" or s["OS-EXT-SRV-ATTR:host"] == source]
        if bad or len(servers) != count:
            raise RuntimeError(f"{len(bad)} servers not ACTIVE elsewhere: {bad[:2]}")

        # Let the host return, clean up and come back; then clear the servers for the next run.
        self.stack.start_compute(source)
        wait_until(lambda: not [m for m in self.call("GET", "/os-migrations", "2.59").json()["migrations"]
                                if m["status"] == "done"], timeout=60 + count * 0.3, interval=0.2,
                   what="migrations completed")
        self.call("PUT", "/os-services/force-down", "2.11",
                  json={"host": source, "binary": "nova-compute", "forced_down": False})
        for server_id in ids:
            self.call("DELETE", f"/servers/{server_id}", "2.74")
        wait_until(lambda: not self.call("GET", "/servers?all_tenants=1", "2.74").json()["servers"], timeout=300,
                   interval=0.2, what="servers deleted")
        return {"total": done, "accepted": accepted, **{f"cpu_{role}": seconds for role, seconds in cpu.items()}}


def bench_size(count: int, runs: int, args: argparse.Namespace) -> dict[str, list[float]]:
    hosts = [f"compute{i}" for i in range(1, args.hosts + 1)]
    with tempfile.TemporaryDirectory(prefix="novalite-evac-") as tmp:
        root = Path(tmp)
        stack = Stack(root=root / "stack", database_url=args.database_url or f"sqlite:///{root / 'bench.sqlite'}",
                      extra_config={"compute": {"memory_mb": str(512 * 1100 + 512), "vcpus": "1100",
                                                "local_gb": "2000", "spawn_time": "0", "stop_time": "0"}})
        try:
            seed_flavors(stack.database_url)
            stack.start_api(workers=args.workers)
            stack.start_scheduler()
            for host in hosts:
                stack.start_compute(host)
            stack.wait_for_computes(*hosts)
            bench = Bench(stack, hosts, args.clients)
            figures: dict[str, list[float]] = defaultdict(list)
            for run in range(runs):
                source = hosts[run % len(hosts)]
                result = bench.run(source, count)
                for key, value in result.items():
                    figures[key].append(value)
                print(f"  N={count} run {run + 1}/{runs} from {source}: all ACTIVE elsewhere after "
                      f"{result['total'] * 1000:.0f} ms (evacuations accepted after "
                      f"{result['accepted'] * 1000:.0f} ms)", flush=True)
            return figures
        finally:
            stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--runs", type=int, default=None, help="runs per size (default: 10, 10, 3)")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8, help="concurrent evacuate callers")
    parser.add_argument("--workers", type=int, default=2, help="API workers")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    rows = []
    for count in [int(s) for s in args.sizes.split(",")]:
        runs = args.runs or DEFAULT_RUNS.get(count, 5)
        figures = bench_size(count, runs, args)
        rows.append((count, runs, figures))
    print(f"\n(load average at the end: {os.getloadavg()[0]:.2f})\n")
    print(f"{'servers':>8} {'runs':>5} {'total median ms':>16} {'total p99 ms':>13} {'accepted median ms':>19}"
          f" {'per server ms':>14}   CPU ms per server (median): {'  '.join(f'{r:>9}' for r in (*ROLES, 'client'))}")
    for count, runs, figures in rows:
        total = figures["total"]
        median_ms = statistics.median(total) * 1000
        cpu = "  ".join(f"{statistics.median(figures[f'cpu_{role}']) * 1000 / count:>9.2f}"
                        for role in (*ROLES, "client"))
        print(f"{count:>8} {runs:>5} {median_ms:>16.0f} {p99(total) * 1000:>13.0f} "
              f"{statistics.median(figures['accepted']) * 1000:>19.0f} {median_ms / count:>14.2f}"
              f"   {'':>28}{cpu}")
    for count, _runs, figures in rows:
        if count == TARGET[0]:
            median = statistics.median(figures["total"])
            print(f"\ntarget: {TARGET[0]} servers in ≤ {TARGET[1]:.1f} s — measured median {median:.2f} s "
                  f"({'met' if median <= TARGET[1] else 'missed'})")


if __name__ == "__main__":
    main()
