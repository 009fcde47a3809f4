"""GET /v2.1/os-services while heartbeats land: the listing each API process keeps, under the writes it must see.

A listing reads whole only the rows whose row_version moved since the worker last listed them
(novalite.domain.service_listing). Quiet, that is none; with heartbeats landing, every listing has some. This
starts ``novalite api`` with its heartbeat listener, registers --services services, and measures one keep-alive
client's GET /v2.1/os-services (2.11) in turn:

    quiet        no heartbeats
    heartbeats   every service beating every --interval seconds (--services / --interval beats/s) through the
                 listener, as agents do (heartbeat_load.py's generator, in a thread of this process)

Each listing's services are checked against the beats: at the end the newest updated_at listed must be from
the last second of beats (a listing that kept stale rows would lag behind).

    .venv/bin/python bench/list_under_heartbeats.py                         # 1,000 services, 1,000 beats/s, SQLite
    .venv/bin/python bench/list_under_heartbeats.py --database-url postgresql --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_api import describe, register_range, running_api, scratch_database
from heartbeat_load import Plan, play


def list_for(server, seconds: float) -> tuple[list[float], str]:
    """GET /v2.1/os-services over one keep-alive connection for ``seconds``: the latencies, and the newest
    updated_at of the last listing."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"X-Auth-Token": server.admin_token, "X-OpenStack-Nova-API-Version": "2.11"}
    latencies: list[float] = []
    body = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        conn.request("GET", "/v2.1/os-services", headers=headers)
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"GET /v2.1/os-services answered {response.status}")
    conn.close()
    return latencies, max(s["updated_at"] or "" for s in json.loads(body)["services"])


def report(name: str, latencies: list[float]) -> None:
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    print(f"   {name:<11} n={len(latencies):<5} median {statistics.median(latencies) * 1000:6.2f} ms  "
          f"p99 {p99 * 1000:6.2f} ms", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=1000, help="services registered (default 1000)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between a service's beats (default 1)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of listing in each phase (default 10)")
    p.add_argument("--database-url", default=None, help="postgresql or mariadb for a scratch database (default SQLite)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="novalite-list-beats-"))
    try:
        with (scratch_database(args.database_url or "sqlite", root) as url,
              running_api(root, url, 2, 1, heartbeat_listener=True) as server):
            uuids = register_range(server, 1, args.services, 8)
            print(f"{args.services:,} services; {describe(url)}; novalite api 2 workers x 1 thread", flush=True)
            list_for(server, 1.0)  # both workers keep the rows once
            report("quiet", list_for(server, args.seconds)[0])
            plan = Plan(args.services, args.interval, warmup=1.0, duration=args.seconds + 1.0, connections=8,
                        keep_alive=True)
            beats = threading.Thread(target=lambda: asyncio.run(play(server, uuids, plan)), daemon=True)
            beats.start()
            time.sleep(1.5)
            latencies, newest = list_for(server, args.seconds)
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            report("heartbeats", latencies)
            lag = (now - dt.datetime.fromisoformat(newest)).total_seconds()
            print(f"   {plan.rate:,.0f} beats/s; the last listing's newest updated_at was {lag * 1000:.0f} ms old",
                  flush=True)
            beats.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
