"""The compute agent's resource reports: each node's capacity and use, sent as its hypervisor record.

At start and then every ``update_resources_interval`` seconds (Nova's option and period of
update_available_resource), the agent asks its driver for every node's HostResources and PUTs them to
/agent/v1/services/{uuid}/nodes/{nodename}. Reports run as their own task: a slow driver or a slow
control plane delays reports, never heartbeats. ``request_report()`` asks for one at once (after a
guest comes or goes) without waiting for the period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

import requests

from novalite.agent.virt.driver import ComputeDriver, HostResources

LOG = logging.getLogger("novalite.compute.resources")


class NodeReportApi(Protocol):
    def report_node(self, service_uuid: str, nodename: str, report: dict) -> bool:
        """True if recorded; False if the service record is gone."""


def node_report(resources: HostResources, allocation_ratios: dict[str, float] | None = None) -> dict:
    """The body of PUT .../nodes/{nodename} (the agent interface's NODE_REPORT): the node's name is in the URL.

    ``allocation_ratios`` ({cpu,ram,disk}_allocation_ratio) are the host's configuration, not the driver's.
    """
    body = dataclasses.asdict(resources)
    del body["hypervisor_hostname"]
    body.update(allocation_ratios or {})
    return body


class ResourceReporter:
    def __init__(self, driver: ComputeDriver, api: NodeReportApi, service_uuid: str, interval: float,
                 host: str = "", allocation_ratios: dict[str, float] | None = None):
        self.driver = driver
        self.allocation_ratios = allocation_ratios or {}
        self.api = api
        self.service_uuid = service_uuid
        self.interval = interval
        self.host = host
        self._wake = asyncio.Event()
        self._failing = False
        self.reports_sent = 0

    def request_report(self) -> None:
        """Report now rather than at the end of the current period."""
        self._wake.set()

    async def report_once(self) -> None:
        """Report every node of the host; raises what the driver or the control plane raised."""
        for nodename in self.driver.get_available_nodes():
            resources = await self.driver.get_available_resource(nodename)
            recorded = await asyncio.to_thread(self.api.report_node, self.service_uuid, nodename,
                                               node_report(resources, self.allocation_ratios))
            if not recorded:
                LOG.error("cannot report node %s: the services table record for %s is gone", nodename, self.host)
                return
            self.reports_sent += 1
            LOG.debug("reported node %s: %s", nodename, resources)

    async def report_forever(self, stopped: Callable[[], bool]) -> None:
        """Report until ``stopped()``; a failed report is logged (once while failures last) and retried
        at the next period."""
        while not stopped():
            self._wake.clear()
            try:
                await self.report_once()
                if self._failing:
                    LOG.info("resource reports reach the control plane again")
                self._failing = False
            except requests.RequestException as error:
                if not self._failing:
                    LOG.warning("resource report failed (%s); will retry every %s s", error, self.interval)
                self._failing = True
            except Exception:
                # A driver bug must not end the reports (nor, through the agent's task group, the heartbeats).
                LOG.exception("resource report failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
