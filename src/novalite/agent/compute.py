"""The compute agent: one per host; registers its nova-compute service, heartbeats it, runs its guests
through a virt driver and reports the host's capacity (agent/resources.py).

It speaks only to the control plane's agent interface (/agent/v1, see handlers/agent.py) with the
agent secret; it holds no database login and no admin token. As in Nova (spec 4.3, 4.5):
- registration loads the existing record, so forced_down and disabled survive restarts;
- a heartbeat every report_interval bumps report_count and last_seen_up and nothing else;
- if the record was deleted, the heartbeat logs an error and does not recreate it;
- when the API is unreachable it logs once and keeps trying;
- after registering it starts its driver (Nova's init_host), then heartbeats and resource reports run
  as two tasks, so a slow report never delays a heartbeat.
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

LOG = logging.getLogger("novalite.compute")
BINARY = "nova-compute"
SERVICE_VERSION = 1
REQUEST_TIMEOUT = 5.0


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


class AgentApi:
    """Blocking calls to /agent/v1; the agent runs them in a worker thread."""

    def __init__(self, config: AgentConfig):
        self.base = config.api_url.rstrip("/") + "/agent/v1"
        self.session = requests.Session()
        self.session.headers["X-Agent-Token"] = config.agent_token

    def register(self, host: str) -> dict:
        resp = self.session.post(
            f"{self.base}/services",
            json={"host": host, "binary": BINARY, "version": SERVICE_VERSION},
            timeout=REQUEST_TIMEOUT,
        )
        _raise_with_message(resp)
        return resp.json()["service"]

    def heartbeat(self, service_uuid: str) -> bool:
        """True if recorded; False if the service record is gone."""
        resp = self.session.put(f"{self.base}/services/{service_uuid}/heartbeat", timeout=REQUEST_TIMEOUT)
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
        self.reporter: ResourceReporter | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()
        if self.reporter is not None:
            self.reporter.request_report()  # wakes its wait; it sees the stop and ends

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True if stopped."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def register(self) -> dict | None:
        failing = False
        while not self._stop.is_set():
            try:
                self.service = await asyncio.to_thread(self.api.register, self.config.host)
            except requests.RequestException as error:
                if not failing:
                    LOG.warning("cannot register %s yet (%s); retrying", self.config.host, error)
                    failing = True
                if await self._sleep(min(1.0, self.config.report_interval)):
                    return None
                continue
            LOG.info(
                "registered %s on %s as %s (forced_down=%s, status=%s)",
                BINARY, self.config.host, self.service["id"], self.service["forced_down"], self.service["status"],
            )
            return self.service
        return None

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
        if await self.register() is None:
            return
        # As Nova's Service.start: the service record first, then the driver, then the periodic work.
        await self.driver.init_host(self.config.host)
        self.reporter = ResourceReporter(self.driver, self.api, self.service["id"],
                                         self.config.update_resources_interval, host=self.config.host,
                                         allocation_ratios=self.config.allocation_ratios)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.heartbeat_forever())
            tasks.create_task(self.reporter.report_forever(self._stop.is_set))


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
