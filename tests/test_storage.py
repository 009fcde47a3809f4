"""Storage and the service record's life on every backend (SQLite WAL, PostgreSQL and MariaDB).

Pins spec section 4.3 (heartbeats touch only report_count / last_seen_up / updated_at), 4.5
(forced_down and disabled survive restarts; a missing row is created fresh) and the schema
commands (`novalite db sync` idempotent, `db status`).
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from novalite.cli.main import main as novalite_main
from novalite.db import api as db
from novalite.db import engine as db_engine
from novalite.domain.services import Services, ServiceState
from novalite.exceptions import NotFound


def _row(services: Services, service_uuid: str):
    with services.engine.connect() as conn:
        return db.service_get_by_uuid(conn, service_uuid)


def test_db_sync_is_idempotent_and_reaches_head(database_url):
    db_engine.sync(database_url)
    db_engine.sync(database_url)
    engine = db_engine.make_engine(database_url)
    try:
        assert db_engine.current_revision(engine) == db_engine.head_revision()
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"services", "instances", "migrations"} <= names


def test_the_migrations_build_exactly_the_tables_the_models_declare(database_url):
    # Every column, index and type the code uses exists after `db sync`, on each backend, and nothing else.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from novalite.db.models import Base

    db_engine.sync(database_url)
    engine = db_engine.make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_db_status_command_reports_revision(database_url, capsys, monkeypatch):
    monkeypatch.setenv("NOVALITE_DATABASE__CONNECTION", database_url)
    monkeypatch.setenv("NOVALITE_API__AUTH_STRATEGY", "noauth2")
    assert novalite_main(["db", "status"]) == 1  # empty database: behind head
    assert novalite_main(["db", "sync"]) == 0
    assert novalite_main(["db", "sync"]) == 0
    assert novalite_main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert f"current: {db_engine.head_revision()}" in out


@pytest.mark.only_backend("sqlite")
def test_sqlite_runs_in_wal_mode(sqlite_url):
    db_engine.sync(sqlite_url)
    engine = db_engine.make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_register_creates_a_fresh_record(services):
    # spec 4.5: report_count 0, a new UUID, disabled false, forced_down false
    state = services.register("compute1", "nova-compute", 1)
    row = _row(services, state.uuid)
    assert (row.report_count, row.disabled, row.forced_down, row.topic) == (0, False, False, "compute")
    assert row.updated_at is None and row.last_seen_up is None
    assert state.up  # up for service_down_time after creation (spec 4.2)


def test_heartbeat_touches_only_report_count_and_last_seen_up(services):
    state = services.register("compute1", "nova-compute", 1)
    services.set_forced_down_by_host("compute1", "nova-compute", True)
    services.set_disabled_by_host("compute1", "nova-compute", True, "maintenance")
    services.heartbeat(state.uuid)
    services.heartbeat(state.uuid)
    row = _row(services, state.uuid)
    assert row.report_count == 2
    assert row.last_seen_up is not None and row.updated_at is not None
    assert (row.forced_down, row.disabled, row.disabled_reason) == (True, True, "maintenance")


def test_admin_update_does_not_touch_heartbeat_columns(services):
    state = services.register("compute1", "nova-compute", 1)
    services.heartbeat(state.uuid)
    before = _row(services, state.uuid)
    services.update_by_uuid(state.uuid, status="disabled", disabled_reason=None, forced_down=True)
    after = _row(services, state.uuid)
    assert (after.report_count, after.last_seen_up) == (before.report_count, before.last_seen_up)


def test_restart_keeps_forced_down_and_disabled(services):
    # spec 4.5: only the API clears forced_down
    first = services.register("compute1", "nova-compute", 1)
    services.set_forced_down_by_host("compute1", "nova-compute", True)
    services.set_disabled_by_host("compute1", "nova-compute", True, "fenced")
    again = services.register("compute1", "nova-compute", 2)
    assert again.uuid == first.uuid
    assert again.forced_down and again.disabled and again.disabled_reason == "fenced"
    assert not again.up
    assert _row(services, first.uuid).version == 2


def test_heartbeat_of_deleted_service_fails_and_does_not_recreate(services):
    # spec 4.3: the row is not recreated by a heartbeat
    state = services.register("compute1", "nova-compute", 1)
    services.delete(state.uuid)
    with pytest.raises(NotFound):
        services.heartbeat(state.uuid)
    assert services.list() == []
    # a restart registers a new record with a new identity
    fresh = services.register("compute1", "nova-compute", 1)
    assert fresh.uuid != state.uuid and fresh.id != state.id


def test_concurrent_registration_of_one_host_yields_one_record(services):
    results, errors = [], []

    def register():
        try:
            results.append(services.register("compute1", "nova-compute", 1).uuid)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert len(services.list()) == 1


def test_listing_liveness_matches_the_python_rule(services):
    # spec 4.1-4.2: a listing judges "up" by the database's text of each last heartbeat (ServiceListing, which keeps
    # rows across listings); it must agree with UpWindow.is_up, inclusive bounds and clock skew included, on every
    # backend.
    import datetime as dt

    from novalite.domain.liveness import UpWindow
    from novalite.domain.service_listing import ServiceListing

    now = dt.datetime(2026, 11, 25, 12, 0, 0, 500000)
    window = UpWindow(60, now)
    second = dt.timedelta(seconds=1)
    micro = dt.timedelta(microseconds=1)
    cases = {  # host: (forced_down, last_seen_up, created_at)
        "fresh-beat": (False, now, now - 3600 * second),
        "at-earliest": (False, window.earliest, now - 3600 * second),
        "before-earliest": (False, window.earliest - micro, now - 3600 * second),
        "at-latest-skew": (False, window.latest, now),
        "after-latest": (False, window.latest + micro, now),
        "never-beat-new": (False, None, now - 10 * second),
        "never-beat-old": (False, None, now - 61 * second),
        "forced-fresh": (True, now, now),
        "old-beat-new-row": (False, now - 120 * second, now),  # last_seen_up wins over created_at
    }
    with services.engine.begin() as conn:
        for host, (forced_down, last_seen_up, created_at) in cases.items():
            conn.execute(db.services.insert().values(
                uuid=f"00000000-0000-0000-0000-{len(host):04d}{abs(hash(host)) % 10**8:08d}", host=host,
                binary="nova-compute", topic="compute", report_count=0, disabled=False, forced_down=forced_down,
                last_seen_up=last_seen_up, created_at=created_at, version=1, deleted=0,
            ))
    listing = ServiceListing("nova", "internal", hidden_binaries=())
    with services.engine.connect() as conn:
        listed = {ServiceState(*row).host: ServiceState(*row).up for row in listing.read(conn, window).states()}
    in_python = {host: window.is_up(*case) for host, case in cases.items()}
    assert listed == in_python
    assert in_python == {"fresh-beat": True, "at-earliest": True, "before-earliest": False, "at-latest-skew": True,
                         "after-latest": False, "never-beat-new": True, "never-beat-old": False,
                         "forced-fresh": False, "old-beat-new-row": False}


def test_a_listing_shows_updated_at_as_the_api_does_for_one_service(services):
    # The database formats a listing's updated_at (db.api_time); it must be timeutils.isotime's text on every
    # backend, whole seconds and the last microsecond included, and what the one-service path shows.
    import datetime as dt

    from novalite.timeutils import isotime

    stamps = {"whole-second": dt.datetime(2026, 1, 2, 3, 4, 5), "micro": dt.datetime(2026, 12, 31, 23, 59, 59, 999999),
              "never": None}
    states = {host: services.register(host, "nova-compute", 1) for host in stamps}
    with services.engine.begin() as conn:
        for host, stamp in stamps.items():
            conn.execute(db.services.update().where(db.services.c.host == host).values(updated_at=stamp))
    listed = {state.host: state.updated_at for state in (ServiceState(*row) for row in services.list())}
    assert listed == {host: isotime(stamp) for host, stamp in stamps.items()}
    assert listed == {"whole-second": "2026-01-02T03:04:05.000000", "micro": "2026-12-31T23:59:59.999999",
                      "never": None}
    assert {host: services.get_by_uuid(state.uuid).updated_at for host, state in states.items()} == listed


def test_deleting_a_compute_service_deletes_its_hypervisor_records(services):
    # spec 3.5 step 5: the compute_nodes rows of the service (or host) are soft-deleted too
    from novalite.db import compute_nodes as nodes_db

    state = services.register("compute1", "nova-compute", 1)
    resources = {"hypervisor_type": "fake", "hypervisor_version": 1000, "cpu_info": "{}", "vcpus": 4,
                 "memory_mb": 4096, "local_gb": 10, "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0,
                 "running_vms": 0}
    services.report_node(state.uuid, "compute1", resources)
    services.delete(state.uuid)
    with services.engine.connect() as conn:
        assert nodes_db.compute_node_get_by_host_and_nodename(conn, "compute1", "compute1") is None
    # the host can come back: a new service and a new hypervisor record
    again = services.register("compute1", "nova-compute", 1)
    node = services.report_node(again.uuid, "compute1", resources)
    assert node.service_id == again.id


@pytest.mark.only_backend("mariadb")
def test_an_explicit_pymysql_url_still_selects_pymysql_and_works(migrated_database_url):
    # mysql:// and mariadb:// get mysqlclient (db/engine.py); mysql+pymysql:// keeps the pure-Python driver.
    from novalite import config

    url = sa.engine.make_url(migrated_database_url).set(drivername="mysql+pymysql")
    engine = db_engine.make_engine(url.render_as_string(hide_password=False))
    try:
        assert engine.dialect.driver == "pymysql"
        settings = config.load(environ={"NOVALITE_DATABASE__CONNECTION": str(url),
                                        "NOVALITE_API__AUTH_STRATEGY": "noauth2"})
        services = Services(engine, settings)
        state = services.register("compute1", "nova-compute", 1)
        services.heartbeat(state.uuid)
        assert _row(services, state.uuid).report_count == 1
        assert [ServiceState(*row).host for row in services.list()] == ["compute1"]
    finally:
        engine.dispose()


def test_a_listing_on_a_connection_the_server_dropped_is_run_again(services, backend):
    # db.engine.read_connection (PostgreSQL: autocommit, one round trip) keeps the first-statement retry: a read
    # changes nothing, so a pooled connection found dead costs the listing a reconnect, not a 500.
    if backend == "sqlite":
        pytest.skip("SQLite has no server to drop a connection")
    services.register("compute1", "nova-compute", 1)
    own_id = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT connection_id()"
    with services.engine.connect() as conn:  # the pool's one idle connection, by its server-side id
        session = conn.execute(sa.text(own_id)).scalar()
    killer = sa.create_engine(services.engine.url, poolclass=sa.NullPool)
    try:
        with killer.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:id)" if backend == "postgresql" else f"KILL {session}"),
                         {"id": session})
    finally:
        killer.dispose()
    assert [ServiceState(*row).host for row in services.list()] == ["compute1"]
