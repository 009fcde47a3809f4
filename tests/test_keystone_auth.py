"""auth_strategy=keystone against a real Keystone: keystonemiddleware's auth_token validates the token,
Nova's policy decides (spec/nova-compute-api.md section 5; spec/clients.md section 5).

One novalite API with one compute agent serves the module, on the port the Keystone catalog names.
"""

# The imported ``keystone`` fixture is requested by parameter name, which ruff reads as a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.keystone import (
    Keystone,
    keystone,  # noqa: F401
    keystone_stack_with_compute,
)

# Keystone's middleware in front of the API is the subject; it runs once, in the SQLite run (conftest.py).
pytestmark = [pytest.mark.keystone, pytest.mark.live]

HOST = "compute1"
COMPUTE = "nova-compute"
OPENSTACK = Path(sys.executable).parent / "openstack"


@pytest.fixture(scope="module")
def stack(keystone: Keystone, tmp_path_factory):
    with keystone_stack_with_compute(keystone, tmp_path_factory.mktemp("keystone-auth"), HOST) as stack:
        yield stack


def _get_services(stack, token: str | None, version: str = "2.11") -> requests.Response:
    headers = {"X-OpenStack-Nova-API-Version": version}
    if token is not None:
        headers["X-Auth-Token"] = token
    return requests.get(f"{stack.endpoint}/os-services", headers=headers, timeout=10)


def _compute_service(stack, keystone: Keystone) -> dict:
    resp = _get_services(stack, keystone.token(keystone.admin), version="2.53")
    assert resp.status_code == 200, resp.text
    [service] = [s for s in resp.json()["services"] if s["host"] == HOST and s["binary"] == COMPUTE]
    return service


def _assert_unauthorized(resp: requests.Response, keystone: Keystone) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == 401
    # keystonemiddleware (delay_auth_decision) tells the client where to authenticate, as Nova does.
    assert resp.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.auth_url}"'


def test_request_without_token_is_unauthorized(stack, keystone):
    _assert_unauthorized(_get_services(stack, None), keystone)


def test_invalid_token_is_unauthorized(stack, keystone):
    _assert_unauthorized(_get_services(stack, "gAAAAAnot-a-real-fernet-token"), keystone)


def test_version_document_needs_no_token(stack):
    assert requests.get(f"{stack.endpoint}/", timeout=10).status_code == 200


def test_member_token_is_refused_by_policy(stack, keystone):
    # spec/nova-compute-api.md section 5: a non-admin caller gets Nova's 403 for the list rule.
    resp = _get_services(stack, keystone.token(keystone.member))
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"forbidden": {
        "code": 403, "message": "Policy doesn't allow os_compute_api:os-services:list to be performed."}}


def test_member_changes_nothing(stack, keystone):
    # spec/nova-compute-api.md section 5: update and delete are refused before anything is touched.
    before = _compute_service(stack, keystone)
    token = keystone.token(keystone.member)
    forced = not before["forced_down"]
    attempts = [
        ("PUT", "/os-services/force-down", "2.11", {"host": HOST, "binary": COMPUTE, "forced_down": forced},
         "update"),
        ("PUT", "/os-services/disable", "2.11", {"host": HOST, "binary": COMPUTE}, "update"),
        ("PUT", f"/os-services/{before['id']}", "2.53", {"forced_down": forced}, "update"),
        ("DELETE", f"/os-services/{before['id']}", "2.53", None, "delete"),
    ]
    for method, path, version, body, rule in attempts:
        resp = requests.request(method, stack.endpoint + path, json=body, timeout=10,
                                headers={"X-Auth-Token": token, "X-OpenStack-Nova-API-Version": version})
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["forbidden"]["message"] == (
            f"Policy doesn't allow os_compute_api:os-services:{rule} to be performed.")
    after = _compute_service(stack, keystone)
    for key in ("id", "status", "disabled_reason", "forced_down", "state"):
        assert after[key] == before[key], key


def test_admin_token_lists_services(stack, keystone):
    resp = _get_services(stack, keystone.token(keystone.admin))
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.11"
    [service] = [s for s in resp.json()["services"] if s["host"] == HOST]
    assert service["binary"] == COMPUTE
    assert service["forced_down"] is False


def _openstack(keystone: Keystone, *args: str) -> subprocess.CompletedProcess:
    """The ``openstack`` CLI with password auth; it finds novalite through the Keystone catalog."""
    argv = [str(OPENSTACK), "--os-compute-api-version", "2.11", *args]
    proc = subprocess.run(argv, env=keystone.client_env(keystone.admin), capture_output=True, text=True,
                          timeout=60, cwd=keystone.root)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_openstack_cli_forces_down_with_password_auth(stack, keystone):
    # Nova's gate evacuate hook does exactly this (spec/clients.md section 2.2).
    _openstack(keystone, "compute", "service", "set", "--down", HOST, COMPUTE)
    rows = json.loads(_openstack(keystone, "compute", "service", "list", "--long", "-f", "json").stdout)
    [row] = [r for r in rows if r["Host"] == HOST and r["Binary"] == COMPUTE]
    assert row["Forced Down"] is True
    assert row["State"] == "down"
    assert _compute_service(stack, keystone)["forced_down"] is True
