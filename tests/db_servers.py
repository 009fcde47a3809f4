"""Private, throwaway PostgreSQL and MariaDB servers owned by one test, which may stop, start or kill -9 them.

The machine's shared servers (PostgreSQL on 5432, MariaDB on 3306) serve every other test, so a test that
restarts its database gets a server of its own: a fresh cluster on a free port of 127.0.0.1, its data in a
directory of its own, removed by ``close()``. PostgreSQL refuses to run as root, so its processes run as the
``postgres`` OS user, and its directory lives under /tmp (pytest's tmp_path is private to root); MariaDB runs
as root (``--user=root``) under the test's tmp_path. Both trust local connections: no password.

    with private_server("postgresql", tmp_path) as server:     # pytest.skip if the binaries are missing
        url = server.create_database("novalite")
        server.stop(); server.start(); server.kill()
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.stack import free_port, wait_until

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class PrivateServer:
    """One database server process on 127.0.0.1:port; subclasses say how to make, run and reach it."""

    backend = ""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log = root / "server.log"

    # -- what each backend defines --------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_options(self) -> dict:
        return {}

    def admin_url(self) -> str:
        raise NotImplementedError

    def _create_statement(self, name: str) -> str:
        raise NotImplementedError

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, **self._popen_options())
        wait_until(self._accepts_connections, timeout=START_TIMEOUT, what=f"the private {self.backend} server")

    def _accepts_connections(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.backend} exited {self.proc.returncode}:\n{self.log()}")
        engine = sa.create_engine(self.admin_url(), poolclass=sa.NullPool, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.DBAPIError:
            return False
        finally:
            engine.dispose()

    def stop(self) -> None:
        """A clean shutdown, as an operator's restart does: clients' connections are closed."""
        self._signal_and_wait(self._stop_signal())

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    def kill(self) -> None:
        """kill -9 of the server and every process of it: no shutdown, crash recovery at the next start."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        # Its children (PostgreSQL's backends) die with the group; wait until none holds the data directory.
        wait_until(lambda: not self._group_alive(), timeout=STOP_TIMEOUT,
                   what=f"the killed {self.backend} processes")

    def _group_alive(self) -> bool:
        """Whether a process of the server's group still runs (zombies hold nothing: they do not count)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it ended meanwhile
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":  # pgrp, state
                return True
        return False

    def _signal_and_wait(self, signum: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return self.admin_url().rsplit("/", 1)[0] + f"/{name}"

    def create_database(self, name: str) -> str:
        """An empty database ``name`` on this server; its URL."""
        engine = sa.create_engine(self.admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(self._create_statement(name)))
        finally:
            engine.dispose()
        return self.url(name)

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""


class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster made by initdb, run by the ``postgres`` OS user (postgres refuses root)."""

    backend = "postgresql"
    USER = "postgres"

    def __init__(self, bindir: Path):
        account = pwd.getpwnam(self.USER)
        root = Path(tempfile.mkdtemp(prefix="novalite-test-pg-"))
        os.chown(root, account.pw_uid, account.pw_gid)
        super().__init__(root)
        self.bindir = bindir
        self.data = root / "data"
        try:
            subprocess.run([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                            "-E", "UTF8", "--no-sync"], check=True, capture_output=True, **self._popen_options())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)  # outside tmp_path: nobody else would remove it
            raise
        self._log.touch()
        os.chown(self._log, account.pw_uid, account.pw_gid)

    def _popen_options(self) -> dict:
        return {"user": self.USER, "group": self.USER, "extra_groups": [], "cwd": str(self.root)}

    def _command(self) -> list[str]:
        return [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
                "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]

    def _stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: sessions are ended at once, as pg_ctl stop -m fast does

    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _create_statement(self, name: str) -> str:
        return f'CREATE DATABASE "{name}"'


class PrivateMariaDB(PrivateServer):
    """A MariaDB server made by mariadb-install-db, run as root with its own socket and data directory."""

    backend = "mariadb"

    def __init__(self, root: Path, install_db: str, server: str):
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root)
        self.server = server
        self.data = root / "data"
        subprocess.run([install_db, "--no-defaults", f"--datadir={self.data}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True)

    def _command(self) -> list[str]:
        return [self.server, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.root / 'mysqld.sock'}",
                f"--pid-file={self.root / 'mysqld.pid'}", "--user=root", "--skip-name-resolve", "--skip-log-bin",
                "--innodb-buffer-pool-size=32M", "--max-connections=200"]

    def admin_url(self) -> str:
        return f"mysql+mysqldb://root@127.0.0.1:{self.port}/mysql"

    def _create_statement(self, name: str) -> str:
        return f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _make(backend: str, tmp_path: Path) -> PrivateServer:
    if backend == "postgresql":
        bindir = _postgres_bindir()
        if bindir is None or not (bindir / "postgres").exists():
            pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb, postgres)")
        try:
            pwd.getpwnam(PrivatePostgres.USER)
        except KeyError:
            pytest.skip("no `postgres` OS user to run a private PostgreSQL server as")
        return PrivatePostgres(bindir)
    install_db = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
    if install_db is None or server is None:
        pytest.skip("no MariaDB server binaries (mariadb-install-db, mariadbd)")
    return PrivateMariaDB(tmp_path / "mariadb", install_db, server)


@contextlib.contextmanager
def private_server(backend: str, tmp_path: Path) -> Iterator[PrivateServer]:
    """A started private server of ``backend`` ("postgresql" or "mariadb"), killed and removed on exit."""
    server = _make(backend, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.close()
