"""Shared fixtures: databases on every backend the suite runs against, and live stacks."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.stack import Stack

# Not NOVALITE_*: that prefix is novalite's own configuration, and unknown names there are errors.
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql")


def _postgres_database() -> str:
    """A fresh, empty PostgreSQL database for one test; fails loudly if the server is down."""
    import sqlalchemy as sa

    name = f"novalite_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres_database(url: str) -> None:
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _mariadb_database() -> str:
    """A fresh, empty MariaDB database for one test; fails loudly if the server is down."""
    import sqlalchemy as sa

    name = f"novalite_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    admin.dispose()
    return MARIADB_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_mariadb_database(url: str) -> None:
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request, tmp_path):
    """An empty database URL on each backend (SQLite in WAL mode, PostgreSQL and MariaDB on 127.0.0.1)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'novalite.sqlite'}"
        return
    create, drop = ((_postgres_database, _drop_postgres_database) if request.param == "postgresql"
                    else (_mariadb_database, _drop_mariadb_database))
    url = create()
    yield url
    drop(url)


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
