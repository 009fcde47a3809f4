"""Failover benchmarks for the fault monitor (issue 4). Each part is one function registered in PARTS.

Part ``detection``: how fast and how exactly the monitor's Detector (src/novalite/monitor/detection.py)
tells a dead host at scale. One sender process simulates N hosts (default 1,000) heartbeating every
interval (default 0.1 s: 10,000 datagrams/s) with the real wire format from one UDP socket, spread
evenly over the interval, and answers the Detector's probes for them (between beats, and every
ANSWER_EVERY beats while behind schedule, as real agents answer from a thread of their own). The Detector
runs in this process, alone on its event loop. Induced silences, at random moments and to distinct hosts:

- ``deaths``: a host stops beating and answering probes for 1.5 s, then resumes (HostReturned);
- ``mutes``: a host stops beating but keeps answering probes (heartbeat channel lost): never failed.

Reported: last beat sent → HostFailed and failure (the first missed beat's due time) → HostFailed, median
/ p99 / max; how long beats wait before the Detector takes them (its clock minus the sender's, sampled
from hosts()); the event loop's lag (a 10 ms timer's lateness); the Detector's CPU share of one core
(process time / wall time, this process); datagrams sent, taken and dropped by the kernel; false,
missed and mute failures, and false suspects (hosts never silenced whose beats came late: probed, then
saved by a beat or an answer). The Detector has the [monitor] defaults unless --suspect-after,
--probe-attempts or --probe-interval say otherwise. Nothing asserts: it measures.

Part ``agents`` (bench/failover_agents.py): real agents probed continuously; how long a live agent can be
silent on both channels, to compare with the detection window.

``--hogs N`` runs N CPU-burning processes during every part (the parts ``detection`` and ``agents`` also
run once without them first), to show detection and false failures with every core busy.

Part ``endtoend``: the whole failover on a real stack (tests/stack.py: ``novalite api`` under gunicorn,
``novalite scheduler``, --compute-hosts ``novalite compute`` agents with the simulated driver, spawn time
0, SQLite WAL) and the real ``novalite monitor run`` process, configured as tests/test_monitor_live.py
does: agents beat to it every 0.1 s, fencer ``command`` = ``python -m novalite.agent.simulated_host
power-off {host}`` (``novalite up``'s), every detection setting at its default.
Each induced failure, on the hosts in turn: boot K servers on the host, SIGKILL its agent at t0, then
measure from t0:

- detected: the detector's HostFailed (its wall time, in the journal's "detected" row, to the ms);
- recovery started / fenced: the journal rows "detected" and "fenced" (their wall times);
- forced_down visible: GET /os-services (2.11) polled every ~5 ms shows the host forced down;
- all ACTIVE elsewhere: GET /servers?host=<host>&all_tenants=1 polled every ~25 ms is empty, then
  GET /servers/detail shows every one of the K servers ACTIVE on another host;
- and, not from t0: detected → forced_down visible (what the monitor adds after detection), and the fence
  command's own time (the fencer's ``seconds`` in the journal's "fenced" row).

Between failures the host's agent restarts (cleanup), the monitor forces it up and enables it, and the
servers are deleted. Printed: median and p99 (nearest rank: with fewer than 100 failures, the maximum)
of each stage per K; and the CPU each role's processes (API master and workers, scheduler, the surviving
agents, the monitor with its fence commands, this process's polling) spent from t0 until all were ACTIVE
elsewhere, against that wall time: the failover's cost, and on 2 cores whether it waited for CPU.

    .venv/bin/python bench/failover.py                                   # every part
    .venv/bin/python bench/failover.py --parts detection --hosts 1000,2000 --seconds 30
    .venv/bin/python bench/failover.py --parts endtoend --servers 10,100 --failures 20,10
    .venv/bin/python bench/failover.py --parts detection,agents --hogs 2
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import multiprocessing
import os
import random
import secrets
import select
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_api import cpu_seconds  # noqa: E402
from failover_agents import agents, cpu_hogs, load_average, ms_columns, p99  # noqa: E402

from novalite.cli.up import seed_flavors  # noqa: E402
from novalite.config import MonitorOpts  # noqa: E402
from novalite.monitor.detection import Detector, HostFailed, HostReturned, HostSuspect  # noqa: E402
from novalite.monitor.heartbeat_wire import decode_probe, encode_beat, encode_probe_reply  # noqa: E402
from novalite.monitor.journal import Journal  # noqa: E402
from novalite.nudge import parse_address  # noqa: E402
from tests.clients import agent_process  # noqa: E402
from tests.stack import Stack, wait_until  # noqa: E402
from tests.test_monitor_live import start_monitor  # noqa: E402

SILENCE = 1.5  # seconds each induced silence lasts
ANSWER_EVERY = 32  # beats sent between two looks for probes while the sender is behind schedule
WARM_UP = 1.0  # seconds before anything is measured or silenced


# The sender: N simulated hosts in one process.

@dataclass
class Silence:
    host: str
    mode: str  # "dead" | "mute"
    start: float  # seconds after the sender's start
    end: float


def simulate_hosts(conn, key: bytes, address: str, names: list[str], interval: float, seconds: float,
                   silences: list[Silence]) -> None:
    """Beat for ``names`` until ``seconds`` have passed; send back what was sent and when."""
    target = parse_address(address)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    by_host = {s.host: s for s in silences}
    incarnations = {name: secrets.randbits(64) for name in names}
    seqs = dict.fromkeys(names, 0)
    last_sent_ns: dict[str, int] = {}  # per silenced host: its last beat before the silence
    failure_wall: dict[str, float] = {}  # per silenced host: when its first missed beat was due
    n = len(names)
    phases = [i * interval / n for i in range(n)]
    sent = replies = 0
    behind: list[float] = []
    t0 = time.monotonic()
    wall0 = time.time()
    end = t0 + seconds
    round_, i = 0, 0
    while True:
        due = t0 + round_ * interval + phases[i]
        if due >= end:
            break
        now = time.monotonic()
        if due > now:
            readable, _, _ = select.select([sock], [], [], due - now)
            if readable:
                replies += _answer(sock, key, by_host, t0)
            continue
        behind.append(now - due)
        if i % ANSWER_EVERY == 0:  # behind schedule too: each real agent answers from a thread of its own
            replies += _answer(sock, key, by_host, t0)
        name = names[i]
        silence = by_host.get(name)
        offset = due - t0
        if silence is not None and silence.start <= offset < silence.end:
            failure_wall.setdefault(name, wall0 + offset)
        else:
            sent_ns = time.time_ns()
            try:
                sock.sendto(encode_beat(key, name, seqs[name], sent_ns, incarnations[name]), target)
                sent += 1
            except BlockingIOError:
                pass
            seqs[name] += 1
            if silence is not None and offset < silence.start:
                last_sent_ns[name] = sent_ns
        i += 1
        if i == n:
            i, round_ = 0, round_ + 1
    conn.send({"end_wall": time.time(), "sent": sent, "replies": replies, "last_sent_ns": last_sent_ns,
               "failure_wall": failure_wall, "behind_p99": p99(behind) if behind else 0.0,
               "behind_max": max(behind, default=0.0)})
    conn.close()


def _answer(sock: socket.socket, key: bytes, by_host: dict[str, Silence], t0: float) -> int:
    answered = 0
    while True:
        try:
            data, source = sock.recvfrom(2048)
        except BlockingIOError:
            return answered
        probe = decode_probe(key, data)
        if probe is None:
            continue
        silence = by_host.get(probe.host)
        offset = time.monotonic() - t0
        if silence is not None and silence.mode == "dead" and silence.start <= offset < silence.end:
            continue
        sock.sendto(encode_probe_reply(key, probe.host, probe.nonce), source)
        answered += 1


# The detector's side.

@dataclass
class DetectionRun:
    hosts: int
    interval: float
    seconds: float
    suspect_after: int
    probe_attempts: int
    probe_interval: float
    hogs: int = 0
    last_beat_to_failed: list[float] = field(default_factory=list)
    failure_to_failed: list[float] = field(default_factory=list)
    queueing: list[float] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)
    cpu_share: float = 0.0
    sent: int = 0
    taken: int = 0
    kernel_drops: int | None = None
    false_failures: int = 0
    false_suspects: int = 0
    missed: int = 0
    mute_failed: int = 0
    returned: int = 0
    deaths: int = 0
    mutes: int = 0
    sender_behind_p99: float = 0.0
    sender_behind_max: float = 0.0
    load: str = ""


def _kernel_drops(port: int) -> int | None:
    """The drops counter of the UDP socket bound to ``port`` (/proc/net/udp), if there is one."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    return None


