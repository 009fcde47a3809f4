"""Compute-service records: listing, enable/disable, force-down, delete, register and heartbeat.

Nova's rules for each (spec sections 3 and 4), free of HTTP: callers get ServiceState values or a
NovaError carrying Nova's status and message.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from novalite.config import Settings
from novalite.db import api as db
from novalite.db import compute_nodes as compute_nodes_db
from novalite.db.engine import read_connection
from novalite.domain.heartbeats import HeartbeatBatcher
from novalite.domain.liveness import UpWindow
from novalite.domain.service_listing import Listed, ServiceListing
from novalite.exceptions import BadRequest, Conflict, NotFound
from novalite.timeutils import isotime

COMPUTE = "nova-compute"
# Nova never lists the API's own service records.
HIDDEN_BINARIES = ("nova-osapi_compute", "nova-metadata")
TOPICS = {"nova-compute": "compute", "nova-scheduler": "scheduler", "nova-conductor": "conductor"}


def service_not_found(service_uuid: str) -> NotFound:
    return NotFound(f"Service {service_uuid} could not be found.")


class ServiceState(NamedTuple):
    id: int
    uuid: str
    host: str
    binary: str
    zone: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    updated_at: str | None  # as the API shows it (timeutils.isotime)
    up: bool


class ForceUpRefused(BadRequest):
    def __init__(self, host: str):
        super().__init__(
            f"Unable to force up host {host} as `done` evacuation migration records remain associated "
            "with the host. Ensure the compute service has been restarted, allowing these records to "
            "move to `completed` before retrying this request."
        )


def _refuse_unless_compute(binary: str) -> None:
    """Only nova-compute records can be updated through the API (Nova since Stein)."""
    if binary != COMPUTE:
        raise BadRequest(
            f"Updating a {binary} service is not supported. Only nova-compute services can be updated."
        )


class Services:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self._heartbeats = HeartbeatBatcher(engine)
        self._listing = ServiceListing(self._zone("compute"), self._zone(None), HIDDEN_BINARIES)

    # -- reading ---------------------------------------------------------------------------------

    def _zone(self, topic: str | None) -> str:
        d = self.settings.DEFAULT
        return d.default_availability_zone if topic == "compute" else d.internal_service_availability_zone

    def _window(self) -> UpWindow:
        return UpWindow(self.settings.effective_service_down_time)

    def state(self, row: Row) -> ServiceState:
        return ServiceState(
            id=row.id, uuid=row.uuid, host=row.host, binary=row.binary, zone=self._zone(row.topic),
            disabled=bool(row.disabled), disabled_reason=row.disabled_reason,
            forced_down=bool(row.forced_down), updated_at=isotime(row.updated_at),
            up=self._window().is_up(row.forced_down, row.last_seen_up, row.created_at),
        )

    def get_by_uuid(self, service_uuid: str) -> ServiceState | None:
        with self.engine.connect() as conn:
            row = db.service_get_by_uuid(conn, service_uuid)
        return None if row is None else self.state(row)

    def list(self, host: str | None = None, binary: str | None = None) -> list[tuple]:
        """Every live service, filtered by exact host and binary (an empty filter is no filter), as tuples of
        ServiceState's fields in its order (booleans may be 0/1): a listing of thousands makes no object per
        service (bench/README.md, "Listing 1,000 services"). ServiceState(*row) names the fields."""
        return self.listing(host, binary).states()

    def listing(self, host: str | None = None, binary: str | None = None) -> Listed:
        """The same listing as this process's ServiceListing gives it: only the rows changed since it last listed
        them are read whole, and the rows of unchanged services are the same tuples as last time."""
        with read_connection(self.engine) as conn:
            return self._listing.read(conn, self._window(), host=host or None, binary=binary or None)

    def minimum_version(self, binary: str = COMPUTE) -> int:
        """The lowest service version of ``binary`` that counts (not forced down, not deleted); 0 if none."""
        with self.engine.connect() as conn:
            return db.service_minimum_version(conn, binary)

    # -- legacy actions by host and binary (2.1–2.52) --------------------------------------------

    def _update_compute_by_host(self, conn: Connection, host: str, binary: str, *, forcing_up: bool = False,
                                **values) -> None:
        """Nova's checks in order (the evacuation guard when ``forcing_up``, binary, host mapping, record), folded
        around one UPDATE: the checks run when it changed nothing, to say why."""
        if binary == COMPUTE and db.service_update_by_host_and_binary(
                conn, host, binary, unless_evacuations_done=forcing_up, **values):
            return
        if forcing_up and binary == COMPUTE:
            self._check_force_up_allowed(conn, host)
        _refuse_unless_compute(binary)
        if not db.host_is_mapped(conn, host):
            raise NotFound(f"Host '{host}' is not mapped to any cell")
        raise NotFound(f"Could not find binary {binary} on host {host}.")

    def set_disabled_by_host(self, host: str, binary: str, disabled: bool, reason: str | None) -> None:
        with self.engine.begin() as conn:
            self._update_compute_by_host(conn, host, binary, disabled=disabled, disabled_reason=reason)

    def set_forced_down_by_host(self, host: str, binary: str, forced_down: bool) -> None:
        """Forcing a compute up is refused while evacuations away from it are `done` (spec 3.6): the UPDATE itself
        checks, so no evacuation can become `done` between the check and the write."""
        with self.engine.begin() as conn:
            self._update_compute_by_host(conn, host, binary, forcing_up=not forced_down, forced_down=forced_down)

    # -- update by UUID (2.53+) -------------------------------------------------------------------

    def update_by_uuid(
        self, service_uuid: str, *, status: str | None, disabled_reason: str | None, forced_down: bool | None
    ) -> ServiceState:
        """Apply the 2.53 PUT (spec 3.4 steps 4–9) in one transaction."""
        with self.engine.begin() as conn:
            row = db.service_get_by_uuid(conn, service_uuid)
            if row is None:
                raise service_not_found(service_uuid)
            _refuse_unless_compute(row.binary)
            values: dict = {}
            if status == "enabled":
                if disabled_reason:
                    raise BadRequest("Specifying 'disabled_reason' with status 'enabled' is invalid.")
                values.update(disabled=False, disabled_reason=None)
            elif status == "disabled":
                values.update(disabled=True, disabled_reason=disabled_reason)
            if forced_down is not None:
                if not forced_down:
                    self._check_force_up_allowed(conn, row.host)
                values["forced_down"] = forced_down
            if not values:
                raise BadRequest(
                    "No updates were requested. Fields 'status' or 'forced_down' should be specified."
                )
            saved = db.service_update(conn, row.id, **values)
            if saved is None:  # deleted since it was read
                raise service_not_found(service_uuid)
            return self.state(saved)

    def _check_force_up_allowed(self, conn: Connection, host: str) -> None:
        """Spec 3.6: no force-up of a compute while `done` evacuations away from its host remain."""
        if db.evacuation_done_count(conn, host):
            raise ForceUpRefused(host)

    # -- delete ----------------------------------------------------------------------------------

    def delete(self, row_id: int | str) -> None:
        """Soft-delete a service found by integer id (before 2.53) or UUID (spec 3.5)."""
        with self.engine.begin() as conn:
            if isinstance(row_id, int):
                row = db.service_get_by_id(conn, row_id)
            else:
                row = db.service_get_by_uuid(conn, row_id)
            if row is None:
                raise NotFound(f"Service {row_id} not found.")
            if row.binary == COMPUTE:
                if db.instance_count_on_host(conn, row.host):
                    raise Conflict(
                        "Unable to delete compute service that is hosting instances. "
                        "Migrate or delete the instances first."
                    )
                if db.migration_in_progress_count(conn, row.host):
                    raise Conflict(
                        "Unable to delete compute service that has in-progress migrations. "
                        "Complete the migrations or delete the instances first."
                    )
            db.service_destroy(conn, row.id, compute_host=row.host if row.binary == COMPUTE else None)

    # -- the agents' side: register and heartbeat --------------------------------------------------

    def register(self, host: str, binary: str, version: int, nudge_address: str | None = None) -> ServiceState:
        """Load the host's record or create it; forced_down and disabled survive restarts (spec 4.5).

        ``nudge_address`` is where the service now takes wake-up datagrams (novalite.nudge).
        """
        for _ in range(2):
            with self.engine.begin() as conn:
                row = db.service_get_by_host_and_binary(conn, host, binary)
                if row is not None:
                    if row.version != version or row.nudge_address != nudge_address:
                        row = db.service_update(conn, row.id, version=version, nudge_address=nudge_address)
                    return self.state(row)
            try:
                with self.engine.begin() as conn:
                    db.service_create(conn, host=host, binary=binary, topic=TOPICS.get(binary), version=version,
                                      nudge_address=nudge_address)
            except IntegrityError:
                pass  # another process registered the same host and binary first: load its row
        raise RuntimeError(f"cannot register {binary} on {host}")

    def report_node(self, service_uuid: str, nodename: str, resources: dict) -> Row:
        """Record the capacity a compute host reports for one of its nodes (its hypervisor record)."""
        with self.engine.begin() as conn:
            row = db.service_get_by_uuid(conn, service_uuid)
            if row is None:
                raise service_not_found(service_uuid)
            return compute_nodes_db.compute_node_save(
                conn, service_id=row.id, host=row.host, nodename=nodename, values=resources)

    def heartbeat(self, service_uuid: str) -> None:
        """Spec 4.3: report_count + 1 and last_seen_up = now, committed with the heartbeats other threads of
        this process sent meanwhile (novalite.domain.heartbeats); NotFound once the record is deleted."""
        if not self._heartbeats.beat(service_uuid):
            raise service_not_found(service_uuid)
