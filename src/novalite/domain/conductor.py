"""The scheduler process's work: place new servers and evacuations, then tell their hosts.

Nova splits this between nova-conductor (build_instances, rebuild_instance) and nova-scheduler
(select_destinations); novalite's ``novalite scheduler`` process does both through this class.
One pass (``place_pending``):

- every new server (building/scheduling, no host): claim room (scheduler.select_destination) and, in
  the claim's transaction, set its host, node and zone and task_state spawning; NoValidHost → ERROR
  with Nova's fault ("No valid host was found. …", code 500);
- every evacuation migration ``accepted``: move_claim with the source ignored, pinned to the asked-for
  host (forced at 2.29-2.67 force=true), and in the claim's transaction the migration becomes
  pre-migrating with its destination; NoValidHost → migration ``error``, server ERROR (spec 6).

A pass reads its work a batch at a time, and each batch in a few statements: the pending rows, the
servers behind the evacuations, the actions their events belong to, and one HostView of every node
(scheduler.py) that the batch's placements share, each claim keeping it current. Each placement is
still its own claim transaction, so racing schedulers and the API's conditional updates behave as
with one placement at a time. After each batch the caller is told which hosts got work
(``on_batch``), so their agents start while the next batch is placed.

It returns the hosts that got work, so the caller nudges their agents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Row

from novalite.config import Settings
from novalite.db import servers as db
from novalite.domain import states
from novalite.domain.scheduler import HostView, Scheduler, Selection, StaleRequest
from novalite.domain.servers import request_spec_of
from novalite.exceptions import NoValidHost

LOG = logging.getLogger("novalite.conductor")
BATCH = 100  # rows read per query; a pass repeats until nothing is left, telling on_batch after each


@dataclass
class PassResult:
    placed: int = 0
    failed: int = 0
    hosts: set[str] = field(default_factory=set)


@dataclass
class Batch:
    """One read of pending work: new servers, accepted evacuations with their servers (live ones), and the
    id of the action each one's event goes to (instance uuid → action id)."""

    builds: list[Row]
    evacuations: list[Row]
    servers: dict[str, Row]
    create_actions: dict[str, int]
    evacuate_actions: dict[str, int]

    @property
    def full(self) -> bool:
        return len(self.builds) >= BATCH or len(self.evacuations) >= BATCH

    @property
    def consumers(self) -> list[str]:
        return [row.uuid for row in self.builds] + [m.instance_uuid for m in self.evacuations]


