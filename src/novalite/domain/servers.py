"""Servers: create, read, delete, stop, start and evacuate, with Nova's rules and messages.

The API process only records intent: a new server is ``building``/``scheduling`` until the scheduler
places it; a stop is ``powering-off`` until its host's agent has stopped it; an evacuation is a
migration in ``accepted`` until the scheduler picks a destination. After recording, the API nudges
whoever acts next (novalite.nudge); the database rows are the work, the nudge only says "look now".

Nova's checks and messages, in Nova's order (spec 4.6, 4.8, 6):
- a server another project owns is "not found" to non-admins;
- stop/start/evacuate need the vm_state and task_state Nova's check_instance_state names, else 409
  "Cannot '<action>' instance <uuid> while it is in <vm_state|task_state> <state>";
- evacuate needs the source host's compute service *not* up (400 "Compute service of <host> is still
  in use."); a delete whose host is not up is done here and now (Nova's local delete).
"""

from __future__ import annotations

import json
import math
import re
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Row

from novalite.config import Settings
from novalite.db import api as services_db
from novalite.db import servers as db
from novalite.domain import states
from novalite.domain.flavors import Flavor
from novalite.domain.liveness import UpWindow
from novalite.domain.scheduler import RequestSpec, Scheduler
from novalite.exceptions import BadRequest, Conflict, NotFound
from novalite.nudge import Nudger

COMPUTE = "nova-compute"
SCHEDULER = "nova-scheduler"
EVACUABLE_VM_STATES = (states.ACTIVE, states.STOPPED, states.ERROR)  # Nova's check_instance_state for evacuate
# How often an evacuation re-checks a server that changed between its read and its conditional update.
EVACUATE_ATTEMPTS = 3


@dataclass(frozen=True)
class Requester:
    """Who asks, and the request's id (recorded with instance actions)."""

    user_id: str | None
    project_id: str | None
    is_admin: bool
    request_id: str | None = None


@dataclass(frozen=True)
class Evacuation:
    """An evacuation as recorded: its migration (``accepted``) and where the server leaves from."""

    uuid: str  # the migration's
    instance_uuid: str
    source_compute: str | None
    dest_compute: str | None  # the asked-for host, or None for the scheduler to choose


class InstanceNotFound(NotFound):
    def __init__(self, uuid: str):
        super().__init__(f"Instance {uuid} could not be found.")


class InstanceInvalidState(Conflict):
    """Nova's raise_http_conflict_for_instance_invalid_state."""

    def __init__(self, action: str, uuid: str, attr: str, state: str | None):
        super().__init__(f"Cannot '{action}' instance {uuid} while it is in {attr} {state}")


def instance_name(row: Row) -> str:
    return instance_name_of(row.id)


def instance_name_of(instance_id: int) -> str:
    """Nova's default instance_name_template, "instance-%08x" of the instance's row id."""
    return f"instance-{instance_id:08x}"


def hostname_of(display_name: str) -> str:
    """Nova's sanitize_hostname: lower case, only [a-z0-9.-], at most 63 characters."""
    name = re.sub(r"[ _]", "-", display_name.lower())
    name = re.sub(r"[^\w.-]+", "", name, flags=re.ASCII)
    name = name.strip(".-")[:63].rstrip(".-")
    return name or "server"


def request_spec_of(row: Row, **placement) -> RequestSpec:
    """What the scheduler must find room for: the flavor's vCPUs, RAM, and disk (root + ephemeral + swap)."""
    swap_mb = json.loads(row.flavor or "{}").get("swap", 0)
    return RequestSpec(consumer_uuid=row.uuid, vcpus=row.vcpus or 0, memory_mb=row.memory_mb or 0,
                       disk_gb=(row.root_gb or 0) + (row.ephemeral_gb or 0) + math.ceil(swap_mb / 1024),
                       **placement)


