"""The seed's own request, sent with curl as an operator would, gets the seed's response.

    PUT /v2.1/{tenant_id}/os-services/force-down   (X-OpenStack-Nova-API-Version: 2.11)
        {"binary": "nova-compute", "host": "compute1", "forced_down": true}
    200 {"service": {"host": "compute1", "binary": "nova-compute", "forced_down": true}}
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.live


def _curl(stack, path: str, body: str) -> tuple[int, str, dict]:
    out = subprocess.run(
        ["curl", "-sS", "-i", "-X", "PUT", f"{stack.url}{path}",
         "-H", "Accept: application/json", "-H", "Content-Type: application/json",
         "-H", "X-OpenStack-Nova-API-Version: 2.11", "-H", f"X-Auth-Token: {stack.admin_token}",
         "-d", body],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    head, _, payload = out.replace("\r\n", "\n").partition("\n\n")
    status = int(head.split()[1])
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, payload, headers


def test_seed_force_down_and_unset_with_curl(make_stack):
    stack = make_stack(report_interval=0.2, service_down_time=1.0)
    stack.start_compute("compute1")
    stack.wait_for_computes("compute1")
    tenant_id = uuid.uuid4().hex
    path = f"/v2.1/{tenant_id}/os-services/force-down"

    status, payload, headers = _curl(
        stack, path, '{"binary": "nova-compute", "host": "compute1", "forced_down": true}')
    assert status == 200
    assert json.loads(payload) == {"service": {"host": "compute1", "binary": "nova-compute", "forced_down": True}}
    assert list(json.loads(payload)["service"]) == ["host", "binary", "forced_down"]  # spec 3.3 key order
    assert headers["x-openstack-nova-api-version"] == ["2.11"]
    assert headers["vary"] == ["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]  # spec 1.2
    svc = stack.services("2.11")[0]
    assert (svc["forced_down"], svc["state"]) == (True, "down")

    status, payload, _ = _curl(
        stack, path, '{"binary": "nova-compute", "host": "compute1", "forced_down": false}')
    assert (status, json.loads(payload)["service"]["forced_down"]) == (200, False)
    assert stack.services("2.11")[0]["state"] == "up"
