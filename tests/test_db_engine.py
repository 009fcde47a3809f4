"""make_engine's settings per backend (no database is reached: engines connect lazily).

What they are for — prompt faults while the database is away, recovery by itself — is proven live in
tests/test_durability_live.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from novalite import config
from novalite.db import engine as db_engine

pytestmark = pytest.mark.no_database


def _connect_args(url: str, **kwargs) -> dict:
    return db_engine.connect_args(make_url(url), **kwargs)


@pytest.mark.parametrize(("url", "driver"), [("postgresql://nova:s3cret@127.0.0.1/nova", "postgresql+psycopg"),
                                             ("mysql://nova:s3cret@127.0.0.1/nova", "mysql+mysqldb"),
                                             ("mariadb://nova:s3cret@127.0.0.1/nova", "mysql+mysqldb")])
def test_short_driver_names_get_the_installed_driver_and_keep_the_password(url, driver):
    engine = db_engine.make_engine(url)
    assert (engine.url.drivername, engine.url.password) == (driver, "s3cret")  # str(URL) would mask it: ***


def test_postgresql_connections_have_bounded_connect_and_statement_waits():
    args = _connect_args("postgresql+psycopg://nova@127.0.0.1/nova")
    assert args["connect_timeout"] == db_engine.CONNECT_TIMEOUT
    assert args["options"] == f"-c statement_timeout={db_engine.READ_TIMEOUT * 1000}"
    # A server gone without closing the connection is given up on within the read timeout.
    assert args["keepalives_idle"] + args["keepalives_interval"] * args["keepalives_count"] <= db_engine.READ_TIMEOUT
    assert args["tcp_user_timeout"] == db_engine.READ_TIMEOUT * 1000


def test_mariadb_connections_have_bounded_connect_read_and_write_waits():
    args = _connect_args("mysql+mysqldb://nova@127.0.0.1/nova")
    assert (args["connect_timeout"], args["read_timeout"], args["write_timeout"]) == (
        db_engine.CONNECT_TIMEOUT, db_engine.READ_TIMEOUT, db_engine.READ_TIMEOUT)


def test_migrations_run_without_a_read_timeout():
    assert "options" not in _connect_args("postgresql+psycopg://nova@127.0.0.1/nova", read_timeout=None)
    assert "read_timeout" not in _connect_args("mysql+mysqldb://nova@127.0.0.1/nova", read_timeout=None)


def test_settings_in_the_url_win_over_the_defaults():
    args = _connect_args("postgresql+psycopg://nova@127.0.0.1/nova?connect_timeout=2&options=-c%20search_path%3Dnova")
    assert "connect_timeout" not in args and "options" not in args  # left to the URL's values
    assert args["keepalives"] == 1


def test_pool_waits_are_bounded():
    engine = db_engine.make_engine("postgresql+psycopg://nova@127.0.0.1/nova")
    assert engine.pool.timeout() == db_engine.POOL_TIMEOUT


@pytest.mark.parametrize("url", ["postgresql://nova@127.0.0.1/nova", "mysql://nova@127.0.0.1/nova",
                                 "sqlite:////tmp/novalite-pool-test/n.sqlite"])
def test_the_pool_follows_the_database_options(url):
    # [database] max_pool_size, max_overflow, pool_timeout, connection_recycle_time (oslo.db's names).
    settings = config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2", "NOVALITE_DATABASE__CONNECTION": url,
                                    "NOVALITE_DATABASE__MAX_POOL_SIZE": "7", "NOVALITE_DATABASE__MAX_OVERFLOW": "2",
                                    "NOVALITE_DATABASE__POOL_TIMEOUT": "1.5",
                                    "NOVALITE_DATABASE__CONNECTION_RECYCLE_TIME": "600"})
    engine = db_engine.engine_for(settings.database)
    assert (engine.pool.timeout(), engine.pool.size(), engine.pool._max_overflow) == (1.5, 7, 2)
    if not url.startswith("sqlite"):  # a SQLite file is never cut by a server's idle timeout
        assert engine.pool._recycle == 600


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_has_its_single_connection_pool(url):
    engine = db_engine.make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
