"""The ``novalite`` client commands (novaclient syntax) as subprocesses against a live stack.

Each command runs as the ``novalite`` console script's main() in a process of its own (tests/zygote.py), with
the real compute agents of the stack registered, authenticated like any OpenStack tool: a clouds.yaml cloud
(keystoneauth admin_token) named by ``--os-cloud``, or OS_* variables. What a command changed is checked with
GET /os-services on the stack, not through the CLI. Requests are those of spec clients.md 1.2; the API facts
pinned are from spec nova-compute-api.md section 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from novalite.client import MAX_VERSION, ApiVersion
from tests import databases
from tests.clients import run_cli
from tests.stack import Stack

pytestmark = pytest.mark.live

COMPUTE = "nova-compute"
CLOUD = "novalite"
CLI_TIMEOUT = 60


# -- helpers ------------------------------------------------------------------------------------------

def _clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any OS_* or NOVALITE_* setting that could leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "NOVALITE_"))}
    env.update(extra)
    return env


def clouds_env(stack: Stack, **cloud_settings: str) -> dict[str, str]:
    """A clouds.yaml like `novalite up` writes (admin_token), found through OS_CLIENT_CONFIG_FILE."""
    cloud = {"auth_type": "admin_token", "auth": {"endpoint": stack.endpoint, "token": stack.admin_token},
             **cloud_settings}
    path = stack.root / f"clouds-{len(cloud_settings)}.yaml"
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: cloud}}))
    return _clean_env(OS_CLIENT_CONFIG_FILE=str(path), HOME=str(stack.root))


def os_env(stack: Stack, **extra: str) -> dict[str, str]:
    """No clouds.yaml: keystoneauth's admin_token plugin from OS_* variables alone."""
    return _clean_env(OS_AUTH_TYPE="admin_token", OS_TOKEN=stack.admin_token, OS_ENDPOINT=stack.endpoint,
                      HOME=str(stack.root), **extra)


def novalite(env: dict[str, str], *args: str, rc: int = 0) -> subprocess.CompletedProcess:
    return run_cli(["novalite", *args], env, expect_rc=rc)


def cloud(env: dict[str, str], *args: str, rc: int = 0) -> subprocess.CompletedProcess:
    """``novalite --os-cloud novalite ARGS``: the global options before the command, as novaclient."""
    return novalite(env, "--os-cloud", CLOUD, *args, rc=rc)


def cloud_json(env: dict[str, str], *args: str) -> list | dict:
    return json.loads(cloud(env, "-f", "json", *args).stdout)


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of a prettytable as dicts keyed by the header cells."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[1:]]


def service(stack: Stack, host: str, binary: str = COMPUTE) -> dict:
    """The service as GET /os-services at 2.53 shows it (the state the tests assert)."""
    return next(s for s in stack.services("2.53") if s["host"] == host and s["binary"] == binary)


def flags(stack: Stack, host: str) -> tuple[bool, str, str | None]:
    found = service(stack, host)
    return found["forced_down"], found["status"], found["disabled_reason"]


def sent_version(debug_stderr: str) -> str:
    """The microversion of the client's requests, from keystoneauth's --debug request log."""
    versions = set(re.findall(r"X-OpenStack-Nova-API-Version: ([0-9.]+)", debug_stderr))
    assert len(versions) == 1, debug_stderr
    return versions.pop()


def _with_computes(stack: Stack) -> Stack:
    stack.start_compute("compute1")
    stack.start_compute("compute2")
    stack.wait_for_computes("compute1", "compute2")
    return stack


@pytest.fixture
def stack(make_stack) -> Stack:
    """A live API with two real compute agents registered, for a test that changes services."""
    return _with_computes(make_stack())


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Iterator[Stack]:
    """One live stack for the tests that change nothing (listing, refusals, errors)."""
    root = tmp_path_factory.mktemp("cli-shared")
    with databases.for_module(root) as database_url:
        stack = Stack(root=root, database_url=database_url)
        try:
            stack.start_api()
            yield _with_computes(stack)
        finally:
            stack.close()


# -- service-list ------------------------------------------------------------------------------------

def test_service_list_table_shows_novaclient_columns(shared):
    env = clouds_env(shared)
    rows = table_rows(cloud(env, "service-list").stdout)
    assert {row["Host"] for row in rows} == {"compute1", "compute2"}
    assert list(rows[0]) == ["Id", "Binary", "Host", "Zone", "Status", "State", "Updated_at",
                             "Disabled Reason", "Forced down"]
    row = next(row for row in rows if row["Host"] == "compute1")
    assert (row["Id"], row["Binary"], row["Status"], row["State"], row["Disabled Reason"],
            row["Forced down"]) == (service(shared, "compute1")["id"], COMPUTE, "enabled", "up", "-", "False")


