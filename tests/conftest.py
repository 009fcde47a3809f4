"""Shared fixtures: databases on every backend the suite runs against, and live stacks."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.stack import Stack

# Not NOVALITE_*: that prefix is novalite's own configuration, and unknown names there are errors.
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql")


# backend → (admin URL, CREATE statement, DROP statement) for scratch databases.
SCRATCH_DATABASES = {
    "postgresql": (POSTGRES_ADMIN_URL, 'CREATE DATABASE "{name}"', 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
    "mariadb": (MARIADB_ADMIN_URL, "CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
                "DROP DATABASE IF EXISTS `{name}`"),
}


def _as_admin(admin_url: str, statement: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


@contextlib.contextmanager
def scratch_database(backend: str) -> Iterator[str]:
    """A fresh, empty database on a server backend, dropped afterwards; fails loudly if the server is down."""
    admin_url, create, drop = SCRATCH_DATABASES[backend]
    name = f"novalite_test_{uuid.uuid4().hex[:12]}"
    _as_admin(admin_url, create.format(name=name))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _as_admin(admin_url, drop.format(name=name))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request, tmp_path):
    """An empty database URL on each backend (SQLite in WAL mode, PostgreSQL and MariaDB on 127.0.0.1)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'novalite.sqlite'}"
        return
    with scratch_database(request.param) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'novalite.sqlite'}"


@pytest.fixture
def make_stack(tmp_path, sqlite_url):
    """Factory for live stacks: make_stack(auth_strategy=..., database_url=...) → started API."""
    stacks: list[Stack] = []

    def make(*, database_url: str | None = None, start: bool = True, **kwargs) -> Stack:
        stack = Stack(root=tmp_path / f"stack{len(stacks)}", database_url=database_url or sqlite_url, **kwargs)
        stacks.append(stack)
        if start:
            stack.start_api()
        return stack

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture
def sdk_env(monkeypatch):
    """No OS_* variable of the caller's shell leaks into an openstacksdk connection under test."""
    for key in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(key)
