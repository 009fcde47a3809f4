"""``novalite db sync`` from the first revision on a populated database loses nothing (issue 5, item 4).

On the run's backend the schema is built at revision 0001 and filled with the rows a running cloud has (live,
forced-down, disabled and deleted services, servers, evacuations), then upgraded one revision at a time; each
revision's new tables get rows as soon as they exist. After every step each earlier row must read back exactly
as it did before, and each column a step adds must hold what that migration promises (its server default, or
NULL). Rows are written with SQLAlchemy Core over the reflected tables, since novalite's models describe the
head schema only. At head, ``novalite db sync`` again changes nothing, and novalite's own code reads the old rows.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from novalite import config
from novalite.cli.main import main as novalite_main
from novalite.db import engine as db_engine
from novalite.domain.services import Services, ServiceState

# Every revision in order. A new migration fails this test until it gets a step below (and rows of its own).
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")
T0 = dt.datetime(2025, 3, 1, 8, 30, 15, 123456)  # microseconds everywhere: what 0004 is about


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def new_uuid() -> str:
    return str(uuid.uuid4())


class Population:
    """Rows written at old revisions, and what each must read back as after every later upgrade."""

    def __init__(self, url: str, backend: str):
        self.url = url
        self.backend = backend
        self.engine = db_engine.make_engine(url)
        self.revision = ""
        self.tables: dict[str, sa.Table] = {}
        self.expected: dict[str, dict[int, dict[str, Any]]] = {}

    def close(self) -> None:
        self.engine.dispose()

    def _reflect(self) -> None:
        metadata = sa.MetaData()
        metadata.reflect(self.engine)
        self.tables = {name: table for name, table in metadata.tables.items() if name != "alembic_version"}

    def dump(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Every row of every table (but alembic's), by id, every column."""
        with self.engine.connect() as conn:
            return {name: {row.id: dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c.id))}
                    for name, table in self.tables.items()}

    def stored(self, value: Any) -> Any:
        """``value`` as the schema at this revision keeps it: MariaDB's DATETIME dropped the fraction of a
        second (it truncates) until 0004 made the columns DATETIME(6)."""
        if isinstance(value, dt.datetime) and self.backend == "mariadb" and self.revision < "0004":
            return value.replace(microsecond=0)
        return value

    def insert(self, table: str, **values: Any) -> dict[str, Any]:
        """Write one row; it reads back as written (server defaults filled in) and is expected from now on."""
        with self.engine.begin() as conn:
            row_id = conn.execute(sa.insert(self.tables[table]).values(**values)).inserted_primary_key[0]
            row = dict(conn.execute(sa.select(self.tables[table]).where(self.tables[table].c.id == row_id)).one()
                       ._mapping)
        written = {name: self.stored(value) for name, value in values.items()}
        assert {name: row[name] for name in written} == written, f"{table} row {row_id} at {self.revision}"
        self.expected.setdefault(table, {})[row_id] = row
        return row

    def soft_delete(self, table: str, row_id: int, when: dt.datetime) -> None:
        """Delete a row as novalite does: ``deleted`` takes the row's id, so unique keys may repeat."""
        rows = self.tables[table]
        with self.engine.begin() as conn:
            conn.execute(sa.update(rows).where(rows.c.id == row_id).values(deleted=row_id, deleted_at=when))
        self.expected[table][row_id].update(deleted=row_id, deleted_at=self.stored(when))

    def upgrade(self, revision: str, promised: dict[str, dict[str, Any]]) -> None:
        """Upgrade to ``revision``; every earlier row unchanged, every column it adds as ``promised`` (table →
        column → value; a new column not named there must be NULL)."""
        db_engine.sync(self.url, revision)
        self.revision = revision
        self._reflect()
        assert self.current_revision() == revision
        now = self.dump()
        added: dict[str, set[str]] = {}
        for table, rows in self.expected.items():
            assert set(now[table]) == set(rows), f"{table} rows after {revision}"
            for row_id, before in rows.items():
                after = now[table][row_id]
                assert {name: after[name] for name in before} == before, f"{table} row {row_id} after {revision}"
                new_columns = set(after) - set(before)
                added.setdefault(table, set()).update(new_columns)
                wanted = {name: promised.get(table, {}).get(name) for name in new_columns}
                assert {name: after[name] for name in new_columns} == wanted, f"{table} new columns, {revision}"
                rows[row_id] = after
        for table, columns in promised.items():  # a promise about a column the step did not add is a mistake here
            assert set(columns) <= added.get(table, set()), f"{revision} did not add {table} {set(columns)}"

    def current_revision(self) -> str | None:
        return db_engine.current_revision(self.engine)


# -- what each revision's tables hold -------------------------------------------------------------------