def flavor_snapshot(flavor: Flavor) -> str:
    return json.dumps({
        "flavorid": flavor.flavorid, "name": flavor.name, "memory_mb": flavor.memory_mb, "vcpus": flavor.vcpus,
        "root_gb": flavor.root_gb, "ephemeral_gb": flavor.ephemeral_gb, "swap": flavor.swap,
        "rxtx_factor": flavor.rxtx_factor, "description": flavor.description,
        "extra_specs": flavor.extra_specs,
    })


class Servers:
    def __init__(self, engine: Engine, settings: Settings, nudger: Nudger | None = None):
        self.engine = engine
        self.settings = settings
        self.nudger = nudger or Nudger()
        self.scheduler = Scheduler(engine, settings)

    # -- reading -----------------------------------------------------------------------------------

    def get(self, who: Requester, uuid: str) -> Row:
        """The live server, if ``who`` may see it (admins see every project's); else InstanceNotFound."""
        with self.engine.connect() as conn:
            row = db.instance_get(conn, uuid)
        if row is None or not (who.is_admin or row.project_id == who.project_id):
            raise InstanceNotFound(uuid)
        return row

    def host_statuses(self, hosts) -> dict[str, str]:
        """Nova's host_status of each host (spec 4.8): DOWN, MAINTENANCE, UP or UNKNOWN; "" for no host or
        a host without a nova-compute service."""
        window = UpWindow(self.settings.effective_service_down_time)
        out = {}
        with self.engine.connect() as conn:
            for host in set(hosts):
                if not host:
                    out[host] = ""
                    continue
                svc = services_db.service_get_by_host_and_binary(conn, host, COMPUTE)
                if svc is None:
                    out[host] = ""  # Nova's HostStatus.NONE when the host has no nova-compute
                elif svc.forced_down:
                    out[host] = "DOWN"
                elif svc.disabled:
                    out[host] = "MAINTENANCE"
                elif window.is_up(svc.forced_down, svc.last_seen_up, svc.created_at):
                    out[host] = "UP"
                else:
                    out[host] = "UNKNOWN"
        return out

    def _compute_service(self, conn: Connection, host: str) -> Row | None:
        return services_db.service_get_by_host_and_binary(conn, host, COMPUTE)

    def _is_up(self, svc: Row | None) -> bool:
        window = UpWindow(self.settings.effective_service_down_time)
        return svc is not None and window.is_up(svc.forced_down, svc.last_seen_up, svc.created_at)

    # -- nudges ------------------------------------------------------------------------------------

    def nudge_scheduler(self) -> None:
        with self.engine.connect() as conn:
            self.nudger.send(services_db.nudge_addresses(conn, SCHEDULER))

    def nudge_hosts(self, hosts) -> None:
        hosts = [h for h in set(hosts) if h]
        if not hosts:
            return
        with self.engine.connect() as conn:
            self.nudger.send(services_db.nudge_addresses(conn, COMPUTE, hosts))

    # -- create ------------------------------------------------------------------------------------

    def create(self, who: Requester, *, name: str, flavor: Flavor, image_ref: str | None,
               availability_zone: str | None = None, metadata: dict[str, str] | None = None,
               description: str | None = None, key_name: str | None = None, count: int = 1,
               requested_host: str | None = None, force_host: bool = False,
               access_ip_v4: str | None = None, access_ip_v6: str | None = None,
               user_data: str | None = None, config_drive: bool = False,
               hostname: str | None = None) -> list[Row]:
        """Record ``count`` new servers as building/scheduling (one reservation), then nudge the scheduler.

        ``requested_host`` must be a compute host (404 "Compute host <h> could not be found." otherwise);
        forced, the scheduler's filters are skipped for it, as for Nova's "zone:host".
        """
        zone = availability_zone or None
        if zone is not None:
            self._check_zone(zone)
        if requested_host is not None:
            with self.engine.connect() as conn:
                if self._compute_service(conn, requested_host) is None:
                    raise NotFound(f"Compute host {requested_host} could not be found.")
        reservation_id = "r-" + uuidlib.uuid4().hex[:8]
        rows = []
        with self.engine.begin() as conn:
            for index in range(count):
                display_name = name if count == 1 else f"{name}-{index + 1}"
                values = dict(
                    uuid=str(uuidlib.uuid4()), project_id=who.project_id, user_id=who.user_id,
                    vm_state=states.BUILDING, task_state=states.SCHEDULING, power_state=states.NOSTATE,
                    display_name=name, display_description=description,
                    hostname=hostname or hostname_of(display_name),
                    image_ref=image_ref, instance_type_id=flavor.id, memory_mb=flavor.memory_mb,
                    vcpus=flavor.vcpus, root_gb=flavor.root_gb, ephemeral_gb=flavor.ephemeral_gb,
                    flavor=flavor_snapshot(flavor), requested_availability_zone=zone, availability_zone=zone,
                    key_name=key_name, reservation_id=reservation_id, launch_index=index, progress=0,
                    access_ip_v4=access_ip_v4, access_ip_v6=access_ip_v6, user_data=user_data,
                    config_drive="True" if config_drive else "", locked=False,
                    requested_host=requested_host, requested_host_forced=force_host,
                )
                row = db.instance_create(conn, values, metadata or {})
                db.action_start(conn, instance_uuid=row.uuid, action="create", request_id=who.request_id,
                                user_id=who.user_id, project_id=who.project_id)
                rows.append(row)
        self.nudge_scheduler()
        return rows

    def _check_zone(self, zone: str) -> None:
        """Nova: a zone no compute host is in is 400 "The requested availability zone is not available"."""
        if zone != self.settings.DEFAULT.default_availability_zone:
            raise BadRequest("The requested availability zone is not available")

    # -- delete ------------------------------------------------------------------------------------

    def delete(self, who: Requester, uuid: str) -> None:
        """Nova's delete: at once in the database when the server has no host or its host is not up
        (local delete: the host's copy is reaped when it returns); otherwise its agent destroys it first."""
        row = self.get(who, uuid)
        with self.engine.begin() as conn:
            svc = self._compute_service(conn, row.host) if row.host else None
            local = row.host is None or not self._is_up(svc)
            db.action_start(conn, instance_uuid=uuid, action="delete", request_id=who.request_id,
                            user_id=who.user_id, project_id=who.project_id)
            if local:
                db.instance_destroy(conn, uuid)
            else:
                db.instance_update(conn, uuid, task_state=states.DELETING)
        if local:
            self.scheduler.release(uuid)
        else:
            self.nudge_hosts([row.host])

    # -- stop and start ---------------------------------------------------------------------------

    def _act(self, who: Requester, uuid: str, action: str, allowed_vm_states: tuple[str, ...],
             task_state: str) -> None:
        row = self.get(who, uuid)
        if row.vm_state not in allowed_vm_states:
            raise InstanceInvalidState(action, uuid, "vm_state", row.vm_state)
        if row.task_state is not None:
            raise InstanceInvalidState(action, uuid, "task_state", row.task_state)
        with self.engine.begin() as conn:
            if not db.instance_update(conn, uuid, {"vm_state": allowed_vm_states, "task_state": None},
                                      task_state=task_state):
                now = db.instance_get(conn, uuid)
                if now is None:
                    raise InstanceNotFound(uuid)
                raise InstanceInvalidState(action, uuid, "task_state", now.task_state)
            db.action_start(conn, instance_uuid=uuid, action=action, request_id=who.request_id,
                            user_id=who.user_id, project_id=who.project_id)
        self.nudge_hosts([row.host])

    def stop(self, who: Requester, uuid: str) -> None:
        """os-stop: an active or errored server is powered off by its host (Nova's check_instance_state)."""
        self._act(who, uuid, "stop", (states.ACTIVE, states.ERROR), states.POWERING_OFF)

    def start(self, who: Requester, uuid: str) -> None:
        """os-start: a stopped server is powered on by its host."""
        self._act(who, uuid, "start", (states.STOPPED,), states.POWERING_ON)

    # -- evacuate ----------------------------------------------------------------------------------

    def evacuate(self, who: Requester, uuid: str, *, host: str | None = None, force: bool = False,
                 target_state: str | None = None, authorize: Callable[[Row], None] | None = None) -> Evacuation:
        """Spec 6: record the evacuation (rebuilding + a migration ``accepted``) and nudge the scheduler.

        The server is read (404 if ``who`` may not see it), then ``authorize`` is called with it: the
        caller's own checks that Nova makes between the server's read and the evacuation's (policy against
        the server's owner, the microversion's rules; raising stops the evacuation). Then steps 8-11: target
        host 404, same host 400, vm_state and task_state 409, source compute up 400.

        One connection and one transaction: the reads (the server with its host's compute service in one
        statement; the schedulers' nudge addresses, before the first write so SQLite's write lock is not
        held for them), the conditional update (the server still in the state and on the host the checks
        saw, so of two racing evacuations one wins), the action and the migration."""
        migration_uuid = str(uuidlib.uuid4())
        with self.engine.begin() as conn:
            row = self._evacuable(conn, who, uuid)
            if authorize is not None:
                authorize(row)
            # Nova's service_get_by_compute_host: the host must run a (live) nova-compute service.
            if host is not None and self._compute_service(conn, host) is None:
                raise NotFound(f"Compute host {host} not found.")
            schedulers = services_db.nudge_addresses(conn, SCHEDULER)
            row = self._mark_rebuilding(conn, uuid, row, host, target_state)
            db.action_start(conn, instance_uuid=uuid, action="evacuate", request_id=who.request_id,
                            user_id=who.user_id, project_id=who.project_id)
            db.migration_create(
                conn, uuid=migration_uuid, instance_uuid=uuid, source_compute=row.host, source_node=row.node,
                dest_compute=host, status=states.MIGRATION_ACCEPTED, migration_type=states.EVACUATION,
                dest_forced=bool(host and force), user_id=who.user_id, project_id=who.project_id)
        self.nudger.send(schedulers)
        return Evacuation(uuid=migration_uuid, instance_uuid=uuid, source_compute=row.host, dest_compute=host)

    def _evacuable(self, conn: Connection, who: Requester, uuid: str) -> Row:
        """The live server, if ``who`` may see it, with its host's nova-compute service (``host_service_*``
        columns); else InstanceNotFound."""
        row = db.instance_with_host_service(conn, uuid)
        if row is None or not (who.is_admin or row.project_id == who.project_id):
            raise InstanceNotFound(uuid)
        return row

    def _mark_rebuilding(self, conn: Connection, uuid: str, row: Row, host: str | None,
                         target_state: str | None) -> Row:
        """Nova's checks in order (same host 400, vm_state and task_state 409, source up 400), then task_state
        rebuilding on condition that the server is still as checked. Should it have changed since ``row``
        was read, the checks run again on what it is now. Returns the row the update was judged on."""
        for _attempt in range(EVACUATE_ATTEMPTS):
            self._check_evacuable(uuid, row, host)
            if db.instance_update(conn, uuid, {"vm_state": EVACUABLE_VM_STATES, "task_state": None, "host": row.host},
                                  task_state=states.REBUILDING, evacuate_target_state=target_state):
                return row
            row = db.instance_with_host_service(conn, uuid, lock=True)  # as it is now, not as first seen
            if row is None:
                raise InstanceNotFound(uuid)
        raise InstanceInvalidState("evacuate", uuid, "task_state", row.task_state)

    def _check_evacuable(self, uuid: str, row: Row, host: str | None) -> None:
        if host == row.host:  # as Nova compares: a server on no host, evacuated to no host, is refused too
            raise BadRequest("The target host can't be the same one.")
        if row.vm_state not in EVACUABLE_VM_STATES:
            raise InstanceInvalidState("evacuate", uuid, "vm_state", row.vm_state)
        if row.task_state is not None:
            raise InstanceInvalidState("evacuate", uuid, "task_state", row.task_state)
        window = UpWindow(self.settings.effective_service_down_time)
        if row.host_service_id is not None and window.is_up(
                row.host_service_forced_down, row.host_service_last_seen_up, row.host_service_created_at):
            raise BadRequest(f"Compute service of {row.host} is still in use.")
