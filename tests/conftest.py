"""Shared fixtures: the run's database backend, fresh databases, and live stacks.

A pytest run targets one backend: ``pytest --backend sqlite`` (the default), ``postgresql`` or ``mariadb``;
``make test`` runs the suite once per backend. Every test that stores anything gets a fresh database of that
backend (tests/databases.py). In the server backends' runs, modules marked ``no_database`` (they store nothing:
detection, fencing, configuration…) are left out, since they already ran in the SQLite run; a test marked
``only_backend("postgresql")`` runs only in that backend's run.
"""

from __future__ import annotations

import os

import pytest

from tests import databases, zygote
from tests.stack import Stack


def pytest_addoption(parser):
    parser.addoption("--backend", choices=databases.BACKENDS, default="sqlite",
                     help="the database backend every test runs against (default: sqlite)")


def pytest_configure(config):
    config.addinivalue_line("markers", "no_database: stores nothing; runs in the SQLite run only")
    config.addinivalue_line("markers", "only_backend(name): runs only in the run of that backend")
    databases.start(config.getoption("--backend"))


def pytest_unconfigure(config):
    databases.current().close()
    zygote.close()


def pytest_collection_modifyitems(config, items):
    backend = config.getoption("--backend")
    keep, leave = [], []
    for item in items:
        only = item.get_closest_marker("only_backend")
        if only is not None:
            wanted = only.args[0] == backend
        else:
            wanted = backend == "sqlite" or item.get_closest_marker("no_database") is None
        (keep if wanted else leave).append(item)
    if leave:
        config.hook.pytest_deselected(items=leave)
        items[:] = keep


@pytest.fixture(scope="session")
def backend(pytestconfig) -> str:
    """The database backend of this run."""
    return pytestconfig.getoption("--backend")


@pytest.fixture(autouse=True)
def _fresh_databases_per_test(request):
    current = databases.current()
    current.forbidden_for = request.node.nodeid if request.node.get_closest_marker("no_database") else None
    yield
    current.forbidden_for = None
    current.end_test()


@pytest.fixture
def database_url(tmp_path):
    """An empty database of the run's backend (SQLite in WAL mode, PostgreSQL or MariaDB on 127.0.0.1)."""
    return databases.fresh_url(tmp_path, migrated=False)


@pytest.fixture
def migrated_database_url(tmp_path):
    """A database of the run's backend with the schema at head (what ``novalite db sync`` builds)."""
    return databases.fresh_url(tmp_path)


@pytest.fixture
def services(migrated_database_url):
    """The domain's Services over a fresh migrated database of the run's backend (no API, no auth)."""
    from novalite import config
    from novalite.db import engine as db_engine
    from novalite.domain.services import Services

    settings = config.load(environ={"NOVALITE_DATABASE__CONNECTION": migrated_database_url,
                                    "NOVALITE_API__AUTH_STRATEGY": "noauth2"})
    engine = db_engine.make_engine(migrated_database_url)
    yield Services(engine, settings)
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite database, whatever the run's backend: for what is about SQLite itself."""
    return f"sqlite:///{tmp_path / 'novalite.sqlite'}"


@pytest.fixture
def make_stack(tmp_path):
    """Factory for live stacks: make_stack(auth_strategy=..., database_url=...) → started API.

    Without ``database_url`` the stacks of one test share one fresh database of the run's backend."""
    stacks: list[Stack] = []
    shared: list[str] = []

    def make(*, database_url: str | None = None, start: bool = True, **kwargs) -> Stack:
        if database_url is None:
            if not shared:
                shared.append(databases.fresh_url(tmp_path))
            database_url = shared[0]
        stack = Stack(root=tmp_path / f"stack{len(stacks)}", database_url=database_url, **kwargs)
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