class Conductor:
    def __init__(self, engine: Engine, settings: Settings, scheduler_host: str = "scheduler"):
        self.engine = engine
        self.settings = settings
        self.scheduler = Scheduler(engine, settings)
        self.host = scheduler_host

    def place_pending(self, on_batch: Callable[[set[str]], None] | None = None) -> PassResult:
        """Place every pending build and evacuation; ``on_batch`` gets the hosts each batch gave work to."""
        result = PassResult()
        while True:
            batch = self._read_batch()
            if batch.builds or batch.evacuations:
                done = self._place_batch(batch)
                result.placed += done.placed
                result.failed += done.failed
                result.hosts |= done.hosts
                if on_batch is not None and done.hosts:
                    on_batch(done.hosts)
            if not batch.full:
                return result

    def _place_batch(self, batch: Batch) -> PassResult:
        done = PassResult()
        view = self.scheduler.view(batch.consumers)
        for row in batch.builds:
            self._place_build(row, batch.create_actions.get(row.uuid), view, done)
        for migration in batch.evacuations:
            self._place_evacuation(migration, batch, view, done)
        return done

    def _read_batch(self) -> Batch:
        with self.engine.connect() as conn:
            builds = db.instances_needing_placement(conn, BATCH)
            evacuations = db.migrations_with_status(conn, states.MIGRATION_ACCEPTED, states.EVACUATION, BATCH)
            uuids = [m.instance_uuid for m in evacuations]
            servers = {row.uuid: row for row in db.instances_get(conn, uuids) if not row.deleted}
            return Batch(builds, evacuations, servers,
                         db.latest_action_ids(conn, [row.uuid for row in builds], "create"),
                         db.latest_action_ids(conn, list(servers), "evacuate"))

    # -- new servers -----------------------------------------------------------------------------

    def _place_build(self, row: Row, action_id: int | None, view: HostView, result: PassResult) -> None:
        forced = bool(row.requested_host_forced)
        spec = request_spec_of(row, availability_zone=row.requested_availability_zone,
                               requested_host=None if forced else row.requested_host,
                               force_host=row.requested_host if forced else None)

        def record(conn: Connection, where: Selection) -> bool:
            placed = db.instance_update(
                conn, row.uuid, {"vm_state": states.BUILDING, "task_state": states.SCHEDULING, "host": None},
                host=where.host, node=where.nodename, task_state=states.SPAWNING,
                availability_zone=row.requested_availability_zone or self.settings.DEFAULT.default_availability_zone)
            if placed:
                self._event(conn, action_id, "conductor_schedule_and_build_instances")
            return placed

        try:
            where = self.scheduler.select_destination(spec, on_claimed=record, view=view)
        except StaleRequest:
            LOG.info("server %s changed before it was placed; skipped", row.uuid)
            return
        except NoValidHost as error:
            with self.engine.begin() as conn:
                errored = db.instance_update(conn, row.uuid, {"vm_state": states.BUILDING,
                                                              "task_state": states.SCHEDULING, "host": None},
                                             vm_state=states.ERROR, task_state=None)
                if errored:
                    db.fault_create(conn, row.uuid, 500, error.message, "", None)
                    self._event(conn, action_id, "conductor_schedule_and_build_instances", error.message)
            if not errored:  # placed by another scheduler (or deleted) meanwhile: not this server's failure
                LOG.info("server %s changed before it was placed; skipped", row.uuid)
                return
            LOG.info("server %s: %s", row.uuid, error.message)
            result.failed += 1
            return
        LOG.info("server %s placed on %s", row.uuid, where.host)
        result.placed += 1
        result.hosts.add(where.host)

    # -- evacuations -----------------------------------------------------------------------------

    def _place_evacuation(self, migration: Row, batch: Batch, view: HostView, result: PassResult) -> None:
        row = batch.servers.get(migration.instance_uuid)
        action_id = batch.evacuate_actions.get(migration.instance_uuid)
        if row is None or row.task_state != states.REBUILDING:
            with self.engine.begin() as conn:
                db.migration_update(conn, migration.uuid, {"status": states.MIGRATION_ACCEPTED},
                                    status=states.MIGRATION_FAILED)
            LOG.info("evacuation %s: server %s is gone or no longer rebuilding; failed",
                     migration.uuid, migration.instance_uuid)
            return
        forced = bool(migration.dest_forced)
        spec = request_spec_of(row, ignore_hosts=(migration.source_compute,),
                               requested_host=None if forced else migration.dest_compute,
                               force_host=migration.dest_compute if forced else None)

        def record(conn: Connection, where: Selection) -> bool:
            moved = db.migration_update(conn, migration.uuid, {"status": states.MIGRATION_ACCEPTED},
                                        status=states.MIGRATION_PRE_MIGRATING, dest_compute=where.host,
                                        dest_node=where.nodename, dest_host=where.host)
            if moved:
                self._event(conn, action_id, "conductor_rebuild_server")
            return moved

        try:
            where = self.scheduler.move_claim(spec, on_claimed=record, view=view)
        except StaleRequest:
            LOG.info("evacuation %s changed before it was placed; skipped", migration.uuid)
            return
        except NoValidHost as error:
            with self.engine.begin() as conn:
                errored = db.migration_update(conn, migration.uuid, {"status": states.MIGRATION_ACCEPTED},
                                              status=states.MIGRATION_ERROR)
                if errored:
                    if db.instance_update(conn, row.uuid, {"task_state": states.REBUILDING},
                                          vm_state=states.ERROR, task_state=None, evacuate_target_state=None):
                        db.fault_create(conn, row.uuid, 500, error.message, "", None)
                    self._event(conn, action_id, "conductor_rebuild_server", error.message)
            if not errored:  # placed by another scheduler meanwhile: not this evacuation's failure
                LOG.info("evacuation %s changed before it was placed; skipped", migration.uuid)
                return
            LOG.info("evacuation of %s from %s: %s", row.uuid, migration.source_compute, error.message)
            result.failed += 1
            return
        LOG.info("evacuation of %s from %s to %s", row.uuid, migration.source_compute, where.host)
        result.placed += 1
        result.hosts.add(where.host)

    def _event(self, conn: Connection, action_id: int | None, event: str, error: str | None = None) -> None:
        """The conductor's event of the server's action (the newest create or evacuate, read with the batch:
        the API records it in the transaction that made the work, and no newer one can start meanwhile)."""
        if action_id is None:
            return
        db.event_record(conn, action_id, event, host=self.host, result="Error" if error else "Success",
                        traceback=error)
        if error:
            db.action_finish(conn, action_id, message="Error")
