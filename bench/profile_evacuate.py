"""Where an evacuation's control-plane work goes, in process: SQL statements, transactions and Python time.

Builds the API in process (tests/api_client.Api, noauth2) over SQLite, or with --backend a database it makes
and drops on the machine's PostgreSQL or MariaDB (tests/databases.py), with scripted compute hosts speaking
the agent interface (tests/scripted_host.py), boots --servers servers on compute1, lets compute1 go silent
and forces it down, then measures the three steps every evacuation takes:

    evacuate    POST /v2.1/servers/{id}/action {"evacuate": {}} at --version, one server at a time
    placement   one scheduler pass (domain.conductor.Conductor.place_pending) over every accepted evacuation
    rebuild     the destinations' GET .../work and POST .../results (the agents' side of the rebuild)

For each: wall and CPU time (this process's) per server without the profiler, SQL statements per server
(by kind), connections checked out of the pool and transactions committed per server; then cProfile's
own time by package and top functions for the evacuate call. Counting uses SQLAlchemy's engine and pool
events on every engine of the process.

    .venv/bin/python bench/profile_evacuate.py --servers 200
    .venv/bin/python bench/profile_evacuate.py --servers 100 --version 2.95 --echo   # print one call's SQL
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profile_hot_path import by_area  # noqa: E402

from tests import databases  # noqa: E402
from tests.api_client import Api  # noqa: E402
from tests.scripted_host import ScriptedHost, place  # noqa: E402

FLAVOR = {"name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1, "id": "1"}


class SqlCounter:
    """Statements (by first word), pool checkouts and commits, while ``on``; ``echo`` prints each statement."""

    def __init__(self) -> None:
        self.on = False
        self.echo = False
        self.statements: Counter[str] = Counter()
        self.checkouts = 0
        self.commits = 0
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)
        event.listen(Pool, "checkout", self._checkout)

    def reset(self) -> None:
        self.statements.clear()
        self.checkouts = self.commits = 0

    def _statement(self, _conn, _cursor, statement, _params, _context, _many) -> None:
        if self.on:
            self.statements[statement.split(None, 1)[0].upper()] += 1
            if self.echo:
                print("   ", " ".join(statement.split())[:160])

    def _commit(self, _conn) -> None:
        if self.on:
            self.commits += 1

    def _checkout(self, *_args) -> None:
        if self.on:
            self.checkouts += 1

    def report(self, title: str, count: int, clocks: tuple[float, float]) -> None:
        wall, cpu = time.perf_counter() - clocks[0], time.process_time() - clocks[1]
        total = sum(self.statements.values())
        kinds = ", ".join(f"{kind} {n / count:.2f}" for kind, n in self.statements.most_common())
        print(f"{title:<10} {wall / count * 1000:6.2f} ms wall, {cpu / count * 1000:6.2f} ms CPU /server   "
              f"{total / count:5.2f} statements ({kinds})   {self.checkouts / count:.2f} checkouts, "
              f"{self.commits / count:.2f} commits /server")


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def setup(root: Path, servers: int) -> tuple[Api, dict[str, ScriptedHost], list[str]]:
    api = Api(root)
    assert api.request("POST", "/v2.1/flavors", json={"flavor": FLAVOR}).status_code == 200
    room = {"memory_mb": 512 * servers + 512, "vcpus": servers, "local_gb": 2 * servers}
    hosts = {name: ScriptedHost(api, name, **room) for name in ("compute1", "compute2", "compute3", "compute4")}
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": "", "networks": "none", "host": "compute1",
                       "min_count": servers, "max_count": servers}}
    result = api.request("POST", "/v2.1/servers", version="2.74", json=body)
    assert result.status_code == 202, result.text
    place(api)
    hosts["compute1"].run()
    listed = api.get("/v2.1/servers?host=compute1&all_tenants=1", version="2.74").json["servers"]
    assert len(listed) == servers
    hosts["compute1"].go_silent()
    forced = api.put(f"/v2.1/os-services/{hosts['compute1'].uuid}", {"forced_down": True}, version="2.53")
    assert forced.status_code == 200, forced.text
    return api, hosts, [s["id"] for s in listed]


def evacuate(api: Api, server_id: str, version: str) -> None:
    result = api.request("POST", f"/v2.1/servers/{server_id}/action", version=version, json={"evacuate": {}})
    assert result.status_code == 200, result.text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, default=200, help="servers on the failed host (default 200)")
    p.add_argument("--version", default="2.94", help="the evacuate call's microversion (default 2.94)")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--echo", action="store_true", help="print the SQL of one evacuate call")
    p.add_argument("--backend", choices=databases.BACKENDS, default="sqlite",
                   help="sqlite, or a database made (and dropped) on the machine's PostgreSQL or MariaDB")
    args = p.parse_args(argv)
    counter = SqlCounter()
    backend = databases.start(args.backend)
    try:
        return measure(args, counter)
    finally:
        backend.close()


def measure(args: argparse.Namespace, counter: SqlCounter) -> int:
    with tempfile.TemporaryDirectory(prefix="novalite-profile-evac-") as tmp:
        api, hosts, ids = setup(Path(tmp), args.servers)
        half = len(ids) // 2
        if args.echo:
            print(f"--- the SQL of one evacuate call at {args.version} ---")
            counter.on = counter.echo = True
            evacuate(api, ids[half], args.version)
            counter.on = counter.echo = False
            ids = ids[:half] + ids[half + 1:]
            half = len(ids) // 2
        counter.reset()
        counter.on = True
        started = clocks()
        for server_id in ids[:half]:
            evacuate(api, server_id, args.version)
        counter.report("evacuate", half, started)
        counter.on = False

        profiler = cProfile.Profile()
        profiler.enable()
        for server_id in ids[half:]:
            evacuate(api, server_id, args.version)
        profiler.disable()

        counter.reset()
        counter.on = True
        started = clocks()
        result = place(api)
        evacuated = len(ids) + (1 if args.echo else 0)
        counter.report("placement", evacuated, started)
        assert result.placed == evacuated, result

        counter.reset()
        started = clocks()
        for name, host in hosts.items():
            if name != "compute1":
                host.run()
        counter.report("rebuild", evacuated, started)
        counter.on = False

        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        total = stats.total_tt  # type: ignore[attr-defined]
        calls = len(ids) - half
        print(f"\n=== evacuate, profiled: {total / calls * 1000:.2f} ms/call with cProfile ===")
        print("own time by package (profiled):")
        for area, own in by_area(stats):
            if own / total >= 0.005:
                print(f"  {area:<22} {own / calls * 1000:7.3f} ms/call  {own / total:6.1%}")
        stats.strip_dirs().sort_stats("cumulative").print_stats(args.top)
        body = text.getvalue()
        print(body[body.find("   ncalls"):].rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
