"""The compute agent: one per host; registers its nova-compute service, heartbeats it, runs its guests
through a virt driver (agent/work.py) and reports the host's capacity (agent/resources.py).

It speaks only to the control plane's agent interface (/agent/v1, see handlers/agent.py) with the
agent secret; it holds no database login and no admin token. As in Nova (spec 4.3, 4.5):
- registration loads the existing record, so forced_down and disabled survive restarts;
- a heartbeat every report_interval bumps report_count and last_seen_up and nothing else;
- if the record was deleted, the heartbeat logs an error and does not recreate it;
- when the API is unreachable it logs once and keeps trying.

Start, in Nova's order (Service.start, then ComputeManager.init_host):
1. listen for nudges, and register with the address they come to;
2. start the driver (init_host);
3. clean up after evacuations away from this host (spec 6, Nova's _destroy_evacuated_instances):
   destroy the local copy of each evacuated server, then report those migrations cleaned, which
   completes the done ones — the force-up guard (spec 3.6) clears only once the copies are gone;
4. destroy the guests of servers deleted while the host was away (Nova's running-deleted reaper);
5. only then heartbeat, report resources and work, as three tasks: a host that comes back never
   counts as up while it still holds a copy of a server that now runs elsewhere. If the control plane
   cannot be reached during 3 or 4, the agent keeps trying and does not heartbeat meanwhile.
   With a fault monitor ([monitor] heartbeat_address), its UDP heartbeats (monitor/heartbeat_sender.py) start
   then too: a returning host reads as returned only once its evacuated copies are gone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

import requests

from novalite.agent.resources import ResourceReporter
from novalite.agent.virt import load_driver
from novalite.agent.virt.driver import ComputeDriver
from novalite.agent.work import RETRY_DELAY, WorkRunner
from novalite.asyncutils import sleep_unless_stopped
from novalite.monitor.heartbeat_sender import HeartbeatSender
from novalite.nudge import NudgeListener

LOG = logging.getLogger("novalite.compute")
BINARY = "nova-compute"
# The Nova service version whose behaviour this agent provides, registered with its service record; the
# API gates on it as Nova does (2.95's stop-on-destination evacuation needs every up compute at ≥ 62, spec
# 6). 73 is Nova master's SERVICE_VERSION (spec 7); the agent does what the API asks of that version.
SERVICE_VERSION = 73
REQUEST_TIMEOUT = 5.0
# Applying a large batch of results takes the control plane longer than any other call.
RESULTS_TIMEOUT = 30.0


@dataclass
class AgentConfig:
    host: str
    api_url: str
    agent_token: str
    report_interval: float
    # Seconds between two reports of the host's hypervisor records ([DEFAULT]update_resources_interval).
    update_resources_interval: float = 60.0
    compute_driver: str = "simulated"
    # The driver's keyword arguments (for the simulated one: state_dir, capacity, spawn and stop times).
    driver_options: dict = field(default_factory=dict)
    # {cpu,ram,disk}_allocation_ratio reported with every node ([compute] options).
    allocation_ratios: dict = field(default_factory=dict)
    # Where nudges come to ([compute] nudge_host, nudge_port; port 0: any free one).
    nudge_host: str = "127.0.0.1"
    nudge_port: int = 0
    # Seconds between two looks at the host's work when nothing nudges ([compute] work_poll_interval).
    work_poll_interval: float = 10.0
    # Builds run at once ([compute] max_concurrent_builds; 0: no limit).
    max_concurrent_builds: int = 10
    # The fault monitor's heartbeats ([monitor] heartbeat_address, the key of heartbeat_key_file,
    # heartbeat_interval); no address: none are sent.
    heartbeat_address: str = ""
    heartbeat_key: bytes = b""
    heartbeat_interval: float = 0.1
    # Where heartbeats go ([agent] heartbeat_url: the API's heartbeat listener); empty: api_url.
    heartbeat_url: str = ""


class AgentApi:
    """Blocking calls to /agent/v1; the agent runs them in a worker thread."""

    def __init__(self, config: AgentConfig):
        self.base = config.api_url.rstrip("/") + "/agent/v1"
        self.heartbeat_base = (config.heartbeat_url or config.api_url).rstrip("/") + "/agent/v1"
        self.session = requests.Session()
        self.session.headers["X-Agent-Token"] = config.agent_token

    def register(self, host: str, nudge_address: str | None = None) -> dict:
        resp = self.session.post(
            f"{self.base}/services",
            json={"host": host, "binary": BINARY, "version": SERVICE_VERSION, "nudge_address": nudge_address},
            timeout=REQUEST_TIMEOUT,
        )
        _raise_with_message(resp)
        return resp.json()["service"]

    def heartbeat(self, service_uuid: str) -> bool:
        """True if recorded; False if the service record is gone."""
        resp = self.session.put(f"{self.heartbeat_base}/services/{service_uuid}/heartbeat",
                                timeout=REQUEST_TIMEOUT)
        if resp.status_code == 404:
            return False
        _raise_with_message(resp)
        return True

    def report_node(self, service_uuid: str, nodename: str, report: dict) -> bool:
        """True if recorded; False if the service record is gone."""
        resp = self.session.put(f"{self.base}/services/{service_uuid}/nodes/{nodename}", json=report,
                                timeout=REQUEST_TIMEOUT)
        if resp.status_code == 404:
            return False
        _raise_with_message(resp)
        return True

    def work(self, service_uuid: str) -> list[dict]:
        resp = self.session.get(f"{self.base}/services/{service_uuid}/work", timeout=REQUEST_TIMEOUT)
        _raise_with_message(resp)
        return resp.json()["tasks"]

    def post_results(self, service_uuid: str, results: list[dict]) -> list[dict]:
        resp = self.session.post(f"{self.base}/services/{service_uuid}/results", json={"results": results},
                                 timeout=RESULTS_TIMEOUT)
        _raise_with_message(resp)
        return resp.json()["results"]

    def evacuations(self, service_uuid: str) -> list[dict]:
        """The evacuations away from this host whose local copies are still to be destroyed."""
        resp = self.session.get(f"{self.base}/services/{service_uuid}/evacuations", timeout=REQUEST_TIMEOUT)
        _raise_with_message(resp)
        return resp.json()["migrations"]

    def evacuations_cleaned(self, service_uuid: str, migration_uuids: list[str]) -> int:
        resp = self.session.post(f"{self.base}/services/{service_uuid}/evacuations/cleaned",
                                 json={"migrations": migration_uuids}, timeout=RESULTS_TIMEOUT)
        _raise_with_message(resp)
        return resp.json()["completed"]

    def reap(self, service_uuid: str, guest_uuids: list[str]) -> list[str]:
        """Which of ``guest_uuids`` belong to servers that are deleted or no longer this host's."""
        resp = self.session.post(f"{self.base}/services/{service_uuid}/reap", json={"guests": guest_uuids},
                                 timeout=RESULTS_TIMEOUT)
        _raise_with_message(resp)
        return resp.json()["reap"]