async def _measure_loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        planned = time.monotonic() + 0.01
        await asyncio.sleep(0.01)
        samples.append(time.monotonic() - planned)


async def _sample_queueing(detector: Detector, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.5)
        for health in detector.hosts().values():
            if health.state == "alive" and health.last_sent_wall:
                samples.append(health.last_beat_wall - health.last_sent_wall)


async def _detect(run: DetectionRun) -> DetectionRun:
    hosts, interval, seconds, deaths, mutes = run.hosts, run.interval, run.seconds, run.deaths, run.mutes
    key = secrets.token_bytes(32)
    names = [f"sim{i:05d}" for i in range(hosts)]
    rng = random.Random(4)
    chosen = rng.sample(names, deaths + mutes)
    silences = [Silence(name, "dead" if k < deaths else "mute", start, start + SILENCE)
                for k, name in enumerate(chosen)
                for start in [rng.uniform(WARM_UP + 1, seconds - SILENCE - 1.0)]]
    detector = Detector(key, interval=interval, suspect_after=run.suspect_after, probe_attempts=run.probe_attempts,
                        probe_interval=run.probe_interval)
    await detector.start("127.0.0.1", 0)
    port = int(detector.address.rsplit(":", 1)[1])
    drops_before = _kernel_drops(port) or 0
    events: list[object] = []

    async def collect():
        async for event in detector.events():
            events.append(event)

    collector = asyncio.create_task(collect())
    stop = asyncio.Event()
    receiver, sender_end = multiprocessing.Pipe(duplex=False)
    sender = multiprocessing.get_context("spawn").Process(
        target=simulate_hosts, args=(sender_end, key, detector.address, names, interval, seconds, silences))
    sender.start()
    await asyncio.sleep(WARM_UP + 0.5)  # the spawned interpreter starts, every host beats once at least
    lag_task = asyncio.create_task(_measure_loop_lag(run.loop_lag, stop))
    queue_task = asyncio.create_task(_sample_queueing(detector, run.queueing, stop))
    cpu0, wall0 = time.process_time(), time.monotonic()
    result = await asyncio.to_thread(receiver.recv)
    run.cpu_share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    stop.set()
    await asyncio.gather(lag_task, queue_task)
    sender.join()
    run.kernel_drops = None if (drops := _kernel_drops(port)) is None else drops - drops_before
    detector.close()
    await collector

    run.sent, run.taken, run.sender_behind_p99 = result["sent"], detector.stats.beats, result["behind_p99"]
    run.sender_behind_max = result["behind_max"]
    by_host = {s.host: s for s in silences}
    events = [e for e in events if (e.detected_wall if isinstance(e, HostFailed) else e.at) < result["end_wall"]]
    run.false_suspects = sum(1 for e in events if isinstance(e, HostSuspect) and e.host not in by_host)
    for event in events:
        if not isinstance(event, HostFailed):
            continue
        silence = by_host.get(event.host)
        if silence is None:
            run.false_failures += 1
        elif silence.mode == "mute":
            run.mute_failed += 1
        else:
            run.last_beat_to_failed.append(event.detected_wall - result["last_sent_ns"][event.host] / 1e9)
            run.failure_to_failed.append(event.detected_wall - result["failure_wall"][event.host])
    run.missed = deaths - len(run.last_beat_to_failed)
    run.returned = sum(1 for e in events if isinstance(e, HostReturned) and by_host.get(e.host, None) is not None)
    return run


