"""Where the time of the os-services hot paths goes: cProfile over direct WSGI calls, in process.

Builds novalite's WSGI app on SQLite (WAL) in a temporary directory (or --database-url), registers
--size nova-compute services through the agent interface, then times and profiles

    force-down  PUT /v2.1/os-services/force-down at 2.11 (forced_down alternating true/false)
    list        GET /v2.1/os-services at 2.11
    heartbeat   PUT /agent/v1/services/{uuid}/heartbeat (the services in turn)

without HTTP or gunicorn, so the figures are the application's own cost per request. Prints the
mean time per request without the profiler, the profiled time split by package, and the top
functions by own and cumulative time.

    .venv/bin/python bench/profile_hot_path.py --size 1000 --requests 300
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from novalite.api.app import create_app
from novalite.config import ApiOpts, DatabaseOpts, Settings
from novalite.db import engine as db_engine

VERSION = "2.11"

# Where a function's own time is booked, by the first of these found in its file or name.
AREAS = (
    ("sqlite3", "sqlite3 (driver, C)"),
    ("psycopg", "psycopg (driver)"),
    ("sqlalchemy", "SQLAlchemy"),
    ("oslo_policy", "oslo.policy"),
    ("oslo_config", "oslo.config"),
    ("jsonschema", "jsonschema"),
    ("referencing", "jsonschema"),
    ("falcon", "Falcon"),
    ("novalite/domain", "novalite domain"),
    ("novalite/api", "novalite api"),
    ("novalite/db", "novalite db"),
    ("novalite/timeutils", "novalite domain"),
    ("json/", "json"),
    ("datetime", "datetime"),
    ("uuid", "uuid"),
)


def write_secret(path: Path) -> str:
    secret = secrets.token_urlsafe(32)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def call(app, method: str, path: str, headers: dict[str, str], body: dict | None = None) -> tuple[str, bytes]:
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8774", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    if raw:
        environ["CONTENT_LENGTH"] = str(len(raw))
        environ["CONTENT_TYPE"] = "application/json"
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status: list[str] = []
    out = b"".join(app(environ, lambda s, _h, _e=None: status.append(s)))
    return status[0], out


def area_of(file: str, name: str) -> str:
    where = f"{file}:{name}"
    for needle, area in AREAS:
        if needle in where:
            return area
    if file == "~":
        return "built-ins (other)"
    return "other Python"


def by_area(stats: pstats.Stats) -> list[tuple[str, float]]:
    totals: dict[str, float] = defaultdict(float)
    for (file, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        totals[area_of(file.replace("\\", "/"), name)] += own
    return sorted(totals.items(), key=lambda kv: -kv[1])


def profile(title: str, run, requests: int, top: int) -> None:
    for n in range(20):  # warm caches, connections, compiled statements
        run(n)
    started, cpu = time.perf_counter(), time.process_time()
    for n in range(requests):
        run(n)
    plain_ms = (time.perf_counter() - started) / requests * 1000
    cpu_ms = (time.process_time() - cpu) / requests * 1000
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(requests):
        run(n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n=== {title}: {plain_ms:.3f} ms/request in process without the profiler, {cpu_ms:.3f} ms of CPU "
          f"({total / requests * 1000:.2f} ms with it) ===")
    print("own time by package (profiled):")
    for area, own in by_area(stats):
        if own / total >= 0.005:
            print(f"  {area:<22} {own / requests * 1000:7.3f} ms/request  {own / total:6.1%}")
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(key).print_stats(top)
        body = text.getvalue()
        print(f"--- top {top} by {key} ---")
        print(body[body.find("   ncalls"):].rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1000, help="nova-compute services to register (default 1000)")
    p.add_argument("--requests", type=int, default=300, help="requests per scenario (default 300)")
    p.add_argument("--top", type=int, default=25, help="functions to show per ranking (default 25)")
    p.add_argument("--database-url", default=None, help="an existing, empty database (default: SQLite)")
    p.add_argument("--scenario", choices=("force-down", "list", "heartbeat", "both", "all"), default="both",
                   help="both: force-down and list (default); all: the three")
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="novalite-profile-"))
    try:
        url = args.database_url or f"sqlite:///{root / 'novalite.sqlite'}"
        admin = write_secret(root / "admin-token")
        agent = write_secret(root / "agent-token")
        settings = Settings(api=ApiOpts(auth_strategy="token", admin_token_file=str(root / "admin-token"),
                                        agent_token_file=str(root / "agent-token")),
                            database=DatabaseOpts(connection=url))
        db_engine.sync(url)
        app = create_app(settings, base_dir=str(root))
        agent_headers = {"X-Agent-Token": agent}
        uuids = []
        for i in range(1, args.size + 1):
            status, out = call(app, "POST", "/agent/v1/services", agent_headers,
                               {"host": f"bench-{i:05d}", "binary": "nova-compute", "version": 66})
            if not status.startswith("200"):
                raise SystemExit(f"registration failed: {status} {out[:200]!r}")
            uuids.append(json.loads(out)["service"]["id"])
        admin_headers = {"X-Auth-Token": admin, "X-OpenStack-Nova-API-Version": VERSION}

        def force_down(n: int) -> None:
            body = {"host": f"bench-{1 + (n // 2) % args.size:05d}", "binary": "nova-compute",
                    "forced_down": n % 2 == 0}
            status, out = call(app, "PUT", "/v2.1/os-services/force-down", admin_headers, body)
            assert status.startswith("200"), (status, out[:200])

        def list_services(_n: int) -> None:
            status, out = call(app, "GET", "/v2.1/os-services", admin_headers)
            assert status.startswith("200"), (status, out[:200])

        def heartbeat(n: int) -> None:
            status, out = call(app, "PUT", f"/agent/v1/services/{uuids[n % len(uuids)]}/heartbeat", agent_headers)
            assert status.startswith("204"), (status, out[:200])

        if args.scenario in ("force-down", "both", "all"):
            profile(f"PUT force-down, {args.size:,} services", force_down, args.requests, args.top)
        if args.scenario in ("list", "both", "all"):
            profile(f"GET os-services, {args.size:,} services", list_services, args.requests, args.top)
        if args.scenario in ("heartbeat", "all"):
            profile(f"PUT heartbeat, {args.size:,} services", heartbeat, args.requests, args.top)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