def _raise_with_message(resp: requests.Response) -> None:
    """raise_for_status, with the control plane's fault message in the error (for the agent's log)."""
    if resp.status_code < 400:
        return
    try:
        fault = next(iter(resp.json().values()))["message"]
    except (ValueError, StopIteration, KeyError, TypeError, AttributeError):
        fault = resp.text[:200]
    raise requests.HTTPError(f"{resp.status_code} from {resp.url}: {fault}", response=resp)


class ComputeAgent:
    def __init__(self, config: AgentConfig, api: AgentApi | None = None, driver: ComputeDriver | None = None):
        self.config = config
        self.api = api or AgentApi(config)
        # Built now, so an unknown driver or a bad option fails before the service registers.
        self.driver = driver or load_driver(config.compute_driver, **config.driver_options)
        self.service: dict | None = None
        self.listener: NudgeListener | None = None
        self.reporter: ResourceReporter | None = None
        self.work: WorkRunner | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()
        if self.reporter is not None:
            self.reporter.request_report()  # wakes its wait; it sees the stop and ends
        if self.work is not None:
            self.work.stop()

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True if stopped."""
        return await sleep_unless_stopped(self._stop, seconds)

    async def register(self) -> dict | None:
        failing = False
        nudge_address = self.listener.address if self.listener is not None else None
        while not self._stop.is_set():
            try:
                self.service = await asyncio.to_thread(self.api.register, self.config.host, nudge_address)
            except requests.RequestException as error:
                if not failing:
                    LOG.warning("cannot register %s yet (%s); retrying", self.config.host, error)
                    failing = True
                if await self._sleep(min(1.0, self.config.report_interval)):
                    return None
                continue
            LOG.info(
                "registered %s on %s as %s (forced_down=%s, status=%s, nudges to %s)",
                BINARY, self.config.host, self.service["id"], self.service["forced_down"], self.service["status"],
                nudge_address,
            )
            return self.service
        return None

    async def _until_done(self, step, what: str) -> bool:
        """Run ``step`` until it succeeds; False if stopped first. Failures are logged once while they last."""
        failing = False
        while not self._stop.is_set():
            try:
                await step()
            except requests.RequestException as error:
                if not failing:
                    LOG.warning("cannot %s yet (%s); retrying before any heartbeat", what, error)
            except Exception:
                if not failing:
                    LOG.exception("cannot %s yet; retrying before any heartbeat", what)
            else:
                if failing:
                    LOG.info("could %s at last", what)
                return True
            failing = True
            if await self._sleep(RETRY_DELAY):
                return False
        return False

    async def clean_up_evacuations(self) -> None:
        """Destroy the local copies of servers evacuated away from this host, then report them cleaned
        (spec 6: done → completed, the host's allocations dropped)."""
        service_uuid = self.service["id"]
        migrations = await asyncio.to_thread(self.api.evacuations, service_uuid)
        if not migrations:
            return
        for migration in migrations:
            await self.driver.destroy(migration["instance_uuid"])  # idempotent: a retry redoes them all
            LOG.info("destroyed the local copy of %s, evacuated away from %s (migration %s, %s)",
                     migration["instance_uuid"], self.config.host, migration["uuid"], migration["status"])
        completed = await asyncio.to_thread(self.api.evacuations_cleaned, service_uuid,
                                            [m["uuid"] for m in migrations])
        LOG.info("cleaned up after %d evacuation(s) away from %s; %d migration(s) completed",
                 len(migrations), self.config.host, completed)

    async def reap_deleted(self) -> None:
        """Destroy the guests of servers deleted (or moved away) while this host was away."""
        guests = await self.driver.list_instance_uuids()
        if not guests:
            return
        reap = await asyncio.to_thread(self.api.reap, self.service["id"], guests)
        for uuid in reap:
            await self.driver.destroy(uuid)
            LOG.info("destroyed guest %s: its server was deleted or is no longer on %s", uuid, self.config.host)

    async def heartbeat_forever(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                recorded = await asyncio.to_thread(self.api.heartbeat, self.service["id"])
                if not recorded:
                    LOG.error("the services table record for %s on %s is gone", BINARY, self.config.host)
                elif failing:
                    LOG.info("heartbeats reach the control plane again")
                failing = False
            except requests.RequestException as error:
                if not failing:
                    LOG.warning("heartbeat failed (%s); will keep trying", error)
                failing = True
            if await self._sleep(self.config.report_interval):
                return

    async def run(self) -> None:
        self.listener = await NudgeListener.start(self.config.nudge_host, self.config.nudge_port)
        try:
            await self._run()
        finally:
            self.listener.close()

    async def _run(self) -> None:
        if await self.register() is None:
            return
        # As Nova's Service.start: the service record first, then the driver and its cleanup, then the
        # periodic work.
        await self.driver.init_host(self.config.host)
        if not await self._until_done(self.clean_up_evacuations, "clean up after evacuations"):
            return
        if not await self._until_done(self.reap_deleted, "reap the guests of deleted servers"):
            return
        self.reporter = ResourceReporter(self.driver, self.api, self.service["id"],
                                         self.config.update_resources_interval, host=self.config.host,
                                         allocation_ratios=self.config.allocation_ratios)
        self.work = WorkRunner(self.driver, self.api, self.service["id"], self.listener,
                               poll_interval=self.config.work_poll_interval,
                               max_concurrent_builds=self.config.max_concurrent_builds,
                               on_guests_changed=self.reporter.request_report)
        if self._stop.is_set():
            return
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.heartbeat_forever())
            if self.config.heartbeat_address:  # the monitor's own channel, beside the control plane's
                tasks.create_task(HeartbeatSender(self.config.host, self.config.heartbeat_key,
                                                  self.config.heartbeat_address,
                                                  self.config.heartbeat_interval).run(self._stop))
            tasks.create_task(self.reporter.report_forever(self._stop.is_set))
            tasks.create_task(self.work.run())


def run_agent(config: AgentConfig) -> None:
    """Run until SIGINT or SIGTERM."""

    async def main() -> None:
        agent = ComputeAgent(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()
        LOG.info("compute agent on %s stopped", config.host)

    asyncio.run(main())
