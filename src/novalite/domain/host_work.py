"""A compute host's work and its results: the control-plane side of the agent interface.

The work of a host is read from the database, never queued: whatever the rows say this host must do
now is its work, so a restarted agent (or a lost nudge) loses nothing. Kinds, in Nova's terms:

    spawn       a new server placed here: building/spawning, host = this host
    rebuild     an evacuation to here: its migration is pre-migrating with dest_compute = this host
                (Nova's rebuild_instance with recreate=True); "stopped" says to power it off after
    power_off   task_state powering-off          power_on   task_state powering-on
    destroy     task_state deleting

Each result is applied with the state it was started from as its precondition (Nova's
expected_task_state); when the server moved on meanwhile (deleted during its build, deleted while it
was evacuated here) the answer tells the agent to ``discard`` its copy, so no guest is left running
that the control plane does not know about.

On start, before it heartbeats, an agent cleans up after evacuations away from it (spec 6, Nova's
_destroy_evacuated_instances): ``evacuated_away`` lists the migrations from this host in accepted,
pre-migrating or done; the agent destroys its local copies and calls ``evacuation_cleaned`` for them,
which drops the host's allocations and moves done migrations to completed. A migration not yet done
keeps its status (Nova marks it completed too, and the destination then marks it done again, which
would block force-up until another restart): with the source's allocation gone, its destination
completes it straight to completed (see ``_rebuilt``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Row

from novalite.config import Settings
from novalite.db import api as services_db
from novalite.db import servers as db
from novalite.db.allocations import allocations_for_consumer
from novalite.db.engine import read_connection
from novalite.domain import states
from novalite.domain.scheduler import Scheduler
from novalite.domain.servers import instance_name
from novalite.timeutils import utcnow
from novalite.work_kinds import DESTROY, POWER_OFF, POWER_ON, REBUILD, SPAWN

LOG = logging.getLogger("novalite.host_work")
# The task_states pending() makes a task of (a spawn also needs vm_state building).
_TASK_STATES_WITH_WORK = (states.SPAWNING, states.POWERING_OFF, states.POWERING_ON, states.DELETING)

# Instance action events, named as Nova's compute manager names them.
EVENTS = {SPAWN: "compute__do_build_and_run_instance", REBUILD: "compute_rebuild_instance",
          POWER_OFF: "compute_stop_instance", POWER_ON: "compute_start_instance",
          DESTROY: "compute_terminate_instance"}
ACTIONS = {SPAWN: "create", REBUILD: "evacuate", POWER_OFF: "stop", POWER_ON: "start", DESTROY: "delete"}


@dataclass
class Task:
    kind: str
    instance_uuid: str
    guest: dict = field(default_factory=dict)  # for spawn and rebuild: what the driver's GuestSpec needs
    migration_uuid: str | None = None
    stopped: bool = False  # rebuild: leave the guest powered off (the server was stopped, or 2.95+)

    def to_json(self) -> dict:
        return {"kind": self.kind, "instance_uuid": self.instance_uuid, "guest": self.guest,
                "migration_uuid": self.migration_uuid, "stopped": self.stopped}


@dataclass
class Result:
    kind: str
    instance_uuid: str
    ok: bool
    migration_uuid: str | None = None
    power_state: int | None = None
    error: str | None = None  # the failure's message (ok false)
    details: str | None = None  # its traceback


def _guest(row: Row) -> dict:
    flavor = json.loads(row.flavor or "{}")
    return {"uuid": row.uuid, "name": instance_name(row), "vcpus": row.vcpus or 0,
            "memory_mb": row.memory_mb or 0, "root_gb": row.root_gb or 0, "ephemeral_gb": row.ephemeral_gb or 0,
            "image_ref": row.image_ref, "flavor": flavor.get("name")}


class HostWork:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.scheduler = Scheduler(engine, settings)

    # -- what to do ------------------------------------------------------------------------------

    def pending(self, service_uuid: str) -> list[Task] | None:
        """The work of the host of the live service ``service_uuid`` (None if there is none), read on one connection:
        an agent's poll, which 10,000 hosts make every work_poll_interval, costs three statements when no evacuation
        is coming here."""
        tasks = []
        with read_connection(self.engine) as conn:
            service = services_db.service_get_by_uuid(conn, service_uuid)
            if service is None:
                return None
            host = service.host
            # Only the instances some task is for: a poll of a host with no work loads no server.
            for row in db.instances_on_host_in(conn, host, _TASK_STATES_WITH_WORK):
                if row.vm_state == states.BUILDING and row.task_state == states.SPAWNING:
                    tasks.append(Task(SPAWN, row.uuid, _guest(row)))
                elif row.task_state == states.POWERING_OFF:
                    tasks.append(Task(POWER_OFF, row.uuid))
                elif row.task_state == states.POWERING_ON:
                    tasks.append(Task(POWER_ON, row.uuid))
                elif row.task_state == states.DELETING:
                    tasks.append(Task(DESTROY, row.uuid))
            migrations = db.evacuations_to(conn, host, states.MIGRATION_PRE_MIGRATING)
            rows = {row.uuid: row for row in db.instances_get(conn, [m.instance_uuid for m in migrations])}
        for migration in migrations:
            row = rows.get(migration.instance_uuid)
            if row is None:
                continue
            stopped = row.vm_state == states.STOPPED or (
                row.evacuate_target_state == states.STOPPED and row.vm_state != states.ERROR)
            tasks.append(Task(REBUILD, row.uuid, _guest(row), migration_uuid=migration.uuid, stopped=stopped))
        return tasks

    # -- what was done ---------------------------------------------------------------------------

    def apply(self, host: str, results: list[Result]) -> list[dict]:
        """Apply each result in its own transaction; one answer per result: {"instance_uuid", "applied",
        "discard"} (discard: the server is no longer this host's, destroy the local copy)."""
        answers = []
        for result in results:
            try:
                with self.engine.begin() as conn:
                    applied, discard, release = self._apply(conn, host, result)
            except Exception:
                LOG.exception("cannot apply %s of %s from %s", result.kind, result.instance_uuid, host)
                raise
            for consumer, on_host in release:
                self.scheduler.release(consumer, host=on_host)
            answers.append({"instance_uuid": result.instance_uuid, "applied": applied, "discard": discard})
        return answers

    def _apply(self, conn: Connection, host: str, result: Result) -> tuple[bool, bool, list]:
        """(applied, discard, [(consumer, host or None) to release]) for one result."""
        uuid = result.instance_uuid
        if result.kind == REBUILD:
            return self._rebuilt(conn, host, result)
        expected = {SPAWN: {"host": host, "vm_state": states.BUILDING, "task_state": states.SPAWNING},
                    POWER_OFF: {"host": host, "task_state": states.POWERING_OFF},
                    POWER_ON: {"host": host, "task_state": states.POWERING_ON},
                    DESTROY: {"host": host, "task_state": states.DELETING}}[result.kind]
        now = utcnow()
        if result.kind == DESTROY:
            if result.ok:
                applied = db.instance_destroy(conn, uuid, expected)
                self._event(conn, uuid, result, host)
                return applied, False, [(uuid, None)] if applied else []
            applied = db.instance_update(conn, uuid, expected, task_state=None)
        elif not result.ok:
            values = {"task_state": None}
            if result.kind == SPAWN:
                values["vm_state"] = states.ERROR
            applied = db.instance_update(conn, uuid, expected, **values)
        elif result.kind == SPAWN:
            applied = db.instance_update(conn, uuid, expected, vm_state=states.ACTIVE, task_state=None,
                                         power_state=result.power_state or states.RUNNING, launched_at=now,
                                         progress=None)
        elif result.kind == POWER_OFF:
            applied = db.instance_update(conn, uuid, expected, vm_state=states.STOPPED, task_state=None,
                                         power_state=result.power_state or states.SHUTDOWN)
        else:
            applied = db.instance_update(conn, uuid, expected, vm_state=states.ACTIVE, task_state=None,
                                         power_state=result.power_state or states.RUNNING)
        if applied:
            self._event(conn, uuid, result, host)
            if not result.ok:
                db.fault_create(conn, uuid, 500, result.error or "Unknown error", result.details or "", host)
        release = [(uuid, None)] if (applied and result.kind == SPAWN and not result.ok) else []
        # A spawn whose server was deleted (or placed elsewhere) meanwhile leaves a guest nobody owns; a
        # spawn reported again (its first report was applied but its answer lost) leaves the server's own.
        discard = not applied and result.kind == SPAWN and result.ok and not _lives_on(conn, uuid, host)
        return applied, discard, release

    def _rebuilt(self, conn: Connection, host: str, result: Result) -> tuple[bool, bool, list]:
        """An evacuation's destination finished (or failed) its rebuild (spec 6's lifecycle)."""
        uuid = result.instance_uuid
        migration = db.migration_get(conn, result.migration_uuid) if result.migration_uuid else None
        if migration is None or migration.instance_uuid != uuid or migration.dest_compute != host:
            return False, result.ok, []
        if migration.status != states.MIGRATION_PRE_MIGRATING:
            # Reported again after it was applied (the answer was lost): the guest is the server's own.
            return False, result.ok and not _lives_on(conn, uuid, host), []
        row = db.instance_get(conn, uuid)
        expected = {"host": migration.source_compute, "task_state": (states.REBUILDING, states.REBUILD_SPAWNING)}
        if not result.ok:
            db.migration_update(conn, migration.uuid, {"status": migration.status}, status=states.MIGRATION_FAILED)
            if row is not None and db.instance_update(conn, uuid, expected, vm_state=states.ERROR, task_state=None,
                                                      evacuate_target_state=None):
                self._event(conn, uuid, result, host)
                db.fault_create(conn, uuid, 500, result.error or "Unknown error", result.details or "", host)
            return True, False, [(uuid, host)]
        node = migration.dest_node or host
        stopped = result.power_state == states.SHUTDOWN
        moved = row is not None and db.instance_update(
            conn, uuid, expected, host=host, node=node, availability_zone=self._zone(),
            vm_state=states.STOPPED if stopped else states.ACTIVE, task_state=None,
            power_state=result.power_state or states.RUNNING, evacuate_target_state=None, launched_at=utcnow())
        if not moved:
            # Deleted while it was evacuated here (or taken away by an operator): not ours after all.
            db.migration_update(conn, migration.uuid, {"status": migration.status}, status=states.MIGRATION_FAILED)
            return False, True, [(uuid, host)]
        # The source may already have cleaned up after this evacuation (it restarted meanwhile and dropped
        # its allocation): then nothing is left to complete, and done would wait for a restart that
        # already happened.
        source_cleaned = not any(a.host == migration.source_compute for a in allocations_for_consumer(conn, uuid))
        final = states.MIGRATION_COMPLETED if source_cleaned else states.MIGRATION_DONE
        db.migration_update(conn, migration.uuid, {"status": migration.status}, status=final)
        self._event(conn, uuid, result, host)
        return True, False, []

    def _zone(self) -> str:
        return self.settings.DEFAULT.default_availability_zone

    @staticmethod
    def _event(conn: Connection, uuid: str, result: Result, host: str) -> None:
        action = db.action_latest(conn, uuid, ACTIONS[result.kind])
        if action is None:
            return
        db.event_record(conn, action.id, EVENTS[result.kind], host=host,
                        result="Success" if result.ok else "Error",
                        traceback=None if result.ok else (result.details or result.error))
        db.action_finish(conn, action.id)

    # -- the source's cleanup after evacuations (on agent start) -------------------------------------

    def evacuated_away(self, host: str) -> list[Row]:
        with self.engine.connect() as conn:
            return db.evacuations_from(conn, host, states.EVACUATION_SOURCE_CLEANUP)

    def evacuation_cleaned(self, host: str, migration_uuids: list[str]) -> int:
        """The source destroyed its copies: drop its allocations, done → completed. How many completed."""
        completed = 0
        for uuid in migration_uuids:
            with self.engine.begin() as conn:
                migration = db.migration_get(conn, uuid)
                if migration is None or migration.source_compute != host:
                    continue
                if migration.status == states.MIGRATION_DONE:
                    completed += db.migration_update(conn, uuid, {"status": states.MIGRATION_DONE},
                                                     status=states.MIGRATION_COMPLETED)
                # One still under way keeps its status; with the source's allocation gone, its destination
                # completes it straight to completed (see _rebuilt).
            self.scheduler.release(migration.instance_uuid, host=host)
        return completed

    def deleted_here(self, host: str, guest_uuids: list[str]) -> list[str]:
        """Which of this host's guests belong to servers that are deleted or live elsewhere with no
        evacuation in flight to here: the copies Nova's running-deleted reaper destroys."""
        with self.engine.connect() as conn:
            rows = {row.uuid: row for row in db.instances_get(conn, guest_uuids)}
            incoming = {m.instance_uuid for m in db.evacuations_to(conn, host, states.MIGRATION_PRE_MIGRATING)}
        reap = []
        for uuid in guest_uuids:
            row = rows.get(uuid)
            if row is None:
                continue  # never a server here: not the control plane's guest, left alone as Nova leaves it
            if row.deleted:
                reap.append(uuid)
            elif row.host != host and uuid not in incoming:
                reap.append(uuid)
        return reap


def _lives_on(conn: Connection, uuid: str, host: str) -> bool:
    row = db.instance_get(conn, uuid)
    return row is not None and row.host == host


def result_from_json(data: dict) -> Result:
    return Result(kind=data["kind"], instance_uuid=data["instance_uuid"], ok=data["ok"],
                  migration_uuid=data.get("migration_uuid"), power_state=data.get("power_state"),
                  error=data.get("error"), details=data.get("details"))
