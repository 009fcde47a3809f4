"""The compute agent's resource reports (agent/resources.py) against a fake control plane, in one process.

Issue 3 §1: capacity reported as the host's hypervisor record, at start and every
update_resources_interval; heartbeats (spec 4.3) never wait on a report.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import requests

from novalite.agent.compute import AgentConfig, ComputeAgent
from novalite.agent.virt.driver import GuestSpec
from novalite.agent.virt.simulated import SimulatedDriver

pytestmark = pytest.mark.no_database


class FakeControlPlane:
    """The agent interface, recorded; report_node can be made slow or failing."""

    def __init__(self, report_delay: float = 0.0, report_error: Exception | None = None):
        self.report_delay = report_delay
        self.report_error = report_error
        self.calls: list[str] = []
        self.heartbeats = 0
        self.reports: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def register(self, host: str, nudge_address: str | None = None) -> dict:
        self.calls.append("register")
        return {"id": "service-uuid", "forced_down": False, "status": "enabled"}

    # A host with nothing to clean up and no work (agent/work.py's tests run against the real API).
    def evacuations(self, service_uuid: str) -> list[dict]:
        return []

    def reap(self, service_uuid: str, guest_uuids: list[str]) -> list[str]:
        return []

    def work(self, service_uuid: str) -> list[dict]:
        return []

    def heartbeat(self, service_uuid: str) -> bool:
        with self._lock:
            self.heartbeats += 1
        return True

    def report_node(self, service_uuid: str, nodename: str, report: dict) -> bool:
        time.sleep(self.report_delay)
        if self.report_error:
            raise self.report_error
        with self._lock:
            self.reports.append((nodename, report))
        return True


class RecordingDriver(SimulatedDriver):
    def __init__(self, api: FakeControlPlane, **kwargs):
        super().__init__(**kwargs)
        self.api = api

    async def init_host(self, host: str) -> None:
        self.api.calls.append("init_host")
        await super().init_host(host)


def config(**kwargs) -> AgentConfig:
    values = {"host": "compute1", "api_url": "http://unused", "agent_token": "t", "report_interval": 0.05,
              "update_resources_interval": 60.0}
    return AgentConfig(**{**values, **kwargs})


def run_agent_for(seconds: float, agent: ComputeAgent, during=None) -> float:
    """Run the agent ``seconds``, calling ``during(agent)`` meanwhile; return how long it took to stop."""

    async def main():
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(seconds / 2)
        if during:
            await during(agent)
        await asyncio.sleep(seconds / 2)
        asked = time.monotonic()
        agent.stop()
        await asyncio.wait_for(task, timeout=10)
        return time.monotonic() - asked

    return asyncio.run(main())


def test_the_driver_starts_after_registration_and_the_node_is_reported_at_once(tmp_path):
    api = FakeControlPlane()
    agent = ComputeAgent(config(), api=api, driver=RecordingDriver(api, state_dir=tmp_path, vcpus=8))
    run_agent_for(0.3, agent)
    assert api.calls == ["register", "init_host"]  # as Nova's Service.start
    nodename, report = api.reports[0]
    assert nodename == "compute1"
    assert (report["vcpus"], report["memory_mb_used"], report["running_vms"]) == (8, 512, 0)
    assert "hypervisor_hostname" not in report  # the node is named by the URL


def test_reports_repeat_every_update_resources_interval(tmp_path):
    api = FakeControlPlane()
    agent = ComputeAgent(config(update_resources_interval=0.1), api=api, driver=SimulatedDriver(state_dir=tmp_path))
    run_agent_for(0.55, agent)
    assert 3 <= len(api.reports) <= 8  # at start, then about every 0.1 s


def test_request_report_sends_one_at_once_with_the_new_guest(tmp_path):
    api = FakeControlPlane()
    driver = SimulatedDriver(state_dir=tmp_path)
    agent = ComputeAgent(config(), api=api, driver=driver)

    async def spawn_then_ask(agent):
        await driver.spawn(GuestSpec(uuid="u1", name="vm1", vcpus=2, memory_mb=1024, root_gb=10))
        agent.reporter.request_report()

    run_agent_for(0.4, agent, during=spawn_then_ask)
    assert [r["running_vms"] for _, r in api.reports] == [0, 1]


def test_heartbeats_never_wait_on_a_slow_report(tmp_path):
    api = FakeControlPlane(report_delay=1.0)
    agent = ComputeAgent(config(report_interval=0.05), api=api, driver=SimulatedDriver(state_dir=tmp_path))
    run_agent_for(0.6, agent)
    assert api.heartbeats >= 6  # one per 0.05 s although the first report took 1 s


def test_failed_reports_are_retried_and_heartbeats_go_on(tmp_path, caplog):
    api = FakeControlPlane(report_error=requests.ConnectionError("refused"))
    agent = ComputeAgent(config(update_resources_interval=0.05), api=api, driver=SimulatedDriver(state_dir=tmp_path))
    run_agent_for(0.4, agent)
    assert api.heartbeats >= 4
    assert caplog.text.count("resource report failed") == 1  # logged once while it lasts


def test_a_driver_error_does_not_end_reports_or_heartbeats(tmp_path):
    api = FakeControlPlane()

    class Broken(SimulatedDriver):
        async def get_available_resource(self, nodename):
            raise RuntimeError("driver bug")

    agent = ComputeAgent(config(update_resources_interval=0.05), api=api, driver=Broken(state_dir=tmp_path))
    run_agent_for(0.3, agent)
    assert api.heartbeats >= 3


def test_stop_does_not_wait_for_the_report_period(tmp_path):
    api = FakeControlPlane()
    agent = ComputeAgent(config(update_resources_interval=3600), api=api, driver=SimulatedDriver(state_dir=tmp_path))
    assert run_agent_for(0.2, agent) < 1.0
