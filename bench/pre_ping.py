"""What a dead-connection check costs per transaction: SQLAlchemy's pool_pre_ping against novalite's retry of a
transaction's first statement (src/novalite/db/engine.py), on the machine's PostgreSQL and MariaDB servers.

Three engines on one scratch database, their transactions interleaved in random order so load drifts hit all
alike: ``plain`` (no check at all: the floor), ``retry`` (novalite's make_engine: a pool checkout event and a
do_execute hook, no round trip) and ``pre_ping`` (a ping round trip on every checkout). Each runs N read
transactions (one SELECT by primary key) and N write transactions (one UPDATE, committed). Prints medians and
the load average; asserts nothing.

    .venv/bin/python bench/pre_ping.py                      # both servers, 3,000 transactions of each kind
    .venv/bin/python bench/pre_ping.py --backends postgresql --transactions 10000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid

import sqlalchemy as sa

from novalite.db.engine import make_engine

ADMIN_URLS = {
    "postgresql": os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mariadb": os.environ.get("TEST_MARIADB_URL", "mysql+mysqldb://root@127.0.0.1:3306/mysql"),
}
STATEMENTS = {"read": "SELECT v FROM t WHERE id = 1", "write": "UPDATE t SET v = v + 1 WHERE id = 1"}
WARMUP = 100


def _quoted(backend: str, name: str) -> str:
    return f'"{name}"' if backend == "postgresql" else f"`{name}`"


def _engines(url: str) -> dict[str, sa.Engine]:
    return {"plain": sa.create_engine(url), "retry": make_engine(url),
            "pre_ping": sa.create_engine(url, pool_pre_ping=True)}


def _measure(engines: dict[str, sa.Engine], statement: str, count: int) -> dict[str, float]:
    """Median seconds of a transaction running ``statement``, per engine."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    order = list(engines.items())
    text = sa.text(statement)
    for _ in range(count + WARMUP):
        random.shuffle(order)
        for name, engine in order:
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(text).all() if statement.startswith("SELECT") else conn.execute(text)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values[WARMUP:]) for name, values in times.items()}


def run(backend: str, count: int) -> None:
    admin = sa.create_engine(ADMIN_URLS[backend], isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"novalite_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {_quoted(backend, name)}"))
    engines: dict[str, sa.Engine] = {}
    try:
        engines = _engines(ADMIN_URLS[backend].rsplit("/", 1)[0] + f"/{name}")
        with engines["plain"].begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 0)"))
        for kind, statement in STATEMENTS.items():
            us = {engine: seconds * 1e6 for engine, seconds in _measure(engines, statement, count).items()}
            print(f"{backend:<10} {kind:<5} median µs: plain {us['plain']:6.0f}  retry {us['retry']:6.0f}"
                  f"  pre_ping {us['pre_ping']:6.0f}   pre_ping − retry {us['pre_ping'] - us['retry']:+5.0f}"
                  f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for engine in engines.values():
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {_quoted(backend, name)}"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="postgresql,mariadb", help="comma-separated: postgresql, mariadb")
    parser.add_argument("--transactions", type=int, default=3000, help="transactions of each kind per engine")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    for backend in args.backends.split(","):
        run(backend.strip(), args.transactions)


if __name__ == "__main__":
    main()
