"""Fresh databases for tests, on the backend a pytest run targets (``pytest --backend sqlite|postgresql|mariadb``).

Every test that stores anything gets its own database: a SQLite file in its directory, or a new database on the
machine's PostgreSQL or MariaDB server, dropped when the test ends. Creating and migrating a server database costs
about half a second, so the first one of a run is migrated once and kept as a template: PostgreSQL copies it
(``CREATE DATABASE … TEMPLATE``), MariaDB, which has no templates, replays its tables' DDL. Either way a test sees
exactly what ``novalite db sync`` builds (tests/test_storage.py compares that with the models on each backend).
A migrated server database a test is done with is emptied (its connections ended, its tables truncated, their
ids restarted) and handed to a later test, which is several times cheaper than copying a new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from novalite.db import engine as db_engine
from novalite.db.models import Base

BACKENDS = ("sqlite", "postgresql", "mariadb")

# Not NOVALITE_*: that prefix is novalite's own configuration, and unknown names there are errors.
ADMIN_URLS = {
    "postgresql": os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mariadb": os.environ.get("TEST_MARIADB_URL", "mysql+mysqldb://root@127.0.0.1:3306/mysql"),
}
PREFIX = "novalite_test_"


def _url_of(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


class ServerDatabases:
    """Databases on one PostgreSQL or MariaDB server: made empty or migrated, emptied again, and dropped."""

    def __init__(self, backend: str):
        self.backend = backend
        self.admin = sa.create_engine(ADMIN_URLS[backend], isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self._template: str | None = None
        self._spare: list[str] = []  # migrated databases a finished test left, emptied
        self._ddl: list[str] = []
        self._revision = ""

    def _execute(self, *statements: str) -> None:
        with self.admin.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def _create(self, name: str) -> None:
        if self.backend == "postgresql":
            self._execute(f'CREATE DATABASE "{name}"')
        else:
            self._execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def empty(self) -> str:
        name = PREFIX + uuid.uuid4().hex[:12]
        self._create(name)
        return name

    def migrated(self) -> str:
        if self._spare:
            return self._spare.pop()
        if self._template is None:
            self._make_template()
        name = PREFIX + uuid.uuid4().hex[:12]
        if self.backend == "postgresql":
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
            return name
        self._create(name)
        engine = sa.create_engine(self.url(name), poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("SET FOREIGN_KEY_CHECKS=0"))
                for ddl in self._ddl:
                    conn.execute(sa.text(ddl))
                conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": self._revision})
        finally:
            engine.dispose()
        return name

    def _make_template(self) -> None:
        name = self.empty()
        self._template = name
        db_engine.sync(self.url(name))
        if self.backend == "mariadb":
            engine = sa.create_engine(self.url(name), poolclass=sa.NullPool)
            try:
                with engine.connect() as conn:
                    tables = conn.execute(sa.text("SHOW TABLES")).scalars().all()
                    self._ddl = [conn.execute(sa.text(f"SHOW CREATE TABLE `{t}`")).one()[1] for t in tables]
                    self._revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            finally:
                engine.dispose()

    def url(self, name: str) -> str:
        return _url_of(ADMIN_URLS[self.backend], name)

    def give_back(self, name: str) -> None:
        """Empty a migrated database for a later test; drop it if that fails."""
        try:
            self._disconnect(name)
            self._truncate(name)
        except sa.exc.DBAPIError:
            self.drop(name)
        else:
            self._spare.append(name)

    def _disconnect(self, name: str) -> None:
        """End the connections a test's processes and engines left open to ``name``."""
        with self.admin.connect() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
                return
            ids = conn.execute(sa.text("SELECT id FROM information_schema.processlist WHERE db = :name"),
                               {"name": name}).scalars().all()
            for connection_id in ids:
                try:
                    conn.execute(sa.text(f"KILL CONNECTION {int(connection_id)}"))
                except sa.exc.DBAPIError:
                    pass  # it ended meanwhile

    def _truncate(self, name: str) -> None:
        engine = sa.create_engine(self.url(name), poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                if self.backend == "postgresql":
                    # DELETE and setval, not TRUNCATE: TRUNCATE makes new files for every table and index, several
                    # times slower on a busy machine. Children first, for the foreign keys.
                    conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # terminated backends' locks linger
                    for table in reversed(Base.metadata.sorted_tables):
                        conn.execute(table.delete())
                    conn.execute(sa.text("SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n "
                                         "ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND n.nspname = 'public'"))
                    return
                conn.execute(sa.text("SET SESSION lock_wait_timeout = 10, FOREIGN_KEY_CHECKS = 0"))
                used = conn.execute(sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                            "DATABASE() AND auto_increment > 1")).scalars().all()
                for table in Base.metadata.sorted_tables:
                    conn.execute(table.delete())
                for table in used:  # DDL, so only where a test took ids
                    conn.execute(sa.text(f"ALTER TABLE `{table}` AUTO_INCREMENT = 1"))
        finally:
            engine.dispose()

    def drop(self, name: str) -> None:
        """Drop ``name``, ending whatever connections a test's processes left open to it."""
        if self.backend == "postgresql":
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        self._disconnect(name)
        self._execute(f"DROP DATABASE IF EXISTS `{name}`")

    def close(self) -> None:
        for name in [*self._spare, *([self._template] if self._template else [])]:
            self.drop(name)
        self._spare.clear()
        self.admin.dispose()


