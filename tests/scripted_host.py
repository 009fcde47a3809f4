"""A compute host played by the test, through the public agent interface, for in-process API tests.

``ScriptedHost`` registers a nova-compute, reports its node and does its work the way an agent does:
GET /agent/v1/services/{uuid}/work, then POST .../results (every task succeeds unless told to fail).
``place`` runs the scheduler process's placement pass (novalite.domain.conductor) once. The live tests
use the real agent and scheduler processes; these exist so API shape tests can bring servers to
ACTIVE, SHUTOFF or an evacuated state in milliseconds.
"""

from __future__ import annotations

import datetime as dt

from novalite.agent.compute import SERVICE_VERSION
from novalite.domain.conductor import Conductor, PassResult
from novalite.work_kinds import POWER_OFF
from tests.api_client import AGENT_SECRET, Api

AGENT = {"X-Agent-Token": AGENT_SECRET}
NODE = {"hypervisor_type": "fake", "hypervisor_version": 1000, "vcpus": 16, "memory_mb": 32768, "local_gb": 500,
        "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0, "running_vms": 0,
        "reserved_host_memory_mb": 512, "cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0,
        "disk_allocation_ratio": 1.0}


class ScriptedHost:
    def __init__(self, api: Api, host: str, **node):
        self.api = api
        self.host = host
        # At the real agent's service version, which the API gates 2.95's evacuations on (spec 6 step 3).
        registered = api.register(host, version=SERVICE_VERSION)
        assert registered.status_code == 200, registered.text
        self.service = registered.json["service"]
        self.uuid = self.service["id"]
        self.heartbeat()
        result = api.client.simulate_put(f"/agent/v1/services/{self.uuid}/nodes/{host}", json={**NODE, **node},
                                         headers=AGENT)
        assert result.status_code == 200, result.text
        self.failing: set[str] = set()  # instance UUIDs whose next task fails

    def heartbeat(self) -> None:
        assert self.api.heartbeat(self.uuid).status_code == 204

    def work(self) -> list[dict]:
        result = self.api.client.simulate_get(f"/agent/v1/services/{self.uuid}/work", headers=AGENT)
        assert result.status_code == 200, result.text
        return result.json["tasks"]

    def run(self) -> list[dict]:
        """Do every pending task; returns the control plane's answers."""
        results = []
        for task in self.work():
            ok = task["instance_uuid"] not in self.failing
            stopped = task["kind"] == POWER_OFF or task.get("stopped")
            results.append({"kind": task["kind"], "instance_uuid": task["instance_uuid"], "ok": ok,
                            "migration_uuid": task["migration_uuid"], "power_state": 4 if stopped else 1,
                            "error": None if ok else "simulated failure"})
        if not results:
            return []
        result = self.api.client.simulate_post(f"/agent/v1/services/{self.uuid}/results",
                                               json={"results": results}, headers=AGENT)
        assert result.status_code == 200, result.text
        return result.json["results"]

    def restart_cleanup(self) -> int:
        """What an agent does on start after evacuations away from it: how many migrations completed."""
        result = self.api.client.simulate_get(f"/agent/v1/services/{self.uuid}/evacuations", headers=AGENT)
        assert result.status_code == 200, result.text
        uuids = [m["uuid"] for m in result.json["migrations"]]
        result = self.api.client.simulate_post(f"/agent/v1/services/{self.uuid}/evacuations/cleaned",
                                               json={"migrations": uuids}, headers=AGENT)
        assert result.status_code == 200, result.text
        return result.json["completed"]

    def go_silent(self) -> None:
        """As if the host died: its last heartbeat is older than service_down_time."""
        long_ago = dt.datetime(2000, 1, 1)
        self.api.set_times(self.uuid, last_seen_up=long_ago, created_at=long_ago)


def place(api: Api) -> PassResult:
    """One pass of the scheduler process over pending builds and evacuations."""
    return Conductor(api.engine, api.settings).place_pending()


def settle(api: Api, *hosts: ScriptedHost) -> None:
    """Place what is pending, then let every host do its work, until nothing is left."""
    for _ in range(5):
        place(api)
        if not any([h.run() for h in hosts]):
            return
