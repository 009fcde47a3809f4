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

It returns the hosts that got work, so the caller nudges their agents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from novalite.config import Settings
from novalite.db import servers as db
from novalite.domain import states
from novalite.domain.scheduler import Scheduler, Selection, StaleRequest
from novalite.domain.servers import request_spec_of
from novalite.exceptions import NoValidHost

LOG = logging.getLogger("novalite.conductor")
BATCH = 500  # rows read per query; a pass repeats until nothing is left


@dataclass
class PassResult:
    placed: int = 0
    failed: int = 0
    hosts: set[str] = field(default_factory=set)


class Conductor:
    def __init__(self, engine: Engine, settings: Settings, scheduler_host: str = "scheduler"):
        self.engine = engine
        self.settings = settings
        self.scheduler = Scheduler(engine, settings)
        self.host = scheduler_host

    def place_pending(self) -> PassResult:
        result = PassResult()
        while True:
            with self.engine.connect() as conn:
                builds = db.instances_needing_placement(conn, BATCH)
                evacuations = db.migrations_with_status(conn, states.MIGRATION_ACCEPTED, states.EVACUATION, BATCH)
            for row in builds:
                self._place_build(row, result)
            for migration in evacuations:
                self._place_evacuation(migration, result)
            if len(builds) < BATCH and len(evacuations) < BATCH:
                return result

    # -- new servers -----------------------------------------------------------------------------

    def _place_build(self, row, result: PassResult) -> None:
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
                self._event(conn, row.uuid, "create", "conductor_schedule_and_build_instances")
            return placed

        try:
            where = self.scheduler.select_destination(spec, on_claimed=record)
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
                    self._event(conn, row.uuid, "create", "conductor_schedule_and_build_instances", error.message)
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

    def _place_evacuation(self, migration, result: PassResult) -> None:
        with self.engine.connect() as conn:
            row = db.instance_get(conn, migration.instance_uuid)
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
                self._event(conn, row.uuid, "evacuate", "conductor_rebuild_server")
            return moved

        try:
            where = self.scheduler.move_claim(spec, on_claimed=record)
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
                    self._event(conn, row.uuid, "evacuate", "conductor_rebuild_server", error.message)
            if not errored:  # placed by another scheduler meanwhile: not this evacuation's failure
                LOG.info("evacuation %s changed before it was placed; skipped", migration.uuid)
                return
            LOG.info("evacuation of %s from %s: %s", row.uuid, migration.source_compute, error.message)
            result.failed += 1
            return
        LOG.info("evacuation of %s from %s to %s", row.uuid, migration.source_compute, where.host)
        result.placed += 1
        result.hosts.add(where.host)

    def _event(self, conn: Connection, uuid: str, action: str, event: str, error: str | None = None) -> None:
        found = db.action_latest(conn, uuid, action)
        if found is None:
            return
        db.event_record(conn, found.id, event, host=self.host, result="Error" if error else "Success",
                        traceback=error)
        if error:
            db.action_finish(conn, found.id, message="Error")
