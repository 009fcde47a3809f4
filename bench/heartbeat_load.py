"""Heartbeat absorption: N simulated compute agents heartbeating a real ``novalite api``, from ONE process.

Registers N nova-compute services (default 10,000) through the agent interface (``POST /agent/v1/services``, as
each agent does at start), then plays their heartbeats (``PUT /agent/v1/services/{uuid}/heartbeat``): each agent
every --interval seconds (default 10, Nova's report_interval), the N agents spread evenly over the interval, so
N / interval beats per second (1,000/s for 10,000 agents), in a fixed order, to the API's heartbeat listener
(--via listener, where agents send them: api/heartbeat_listener.py) or to its own route under gunicorn (--via
route). One asyncio loop sends them over --connections keep-alive HTTP connections (raw asyncio streams;
--new-connections opens one per beat, as an agent would to the route, whose 5 s keep-alive closes its connection
between two beats).

After --warmup seconds it measures for --duration seconds:

- offered rate (beats scheduled in the window) and achieved rate (204 answers received in it);
- lag: when a beat was sent minus when it was due (a saturated server shows here, as beats wait for a free
  connection), and the generator's own part of it (how late its loop put the beat in the queue);
- the backlog (beats due and not yet answered) at the start and at the end of the window: it has FALLEN BEHIND
  when the backlog grew by more than 1 % of the window's beats, or the p99 lag reached the interval (an agent's
  beat still unsent when its next one is due);
- latency of a beat (sent → answer), median and p99;
- CPU, as % of one core over the window: the API (gunicorn master and workers, /proc/<pid>/stat), the database
  server (PostgreSQL: the bench database's backends and the shared background processes; MariaDB: the whole
  mariadbd, other clients' work included; SQLite runs inside the API) and the generator itself.

Then it stops, lets the last beats land, and checks every service's last_seen_up in the database: its age must be
under one interval plus the lag (and so far under service_down_time), and GET /v2.1/os-services must report no
service down that is not forced down.

    .venv/bin/python bench/heartbeat_load.py                                  # 10,000 agents on SQLite
    .venv/bin/python bench/heartbeat_load.py --database-url postgresql --duration 30
    .venv/bin/python bench/heartbeat_load.py --agents 2000 --interval 1 --database-url mariadb
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from bench_api import (
    CpuMeter,
    Server,
    backend_of,
    database_pids,
    describe,
    register_range,
    running_api,
    scratch_database,
)

BEHIND_GROWTH = 0.01  # fallen behind: the backlog grew by more than this share of the window's beats
DRAIN_TIMEOUT = 15.0


# -- one keep-alive HTTP/1.1 connection over asyncio streams ---------------------------------------

def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length (0 if absent) and whether the server closes the connection."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _sep, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    return status, length, close


class Connection:
    """Sends one request at a time; reopens a keep-alive connection the server has closed meanwhile."""

    def __init__(self, port: int, keep_alive: bool):
        self.port = port
        self.keep_alive = keep_alive
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, data: bytes) -> int:
        for _attempt in range(2):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(data)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if fresh:
                    raise
                continue  # the server had closed this idle connection before reading the request: resend
            status, length, close = _parse_head(head)
            if length:
                await self.reader.readexactly(length)
            if close or not self.keep_alive:
                self.close()
            return status
        raise ConnectionError("connection closed twice")


def heartbeat_request(service_uuid: str, agent_token: str, keep_alive: bool) -> bytes:
    return (f"PUT /agent/v1/services/{service_uuid}/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Agent-Token: {agent_token}\r\nContent-Length: 0\r\n"
            f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n").encode()


# -- the load --------------------------------------------------------------------------------------

@dataclass
class Plan:
    agents: int
    interval: float
    warmup: float
    duration: float
    connections: int
    keep_alive: bool
    via: str = "listener"  # listener: the API's heartbeat listener (as agents send them); route: its WSGI route

    @property
    def spacing(self) -> float:
        return self.interval / self.agents

    @property
    def rate(self) -> float:
        return self.agents / self.interval


@dataclass
class Record:
    """Times of every beat, in loop time (monotonic seconds), indexed by beat number."""

    due: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)  # when the generator's loop put it in the queue
    sent: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    answered: int = 0

    @property
    def backlog(self) -> int:
        """Beats due (queued) and not answered yet."""
        return len(self.due) - self.answered


async def _produce(plan: Plan, start: float, end: float, queue: asyncio.Queue, record: Record) -> None:
    """Put beat j (agent j % N) on the queue at start + j × spacing, until ``end``."""
    loop = asyncio.get_running_loop()
    j = 0
    while True:
        now = loop.time()
        while (due := start + j * plan.spacing) <= now:
            if due >= end:
                return
            record.due.append(due)
            record.queued.append(now)
            record.sent.append(0.0)
            record.done.append(0.0)
            record.status.append(0)
            queue.put_nowait(j)
            j += 1
        await asyncio.sleep(min(due, end) - now)


async def _send(plan: Plan, port: int, requests: list[bytes], queue: asyncio.Queue, record: Record) -> None:
    loop = asyncio.get_running_loop()
    conn = Connection(port, plan.keep_alive)
    try:
        while True:
            j = await queue.get()
            record.sent[j] = loop.time()
            try:
                record.status[j] = await conn.request(requests[j % plan.agents])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                conn.close()
                record.status[j] = -1
            record.done[j] = loop.time()
            record.answered += 1
            queue.task_done()
    finally:
        conn.close()


@dataclass
class Window:
    """What happened while measuring."""

    backlog_start: int = 0
    backlog_end: int = 0
    api_cpu: float = 0.0
    db_cpu: float | None = None
    generator_cpu: float = 0.0


async def _meter(server: Server, plan: Plan, start: float, record: Record, window: Window) -> None:
    loop = asyncio.get_running_loop()
    api = CpuMeter(server.pids)
    database = None if backend_of(server.database_url) == "sqlite" else \
        CpuMeter(lambda: database_pids(server.database_url))
    await asyncio.sleep(start + plan.warmup - loop.time())
    window.backlog_start = record.backlog
    own = time.process_time()
    for meter in (api, database):
        if meter is not None:
            await asyncio.to_thread(meter.start)  # scanning /proc must not stall the beats
    await asyncio.sleep(start + plan.warmup + plan.duration - loop.time())
    window.backlog_end = record.backlog
    window.generator_cpu = 100.0 * (time.process_time() - own) / plan.duration
    window.api_cpu = await asyncio.to_thread(api.stop)
    if database is not None:
        window.db_cpu = await asyncio.to_thread(database.stop)


async def play(server: Server, uuids: list[str], plan: Plan) -> tuple[Record, Window, float]:
    """Play the beats for warmup + duration seconds and let the last ones land; returns the record, the
    window's figures and the loop time the window started."""
    loop = asyncio.get_running_loop()
    requests = [heartbeat_request(u, server.agent_token, plan.keep_alive) for u in uuids]
    queue: asyncio.Queue = asyncio.Queue()
    record, window = Record(), Window()
    start = loop.time() + 0.2
    end = start + plan.warmup + plan.duration
    port = server.heartbeat_port if plan.via == "listener" else server.port
    senders = [asyncio.create_task(_send(plan, port, requests, queue, record))
               for _ in range(plan.connections)]
    meter = asyncio.create_task(_meter(server, plan, start, record, window))
    await _produce(plan, start, end, queue, record)
    await meter
    try:
        await asyncio.wait_for(queue.join(), DRAIN_TIMEOUT)
    except TimeoutError:
        pass
    for task in senders:
        task.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    return record, window, start + plan.warmup


