"""The benchmarks' server side: a real ``novalite api`` under gunicorn over a scratch database, and CPU accounting.

- ``scratch_database(backend_or_url, root)``: SQLite (WAL) in ``root``, or a database the benchmark creates on the
  machine's PostgreSQL or MariaDB server and drops at the end (it refuses one that already exists);
- ``running_api(root, url, workers, threads)``: config, admin and agent tokens, ``novalite db sync``, then
  ``novalite api`` on a free port of 127.0.0.1 until the block ends;
- ``register_up_to``: nova-compute services bench-00001… through the agent interface, from several processes;
- ``CpuMeter``: CPU seconds of a set of processes from /proc/<pid>/stat, as a share of one core.
"""

from __future__ import annotations

import configparser
import http.client
import json
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

STARTUP_TIMEOUT = 30.0
# The machine's servers (tests/ensure_services.sh starts them): trust / no password on loopback.
SERVER_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+mysqldb://root@127.0.0.1:3306/mysql",
}
BACKENDS = ("sqlite", "postgresql", "mariadb")


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    return {"mysql": "mariadb"}.get(name, name)


# -- the database ----------------------------------------------------------------------------------

def _admin_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if backend_of(url) == "postgresql":
        admin = parsed.set(drivername="postgresql+psycopg", database="postgres")
    else:
        admin = parsed.set(drivername="mysql+mysqldb", database="mysql")
    return sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _create_database(admin: sa.Engine, backend: str, name: str) -> None:
    with admin.connect() as conn:
        if backend == "postgresql":
            found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            create = f'CREATE DATABASE "{name}"'
        else:
            found = conn.execute(sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                                 {"n": name}).first()
            create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
        if found:
            raise SystemExit(f"database {name} already exists; the benchmark only drops what it creates")
        conn.execute(sa.text(create))


def _drop_database(admin: sa.Engine, backend: str, name: str) -> None:
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        ids = conn.execute(sa.text("SELECT id FROM information_schema.processlist WHERE db = :n"),
                           {"n": name}).scalars().all()
        for connection_id in ids:
            try:
                conn.execute(sa.text(f"KILL CONNECTION {int(connection_id)}"))
            except sa.exc.DBAPIError:
                pass  # it ended meanwhile
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


def scratch_url(backend: str) -> str:
    """A new database name on the machine's ``backend`` server (for scratch_database to create)."""
    return SERVER_URLS[backend].rsplit("/", 1)[0] + f"/novalite_bench_{uuid.uuid4().hex[:10]}"


@contextmanager
def scratch_database(backend_or_url: str, root: Path) -> Iterator[str]:
    """"sqlite": a WAL file in ``root``; "postgresql"/"mariadb": a new database on the machine's server;
    a server URL: the database it names, which must not exist yet. Server databases are dropped at the end."""
    if backend_or_url == "sqlite":
        yield f"sqlite:///{root / 'novalite.sqlite'}"
        return
    url = scratch_url(backend_or_url) if backend_or_url in SERVER_URLS else backend_or_url
    backend = backend_of(url)
    if backend not in SERVER_URLS:
        raise SystemExit(f"not a PostgreSQL or MariaDB URL: {url}")
    name = make_url(url).database
    if not name:
        raise SystemExit("the database URL needs a database name")
    admin = _admin_engine(url)
    _create_database(admin, backend, name)
    try:
        yield url
    finally:
        _drop_database(admin, backend, name)
        admin.dispose()


def describe(url: str) -> str:
    if backend_of(url) == "sqlite":
        return "SQLite (WAL) in a temporary directory"
    return {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}[backend_of(url)] + \
        f" ({make_url(url).render_as_string(hide_password=True)})"


# -- the API server --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_secret(path: Path) -> str:
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


@dataclass
class Server:
    root: Path
    port: int
    admin_token: str
    agent_token: str
    database_url: str
    proc: subprocess.Popen | None = None
    heartbeat_port: int | None = None  # its heartbeat listener's ([api] heartbeat_listen), if it runs one

    @property
    def config_file(self) -> Path:
        return self.root / "novalite.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "api.log"

    def pids(self) -> list[int]:
        """The gunicorn master (the ``novalite api`` process) and its workers."""
        assert self.proc is not None
        return [self.proc.pid, *children_of(self.proc.pid)]


def _novalite(args: list[str], **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVALITE_")}
    return subprocess.Popen([sys.executable, "-m", "novalite.cli.main", *args], env=env, **kwargs)


def _get_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _write_config(server: Server, options: dict[str, dict[str, str]]) -> None:
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str
    conf["api"] = {"auth_strategy": "token", "admin_token_file": str(server.root / "admin-token"),
                   "agent_token_file": str(server.root / "agent-token")}
    conf["database"] = {"connection": server.database_url}
    for section, values in options.items():
        conf[section] = {**(conf[section] if conf.has_section(section) else {}), **values}
    with server.config_file.open("w") as out:
        conf.write(out)


def _wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if server.proc.poll() is not None:
            raise SystemExit(f"novalite api exited with {server.proc.returncode}; see {server.log_file}")
        try:
            if _get_status(server.port, "/") == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"novalite api did not answer within {STARTUP_TIMEOUT:.0f} s")
        time.sleep(0.1)


