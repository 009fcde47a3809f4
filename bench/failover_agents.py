"""Part ``agents`` of bench/failover.py: how long a *live* compute agent can look dead, on either channel.

A live host is failed by the monitor only when it is silent on both channels — no heartbeat for
suspect_after intervals, then no answer to probe_attempts probes — for the whole detection window
([monitor] defaults: 2 × 0.1 + 3 × 0.04 = 0.32 s). So the margin against false failures is the longest
time a live agent sends nothing at all while probed. This part measures it with real ``novalite compute``
agents (tests/stack.py: the API under gunicorn, agents with the simulated driver, SQLite) beating to this
process, which plays the monitor's part: it takes their beats on a UDP socket (in a thread of its own,
stamping each datagram as it arrives) and probes every agent every probe_interval from the start, as the
Detector probes a suspect host.

Reported, over --seconds: the gap between two beats of one agent (the heartbeat channel alone), the probe's
round trip (the agent's answer path: a thread of its own in the agent, HeartbeatSender), and the longest
silence of an agent on both channels together; with ``--hogs N`` as many CPU-burning processes run
meanwhile (two on this 2-core machine: every core busy). Also: beats later than the suspect window (the
hosts the Detector would have probed) and any silence on both channels of a whole detection window (a host
it would have failed: there must be none). Nothing asserts: it measures.

``cpu_hogs(n)`` and ``load_average()`` are shared with the other parts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from novalite.config import MonitorOpts
from novalite.monitor.heartbeat_wire import Beat, ProbeReply, decode, encode_probe
from novalite.secret_files import ensure_secret
from tests.stack import Stack, wait_until

HOG = "while True: pass"


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` processes that each burn one core until the block ends."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hog.pid, signal.SIGKILL)
            hog.wait()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


def p99(values: list[float]) -> float:
    """Nearest rank: with fewer than 100 values, the maximum."""
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def ms_columns(values: list[float]) -> str:
    """Median, p99 and max of ``values`` (seconds) in ms, three right-aligned columns."""
    if not values:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return f"{statistics.median(values) * 1e3:>8.1f} {p99(values) * 1e3:>8.1f} {max(values) * 1e3:>8.1f}"


@dataclass
class AgentRun:
    agents: int
    hogs: int
    seconds: float
    interval: float
    probe_interval: float
    suspect_window: float
    detection_window: float
    beat_gaps: list[float] = field(default_factory=list)
    probe_rtts: list[float] = field(default_factory=list)
    silences: list[float] = field(default_factory=list)  # per agent: its longest gap between any two datagrams
    probes_sent: int = 0
    load_before: str = ""
    load_after: str = ""


class Listener:
    """The monitor's side: beats and replies stamped as they arrive, probes sent on a schedule."""

    def __init__(self, key: bytes, probe_interval: float):
        self.key = key
        self.probe_interval = probe_interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addrs: dict[str, tuple] = {}
        self.last_beat: dict[str, float] = {}
        self.last_heard: dict[str, float] = {}
        self.outstanding: dict[bytes, float] = {}  # nonce → when sent; both threads use it, under the lock
        self.lock = threading.Lock()
        self.recording = False
        self.run: AgentRun | None = None
        self.longest: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._receive, daemon=True),
                         threading.Thread(target=self._probe, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def record(self, run: AgentRun) -> None:
        now = time.monotonic()
        self.run, self.longest = run, {}
        self.last_beat = dict.fromkeys(self.addrs, now)
        self.last_heard = dict.fromkeys(self.addrs, now)
        self.recording = True

    def stop_recording(self) -> None:
        self.recording = False
        now = time.monotonic()
        for host, heard in self.last_heard.items():  # a silence still running counts too
            self.longest[host] = max(self.longest.get(host, 0.0), now - heard)
        self.run.silences = sorted(self.longest.values())

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.sock.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            message = decode(self.key, data)
            if isinstance(message, Beat):
                self.addrs[message.host] = addr
                if self.recording:
                    self.run.beat_gaps.append(now - self.last_beat.get(message.host, now))
                self.last_beat[message.host] = now
            elif isinstance(message, ProbeReply):
                with self.lock:
                    sent = self.outstanding.pop(message.nonce, None)
                if sent is not None and self.recording:
                    self.run.probe_rtts.append(now - sent)
            else:
                continue
            if self.recording:
                gap = now - self.last_heard.get(message.host, now)
                self.longest[message.host] = max(self.longest.get(message.host, 0.0), gap)
            self.last_heard[message.host] = now

    def _probe(self) -> None:
        next_round = time.monotonic()
        while not self._stop.wait(max(0.0, next_round - time.monotonic())):
            next_round += self.probe_interval
            if not self.recording:
                continue
            for host, addr in list(self.addrs.items()):
                nonce = secrets.token_bytes(16)
                with self.lock:
                    self.outstanding[nonce] = time.monotonic()
                try:
                    self.sock.sendto(encode_probe(self.key, nonce, host), addr)
                    self.run.probes_sent += 1
                except OSError:
                    pass
            stale = time.monotonic() - 10 * self.probe_interval
            with self.lock:
                for nonce in [n for n, t in self.outstanding.items() if t < stale]:
                    del self.outstanding[nonce]


def agents(args: argparse.Namespace) -> list[AgentRun]:
    opts = MonitorOpts()
    interval, probe_interval = opts.heartbeat_interval, args.probe_interval or opts.probe_interval
    suspect_after = args.suspect_after or opts.suspect_after
    probe_attempts = args.probe_attempts or opts.probe_attempts
    root = Path(tempfile.mkdtemp(prefix="novalite-agents-"))
    key = ensure_secret(root / "heartbeat-key").encode()
    listener = Listener(key, probe_interval)
    hosts = [f"compute{i}" for i in range(1, args.agents + 1)]
    stack = Stack(root=root / "stack", database_url=f"sqlite:///{root / 'bench.sqlite'}", extra_config={
        "monitor": {"heartbeat_address": listener.address, "heartbeat_key_file": str(root / "heartbeat-key"),
                    "heartbeat_interval": str(interval)}})
    runs = []
    try:
        stack.start_api(workers=args.workers)
        for host in hosts:
            stack.start_compute(host)
        stack.wait_for_computes(*hosts, timeout=60)
        wait_until(lambda: set(hosts) <= set(listener.addrs), timeout=30, what="every agent's heartbeats")
        for hogs in sorted({0, args.hogs}):
            print(f"agents: {len(hosts)} real agents, {hogs} CPU hogs, {args.seconds:g} s ...", flush=True)
            run = AgentRun(len(hosts), hogs, args.seconds, interval, probe_interval, suspect_after * interval,
                           suspect_after * interval + probe_attempts * probe_interval)
            with cpu_hogs(hogs):
                time.sleep(1.0)  # the hogs run
                run.load_before = load_average()
                listener.record(run)
                time.sleep(args.seconds)
                listener.stop_recording()
                run.load_after = load_average()
            runs.append(run)
    finally:
        listener.close()
        stack.close()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_agents(runs)
    return runs


def print_agents(runs: list[AgentRun]) -> None:
    ms = ms_columns
    print()
    for run in runs:
        late = sum(1 for gap in run.beat_gaps if gap >= run.suspect_window)
        dead = sum(1 for silence in run.silences if silence >= run.detection_window)
        print(f"agents — {run.agents} real agents beating every {run.interval:g} s, each probed every "
              f"{run.probe_interval:g} s, {run.hogs} CPU hogs, {run.seconds:g} s; {run.load_after}")
        print(f"  {'':<44} {'median':>8} {'p99':>8} {'max':>8}   (ms)")
        print(f"  {'beat → next beat of the same agent':<44} {ms(run.beat_gaps)}")
        print(f"  {'probe → its answer':<44} {ms(run.probe_rtts)}")
        print(f"  {'longest silence on both channels, per agent':<44} {ms(run.silences)}")
        print(f"  beats {len(run.beat_gaps):,}, {late} later than the suspect window "
              f"({run.suspect_window * 1e3:.0f} ms); probes {run.probes_sent:,}, {len(run.probe_rtts):,} answered; "
              f"agents silent on both channels for a detection window ({run.detection_window * 1e3:.0f} ms): {dead}")
        print()
