"""Drive the real OpenStack clients from PyPI against a live novalite stack, without Keystone.

How each client is pointed at novalite is in spec/clients.md section 4: the ``nova`` and
``openstack`` CLIs and openstacksdk use keystoneauth's ``admin_token`` plugin with the stack's
admin token and endpoint; tempest.lib gets an ``AuthProvider`` that returns both as they are (6.4).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests
from tempest.lib import auth as tempest_auth
from tempest.lib.services.compute import base_compute_client
from tempest.lib.services.compute.services_client import ServicesClient

from tests import zygote
from tests.stack import Stack

BIN = Path(sys.executable).parent
CLI_TIMEOUT = 60


def client_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any OS_* or NOVALITE_* setting that could leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "NOVALITE_"))}
    env.update(extra)
    return env


def token_env(stack: Stack) -> dict[str, str]:
    """keystoneauth's admin_token plugin: the stack's admin token sent to its fixed endpoint."""
    return client_env(OS_AUTH_TYPE="admin_token", OS_TOKEN=stack.admin_token, OS_ENDPOINT=stack.endpoint)


def nova_env(stack: Stack) -> dict[str, str]:
    """novaclient also insists on a user, project and auth URL; these dummies are never contacted."""
    return {**token_env(stack), "OS_USERNAME": "x", "OS_PROJECT_ID": "x", "OS_AUTH_URL": "http://unused.invalid/"}


def run_cli(argv: list[str], env: dict[str, str], expect_rc: int = 0) -> subprocess.CompletedProcess:
    """``argv[0]`` is ``openstack``, ``nova`` or ``novalite``: the console script's main() in a process of its own
    (forked from a tests.zygote, which imported its modules once)."""
    proc = zygote.run(argv[0], argv[1:], env, timeout=CLI_TIMEOUT)
    assert proc.returncode == expect_rc, (
        f"{' '.join(argv)} exited {proc.returncode} (expected {expect_rc})\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


def nova(stack: Stack, *args: str, version: str | None = None,
         expect_rc: int = 0) -> subprocess.CompletedProcess:
    """The ``nova`` CLI (python-novaclient); without ``version`` it negotiates min(server max, 2.96)."""
    argv = ["nova"]
    if version:
        argv += ["--os-compute-api-version", version]
    return run_cli([*argv, *args], nova_env(stack), expect_rc)


def openstack(stack: Stack | None, *args: str, version: str | None = None, env: dict[str, str] | None = None,
              expect_rc: int = 0) -> subprocess.CompletedProcess:
    """The ``openstack`` CLI (OSC); ``env`` replaces the admin_token settings (e.g. for clouds.yaml)."""
    argv = ["openstack"]
    if version:
        argv += ["--os-compute-api-version", version]
    return run_cli([*argv, *args], env if env is not None else token_env(stack), expect_rc)


def openstack_json(stack: Stack | None, *args: str, **kwargs) -> list | dict:
    return json.loads(openstack(stack, *args, "-f", "json", **kwargs).stdout)


def parse_table(output: str) -> list[dict[str, str]]:
    """Rows of the first prettytable in ``output`` as dicts keyed by the header cells."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    if not lines:
        return []
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, *rows = split
    return [dict(zip(header, row, strict=True)) for row in rows]


def services_by_host(stack: Stack, version: str = "2.53") -> dict[str, dict]:
    """GET /os-services as the server holds it, keyed by host (nova-compute only)."""
    return {s["host"]: s for s in stack.services(version) if s["binary"] == "nova-compute"}


def is_canonical_uuid(value: object) -> bool:
    """Nova emits service UUIDs as lowercase, dashed, 36-character strings."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def start_stack_with_computes(make_stack, *hosts: str, **stack_kwargs) -> Stack:
    stack = make_stack(**stack_kwargs)
    for host in hosts:
        stack.start_compute(host)
    stack.wait_for_computes(*hosts)
    return stack


def agent_process(stack: Stack, host: str) -> zygote.Process:
    """The most recently started compute agent of ``host``."""
    for proc in reversed(stack.procs):
        if proc.args[1:4] == ["compute", "--host", host]:
            return proc
    raise LookupError(f"no compute agent for {host} was started")


def stop_agent(stack: Stack, host: str) -> None:
    """SIGTERM the agent's process group (it runs in its own session) and wait for it to exit."""
    proc = agent_process(stack, host)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def raw_put(stack: Stack, path: str, body: dict, version: str) -> requests.Response:
    return requests.put(stack.endpoint + path, json=body, headers=stack.admin_headers(version), timeout=5)


# -- tempest.lib --------------------------------------------------------------------------------------

class FixedCredentials(tempest_auth.Credentials):
    ATTRIBUTES = ["token"]

    def is_valid(self) -> bool:
        return bool(self.token)


class FixedAuthProvider(tempest_auth.AuthProvider):
    """Authenticates every tempest request with one token against one endpoint (clients.md 6.4)."""

    def __init__(self, endpoint: str, token: str):
        self.endpoint = endpoint.rstrip("/")
        super().__init__(FixedCredentials(token=token))

    def _get_auth(self):
        return self.credentials.token, {}

    def _fill_credentials(self, auth_data_body) -> None:
        pass

    def is_expired(self, auth_data) -> bool:
        return False

    def base_url(self, filters, auth_data=None) -> str:
        return self.endpoint

    def _decorate_request(self, filters, method, url, headers=None, body=None, auth_data=None):
        token, _ = auth_data if auth_data is not None else self.get_auth()
        new_headers = dict(headers or {})
        new_headers["X-Auth-Token"] = token
        return f"{self.endpoint}/{url.lstrip('/')}" if url else self.endpoint, new_headers, body


def tempest_services_client(stack: Stack) -> ServicesClient:
    return ServicesClient(FixedAuthProvider(stack.endpoint, stack.admin_token), "compute", "RegionOne")


@contextlib.contextmanager
def compute_microversion(version: str | None) -> Iterator[None]:
    """Set tempest's module-global compute microversion for the block, as tempest's tests do."""
    saved = base_compute_client.COMPUTE_MICROVERSION
    base_compute_client.COMPUTE_MICROVERSION = version
    try:
        yield
    finally:
        base_compute_client.COMPUTE_MICROVERSION = saved