# -- the figures -----------------------------------------------------------------------------------

@dataclass
class Result:
    backend: str
    plan: Plan
    offered_rps: float
    achieved_rps: float
    errors: int  # beats due in the window answered other than 204, or failed (connection errors)
    unanswered: int  # beats due in the window with no answer when the drain ended
    statuses: dict[int, int]  # answers to the beats due in the window, by status (-1: connection error)
    lag_median_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    latency_median_ms: float
    latency_p99_ms: float
    generator_lag_p99_ms: float  # the generator's own lateness in queueing a beat
    generator_lag_max_ms: float
    backlog_start: int
    backlog_end: int
    api_cpu: float
    db_cpu: float | None
    generator_cpu: float
    per_slice_rps: list[float]
    oldest_beat_s: float = 0.0  # age of the oldest last_seen_up once the load stopped
    never_beat: int = 0
    down: int = 0  # services GET /os-services reports down while not forced down

    @property
    def api_cpu_ms_per_beat(self) -> float:
        """API CPU time per beat answered: steadier than the % on a machine shared with other work."""
        return 10.0 * self.api_cpu / self.achieved_rps if self.achieved_rps else 0.0

    @property
    def kept_up(self) -> bool:
        grown = self.backlog_end - self.backlog_start
        return grown <= BEHIND_GROWTH * self.offered_rps * self.plan.duration and \
            self.lag_p99_ms < self.plan.interval * 1000


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def summarize(backend: str, plan: Plan, record: Record, window: Window, opened: float,
              slice_seconds: float = 5.0) -> Result:
    closed = opened + plan.duration
    due = [j for j, t in enumerate(record.due) if opened <= t < closed]
    answered = [j for j in due if record.done[j]]
    lags = [(record.sent[j] - record.due[j]) * 1000 for j in due if record.sent[j]]
    latencies = [(record.done[j] - record.sent[j]) * 1000 for j in answered]
    late = [(record.queued[j] - record.due[j]) * 1000 for j in due]
    done_in_window = [t for t, s in zip(record.done, record.status, strict=True) if s == 204 and opened <= t < closed]
    slices = [0] * max(1, int(plan.duration // slice_seconds))
    for t in done_in_window:
        slices[min(len(slices) - 1, int((t - opened) // slice_seconds))] += 1
    return Result(
        backend=backend, plan=plan, offered_rps=len(due) / plan.duration,
        achieved_rps=len(done_in_window) / plan.duration,
        errors=sum(1 for j in due if record.status[j] not in (0, 204)),
        unanswered=sum(1 for j in due if record.status[j] == 0),
        statuses=dict(sorted(Counter(record.status[j] for j in due if record.status[j]).items())),
        lag_median_ms=statistics.median(lags) if lags else 0.0, lag_p99_ms=_p99(lags),
        lag_max_ms=max(lags, default=0.0),
        latency_median_ms=statistics.median(latencies) if latencies else 0.0, latency_p99_ms=_p99(latencies),
        generator_lag_p99_ms=_p99(late), generator_lag_max_ms=max(late, default=0.0),
        backlog_start=window.backlog_start, backlog_end=window.backlog_end,
        api_cpu=window.api_cpu, db_cpu=window.db_cpu, generator_cpu=window.generator_cpu,
        per_slice_rps=[n / slice_seconds for n in slices],
    )


def oldest_beats(server: Server, uuids: list[str]) -> tuple[float, int]:
    """The age in seconds of the oldest last_seen_up among ``uuids`` (read from the database), and how many
    have none."""
    engine = sa.create_engine(server.database_url, poolclass=sa.NullPool)
    try:
        table = sa.table("services", sa.column("uuid"), sa.column("last_seen_up"), sa.column("deleted"))
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.uuid, table.c.last_seen_up).where(table.c.deleted == 0)).all()
    finally:
        engine.dispose()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # novalite stores naive UTC
    seen = dict(rows)
    beats = [seen.get(u) for u in uuids]
    ages = [(now - (t if isinstance(t, dt.datetime) else dt.datetime.fromisoformat(t))).total_seconds()
            for t in beats if t is not None]
    return max(ages, default=0.0), sum(1 for t in beats if t is None)


def down_hosts(server: Server, hosts: set[str]) -> int:
    """How many of ``hosts`` GET /v2.1/os-services reports down while not forced down (spec 4.1-4.2)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("GET", "/v2.1/os-services", headers={"X-Auth-Token": server.admin_token,
                                                        "X-OpenStack-Nova-API-Version": "2.11"})
    services = json.loads(conn.getresponse().read())["services"]
    conn.close()
    return sum(1 for s in services if s["host"] in hosts and s["state"] == "down" and not s["forced_down"])


def listed_uuids(server: Server, agents: int) -> list[str] | None:
    """The UUIDs of bench-00001… bench-<agents> from GET /v2.1/os-services at 2.53, or None if any is missing."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("GET", "/v2.1/os-services?binary=nova-compute",
                 headers={"X-Auth-Token": server.admin_token, "X-OpenStack-Nova-API-Version": "2.53"})
    services = json.loads(conn.getresponse().read())["services"]
    conn.close()
    by_host = {s["host"]: s["id"] for s in services}
    uuids = [by_host.get(f"bench-{i:05d}") for i in range(1, agents + 1)]
    return None if None in uuids else uuids


def measure_heartbeats(server: Server, plan: Plan, register_clients: int = 8, registered: bool = False) -> Result:
    """Register plan.agents services bench-00001… through the agent interface (``registered``: they were, read
    their UUIDs from the service list instead), play their beats, check liveness."""
    started = time.monotonic()
    uuids = listed_uuids(server, plan.agents) if registered else None
    how = "listed"
    if uuids is None:
        uuids, how = register_range(server, 1, plan.agents, register_clients), "registered"
    print(f"   {plan.agents:,} agents {how} in {time.monotonic() - started:.1f} s; "
          f"beating {plan.rate:,.0f}/s for {plan.warmup:g} + {plan.duration:g} s over "
          f"{plan.connections} {'keep-alive' if plan.keep_alive else 'one-shot'} connections to the API's "
          f"{'heartbeat listener' if plan.via == 'listener' else 'route (gunicorn)'}", flush=True)
    record, window, opened = asyncio.run(play(server, uuids, plan))
    result = summarize(backend_of(server.database_url), plan, record, window, opened)
    result.oldest_beat_s, result.never_beat = oldest_beats(server, uuids)
    result.down = down_hosts(server, {f"bench-{i:05d}" for i in range(1, plan.agents + 1)})
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def report(r: Result) -> None:
    print(f"   offered {r.offered_rps:,.0f}/s, achieved {r.achieved_rps:,.0f}/s "
          f"(per 5 s: {' '.join(f'{x:.0f}' for x in r.per_slice_rps)}); answers {r.statuses}, "
          f"{r.unanswered} unanswered")
    print(f"   lag (sent - due) median {r.lag_median_ms:.2f} ms, p99 {r.lag_p99_ms:.2f} ms, max {r.lag_max_ms:.1f} ms "
          f"(the generator's own: p99 {r.generator_lag_p99_ms:.2f} ms, max {r.generator_lag_max_ms:.1f} ms); "
          f"backlog {r.backlog_start} -> {r.backlog_end}: {'kept up' if r.kept_up else 'FELL BEHIND'}")
    print(f"   latency median {r.latency_median_ms:.2f} ms, p99 {r.latency_p99_ms:.2f} ms")
    print(f"   CPU (% of one core): API {_pct(r.api_cpu)} ({r.api_cpu_ms_per_beat:.3f} ms per beat), "
          f"database server {_pct(r.db_cpu)}, generator {_pct(r.generator_cpu)}")
    verdict = "ok" if r.down == 0 and r.never_beat == 0 and r.oldest_beat_s < r.plan.interval + 2 else "STALE"
    print(f"   liveness after the run: oldest last_seen_up {r.oldest_beat_s:.1f} s old, {r.never_beat} never beat, "
          f"{r.down} reported down: {verdict}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=10000, help="simulated compute agents (default 10000)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between an agent's beats (default 10)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of beats before measuring (default 5)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds measured (default 30)")
    p.add_argument("--connections", type=int, default=32, help="concurrent HTTP connections (default 32)")
    p.add_argument("--new-connections", action="store_true",
                   help="a new connection per beat (Connection: close) instead of keep-alive ones")
    p.add_argument("--via", choices=["listener", "route"], default="listener",
                   help="the API's heartbeat listener, as agents send them (default), or its own route under gunicorn")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers of novalite api (default 2)")
    p.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (default 1)")
    p.add_argument("--register-clients", type=int, default=8, help="concurrent registrations (default 8)")
    p.add_argument("--database-url", default=None,
                   help="postgresql or mariadb for a scratch database on the machine's server, or a URL naming a "
                        "database the benchmark creates and drops (default: SQLite WAL in a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (config, api.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = Plan(args.agents, args.interval, args.warmup, args.duration, args.connections, not args.new_connections,
                args.via)
    root = Path(tempfile.mkdtemp(prefix="novalite-heartbeat-"))
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        with (scratch_database(args.database_url or "sqlite", root) as url,
              running_api(root, url, args.workers, args.threads, heartbeat_listener=True) as server):
            print(f"novalite api under gunicorn: {args.workers} workers x {args.threads} threads; {describe(url)}",
                  flush=True)
            result = measure_heartbeats(server, plan, args.register_clients)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(result)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if result.kept_up and not result.errors and not result.unanswered and not result.down else 1


if __name__ == "__main__":
    sys.exit(main())
