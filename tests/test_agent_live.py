"""Compute agents as real processes: registration, heartbeats and liveness through the API.

Pins spec 4.1–4.5 end to end: heartbeats keep a service up, a killed agent goes down after
service_down_time, forced_down wins over heartbeats at once, and only the API clears it.
"""

from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.stack import wait_until

pytestmark = pytest.mark.live

FAST = {"report_interval": 0.2, "service_down_time": 1.0}


def _service(stack, host: str) -> dict:
    return next(s for s in stack.services() if s["host"] == host)


def test_agent_registers_and_heartbeats(make_stack):
    stack = make_stack(**FAST)
    stack.start_compute("compute1")
    stack.wait_for_computes("compute1")
    first = _service(stack, "compute1")["updated_at"]
    wait_until(lambda: _service(stack, "compute1")["updated_at"] != first, timeout=5, what="a second heartbeat")
    assert _service(stack, "compute1")["state"] == "up"


def test_killed_agent_goes_down_after_service_down_time(make_stack):
    stack = make_stack(**FAST)
    agent = stack.start_compute("compute1")
    stack.wait_for_computes("compute1")
    os.killpg(agent.pid, signal.SIGKILL)
    wait_until(lambda: _service(stack, "compute1")["state"] == "down", timeout=5, what="compute1 down")


def test_forced_down_wins_over_heartbeats_and_survives_restart(make_stack, database_url):
    # Runs on SQLite and on PostgreSQL: the same code serves both.
    stack = make_stack(database_url=database_url, **FAST)
    agent = stack.start_compute("compute1")
    stack.wait_for_computes("compute1")
    resp = requests.put(stack.endpoint + "/os-services/force-down", headers=stack.admin_headers("2.11"),
                        json={"host": "compute1", "binary": "nova-compute", "forced_down": True}, timeout=5)
    assert resp.status_code == 200
    # Down at once, although the agent keeps heartbeating (spec 4.1, 4.6).
    assert _service(stack, "compute1")["state"] == "down"
    beat = _service(stack, "compute1")["updated_at"]
    wait_until(lambda: _service(stack, "compute1")["updated_at"] != beat, timeout=5, what="heartbeat")
    assert _service(stack, "compute1")["state"] == "down"

    # Restart the agent: the record is loaded, forced_down kept (spec 4.5).
    os.killpg(agent.pid, signal.SIGTERM)
    agent.wait(timeout=10)
    stack.start_compute("compute1")
    beat = _service(stack, "compute1")["updated_at"]
    wait_until(lambda: _service(stack, "compute1")["updated_at"] != beat, timeout=5, what="heartbeat")
    svc = _service(stack, "compute1")
    assert (svc["forced_down"], svc["state"]) == (True, "down")
    assert len([s for s in stack.services() if s["host"] == "compute1"]) == 1

    # Only the API clears it.
    resp = requests.put(stack.endpoint + f"/os-services/{svc['id']}", headers=stack.admin_headers("2.53"),
                        json={"forced_down": False}, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["service"]["state"] == "up"


def test_agent_started_before_the_api_registers_once_it_is_up(make_stack):
    stack = make_stack(start=False, **FAST)
    stack.start_compute("compute1")
    stack.start_api()
    stack.wait_for_computes("compute1")


def test_heartbeat_after_delete_does_not_recreate_the_record(make_stack):
    stack = make_stack(**FAST)
    stack.start_compute("compute1")
    stack.wait_for_computes("compute1")
    svc = _service(stack, "compute1")
    resp = requests.delete(stack.endpoint + f"/os-services/{svc['id']}", headers=stack.admin_headers("2.53"),
                           timeout=5)
    assert resp.status_code == 204
    wait_until(lambda: "is gone" in stack.log("compute-compute1.log"), timeout=5, what="the agent's error")
    assert [s for s in stack.services() if s["host"] == "compute1"] == []


def test_agent_interface_needs_the_agent_secret(make_stack):
    stack = make_stack()
    body = {"host": "rogue", "binary": "nova-compute", "version": 1}
    for headers in ({}, {"X-Agent-Token": "wrong"}, {"X-Agent-Token": stack.admin_token}):
        resp = requests.post(stack.url + "/agent/v1/services", json=body, headers=headers, timeout=5)
        assert resp.status_code == 401
    # The agent secret opens nothing of the public API.
    resp = requests.get(stack.endpoint + "/os-services", headers={"X-Auth-Token": stack.agent_token}, timeout=5)
    assert resp.status_code == 401
    assert stack.services() == []