def test_service_list_json_with_host_and_binary_filters(shared):
    env = clouds_env(shared)
    listed = cloud_json(env, "service-list", "--host", "compute2", "--binary", COMPUTE)
    assert listed == [service(shared, "compute2") | {"updated_at": listed[0]["updated_at"]}]
    assert cloud_json(env, "service-list", "--host", "nosuch") == []
    # -f after the command too; at 2.11 ids are the integers of spec 3.2.
    at_211 = json.loads(novalite(env, "service-list", "--os-cloud", CLOUD, "--os-compute-api-version", "2.11",
                                 "-f", "json").stdout)
    assert sorted(type(s["id"]).__name__ for s in at_211) == ["int", "int"]


# -- service-force-down ------------------------------------------------------------------------------

def test_force_down_seed_form_host_and_binary_at_2_11(stack):
    # Nova's gate form: PUT /os-services/force-down with host+binary (spec 3.3).
    env = clouds_env(stack)
    out = cloud_json(env, "--os-compute-api-version", "2.11", "service-force-down", "compute1", COMPUTE)
    assert out == {"host": "compute1", "binary": COMPUTE, "forced_down": True}
    assert service(stack, "compute1")["forced_down"] is True
    assert service(stack, "compute1")["state"] == "down"
    assert service(stack, "compute2")["forced_down"] is False

    rows = table_rows(cloud(env, "--os-compute-api-version", "2.11", "service-force-down", "--unset",
                            "compute1", COMPUTE).stdout)
    assert rows == [{"Host": "compute1", "Binary": COMPUTE, "Forced down": "False"}]
    assert service(stack, "compute1")["forced_down"] is False


def test_force_down_novaclient_form_host_only_defaults_to_nova_compute(stack):
    env = clouds_env(stack)
    for version in ("2.11", "2.53"):
        out = cloud_json(env, "--os-compute-api-version", version, "service-force-down", "compute2")
        assert (out["host"], out["binary"], out["forced_down"]) == ("compute2", COMPUTE, True)
        assert service(stack, "compute2")["forced_down"] is True
        cloud(env, "--os-compute-api-version", version, "service-force-down", "--unset", "compute2")
        assert service(stack, "compute2")["forced_down"] is False


def test_force_down_by_uuid_at_2_53_answers_the_full_record(stack):
    env = clouds_env(stack)
    uuid = service(stack, "compute1")["id"]
    out = cloud_json(env, "--os-compute-api-version", "2.53", "service-force-down", uuid)
    # spec 3.4: the 2.53 PUT answers the whole record, state computed after the save.
    assert (out["id"], out["host"], out["forced_down"], out["state"]) == (uuid, "compute1", True, "down")
    assert service(stack, "compute1")["forced_down"] is True

    rows = table_rows(cloud(env, "--os-compute-api-version", "2.53", "service-force-down", "--unset",
                            uuid).stdout)
    assert rows == [{"ID": uuid, "Host": "compute1", "Binary": COMPUTE, "Forced down": "False"}]
    assert service(stack, "compute1")["forced_down"] is False


def test_force_down_below_2_11_is_refused_before_any_request(shared):
    env = clouds_env(shared)
    proc = cloud(env, "--os-compute-api-version", "2.10", "service-force-down", "compute1", rc=1)
    assert "2.11 or later" in proc.stderr and proc.stdout == ""
    assert service(shared, "compute1")["forced_down"] is False


def test_service_uuid_below_2_53_is_refused(shared):
    env = clouds_env(shared)
    uuid = service(shared, "compute1")["id"]
    proc = cloud(env, "--os-compute-api-version", "2.52", "service-force-down", uuid, rc=1)
    assert "2.53 or later" in proc.stderr
    assert service(shared, "compute1")["forced_down"] is False


# -- service-enable / service-disable ------------------------------------------------------------------