@contextmanager
def running_api(root: Path, database_url: str, workers: int, threads: int,
                options: dict[str, dict[str, str]] | None = None, heartbeat_listener: bool = False,
                worker: str | None = None) -> Iterator[Server]:
    """``novalite api`` on ``database_url`` until the block ends; ``options``: more config sections/values;
    ``heartbeat_listener``: with its heartbeat listener on a port of its own (server.heartbeat_port); ``worker``:
    novalite api --worker (default: its own choice)."""
    server = Server(root=root, port=free_port(), admin_token=write_secret(root / "admin-token"),
                    agent_token=write_secret(root / "agent-token"), database_url=database_url,
                    heartbeat_port=free_port() if heartbeat_listener else None)
    _write_config(server, options or {})
    log = server.log_file.open("ab")
    if _novalite(["db", "sync", "--config-file", str(server.config_file)],
                 stdout=log, stderr=subprocess.STDOUT).wait() != 0:
        raise SystemExit(f"novalite db sync failed; see {server.log_file}")
    server.proc = _novalite(
        ["api", "--config-file", str(server.config_file), "--bind", f"127.0.0.1:{server.port}",
         "--workers", str(workers), "--threads", str(threads),
         "--heartbeat-bind", f"127.0.0.1:{server.heartbeat_port}" if server.heartbeat_port else ""]
        + (["--worker", worker] if worker else []),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGTERM)
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait()
        log.close()


# -- registering services --------------------------------------------------------------------------

def host_name(index: int) -> str:
    return f"bench-{index:05d}"


def _register_chunk(port: int, agent_token: str, first: int, last: int) -> list[str]:
    """Register hosts first..last (inclusive) over one keep-alive connection; returns their UUIDs
    ("" for a failed registration)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"X-Agent-Token": agent_token, "Content-Type": "application/json"}
    uuids = []
    for i in range(first, last + 1):
        body = json.dumps({"host": host_name(i), "binary": "nova-compute", "version": 66})
        conn.request("POST", "/agent/v1/services", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        uuids.append(json.loads(data)["service"]["id"] if resp.status == 200 else "")
    conn.close()
    return uuids


def register_range(server: Server, first: int, last: int, clients: int) -> list[str]:
    """Register (or load, as an agent restarting does) hosts first..last concurrently; their UUIDs in order."""
    todo = last - first + 1
    if todo <= 0:
        return []
    parts = max(1, min(clients, todo))
    step = -(-todo // parts)
    chunks = [(server.port, server.agent_token, start, min(start + step - 1, last))
              for start in range(first, last + 1, step)]
    with multiprocessing.get_context("fork").Pool(len(chunks)) as pool:
        uuids = [u for part in pool.starmap(_register_chunk, chunks) for u in part]
    failures = uuids.count("")
    if failures:
        raise SystemExit(f"{failures} registrations failed; see {server.log_file}")
    return uuids


def register_up_to(server: Server, have: int, size: int, clients: int) -> float:
    """Register hosts have+1..size concurrently; returns the seconds taken."""
    started = time.monotonic()
    register_range(server, have + 1, size, clients)
    return time.monotonic() - started


# -- CPU accounting --------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pid: int, descendants: bool = False) -> float | None:
    """utime + stime of a live process (all its threads), or None once it is gone. ``descendants``: with its
    reaped children's time (cutime, cstime) and its live descendants' (gunicorn's workers, a running command)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = []
        if descendants:
            for task in os.listdir(f"/proc/{pid}/task"):
                children += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; field 3 is fields[0]
    if not descendants:
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    own = sum(int(ticks) for ticks in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime
    return own + sum(cpu_seconds(child, descendants=True) or 0.0 for child in children)


def database_pids(url: str) -> list[int]:
    """The database server's processes serving this benchmark: PostgreSQL's backends of the bench's database
    and its shared background processes (WAL writer, checkpointer…); MariaDB's one mariadbd (every client's)."""
    backend, name = backend_of(url), make_url(url).database
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if backend == "mariadb" and comm in ("mariadbd", "mysqld"):
            found.append(int(entry.name))
        elif backend == "postgresql" and comm == "postgres":
            # A client backend's title names its database and peer ("postgres: 15/main: user db
            # 127.0.0.1(port) idle"): other databases' backends (other work on the machine) are not ours.
            is_client = len(title) >= 5 and title[0] == "postgres:" and "(" in title[4]
            if not is_client or title[3] == name:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU time of the processes ``pids()`` names between start() and stop(), as % of one core."""

    def __init__(self, pids: Callable[[], list[int]]):
        self._pids = pids
        self._start: dict[int, float] = {}
        self._started_at = 0.0

    def start(self) -> None:
        self._start = {p: c for p in self._pids() if (c := cpu_seconds(p)) is not None}
        self._started_at = time.monotonic()

    def stop(self) -> float:
        """% of one core over the window; processes that started or ended inside it count from/to then."""
        elapsed = time.monotonic() - self._started_at
        used = 0.0
        for pid in set(self._pids()) | set(self._start):
            now = cpu_seconds(pid)
            if now is not None:
                used += now - self._start.get(pid, 0.0)  # a process born inside the window: all of its time
        return 100.0 * used / elapsed if elapsed > 0 else 0.0
