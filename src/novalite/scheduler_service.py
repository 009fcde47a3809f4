"""The ``novalite scheduler`` process: places new servers and evacuations, then nudges their hosts.

Nova splits this work between two services called over RPC: nova-scheduler picks the host,
nova-conductor (build_instances, rebuild_instance) records it. novalite's scheduler process does both
through domain.conductor.Conductor, and takes its work from the database instead of RPC:

- on start it registers a ``nova-scheduler`` service record (topic ``scheduler``, so zone
  ``internal``) with the address it takes nudges on, and heartbeats it every ``report_interval``, so
  os-services shows it up or down as Nova shows its nova-scheduler (spec 4.3, 4.5). It talks to the
  database directly: it is control plane, like Nova's scheduler and conductor;
- it runs a placement pass when nudged (the API nudges every registered nova-scheduler once it has
  recorded a new server or an evacuation) and at least every ``[scheduler] poll_interval``, so a lost
  nudge only delays the work. Nudges that arrive during a pass make exactly one more pass (during a
  burst, ``BURST_GATHER`` later, so that one pass serves several servers);
- as a pass goes (after each batch of placements, domain/conductor.py) it nudges the agents of the hosts
  that got work, so the first rebuilds start while later evacuations are still being placed;
- a pass that fails (the database unreachable, …) is logged and the next pass tries again: the process
  never dies of it. SIGINT and SIGTERM stop it once the current pass is over.

Several schedulers may run at once (say one per control-plane machine); every one is nudged. That is
safe because every placement is recorded by a conditional update inside the claim's transaction
(Conductor's on_claimed, Scheduler.claim): of two passes racing on one server, one records it and the
other's claim is rolled back (StaleRequest). tests/test_scheduler_live.py races two passes to prove it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from novalite.asyncutils import sleep_unless_stopped
from novalite.config import Settings
from novalite.db import engine as db_engine
from novalite.domain.conductor import Conductor, PassResult
from novalite.domain.servers import Servers
from novalite.domain.services import Services, ServiceState
from novalite.exceptions import NotFound
from novalite.nudge import NudgeListener, Nudger

LOG = logging.getLogger("novalite.scheduler_service")
BINARY = "nova-scheduler"
SERVICE_VERSION = 1
# Seconds a pass waits, when nudged right after a pass that placed something, for the rest of a burst to
# arrive. The API nudges once per server, and a fault monitor sends a host's evacuations a few ms apart:
# without the wait every pass (its reads, the nudges of hosts, their agents' looks at their work) served
# about one server. Measured (bench/evacuation.py, 100 servers): the scheduler's CPU per server halved,
# and the agents' and the API's fell too. The first work after a quiet spell is placed at once.
BURST_GATHER = 0.01


def default_host() -> str:
    """Nova's [DEFAULT] host default: the machine's hostname."""
    return socket.gethostname()


class SchemaOutOfDate(RuntimeError):
    pass


class SchedulerService:
    def __init__(self, engine: Engine, settings: Settings, host: str, nudger: Nudger | None = None):
        self.engine = engine
        self.settings = settings
        self.host = host
        self.services = Services(engine, settings)
        self.conductor = Conductor(engine, settings, scheduler_host=host)
        self.servers = Servers(engine, settings, nudger)  # its nudge_hosts tells agents of their work
        self.service: ServiceState | None = None
        self.listener: NudgeListener | None = None
        self._stop = asyncio.Event()
        self._pass_error: str | None = None  # the last pass's failure, so an outage is logged once

    def stop(self) -> None:
        self._stop.set()
        if self.listener is not None:
            self.listener.set()  # ends the wait between passes

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True if stopped."""
        return await sleep_unless_stopped(self._stop, seconds)

    async def run(self) -> None:
        options = self.settings.scheduler
        self.listener = await NudgeListener.start(options.nudge_host, options.nudge_port)
        try:
            if await self.register() is None:
                return
            LOG.info("%s on %s takes nudges on %s and places pending work at least every %g s",
                     BINARY, self.host, self.listener.address, options.poll_interval)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.heartbeat_forever())
                tasks.create_task(self.place_forever())
        finally:
            self.listener.close()

    # -- the service record ------------------------------------------------------------------------

    def _register_once(self, head: str) -> ServiceState:
        current = db_engine.current_revision(self.engine)
        if current != head:
            raise SchemaOutOfDate(f"database schema is at {current or 'nothing'}, code needs {head}: "
                                  "run `novalite db sync` first")
        return self.services.register(self.host, BINARY, SERVICE_VERSION, nudge_address=self.listener.address)

    async def register(self) -> ServiceState | None:
        """Load or create the record (disabled and forced_down kept, spec 4.5); retried while the
        database is unreachable. None if stopped first."""
        failing, head = False, db_engine.head_revision()
        while not self._stop.is_set():
            try:
                self.service = await asyncio.to_thread(self._register_once, head)
            except SQLAlchemyError as error:
                if not failing:
                    LOG.warning("cannot register %s on %s yet (%s); retrying", BINARY, self.host, error)
                    failing = True
                if await self._sleep(min(1.0, self.settings.DEFAULT.report_interval)):
                    return None
                continue
            LOG.info("registered %s on %s as %s (status=%s)", BINARY, self.host, self.service.uuid,
                     "disabled" if self.service.disabled else "enabled")
            return self.service
        return None

    async def heartbeat_forever(self) -> None:
        """Spec 4.3: report_count and last_seen_up every report_interval; a deleted record stays deleted."""
        failing = False
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.services.heartbeat, self.service.uuid)
                if failing:
                    LOG.info("heartbeats reach the database again")
                failing = False
            except NotFound:
                LOG.error("the services table record for %s on %s is gone", BINARY, self.host)
            except SQLAlchemyError as error:
                if not failing:
                    LOG.warning("heartbeat failed (%s); will keep trying", error)
                failing = True
            if await self._sleep(self.settings.DEFAULT.report_interval):
                return

    # -- placement -------------------------------------------------------------------------------

    async def place_forever(self) -> None:
        while not self._stop.is_set():
            result = await asyncio.to_thread(self.place_once)
            # A nudge that came during the pass is already waiting: the next pass starts at once, or, when
            # this pass placed something (a burst is under way), after BURST_GATHER.
            nudged = await self.listener.wait(self.settings.scheduler.poll_interval)
            if nudged and result is not None and result.placed:
                await self._sleep(BURST_GATHER)

    def place_once(self) -> PassResult | None:
        """One pass over pending builds and evacuations, nudging the hosts that got work after each batch.

        None if the pass failed; it is logged (once per distinct error) and the next pass retries.
        """
        try:
            result = self.conductor.place_pending(on_batch=self._nudge_hosts)
        except Exception as error:  # one failed pass must never end the process
            message = f"{type(error).__name__}: {error}"
            if message != self._pass_error:
                if isinstance(error, SQLAlchemyError):
                    LOG.warning("placement pass failed (%s); retrying", error)
                else:
                    LOG.exception("placement pass failed; retrying")
            self._pass_error = message
            return None
        if self._pass_error is not None:
            LOG.info("placement passes work again")
            self._pass_error = None
        if result.placed or result.failed:
            LOG.info("placement pass: %d placed, %d failed; nudged %s", result.placed, result.failed,
                     ", ".join(sorted(result.hosts)) or "no host")
        return result

    def _nudge_hosts(self, hosts: set[str]) -> None:
        try:
            self.servers.nudge_hosts(hosts)
        except SQLAlchemyError as error:  # their agents find the work at their next periodic look
            LOG.warning("cannot read the nudge addresses of %s (%s)", sorted(hosts), error)


def run_scheduler(settings: Settings, host: str) -> None:
    """Run until SIGINT or SIGTERM."""

    async def main() -> None:
        engine = db_engine.engine_for(settings.database)
        service = SchedulerService(engine, settings, host)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        try:
            await service.run()
        finally:
            engine.dispose()
        LOG.info("%s on %s stopped", BINARY, host)

    try:
        asyncio.run(main())
    except SchemaOutOfDate as error:
        raise SystemExit(f"novalite scheduler: {error}") from None