def test_disable_and_enable_by_host_at_2_11_use_the_legacy_actions(stack):
    env = clouds_env(stack)
    out = cloud_json(env, "--os-compute-api-version", "2.11", "service-disable", "--reason", "maint",
                     "compute1")
    # disable-log-reason answers host, binary, status, disabled_reason (spec 3.3).
    assert out == {"host": "compute1", "binary": COMPUTE, "status": "disabled", "disabled_reason": "maint"}
    assert flags(stack, "compute1") == (False, "disabled", "maint")

    rows = table_rows(cloud(env, "--os-compute-api-version", "2.11", "service-enable", "compute1",
                            COMPUTE).stdout)
    assert rows == [{"Host": "compute1", "Binary": COMPUTE, "Status": "enabled"}]
    assert flags(stack, "compute1") == (False, "enabled", None)

    out = cloud_json(env, "--os-compute-api-version", "2.11", "service-disable", "compute1", COMPUTE)
    assert out == {"host": "compute1", "binary": COMPUTE, "status": "disabled"}
    assert flags(stack, "compute1") == (False, "disabled", None)
    assert flags(stack, "compute2") == (False, "enabled", None)


def test_disable_and_enable_at_2_53_by_host_and_by_uuid(stack):
    env = clouds_env(stack)
    uuid = service(stack, "compute2")["id"]
    out = cloud_json(env, "--os-compute-api-version", "2.53", "service-disable", "--reason", "rack power",
                     "compute2", COMPUTE)
    assert (out["id"], out["status"], out["disabled_reason"]) == (uuid, "disabled", "rack power")
    assert flags(stack, "compute2") == (False, "disabled", "rack power")

    rows = table_rows(cloud(env, "--os-compute-api-version", "2.53", "service-enable", uuid).stdout)
    assert rows == [{"ID": uuid, "Host": "compute2", "Binary": COMPUTE, "Status": "enabled"}]
    assert flags(stack, "compute2") == (False, "enabled", None)

    cloud(env, "--os-compute-api-version", "2.53", "service-disable", uuid)
    assert flags(stack, "compute2") == (False, "disabled", None)


def test_unknown_host_at_2_53_is_reported_without_a_put(shared):
    env = clouds_env(shared)
    proc = cloud(env, "--os-compute-api-version", "2.53", "service-enable", "nosuch", rc=1)
    assert proc.stderr.strip() == 'ERROR (CommandError): Compute service for host "nosuch" and binary ' \
                                  '"nova-compute" not found.'


# -- service-delete ------------------------------------------------------------------------------------

def _stop_agent(stack: Stack, host: str) -> None:
    # spec 3.5: stop the compute first, or its next heartbeat finds its row gone.
    proc = next(p for p in stack.procs if f"--host {host} " in " ".join(map(str, p.args)) + " ")
    proc.terminate()
    proc.wait(timeout=10)


def test_delete_by_integer_id_at_2_11_and_by_uuid_at_2_53(stack):
    env = clouds_env(stack)
    _stop_agent(stack, "compute1")
    _stop_agent(stack, "compute2")
    legacy_id = next(s["id"] for s in stack.services("2.11") if s["host"] == "compute1")
    proc = cloud(env, "--os-compute-api-version", "2.11", "service-delete", str(legacy_id))
    assert proc.stdout == ""
    assert [s["host"] for s in stack.services()] == ["compute2"]

    cloud(env, "--os-compute-api-version", "2.53", "service-delete", service(stack, "compute2")["id"])
    assert stack.services() == []


# -- errors ------------------------------------------------------------------------------------------

def test_api_error_prints_novas_message_to_stderr_and_exits_1(shared):
    env = clouds_env(shared)
    proc = cloud(env, "--os-compute-api-version", "2.11", "service-force-down", "nosuch", rc=1)
    # spec 3.3 step 6, in novaclient's error line.
    assert proc.stderr.startswith("ERROR (NotFound): Host 'nosuch' is not mapped to any cell (HTTP 404)")
    assert proc.stdout == ""
    proc = cloud(env, "service-delete", "12345678-1234-1234-1234-123456789012", rc=1)
    assert proc.stderr.startswith("ERROR (NotFound): Service 12345678-1234-1234-1234-123456789012 not found. "
                                  "(HTTP 404)")
    proc = cloud(env, "--os-compute-api-version", "2.53", "service-delete", "7", rc=1)
    assert proc.stderr.startswith("ERROR (BadRequest): Invalid uuid 7 (HTTP 400)")


def test_bad_credentials_are_an_api_error(shared):
    env = os_env(shared)
    env["OS_TOKEN"] = "wrong"
    proc = novalite(env, "service-list", rc=1)
    assert proc.stderr.startswith("ERROR (Unauthorized):")