def detection(args: argparse.Namespace) -> list[DetectionRun]:
    opts = MonitorOpts()
    runs = []
    for hogs in sorted({0, args.hogs}):
        for hosts in args.hosts:
            print(f"detection: {hosts} hosts every {args.interval} s for {args.seconds} s, {hogs} CPU hogs ...",
                  flush=True)
            run = DetectionRun(hosts, args.interval, args.seconds, args.suspect_after or opts.suspect_after,
                               args.probe_attempts or opts.probe_attempts, args.probe_interval or opts.probe_interval,
                               hogs=hogs, deaths=args.deaths, mutes=args.mutes)
            with cpu_hogs(hogs):
                runs.append(asyncio.run(_detect(run)))
                run.load = load_average()
    print_detection(runs)
    return runs


def print_detection(runs: list[DetectionRun]) -> None:
    ms = ms_columns

    print()
    for run in runs:
        rate = run.hosts / run.interval
        window = run.suspect_after * run.interval + run.probe_attempts * run.probe_interval
        print(f"detection — {run.hosts:,} hosts × {1 / run.interval:g} beats/s = {rate:,.0f} datagrams/s for "
              f"{run.seconds:g} s; {run.deaths} deaths, {run.mutes} lost heartbeat channels; {run.hogs} CPU hogs")
        print(f"  suspect after {run.suspect_after} × {run.interval:g} s, failed after {run.probe_attempts} probes "
              f"{run.probe_interval:g} s apart: {window * 1e3:.0f} ms from the last beat; {run.load}")
        print(f"  {'':<36} {'median':>8} {'p99':>8} {'max':>8}   (ms)")
        print(f"  {'last beat sent → HostFailed':<36} {ms(run.last_beat_to_failed)}")
        print(f"  {'failure → HostFailed':<36} {ms(run.failure_to_failed)}")
        print(f"  {'beat sent → taken by the detector':<36} {ms(run.queueing)}")
        print(f"  {'event-loop lag (10 ms timer)':<36} {ms(run.loop_lag)}")
        print(f"  detector CPU: {run.cpu_share * 100:.1f} % of one core "
              f"({run.cpu_share * 1e6 / rate:.1f} µs per datagram)")
        print(f"  datagrams: {run.sent:,} sent, {run.taken:,} taken, kernel drops {run.kernel_drops}; "
              f"sender behind schedule p99 {run.sender_behind_p99 * 1e3:.1f} ms, "
              f"max {run.sender_behind_max * 1e3:.1f} ms")
        print(f"  failures: {len(run.last_beat_to_failed)}/{run.deaths} detected, {run.missed} missed, "
              f"{run.false_failures} false, {run.mute_failed}/{run.mutes} lost-channel hosts failed; "
              f"{run.returned} returned; {run.false_suspects} live hosts suspect for a moment (late beats)")
        print()