def fill_0001(pop: Population) -> None:
    """Services in every state, servers on them, evacuations in every phase."""
    svc = {"binary": "nova-compute", "topic": "compute", "version": 66}
    pop.insert("services", uuid=new_uuid(), host="compute1", **svc, report_count=1200, disabled=False,
               forced_down=False, last_seen_up=at(100.5), created_at=at(0), updated_at=at(100.5), deleted=0)
    pop.insert("services", uuid=new_uuid(), host="compute2", **svc, report_count=57, disabled=True,
               disabled_reason="fenced by novalite-monitor", forced_down=True, last_seen_up=at(40.25),
               created_at=at(1), updated_at=at(90.000001), deleted=0)
    pop.insert("services", uuid=new_uuid(), host="compute3", **svc, report_count=3, disabled=True,
               disabled_reason="maintenance: firmware ✓ ünïcödé", forced_down=False, created_at=at(2), deleted=0)
    # compute4 was deleted and registered again.
    gone = pop.insert("services", uuid=new_uuid(), host="compute4", **svc, report_count=9, disabled=False,
                      forced_down=True, created_at=at(3), deleted=0)
    pop.soft_delete("services", gone["id"], at(50.75))
    pop.insert("services", uuid=new_uuid(), host="compute4", **svc, report_count=0, disabled=False,
               forced_down=False, created_at=at(60), deleted=0)
    pop.insert("services", uuid=new_uuid(), host="control1", binary="nova-scheduler", topic="scheduler", version=66,
               report_count=4000, disabled=False, forced_down=False, last_seen_up=at(101), created_at=at(0),
               deleted=0)
    conductor = pop.insert("services", uuid=new_uuid(), host="control1", binary="nova-conductor", topic="conductor",
                           version=61, report_count=1, disabled=False, forced_down=False, created_at=at(0), deleted=0)
    pop.soft_delete("services", conductor["id"], at(5))
    # Only what is required: the schema's defaults fill the rest.
    defaults = pop.insert("services", uuid=new_uuid(), host="compute5", binary="nova-compute", created_at=at(70))
    assert (defaults["report_count"], defaults["disabled"], defaults["forced_down"], defaults["version"],
            defaults["deleted"], defaults["disabled_reason"], defaults["topic"]) == (0, False, False, 0, 0, None, None)

    project, user = "6f70656e737461636b", "a0b1c2d3"
    for host, vm_state, task_state in (("compute1", "active", None), ("compute2", "active", "rebuild_spawning"),
                                       ("compute1", "stopped", None)):
        pop.insert("instances", uuid=new_uuid(), project_id=project, user_id=user, host=host, node=host,
                   vm_state=vm_state, task_state=task_state, created_at=at(10), updated_at=at(20.5), deleted=0)
    deleted = pop.insert("instances", uuid=new_uuid(), project_id=project, user_id=user, host=None, node=None,
                         vm_state="deleted", created_at=at(11), deleted=0)
    pop.soft_delete("instances", deleted["id"], at(12.5))
    for status, source, dest in (("done", "compute2", "compute1"), ("completed", "compute4", "compute1"),
                                 ("accepted", "compute2", "compute3"), ("error", "compute3", "compute1")):
        last = pop.insert("migrations", uuid=new_uuid(), instance_uuid=new_uuid(), source_compute=source,
                          source_node=source, dest_compute=dest, dest_node=dest, status=status,
                          migration_type="evacuation", created_at=at(30), updated_at=at(31.999999), deleted=0)
    pop.soft_delete("migrations", last["id"], at(33))