@pytest.mark.parametrize("args", [
    ["service-force-down"],
    ["service-list", "-f", "xml"],
    ["service-list", "--os-compute-api-version", "two"],
    ["service-enable", "12345678-1234-1234-1234-123456789012", COMPUTE],
    ["service-delete"],
])
def test_usage_errors_exit_2(shared, args):
    proc = cloud(clouds_env(shared), *args, rc=2)
    assert "error:" in proc.stderr


def test_unknown_cloud_is_an_error(shared):
    proc = novalite(clouds_env(shared), "--os-cloud", "nosuch", "service-list", rc=1)
    assert "nosuch" in proc.stderr


# -- auth from OS_* variables -----------------------------------------------------------------------

def test_os_variables_alone_drive_every_command(stack):
    env = os_env(stack, OS_COMPUTE_API_VERSION="2.11")
    rows = table_rows(novalite(env, "service-list", "--host", "compute1").stdout)
    legacy_id = next(s["id"] for s in stack.services("2.11") if s["host"] == "compute1")
    assert [(row["Id"], row["Host"]) for row in rows] == [(str(legacy_id), "compute1")]
    novalite(env, "service-force-down", "compute1", COMPUTE)
    novalite(env, "service-disable", "--reason", "maint", "compute2")
    assert flags(stack, "compute1") == (True, "enabled", None)
    assert flags(stack, "compute2") == (False, "disabled", "maint")
    novalite(env, "service-force-down", "--unset", "compute1")
    novalite(env, "service-enable", "compute2")
    assert flags(stack, "compute1") == (False, "enabled", None)
    assert flags(stack, "compute2") == (False, "enabled", None)


# -- microversion negotiation ------------------------------------------------------------------------

def _server_max(stack: Stack) -> ApiVersion:
    return ApiVersion.parse(requests.get(stack.endpoint, timeout=5).json()["version"]["version"])


def test_default_version_is_server_max_capped_at_the_clients(stack):
    env = clouds_env(stack)
    expected = min(_server_max(stack), MAX_VERSION)
    proc = novalite(env, "--debug", "--os-cloud", CLOUD, "-f", "json", "service-list")
    assert sent_version(proc.stderr) == str(expected)
    assert all(service["id"] == stack_service["id"] for service, stack_service
               in zip(json.loads(proc.stdout), stack.services("2.53"), strict=True))
    # At >= 2.53 a host is resolved to its UUID first, then PUT /os-services/{uuid} (spec 3.4).
    proc = novalite(env, "--debug", "--os-cloud", CLOUD, "service-force-down", "compute1")
    assert sent_version(proc.stderr) == str(expected)
    assert f"/os-services/{service(stack, 'compute1')['id']}" in proc.stderr
    assert service(stack, "compute1")["forced_down"] is True


@pytest.mark.parametrize("version", ["2.11", "2.53"])
def test_explicit_version_is_sent_as_given(stack, version):
    proc = novalite(clouds_env(stack), "--debug", "--os-cloud", CLOUD, "--os-compute-api-version", version,
                    "service-force-down", "compute2")
    assert sent_version(proc.stderr) == version
    legacy = "/os-services/force-down" in proc.stderr
    assert legacy is (version == "2.11")
    assert service(stack, "compute2")["forced_down"] is True


def test_version_from_clouds_yaml_and_out_of_range_versions(shared):
    env = clouds_env(shared, compute_api_version="2.11")
    listed = cloud_json(env, "service-list")
    assert {type(s["id"]) for s in listed} == {int}
    assert "forced_down" in listed[0]
    too_high = ApiVersion(_server_max(shared).major, _server_max(shared).minor + 1)
    proc = cloud(env, "--os-compute-api-version", str(too_high), "service-list", rc=1)
    assert f"compute API version {too_high} was requested" in proc.stderr
    # Below 2.11 the list has no forced_down (spec 3.2).
    listed = cloud_json(env, "--os-compute-api-version", "2.1", "service-list")
    assert "forced_down" not in listed[0]


def test_clouds_yaml_written_by_up_is_usable(shared, tmp_path: Path):
    from novalite.cli.up import StackPaths, write_clouds_yaml

    # The token written by `novalite up` is read from the data dir's admin-token file.
    paths = StackPaths(shared.root)
    write_clouds_yaml(paths, port=shared.port, auth_strategy="token")
    env = _clean_env(OS_CLIENT_CONFIG_FILE=str(paths.clouds_yaml), HOME=str(tmp_path))
    assert {s["host"] for s in cloud_json(env, "service-list")} == {"compute1", "compute2"}
