"""The listing each API process keeps (novalite.domain.service_listing), on every backend.

An API worker lists services from the rows it kept at its last listing, reading whole only the rows whose
row_version changed. These tests pin that it is never stale: another worker's every kind of write (force-down,
disable, heartbeat, delete, a new service, a test's own Core UPDATE) shows at the next listing, "up" follows
the clock with no write at all, and a filtered listing neither hides nor forgets the rest.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from novalite import config
from novalite.db import api as db
from novalite.db import engine as db_engine
from novalite.domain.liveness import UpWindow
from novalite.domain.service_listing import ServiceListing
from novalite.domain.services import Services, ServiceState


@pytest.fixture
def workers(migrated_database_url):
    """Two Services over one database, each with its own engine and kept listing: two API workers."""
    settings = config.load(environ={"NOVALITE_DATABASE__CONNECTION": migrated_database_url,
                                    "NOVALITE_API__AUTH_STRATEGY": "noauth2"})
    engines = [db_engine.make_engine(migrated_database_url) for _ in range(2)]
    yield [Services(engine, settings) for engine in engines]
    for engine in engines:
        engine.dispose()


def listed(services: Services, **filters) -> dict[str, ServiceState]:
    return {state.host: state for state in map(ServiceState._make, services.list(**filters))}


def statements_run(services: Services) -> list[str]:
    """Collects every statement ``services``' engine runs from now on."""
    seen: list[str] = []
    sa.event.listen(services.engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_another_workers_writes_show_at_the_next_listing(workers):
    reader, writer = workers
    states = {host: writer.register(host, "nova-compute", 1) for host in ("compute1", "compute2", "compute3")}
    assert {host: (s.forced_down, s.disabled, s.up) for host, s in listed(reader).items()} == dict.fromkeys(
        states, (False, False, True))

    writer.set_forced_down_by_host("compute1", "nova-compute", True)
    writer.set_disabled_by_host("compute2", "nova-compute", True, "firmware")
    after = listed(reader)
    assert (after["compute1"].forced_down, after["compute1"].up) == (True, False)
    assert (after["compute2"].disabled, after["compute2"].disabled_reason) == (True, "firmware")
    assert after["compute3"] == listed(writer)["compute3"]

    writer.heartbeat(states["compute3"].uuid)
    beaten = listed(reader)["compute3"]
    assert beaten.updated_at == writer.get_by_uuid(states["compute3"].uuid).updated_at is not None

    writer.delete(states["compute2"].uuid)
    writer.register("compute4", "nova-compute", 1)
    assert sorted(listed(reader)) == ["compute1", "compute3", "compute4"]

    # Any UPDATE made through SQLAlchemy counts, not only novalite's own functions.
    with writer.engine.begin() as conn:
        conn.execute(db.services.update().where(db.services.c.host == "compute1").values(disabled_reason="by hand"))
    assert listed(reader)["compute1"].disabled_reason == "by hand"
    assert listed(reader) == listed(writer)


def test_an_unchanged_listing_reads_only_the_versions(workers):
    reader, writer = workers
    for n in range(20):
        writer.register(f"compute{n}", "nova-compute", 1)
    listed(reader)
    seen = statements_run(reader)
    assert len(listed(reader)) == 20
    assert [s.split("FROM")[0].split() for s in seen] == [["SELECT", "services.id,", "services.row_version"]]

    seen.clear()
    writer.set_forced_down_by_host("compute7", "nova-compute", True)
    assert listed(reader)["compute7"].forced_down
    assert len(seen) == 2 and "services.id IN" in seen[1]  # the one changed row, by id


def test_a_deleted_services_row_is_forgotten_at_the_next_whole_listing(workers):
    reader, writer = workers
    states = [writer.register(f"compute{n}", "nova-compute", 1) for n in range(3)]
    listing = ServiceListing("nova", "internal", hidden_binaries=())

    def hosts(**filters) -> list[str]:
        with reader.engine.connect() as conn:  # a connection per listing, as Services.listing
            return [ServiceState(*row).host for row in listing.read(conn, UpWindow(60), **filters).states()]

    hosts()
    writer.delete(states[1].uuid)
    assert hosts(host="compute0") == ["compute0"]
    assert len(listing) == 3  # a filtered listing does not know about the others
    assert hosts() == ["compute0", "compute2"]
    assert len(listing) == 2


def test_every_update_moves_row_version(workers):
    # The kept rows are only as right as this: each kind of write a service record gets changes its row_version.
    services = workers[0]
    state = services.register("compute1", "nova-compute", 1)

    def version() -> int:
        with services.engine.connect() as conn:
            return conn.execute(sa.select(db.services.c.row_version).where(db.services.c.uuid == state.uuid)).scalar()

    seen = [version()]
    for write in (lambda: services.heartbeat(state.uuid),
                  lambda: services.set_forced_down_by_host("compute1", "nova-compute", True),
                  lambda: services.update_by_uuid(state.uuid, status="disabled", disabled_reason="x", forced_down=None),
                  lambda: services.register("compute1", "nova-compute", 2),  # a new version number
                  lambda: services.delete(state.uuid)):
        write()
        seen.append(version())
    assert seen == sorted(set(seen)), seen


def test_up_follows_the_clock_with_no_write(workers):
    # A kept row is judged again at every listing: a service that stops beating goes down with nothing written.
    reader, writer = workers
    writer.register("compute1", "nova-compute", 1)
    listing = ServiceListing("nova", "internal", hidden_binaries=())
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with reader.engine.connect() as conn:
        assert listing.read(conn, UpWindow(60, now)).up == [True]
        assert listing.read(conn, UpWindow(60, now + dt.timedelta(seconds=61))).up == [False]
        assert listing.read(conn, UpWindow(60, now)).up == [True]


def test_a_filtered_listing_neither_hides_nor_forgets_the_rest(workers):
    reader, writer = workers
    for host in ("compute1", "compute2"):
        writer.register(host, "nova-compute", 1)
    writer.register("control1", "nova-scheduler", 1)
    assert sorted(listed(reader)) == ["compute1", "compute2", "control1"]
    writer.set_forced_down_by_host("compute2", "nova-compute", True)

    assert list(listed(reader, host="compute2")) == ["compute2"]
    assert list(listed(reader, binary="nova-scheduler")) == ["control1"]
    assert list(listed(reader, host="COMPUTE2")) == []  # byte for byte, as Nova's filter
    assert listed(reader)["compute2"].forced_down
    assert sorted(listed(reader)) == ["compute1", "compute2", "control1"]


def test_a_listing_of_many_changed_rows_reads_them_in_one_statement(workers):
    # Past a quarter of the rows changed, the rows are read by the listing's filters rather than by 100s of ids.
    reader, writer = workers
    states = [writer.register(f"compute{n}", "nova-compute", 1) for n in range(40)]
    listed(reader)
    for state in states[:30]:
        writer.heartbeat(state.uuid)
    seen = statements_run(reader)
    after = listed(reader)
    assert len(seen) == 2 and "services.id IN" not in seen[1]
    assert after == listed(writer)


def test_the_kept_json_is_what_the_views_build_at_every_microversion(workers):
    # views.services.ListedServicesJson joins kept texts; it must be byte for byte orjson's text of service_views,
    # across the three forms (2.1, 2.11 forced_down, 2.53 UUID ids), through changes and through "up" flipping.
    import orjson

    from novalite.api.microversion import v
    from novalite.api.views.services import ListedServicesJson, service_views

    reader, writer = workers
    states = [writer.register(f"compute{n}", "nova-compute", 1) for n in range(3)]
    as_json = ListedServicesJson()
    versions = [v("2.1"), v("2.11"), v("2.52"), v("2.53"), v("2.99")]

    def agrees(listed) -> None:
        for version in versions:
            kept = orjson.dumps({"services": as_json(listed, version, whole=True)})
            assert kept == orjson.dumps({"services": service_views(listed.states(), version)}), version

    agrees(reader.listing())
    writer.set_forced_down_by_host("compute1", "nova-compute", True)
    writer.update_by_uuid(states[2].uuid, status="disabled", disabled_reason="ünïcödé \"quoted\"", forced_down=None)
    agrees(reader.listing())
    listing = ServiceListing("nova", "internal", hidden_binaries=())
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=61)
    with reader.engine.connect() as conn:
        gone_down = listing.read(conn, UpWindow(60, later))
    assert gone_down.up == [False] * 3
    agrees(gone_down)
    writer.delete(states[0].uuid)
    agrees(reader.listing())
    assert len(as_json) == 2  # the deleted service's texts are dropped