class Databases:
    """The run's backend; fresh databases for the current test, dropped at its end."""

    def __init__(self, backend: str):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.server = ServerDatabases(backend) if backend != "sqlite" else None
        self._made: list[tuple[str, bool]] = []  # (database, migrated) made for the current test
        self._count = 0
        self._sqlite_template: Path | None = None
        # Set while a test marked no_database runs: it must not make one (see conftest).
        self.forbidden_for: str | None = None

    def fresh_url(self, root: Path, *, migrated: bool = True) -> str:
        """A new database for the current test: migrated to head, or empty (``migrated=False``)."""
        if self.forbidden_for:
            raise AssertionError(f"{self.forbidden_for} is marked no_database but made a database")
        if self.server is None:
            self._count += 1
            path = Path(root) / ("novalite.sqlite" if self._count == 1 else f"novalite-{self._count}.sqlite")
            if migrated:
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self._migrated_sqlite_file(), path)
            return f"sqlite:///{path}"
        name = self.server.migrated() if migrated else self.server.empty()
        self._made.append((name, migrated))
        return self.server.url(name)

    def _migrated_sqlite_file(self) -> Path:
        # A file copy is a consistent database: the template's engine is disposed, so its WAL is checkpointed.
        if self._sqlite_template is None:
            path = Path(tempfile.mkdtemp(prefix="novalite-template-")) / "novalite.sqlite"
            db_engine.sync(f"sqlite:///{path}")
            self._sqlite_template = path
        return self._sqlite_template

    @contextlib.contextmanager
    def for_module(self, root: Path) -> Iterator[str]:
        """A migrated database that outlives single tests (a module's shared stack), dropped on exit."""
        if self.server is None:
            path = Path(root) / "novalite.sqlite"
            shutil.copyfile(self._migrated_sqlite_file(), path)
            yield f"sqlite:///{path}"
            return
        name = self.server.migrated()
        try:
            yield self.server.url(name)
        finally:
            self.server.drop(name)

    def end_test(self) -> None:
        self._count = 0
        while self._made:
            name, migrated = self._made.pop()
            if migrated:
                self.server.give_back(name)
            else:
                self.server.drop(name)

    def close(self) -> None:
        self.end_test()
        if self.server is not None:
            self.server.close()
        if self._sqlite_template is not None:
            shutil.rmtree(self._sqlite_template.parent, ignore_errors=True)


_current: Databases | None = None


def start(backend: str) -> Databases:
    global _current
    _current = Databases(backend)
    return _current


def current() -> Databases:
    if _current is None:
        raise RuntimeError("no test database backend: tests/conftest.py starts one per pytest run")
    return _current


def fresh_url(root: Path, *, migrated: bool = True) -> str:
    """A new database of the run's backend for the current test (see ``Databases.fresh_url``)."""
    return current().fresh_url(root, migrated=migrated)


def for_module(root: Path) -> contextlib.AbstractContextManager[str]:
    """A migrated database of the run's backend for a module-scoped fixture (see ``Databases.for_module``)."""
    return current().for_module(root)