# Part endtoend: a real stack and the real monitor process.

STAGES = ("detected", "recovery started", "fenced", "forced_down visible", "all ACTIVE elsewhere",
          "detected → forced_down", "fence command")
POLL = 0.005  # seconds between two polls of os-services until the host shows forced down
# Seconds between two polls of the servers after that: the API serves every poll from the same 2 cores the
# failover runs on, so polling every 5 ms for seconds would slow what it measures (the "all ACTIVE" figure
# is late by up to this much, against a 2 s target).
SERVERS_POLL = 0.025


CPU_ROLES = ("api", "scheduler", "compute", "monitor", "bench")
def _epoch(iso_text: str) -> float:
    """The journal's ISO-8601 UTC with milliseconds, as seconds since the epoch."""
    parsed = datetime.datetime.strptime(iso_text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


class Failover:
    def __init__(self, stack: Stack, hosts: list[str]):
        self.stack = stack
        self.hosts = hosts
        self.session = requests.Session()
        self.pool = ThreadPoolExecutor(max_workers=8)

    def call(self, method: str, path: str, version: str = "2.74", session: requests.Session | None = None,
             **kwargs) -> requests.Response:
        try:
            resp = (session or self.session).request(method, self.stack.endpoint + path, timeout=60,
                                                     headers=self.stack.admin_headers(version), **kwargs)
        except requests.ConnectionError:
            if method != "GET":
                raise
            # gunicorn closes a keep-alive connection idle for 5 s; a request can cross that close.
            resp = (session or self.session).request(method, self.stack.endpoint + path, timeout=60,
                                                     headers=self.stack.admin_headers(version), **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp

    def compute(self, host: str) -> dict:
        services = self.call("GET", "/os-services", "2.11").json()["services"]
        return next(s for s in services if s["host"] == host and s["binary"] == "nova-compute")

    def detail(self, host: str | None = None) -> list[dict]:
        query = "all_tenants=1" + (f"&host={host}" if host else "")
        return self.call("GET", f"/servers/detail?{query}").json()["servers"]

    def cpu(self, killed: int) -> dict[str, float]:
        """CPU seconds so far of each role's processes (the stack's, by their command, but the agent to be
        killed: its time ends with it) and of this one."""
        used = dict.fromkeys(CPU_ROLES, 0.0)
        for proc in self.stack.procs:
            if proc.pid != killed:
                used[proc.args[1]] += cpu_seconds(proc.pid, descendants=True) or 0.0
        used["bench"] = time.process_time()
        return used

    def journal(self, host: str, since: float) -> list:
        journal = Journal(self.stack.root / "monitor.sqlite", readonly=True)
        try:
            return [e for e in journal.events(host=host) if e.at >= since]
        finally:
            journal.close()

    def boot(self, host: str, count: int) -> list[str]:
        body = {"server": {"name": "failover", "flavorRef": "1", "networks": "none", "host": host,
                           "min_count": count, "max_count": count}}
        self.call("POST", "/servers", json=body)
        wait_until(lambda: sum(s["status"] == "ACTIVE" for s in self.detail(host)) == count, timeout=120,
                   interval=0.1, what=f"{count} servers ACTIVE on {host}")
        return [s["id"] for s in self.detail(host)]

    def fail(self, host: str, count: int) -> tuple[dict[str, float], dict[str, float]]:
        """One failure: seconds from the kill to each stage, and each role's CPU seconds until all moved."""
        ids = set(self.boot(host, count))
        proc = agent_process(self.stack, host)
        cpu0 = self.cpu(killed=proc.pid)
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGKILL)
        while not self.compute(host)["forced_down"]:
            time.sleep(POLL)
        forced_down = time.time() - t0
        while self.call("GET", f"/servers?all_tenants=1&host={host}").json()["servers"]:
            time.sleep(SERVERS_POLL)
        while True:  # off the host's listing: now every one ACTIVE on another host
            moved = [s for s in self.detail() if s["id"] in ids]
            if len(moved) == count and all(s["status"] == "ACTIVE" and s["OS-EXT-SRV-ATTR:host"] != host
                                           for s in moved):
                break
            time.sleep(SERVERS_POLL)
        active = time.time() - t0
        cpu = {role: used - cpu0[role] for role, used in self.cpu(killed=proc.pid).items()}
        proc.wait(timeout=10)

        wait_until(lambda: any(e.kind == "recovered" for e in self.journal(host, t0)), timeout=60,
                   what=f"the recovery of {host} journaled")
        events = {e.kind: e for e in reversed(self.journal(host, t0))}  # the first of each kind
        detected = events["detected"]
        figures = {"detected": _epoch(detected.detail["detected"]) - t0, "recovery started": detected.at - t0,
                   "fenced": events["fenced"].at - t0, "forced_down visible": forced_down,
                   "all ACTIVE elsewhere": active}
        figures["detected → forced_down"] = forced_down - figures["detected"]
        figures["fence command"] = float(events["fenced"].detail["seconds"])
        landed = sum(1 for e in self.journal(host, t0) if e.kind == "landed")
        if landed != count:
            raise RuntimeError(f"{host}: the monitor journaled {landed} servers landed, not {count}")

        # The host returns: its agent cleans up and beats again, the monitor forces it up and enables it.
        self.stack.start_compute(host)
        wait_until(lambda: (lambda s: not s["forced_down"] and s["status"] == "enabled")(self.compute(host)),
                   timeout=60, interval=0.1, what=f"{host} forced up and enabled by the monitor")
        sessions = [requests.Session() for _ in range(8)]  # fresh: gunicorn drops keep-alives idle for 5 s
        list(self.pool.map(lambda pair: self.call("DELETE", f"/servers/{pair[1]}",
                                                  session=sessions[pair[0] % len(sessions)]),
                           enumerate(sorted(ids))))
        for session in sessions:
            session.close()
        wait_until(lambda: not self.call("GET", "/servers?all_tenants=1").json()["servers"], timeout=120,
                   interval=0.1, what="servers deleted")
        return figures, cpu


def monitored_stack(root: Path, hosts: list[str], workers: int) -> Stack:
    """As tests/test_monitor_live.py's monitored_stack, with --compute-hosts hosts big enough for 1,000
    m1.tiny servers each."""
    stack = Stack(root=root / "stack", database_url=f"sqlite:///{root / 'bench.sqlite'}")
    seed_flavors(stack.database_url)
    stack.configure_monitor(compute={"memory_mb": str(512 * 1000 + 512), "vcpus": "250", "local_gb": "1000",
                                     "spawn_time": "0", "stop_time": "0"})
    stack.start_api(workers=workers)
    stack.start_scheduler()
    for host in hosts:
        stack.start_compute(host)
    stack.wait_for_computes(*hosts)
    start_monitor(stack, tuple(hosts))
    # Hearing the hosts is not acting yet: the monitor still connects to the API and resumes what a previous
    # one left. A failure induced before that would time the monitor's start-up, not its failover.
    wait_until(lambda: "monitor acting" in stack.log("monitor.log"), timeout=30, what="the monitor acting")
    return stack


@dataclass
class EndToEnd:
    servers: int
    figures: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {role: [] for role in CPU_ROLES})

    @property
    def failures(self) -> int:
        return len(self.figures["all ACTIVE elsewhere"])


