"""The compute agent: one per host; registers its nova-compute service and heartbeats it.

It speaks only to the control plane's agent interface (/agent/v1, see handlers/agent.py) with the
agent secret; it holds no database login and no admin token. As in Nova (spec 4.3, 4.5):
- registration loads the existing record, so forced_down and disabled survive restarts;
- a heartbeat every report_interval bumps report_count and last_seen_up and nothing else;
- if the record was deleted, the heartbeat logs an error and does not recreate it;
- when the API is unreachable it logs once and keeps trying.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import requests

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
        resp.raise_for_status()
        return resp.json()["service"]

    def heartbeat(self, service_uuid: str) -> bool:
        """True if recorded; False if the service record is gone."""
        resp = self.session.put(f"{self.base}/services/{service_uuid}/heartbeat", timeout=REQUEST_TIMEOUT)
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return True


class ComputeAgent:
    def __init__(self, config: AgentConfig, api: AgentApi | None = None):
        self.config = config
        self.api = api or AgentApi(config)
        self.service: dict | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

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
        if await self.register() is not None:
            await self.heartbeat_forever()


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