def fill_0002(pop: Population) -> None:
    """Hypervisors of the computes, Nova's flavors, extra specs, a private flavor's projects."""
    services = pop.expected["services"].values()
    for service in services:
        if service["binary"] == "nova-compute" and service["host"] in ("compute1", "compute2", "compute3"):
            pop.insert("compute_nodes", uuid=new_uuid(), service_id=service["id"], host=service["host"],
                       hypervisor_hostname=service["host"], hypervisor_type="fake", hypervisor_version=1000,
                       host_ip="127.0.0.1", cpu_info=json.dumps({"arch": "x86_64"}), vcpus=16, memory_mb=32768,
                       local_gb=500, vcpus_used=2, memory_mb_used=1024, local_gb_used=2, running_vms=2,
                       disk_available_least=480, cpu_allocation_ratio=16.0, ram_allocation_ratio=1.5,
                       disk_allocation_ratio=1.0, created_at=at(5), updated_at=at(99.5), deleted=0)
    gone = pop.insert("compute_nodes", uuid=new_uuid(), service_id=None, host="compute4",
                      hypervisor_hostname="compute4", hypervisor_type="fake", cpu_info="{}", vcpus=8,
                      memory_mb=8192, local_gb=100, created_at=at(6), deleted=0)
    pop.soft_delete("compute_nodes", gone["id"], at(50.75))
    assert (gone["vcpus_used"], gone["running_vms"], gone["cpu_allocation_ratio"]) == (0, 0, 1.0)
    tiny = pop.insert("flavors", flavorid="1", name="m1.tiny", memory_mb=512, vcpus=1, root_gb=1,
                      created_at=at(0))
    assert (tiny["is_public"], tiny["disabled"], tiny["rxtx_factor"], tiny["swap"]) == (True, False, 1.0, 0)
    pop.insert("flavors", flavorid="2", name="m1.small", memory_mb=2048, vcpus=1, root_gb=20, ephemeral_gb=5,
               swap=512, rxtx_factor=2.0, description="small — with a description", created_at=at(0),
               updated_at=at(1.25))
    private = pop.insert("flavors", flavorid=new_uuid(), name="gpu.private", memory_mb=65536, vcpus=32, root_gb=80,
                         is_public=False, disabled=True, created_at=at(2))
    pop.insert("flavor_extra_specs", flavor_id=tiny["id"], key="hw:cpu_policy", value="dedicated", created_at=at(0))
    pop.insert("flavor_extra_specs", flavor_id=private["id"], key="pci_passthrough:alias", value="a100:1",
               created_at=at(2))
    pop.insert("flavor_extra_specs", flavor_id=private["id"], key="novalite:evacuable", value=None, created_at=at(2))
    pop.insert("flavor_projects", flavor_id=private["id"], project_id="6f70656e737461636b", created_at=at(2))


def fill_0003(pop: Population) -> None:
    """What the scheduler claimed: an allocation per placed server, two for the one being evacuated."""
    nodes = {row["host"]: row for row in pop.expected["compute_nodes"].values() if row["deleted"] == 0}
    for server in pop.expected["instances"].values():
        if server["host"] in nodes:
            pop.insert("allocations", consumer_uuid=server["uuid"], compute_node_id=nodes[server["host"]]["id"],
                       vcpus=1, memory_mb=512, disk_gb=1, created_at=at(10))
    moving = next(s for s in pop.expected["instances"].values() if s["host"] == "compute2")
    pop.insert("allocations", consumer_uuid=moving["uuid"], compute_node_id=nodes["compute1"]["id"], vcpus=1,
               memory_mb=512, disk_gb=1, created_at=at(30.5), updated_at=at(30.500001))
    with pop.engine.begin() as conn:  # the claims bumped the node's generation, as the scheduler does
        nodes_table = pop.tables["compute_nodes"]
        conn.execute(sa.update(nodes_table).where(nodes_table.c.id == nodes["compute1"]["id"]).values(generation=3))
    pop.expected["compute_nodes"][nodes["compute1"]["id"]]["generation"] = 3
    pop.insert("compute_nodes", uuid=new_uuid(), service_id=None, host="compute5", hypervisor_hostname="compute5",
               hypervisor_type="fake", cpu_info="{}", vcpus=4, memory_mb=4096, local_gb=40, generation=1,
               reserved_host_cpus=1, reserved_host_memory_mb=512, reserved_host_disk_mb=1024, created_at=at(70),
               deleted=0)


def fill_0004(pop: Population) -> None:
    """From now on every backend keeps microseconds: rows written after 0004 keep them (insert checks)."""
    pop.insert("services", uuid=new_uuid(), host="compute6", binary="nova-compute", topic="compute", version=70,
               report_count=2, last_seen_up=at(200.000001), created_at=at(199.999999), updated_at=at(200.000001),
               deleted=0)
    pop.insert("migrations", uuid=new_uuid(), instance_uuid=new_uuid(), source_compute="compute1",
               dest_compute="compute6", status="pre-migrating", migration_type="evacuation",
               created_at=at(201.654321), deleted=0)