def endtoend(args: argparse.Namespace) -> list[EndToEnd]:
    hosts = [f"compute{i}" for i in range(1, args.compute_hosts + 1)]
    failures = args.failures + [args.failures[-1]] * (len(args.servers) - len(args.failures))
    runs = []
    root = Path(tempfile.mkdtemp(prefix="novalite-failover-"))
    stack = monitored_stack(root, hosts, args.workers)
    print(f"endtoend: {args.hogs} CPU hogs; {load_average()}", flush=True)
    try:
        with cpu_hogs(args.hogs):
            _fail_in_turn(Failover(stack, hosts), hosts, zip(args.servers, failures, strict=False), runs)
            load = load_average()
    finally:
        stack.close()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_endtoend(runs, len(hosts), f"{args.hogs} CPU hogs; at the end, {load}")
    return runs


def _fail_in_turn(bench: Failover, hosts: list[str], plan, runs: list[EndToEnd]) -> None:
    """For each (K, n) of ``plan``: n failures with K servers each, on the hosts in turn."""
    turn = 0
    for count, n in plan:
        run = EndToEnd(count)
        runs.append(run)
        for i in range(n):
            host = hosts[turn % len(hosts)]
            turn += 1
            result, cpu = bench.fail(host, count)
            for stage, value in result.items():
                run.figures[stage].append(value)
            for role, seconds in cpu.items():
                run.cpu[role].append(seconds)
            print(f"  K={count} failure {i + 1}/{n} of {host}: "
                  + ", ".join(f"{stage} {value * 1e3:.0f}" for stage, value in result.items()) + " ms", flush=True)


