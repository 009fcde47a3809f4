"""``novalite monitor run``: the fault monitor process — detector → gates → fencing → recovery.

One asyncio loop:

- the Detector (detection.py) takes the agents' signed UDP heartbeats and probes silent hosts; it says
  HostFailed once both channels agree, HostReturned when beats resume;
- a failed host is judged by the gates at once, and waits in ``pending`` while they hold it; every
  ``CYCLE`` seconds the gates judge what waits again. The gates, in this order, each a named rule of gates.py:
    quorum          the API answers and at least [monitor] min_alive_share of known hosts beat
                    (a monitor cut off from the hosts sees them all go silent: it does nothing);
    mass_failure    no more than [monitor] max_failed_share of known hosts failed at once (hold, alert);
    per_cycle_cap   at most [monitor] max_hosts_per_cycle recoveries start per cycle; the rest wait;
  a held host stays pending and is judged again next cycle (its hold is journaled once per reason); once
  the gates open again it is acted on only if it is still failed a whole detection window later (a monitor
  back from being cut off first hears the hosts that are alive);
- a recovery (recovery.py) fences, forces down, disables with its marker and evacuates; one that fails
  (the API unreachable mid-way) is retried while the host stays failed, and so is one whose fencing failed,
  every [monitor] fence_retry_interval (nothing is forced down or evacuated until a fencing is confirmed);
- on start, recoveries a previous monitor left unfinished are resumed (their marker is in Nova);
- a host the monitor recovered whose heartbeats resume has returned: force-up (once its agent completed
  the evacuations), then enable.

Metrics (Prometheus, [monitor] metrics_port): detection latency, fencing time, per-server evacuation
time, recovery time, actions by outcome and the gates' holds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

from novalite.asyncutils import sleep_unless_stopped
from novalite.config import Settings
from novalite.monitor import gates
from novalite.monitor.detection import Detector, HostFailed, HostReturned
from novalite.monitor.fencing import load_fencer
from novalite.monitor.journal import Journal, journal_path
from novalite.monitor.metrics import Metrics
from novalite.monitor.recovery import Recovery, open_client
from novalite.secret_files import read_secret

LOG = logging.getLogger("novalite.monitor")
CYCLE = 0.05  # seconds between two evaluations of the gates over pending failures
API_CHECK_INTERVAL = 1.0  # how often the monitor checks that it reaches the compute API
API_STALE_AFTER = 3.0  # an API not reached for this long counts as unreachable (quorum)
RETRY_DELAY = 1.0  # before a recovery that raised is tried again
RETURN_CHECK_INTERVAL = 1.0  # how often hosts awaiting their return are looked at


class Monitor:
    def __init__(self, settings: Settings, config_dir: Path | None):
        self.settings = settings
        self.opts = settings.monitor
        self.config_dir = config_dir
        self.detector: Detector | None = None
        self.recovery: Recovery | None = None
        self.journal: Journal | None = None
        self.metrics: Metrics | None = None
        self.pending: dict[str, HostFailed] = {}  # failed, not yet let through the gates
        self.held: dict[str, str] = {}  # host → the reason it is held (journaled once per reason)
        self.recovering: dict[str, asyncio.Task] = {}
        self.returning: dict[str, asyncio.Task] = {}
        self.api_reached_at = 0.0
        self.gates_open_since: float | None = None  # wall time since quorum and mass-failure have let through
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    # -- start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.opts
        if not opts.heartbeat_key_file:
            raise SystemExit("novalite monitor: configuration error: [monitor] heartbeat_key_file is needed")
        key = read_secret(opts.heartbeat_key_file).encode()
        fencer = load_fencer(self.settings)  # refuses "none" without [monitor] allow_unfenced
        self.journal = Journal(journal_path(self.settings, self.config_dir))
        if opts.metrics_port:
            self.metrics = Metrics()
            self.metrics.serve(opts.listen_host, opts.metrics_port)
            self.journal.listeners.append(self.metrics.observe)
        self.detector = Detector(key, opts.heartbeat_interval, opts.suspect_after, opts.probe_attempts,
                                 opts.probe_interval)
        await self.detector.start(opts.listen_host, opts.listen_port)
        LOG.info("monitor listening for heartbeats on %s (fencer %s)", self.detector.address, fencer.name)
        client = await self._connect()
        if client is None:
            return
        self.recovery = Recovery(client, fencer, self.journal, self.settings)
        self.api_reached_at = time.monotonic()

    async def _connect(self):
        failing = False
        while not self._stop.is_set():
            try:
                return await asyncio.to_thread(open_client, self.opts.os_cloud)
            except Exception as error:  # keystoneauth, connection refused, …: keep trying
                if not failing:
                    LOG.warning("cannot reach the compute API yet (%s); retrying", error)
                    failing = True
            await self._sleep(1.0)
        return None

    async def _sleep(self, seconds: float) -> bool:
        return await sleep_unless_stopped(self._stop, seconds)

    # -- the loops --------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.start()
        if self.recovery is None:
            return
        try:
            for result in await self.recovery.resume():
                LOG.info("resumed recovery of %s: %s", result.host, result.outcome)
            LOG.info("monitor acting: compute API reached at %s, gates and recoveries running",
                     self.recovery.client.version)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._take_events())
                tasks.create_task(self._gate_forever())
                tasks.create_task(self._check_api_forever())
                tasks.create_task(self._returns_forever())
                await self._stop.wait()
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            for task in [*self.recovering.values(), *self.returning.values()]:
                task.cancel()
            self.detector.close()
            self.recovery.close()
            self.journal.close()

    async def _take_events(self) -> None:
        async for event in self.detector.events():
            if isinstance(event, HostFailed):
                if self.metrics is not None:
                    self.metrics.detected(event)
                if event.host not in self.recovering:
                    self.pending[event.host] = event
                    self.gate_once()  # judge it now; the cycle only re-judges what the gates held
            elif isinstance(event, HostReturned):
                self.pending.pop(event.host, None)
                self.held.pop(event.host, None)
                self._start_return(event.host)

    async def _check_api_forever(self) -> None:
        while not await self._sleep(API_CHECK_INTERVAL):
            try:
                await asyncio.to_thread(self.recovery.client.supported_versions)
                self.api_reached_at = time.monotonic()
            except Exception as error:
                LOG.warning("the compute API does not answer: %s", error)

    @property
    def settle_window(self) -> float:
        """How long the gates must stay open before a failure they held is acted on: one detection window."""
        return self.detector.detection_window

    def api_reachable(self) -> bool:
        return time.monotonic() - self.api_reached_at < API_STALE_AFTER

    # -- gates --------------------------------------------------------------------------------------

    async def _gate_forever(self) -> None:
        while not await self._sleep(CYCLE):
            self.gate_once()

    def gate_once(self) -> None:
        """One cycle: judge every pending failure by the gates, start the recoveries they let through.

        A failure the gates held (no quorum, mass failure) is stale once they open again: the monitor may
        just have come back from being cut off, and the hosts it saw fail may be beating again a moment
        later. So it is acted on only after the gates have stayed open for one whole detection window and
        the detector still finds the host failed; a failure detected while the gates were open is acted on
        at once.
        """
        now = time.time()
        health = self.detector.hosts()
        known = sum(1 for h in health.values() if h.state != "left")
        failed = sum(1 for h in health.values() if h.state == "failed")
        common = (gates.quorum(self.api_reachable(), self.detector.alive_share(), self.opts.min_alive_share)
                  or gates.mass_failure(failed, known, self.opts.max_failed_share))
        if common:
            self.gates_open_since = None
        elif self.gates_open_since is None:
            self.gates_open_since = now
        if not self.pending:
            return
        started = 0
        for host in sorted(self.pending):
            failure = self.pending[host]
            state = health.get(host)
            if state is None or state.state != "failed":
                del self.pending[host]  # it beats again (or was forgotten): nothing to recover
                self.held.pop(host, None)
                continue
            reason = common or gates.per_cycle_cap(started + 1, self.opts.max_hosts_per_cycle)
            if reason:
                self._hold(host, reason)
                continue
            if failure.detected_wall < self.gates_open_since and now - self.gates_open_since < self.settle_window:
                continue  # held while the gates were shut: give every host a window to be heard again
            del self.pending[host]
            self.held.pop(host, None)
            self._start_recovery(host, failure)
            started += 1

    def _hold(self, host: str, reason: str) -> None:
        rule = reason.split(":", 1)[0]
        if self.held.get(host) == rule:
            return
        self.held[host] = rule
        self.journal.record(host, None, "held", rule=rule, reason=reason)
        if rule != gates.PER_CYCLE_CAP:
            LOG.warning("ALERT: recovery of %s held: %s", host, reason)

    # -- recovery and return ------------------------------------------------------------------------

    def _start_recovery(self, host: str, failure: HostFailed) -> None:
        async def recover() -> None:
            retry_of = None
            try:
                while True:
                    try:
                        result = await self.recovery.recover(host, failure, retry_of)
                        LOG.info("recovery of %s: %s (%d moved, %d failed)", host, result.outcome, result.moved,
                                 result.failed)
                        if result.outcome != "fence-failed" or not self.opts.fence_retry_interval:
                            return
                        LOG.warning("fencing of %s failed (%s); trying again in %s s while it stays failed", host,
                                    result.reason, self.opts.fence_retry_interval)
                        delay, retry_of = self.opts.fence_retry_interval, result.recovery_id
                    except Exception as error:
                        LOG.warning("recovery of %s failed (%s); retrying", host, error)
                        delay = RETRY_DELAY
                    if await self._sleep(delay):
                        return
                    state = self.detector.hosts().get(host)
                    if state is None or state.state != "failed":
                        LOG.info("%s beats again; its recovery is left to its return", host)
                        return
            finally:
                self.recovering.pop(host, None)

        self.recovering[host] = asyncio.create_task(recover(), name=f"recover-{host}")

    def _start_return(self, host: str) -> None:
        if host in self.returning:
            return

        async def returned() -> None:
            try:
                running = self.recovering.get(host)
                if running is not None:
                    await asyncio.shield(running)
                outcome = await self.recovery.host_returned(host)
                LOG.info("return of %s: %s", host, outcome)
            except Exception as error:
                LOG.warning("return of %s: %s (tried again at the next look)", host, error)
            finally:
                self.returning.pop(host, None)

        self.returning[host] = asyncio.create_task(returned(), name=f"return-{host}")

    async def _returns_forever(self) -> None:
        """Hosts recovered earlier (by this monitor or a previous one) that beat again have returned."""
        while not await self._sleep(RETURN_CHECK_INTERVAL):
            try:
                waiting = await self.recovery.awaiting_return()
            except Exception as error:
                LOG.debug("cannot list hosts awaiting their return: %s", error)
                continue
            health = self.detector.hosts()
            for host in waiting:
                state = health.get(host)
                if state is not None and state.state == "alive" and host not in self.recovering:
                    self._start_return(host)


class _Stopped(Exception):
    pass


def run_monitor(settings: Settings, config_dir: Path | None) -> None:
    async def main() -> None:
        monitor = Monitor(settings, config_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, monitor.stop)
        await monitor.run()
        LOG.info("monitor stopped")

    asyncio.run(main())