def fill_0005(pop: Population) -> None:
    """A server as the servers API records it, with metadata, a fault and its actions; a nudge address."""
    pop.insert("services", uuid=new_uuid(), host="compute7", binary="nova-compute", topic="compute", version=73,
               nudge_address="127.0.0.1:40123", created_at=at(300), deleted=0)
    flavor = next(f for f in pop.expected["flavors"].values() if f["name"] == "m1.tiny")
    server = new_uuid()
    pop.insert("instances", uuid=server, project_id="6f70656e737461636b", user_id="a0b1c2d3", host="compute7",
               node="compute7", vm_state="error", power_state=0, display_name="api-1", hostname="api-1",
               instance_type_id=flavor["id"], memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=0,
               flavor=json.dumps({"name": "m1.tiny", "extra_specs": {}}), availability_zone="nova",
               requested_availability_zone=None, reservation_id="r-0a1b2c3d", launch_index=0, locked=True,
               locked_by="admin", requested_host="compute7", requested_host_forced=True,
               launched_at=at(301.5), created_at=at(300.25), deleted=0)
    pop.insert("instance_metadata", instance_uuid=server, key="novalite:priority", value="10", created_at=at(300.25),
               deleted=0)
    pop.insert("instance_faults", instance_uuid=server, code=500, message="No valid host was found.",
               details="Traceback…", host="compute7", created_at=at(302), deleted=0)
    action = pop.insert("instance_actions", action="create", instance_uuid=server, request_id="req-" + new_uuid(),
                        user_id="a0b1c2d3", project_id="6f70656e737461636b", start_time=at(300.25),
                        created_at=at(300.25), deleted=0)
    pop.insert("instance_actions_events", action_id=action["id"], event="compute__do_build_and_run_instance",
               start_time=at(301), finish_time=at(302.000002), result="Error", traceback="Traceback…",
               host="compute7", created_at=at(301), deleted=0)
    pop.insert("migrations", uuid=new_uuid(), instance_uuid=server, source_compute="compute7", dest_compute="compute1",
               dest_host="127.0.0.1", status="accepted", migration_type="evacuation", user_id="a0b1c2d3",
               project_id="6f70656e737461636b", old_instance_type_id=flavor["id"], new_instance_type_id=flavor["id"],
               dest_forced=True, created_at=at(303), deleted=0)


def fill_0006(pop: Population) -> None:
    """A service changed three times since 0006."""
    pop.insert("services", uuid=new_uuid(), host="compute8", binary="nova-compute", topic="compute", version=74,
               created_at=at(400), row_version=3, deleted=0)


# revision → (the columns it adds to existing rows and what they hold, the rows its tables get)
STEPS = {
    "0001": ({}, fill_0001),
    "0002": ({}, fill_0002),
    "0003": ({"compute_nodes": {"generation": 0, "reserved_host_cpus": 0, "reserved_host_memory_mb": 0,
                                "reserved_host_disk_mb": 0}}, fill_0003),
    "0004": ({}, fill_0004),
    # New instance and migration columns are NULL on old rows but for the flags, which are false.
    "0005": ({"instances": {"locked": False, "requested_host_forced": False},
              "migrations": {"hidden": False, "cross_cell_move": False, "dest_forced": False}}, fill_0005),
    # Every service starts at row_version 0; its next update makes it 1 (models.Service).
    "0006": ({"services": {"row_version": 0}}, fill_0006),
}


@pytest.fixture
def population(database_url, backend):
    pop = Population(database_url, backend)
    yield pop
    pop.close()


@pytest.mark.no_database
def test_the_revisions_listed_here_are_all_of_them():
    script = ScriptDirectory(str(db_engine.MIGRATIONS))
    assert tuple(rev.revision for rev in reversed(list(script.walk_revisions()))) == REVISIONS == tuple(STEPS)


def test_upgrade_from_the_first_revision_on_a_populated_database_loses_nothing(population, database_url, backend,
                                                                               monkeypatch, capsys):
    for revision in REVISIONS:
        promised, fill = STEPS[revision]
        population.upgrade(revision, promised)
        fill(population)
    assert population.current_revision() == db_engine.head_revision()
    if backend == "mariadb":  # 0004: every timestamp column keeps microseconds now
        columns = sa.inspect(population.engine).get_columns("services")
        assert {c["name"]: c["type"].fsp for c in columns if c["name"].endswith(("_at", "_up"))} == \
            dict.fromkeys(("created_at", "updated_at", "deleted_at", "last_seen_up"), 6)

    # `novalite db sync` at head changes nothing, and `db status` says head.
    before = population.dump()
    assert before == population.expected | {t: {} for t in population.tables if t not in population.expected}
    monkeypatch.setenv("NOVALITE_DATABASE__CONNECTION", database_url)
    monkeypatch.setenv("NOVALITE_API__AUTH_STRATEGY", "noauth2")
    assert novalite_main(["db", "sync"]) == 0
    assert population.dump() == before
    assert novalite_main(["db", "status"]) == 0
    assert f"current: {db_engine.head_revision()}" in capsys.readouterr().out

    # novalite's own code reads the rows written at 0001: flags and reasons as they were, deleted ones gone.
    settings = config.load(environ={"NOVALITE_DATABASE__CONNECTION": database_url,
                                    "NOVALITE_API__AUTH_STRATEGY": "noauth2"})
    listed = {(s.host, s.binary): s for s in map(ServiceState._make, Services(population.engine, settings).list())}
    assert (listed["compute2", "nova-compute"].forced_down, listed["compute2", "nova-compute"].disabled_reason) == \
        (True, "fenced by novalite-monitor")
    assert listed["compute3", "nova-compute"].disabled_reason == "maintenance: firmware ✓ ünïcödé"
    assert not listed["compute4", "nova-compute"].forced_down  # the live record, not the deleted one
    assert ("control1", "nova-conductor") not in listed
    assert len(listed) == 9  # compute1-8 and the scheduler