def print_endtoend(runs: list[EndToEnd], hosts: int, conditions: str) -> None:
    print()
    print(f"failover end to end — {hosts} compute hosts, SIGKILL of one agent at t0, the real monitor; "
          f"ms from t0 (last two columns: from detection, the fence command alone), median / p99; {conditions}")
    print(f"  {'K':>4} {'failures':>8} " + " ".join(f"{stage:>22}" for stage in STAGES))
    for run in runs:
        cells = [f"{statistics.median(v) * 1e3:>9.0f} / {p99(v) * 1e3:>8.0f}" for v in run.figures.values()]
        print(f"  {run.servers:>4} {run.failures:>8} " + " ".join(f"{c:>22}" for c in cells))
    print("  targets: forced_down visible p99 ≤ 500 ms; 100 servers ACTIVE elsewhere ≤ 2,000 ms")
    print("  CPU from t0 to all ACTIVE elsewhere, ms, median (the killed agent's excepted; bench: this process's"
          " polling)")
    print(f"  {'K':>4} " + " ".join(f"{role:>10}" for role in CPU_ROLES) + f" {'all':>10} {'wall':>10}")
    for run in runs:
        total = [sum(used) for used in zip(*run.cpu.values(), strict=True)]
        cells = [statistics.median(v) * 1e3 for v in (*run.cpu.values(), total, run.figures["all ACTIVE elsewhere"])]
        print(f"  {run.servers:>4} " + " ".join(f"{c:>10.0f}" for c in cells))
    print()


PARTS = {"detection": detection, "agents": agents, "endtoend": endtoend}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--hosts", default="1000", type=lambda v: [int(x) for x in v.split(",")],
                        help="simulated hosts (detection), comma-separated for several runs")
    parser.add_argument("--interval", type=float, default=0.1, help="heartbeat interval (detection)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each detection run")
    parser.add_argument("--deaths", type=int, default=40, help="induced host deaths per detection run")
    parser.add_argument("--mutes", type=int, default=10, help="induced heartbeat-channel losses per run")
    parser.add_argument("--suspect-after", type=int, default=0,
                        help="the Detector's suspect_after (detection, agents; default: [monitor]'s)")
    parser.add_argument("--probe-attempts", type=int, default=0,
                        help="the Detector's probe_attempts (detection, agents; default: [monitor]'s)")
    parser.add_argument("--probe-interval", type=float, default=0.0,
                        help="the Detector's probe_interval (detection, agents; default: [monitor]'s)")
    parser.add_argument("--hogs", type=int, default=0, help="CPU-burning processes during every part")
    parser.add_argument("--agents", type=int, default=10, help="real compute agents (agents)")
    parser.add_argument("--servers", default=[10, 100], type=lambda v: [int(x) for x in v.split(",")],
                        help="servers on the failed host (endtoend), comma-separated")
    parser.add_argument("--failures", default=[20, 20], type=lambda v: [int(x) for x in v.split(",")],
                        help="induced failures per --servers entry (endtoend), comma-separated")
    parser.add_argument("--compute-hosts", type=int, default=5, help="compute agents (endtoend)")
    parser.add_argument("--workers", type=int, default=2, help="API workers (endtoend)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory and logs (endtoend)")
    parser.add_argument("--verbose", action="store_true", help="log every detection (else errors only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s: %(message)s")
    for part in args.parts.split(","):
        PARTS[part](args)


if __name__ == "__main__":
    main()
