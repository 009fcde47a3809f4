"""The ``novalite`` server commands (novaclient syntax) as subprocesses against a live stack.

API, scheduler and compute agents run as real processes; each command runs as the ``novalite`` console
script's main() in a process of its own (tests/zygote.py), with keystoneauth's admin_token plugin from OS_*
variables. What a command did is checked through the API (GET /servers/{id}, /os-migrations), not through the
CLI. Syntax, columns and messages are python-novaclient 18's (novaclient/v2/shell.py); the request bodies per
microversion are spec clients.md 1.4; the API facts pinned are spec nova-compute-api.md sections 4.6, 6 and 8.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from novalite.cli.up import seed_flavors
from tests import databases
from tests.clients import agent_process, client_env, parse_table, run_cli
from tests.stack import Stack, free_port, wait_until
from tests.test_up_live import read_banner, start_up

pytestmark = pytest.mark.live

CLI_TIMEOUT = 120
HOSTS = ("compute1", "compute2", "compute3")


# -- helpers ------------------------------------------------------------------------------------------

def env_of(stack: Stack, **extra: str) -> dict[str, str]:
    return client_env(OS_AUTH_TYPE="admin_token", OS_TOKEN=stack.admin_token, OS_ENDPOINT=stack.endpoint,
                      HOME=str(stack.root), **extra)


def novalite(stack: Stack, *args: str, rc: int = 0, version: str | None = None) -> subprocess.CompletedProcess:
    """``novalite [--os-compute-api-version V] ARGS`` against ``stack``; asserts the exit status."""
    argv = ["novalite"]
    if version:
        argv += ["--os-compute-api-version", version]
    return run_cli([*argv, *args], env_of(stack), expect_rc=rc)


def api(stack: Stack, method: str, path: str, version: str = "2.74", **kwargs) -> requests.Response:
    return requests.request(method, stack.endpoint + path, headers=stack.admin_headers(version), timeout=10,
                            **kwargs)


def server(stack: Stack, uuid: str) -> dict | None:
    resp = api(stack, "GET", f"/servers/{uuid}")
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return resp.json()["server"]


def servers_named(stack: Stack, name: str) -> list[dict]:
    resp = api(stack, "GET", "/servers/detail", params={"all_tenants": "1"})
    resp.raise_for_status()
    return [s for s in resp.json()["servers"] if s["name"] == name]


def wait_status(stack: Stack, uuid: str, *statuses: str, timeout: float = 30) -> dict:
    def landed():
        found = server(stack, uuid)
        return found if found and found["status"] in statuses and found["OS-EXT-STS:task_state"] is None else None

    return wait_until(landed, timeout=timeout, what=f"server {uuid} in {statuses}")


def boot(stack: Stack, name: str, *options: str) -> list[dict]:
    """``novalite boot NAME --flavor m1.tiny OPTIONS --poll``: returns the ACTIVE servers named NAME."""
    out = novalite(stack, "boot", name, "--flavor", "m1.tiny", *options, "--poll").stdout
    assert "Finished" in out, out
    found = servers_named(stack, name)
    assert found and all(s["status"] == "ACTIVE" for s in found), found
    return found


def kill_agent(stack: Stack, host: str) -> None:
    """The host dies: SIGKILL to its agent (no goodbye; its heartbeats stay fresh for service_down_time)."""
    proc = agent_process(stack, host)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def request_bodies(debug_stderr: str, path_part: str) -> list[dict]:
    """The JSON bodies of the requests to ``path_part`` in keystoneauth's --debug log (curl lines)."""
    bodies = []
    for line in debug_stderr.splitlines():
        if "REQ: curl" in line and path_part in line and " -d '" in line:
            bodies.append(json.loads(line.split(" -d '", 1)[1].rsplit("'", 1)[0]))
    return bodies


def _with_hosts(stack: Stack) -> Stack:
    """Flavors seeded as `novalite up` does, the scheduler and compute1..3 running."""
    seed_flavors(stack.database_url)
    stack.start_scheduler()
    for host in HOSTS:
        stack.start_compute(host)
    stack.wait_for_computes(*HOSTS)
    return stack


@pytest.fixture
def stack(make_stack) -> Stack:
    """A stack of its own (API, scheduler, compute1..3), for a test that kills a host."""
    return _with_hosts(make_stack())


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Iterator[Stack]:
    """One live stack for the tests that leave every host running."""
    root = tmp_path_factory.mktemp("cli-servers")
    with databases.for_module(root) as database_url:
        stack = Stack(root=root, database_url=database_url)
        try:
            stack.start_api()
            yield _with_hosts(stack)
        finally:
            stack.close()


# -- boot, list, show ---------------------------------------------------------------------------------

def test_boot_polls_until_active_and_list_shows_novaclients_columns(shared):
    (booted,) = boot(shared, "web")
    rows = [r for r in parse_table(novalite(shared, "list").stdout) if r["Name"] == "web"]
    # novaclient's `nova list` columns; an idle running server shows task state "-", power "Running".
    assert rows == [{"ID": booted["id"], "Name": "web", "Status": "ACTIVE", "Task State": "-",
                     "Power State": "Running", "Networks": ""}]

    rows = [r for r in parse_table(novalite(shared, "list", "--long", "--all-tenants").stdout) if r["Name"] == "web"]
    assert list(rows[0]) == ["ID", "Name", "Tenant ID", "Status", "Task State", "Power State", "Networks",
                             "Flavor", "Availability Zone", "Host", "Host Status"]
    assert (rows[0]["Host"], rows[0]["Availability Zone"], rows[0]["Flavor"], rows[0]["Host Status"]) == (
        booted["OS-EXT-SRV-ATTR:host"], "nova", "m1.tiny", "UP")  # spec 4.8: an up host is UP

    listed = json.loads(novalite(shared, "-f", "json", "list", "--name", "^web$").stdout)
    assert [s["id"] for s in listed] == [booted["id"]]
    host = booted["OS-EXT-SRV-ATTR:host"]
    for options, listed in ((("--host", host), True), (("--host", "nosuch"), False),
                            (("--status", "ACTIVE"), True), (("--status", "SHUTOFF"), False)):
        names = {r["Name"] for r in parse_table(novalite(shared, "list", *options).stdout)}
        assert ("web" in names) is listed, options


def test_show_by_name_and_by_id(shared):
    (booted,) = boot(shared, "shown", "--meta", "role=db", "--meta", "tier=2")
    props = {r["Property"]: r["Value"] for r in parse_table(novalite(shared, "show", "shown").stdout)}
    # novaclient's print_dict of _print_server: flattened flavor (2.47+), image placeholder, metadata as JSON.
    assert (props["id"], props["status"], props["flavor:original_name"]) == (booted["id"], "ACTIVE", "m1.tiny")
    assert props["image"] == "Attempt to boot from volume - no image supplied"
    assert json.loads(props["metadata"]) == {"role": "db", "tier": "2"}
    assert "links" not in props
    shown = json.loads(novalite(shared, "-f", "json", "show", booted["id"]).stdout)
    assert (shown["id"], shown["name"], shown["metadata"]) == (booted["id"], "shown", {"role": "db", "tier": "2"})


def test_boot_several_by_flavor_id_in_a_zone_on_a_requested_host(shared):
    booted = boot(shared, "batch", "--availability-zone", "nova", "--min-count", "3", "--host", "compute2")
    assert len(booted) == 3
    assert {(s["OS-EXT-SRV-ATTR:host"], s["OS-EXT-AZ:availability_zone"]) for s in booted} == {("compute2", "nova")}
    (by_id,) = boot(shared, "by-id", "--flavor", "1")  # the last --flavor wins: m1.tiny's id
    assert by_id["flavor"]["original_name"] == "m1.tiny"


def test_boot_refusals(shared):
    proc = novalite(shared, "boot", "x", "--flavor", "nosuch", rc=1)
    assert proc.stderr.strip() == "ERROR (CommandError): No flavor with a name or ID of 'nosuch' exists."
    proc = novalite(shared, "boot", "x", "--flavor", "m1.tiny", "--meta", "novalue", rc=2)
    assert "'novalue' is not in the format of 'key=value'" in proc.stderr
    # novaclient offers --host from 2.74 only.
    novalite(shared, "boot", "x", "--flavor", "m1.tiny", "--host", "compute1", version="2.73", rc=2)
    proc = novalite(shared, "boot", "x", "--flavor", "m1.tiny", "--min-count", "3", "--max-count", "2", rc=1)
    assert "min_count should be <= max_count" in proc.stderr
    assert servers_named(shared, "x") == []


def test_unknown_server_is_novaclients_command_error(shared):
    proc = novalite(shared, "show", "nosuch", rc=1)
    assert proc.stderr.strip() == "ERROR (CommandError): No server with a name or ID of 'nosuch' exists."


# -- stop, start, delete ------------------------------------------------------------------------------

def test_stop_and_start(shared):
    (booted,) = boot(shared, "cycle")
    out = novalite(shared, "stop", "cycle").stdout
    assert out.strip() == "Request to stop server cycle has been accepted."
    stopped = wait_status(shared, booted["id"], "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4  # Shutdown

    # Nova's 409 for a stopped server (check_instance_state), one line per server, then novaclient's error.
    proc = novalite(shared, "stop", booted["id"], rc=1)
    assert proc.stdout == ""
    assert f"Cannot 'stop' instance {booted['id']} while it is in vm_state stopped (HTTP 409)" in proc.stderr
    assert proc.stderr.rstrip().endswith("ERROR (CommandError): Unable to stop the specified server(s).")

    assert novalite(shared, "start", booted["id"]).stdout.strip() == (
        f"Request to start server {booted['id']} has been accepted.")
    wait_status(shared, booted["id"], "ACTIVE")


def test_delete_several_reports_each(shared):
    first, = boot(shared, "gone1")
    second, = boot(shared, "gone2")
    proc = novalite(shared, "delete", "gone1", second["id"], "nosuch", rc=1)
    assert proc.stdout.splitlines() == ["Request to delete server gone1 has been accepted.",
                                        f"Request to delete server {second['id']} has been accepted."]
    assert "No server with a name or ID of 'nosuch' exists." in proc.stderr
    wait_until(lambda: server(shared, first["id"]) is None and server(shared, second["id"]) is None,
               timeout=30, what="both servers deleted")


# -- hypervisor-list ----------------------------------------------------------------------------------

def test_hypervisor_list_and_matching(shared):
    rows = parse_table(novalite(shared, "hypervisor-list").stdout)
    assert list(rows[0]) == ["ID", "Hypervisor hostname", "State", "Status"]
    assert {(r["Hypervisor hostname"], r["State"], r["Status"]) for r in rows} == {
        (h, "up", "enabled") for h in HOSTS}
    # --matching is the hostname search: a query parameter from 2.53, /os-hypervisors/{pattern}/search before.
    for version in ("2.53", "2.52"):
        rows = parse_table(novalite(shared, "hypervisor-list", "--matching", "compute2", version=version).stdout)
        assert [r["Hypervisor hostname"] for r in rows] == ["compute2"]
    proc = novalite(shared, "hypervisor-list", "--matching", "nosuch", rc=1)
    assert proc.stderr.startswith("ERROR (NotFound): No hypervisor matching 'nosuch' could be found. (HTTP 404)")


# -- evacuate -----------------------------------------------------------------------------------------

def test_evacuate_refused_while_the_source_host_is_up(shared):
    (booted,) = boot(shared, "pinned")
    proc = novalite(shared, "evacuate", "pinned", rc=1)
    # Spec 6 step 10: 400 while the source's compute service is up, in novaclient's error line.
    host = booted["OS-EXT-SRV-ATTR:host"]
    assert proc.stderr.startswith(f"ERROR (BadRequest): Compute service of {host} is still in use. (HTTP 400)")
    assert server(shared, booted["id"])["status"] == "ACTIVE"


def test_evacuate_after_kill_and_force_down_then_migration_list(stack):
    a, = boot(stack, "a", "--host", "compute1")
    b, = boot(stack, "b", "--host", "compute1")
    kill_agent(stack, "compute1")
    novalite(stack, "service-force-down", "compute1")

    # Negotiated 2.96 (>= 2.95): the evacuated server lands stopped (spec 6); 2.14+ answers no body.
    proc = novalite(stack, "--debug", "evacuate", "a")
    assert proc.stdout == ""
    assert request_bodies(proc.stderr, f"/servers/{a['id']}/action") == [{"evacuate": {}}]
    landed = wait_status(stack, a["id"], "SHUTOFF")
    assert landed["OS-EXT-SRV-ATTR:host"] in ("compute2", "compute3")

    # 2.29-2.67 with a target host and --force: the body carries force (clients.md 1.4); it lands ACTIVE.
    proc = novalite(stack, "--debug", "evacuate", "--force", b["id"], "compute3", version="2.29")
    assert request_bodies(proc.stderr, f"/servers/{b['id']}/action") == [
        {"evacuate": {"host": "compute3", "force": True}}]
    assert wait_status(stack, b["id"], "ACTIVE")["OS-EXT-SRV-ATTR:host"] == "compute3"
    novalite(stack, "evacuate", "--force", "b", version="2.68", rc=2)  # no --force from 2.68, as novaclient

    rows = parse_table(novalite(stack, "migration-list", "--migration-type", "evacuation").stdout)
    # novaclient's columns at 2.80+ (Id, UUID ... Type, Project ID, User ID), one row per evacuation.
    assert list(rows[0])[:2] == ["Id", "UUID"] and list(rows[0])[-3:] == ["Type", "Project ID", "User ID"]
    assert sorted((r["Instance UUID"], r["Source Compute"], r["Type"]) for r in rows) == sorted(
        [(a["id"], "compute1", "evacuation"), (b["id"], "compute1", "evacuation")])
    mine = parse_table(novalite(stack, "migration-list", "--instance-uuid", b["id"]).stdout)
    assert [(r["Dest Compute"], r["Status"]) for r in mine] == [("compute3", "done")]
    assert parse_table(novalite(stack, "migration-list", "--host", "compute2", "--status", "failed").stdout) == []
    # Below 2.23 novaclient prints neither Id nor Type.
    old = parse_table(novalite(stack, "migration-list", version="2.22").stdout)
    assert "Id" not in old[0] and "Type" not in old[0] and len(old) == 2


def test_evacuate_below_2_14_sends_on_shared_storage_and_prints_the_password(stack):
    a, = boot(stack, "old", "--host", "compute1")
    kill_agent(stack, "compute1")
    novalite(stack, "service-force-down", "compute1", version="2.11")
    proc = novalite(stack, "--debug", "evacuate", "old", version="2.13")
    # clients.md 1.4: onSharedStorage is always sent before 2.14; Nova answers the new adminPass (spec 6).
    assert request_bodies(proc.stderr, f"/servers/{a['id']}/action") == [{"evacuate": {"onSharedStorage": False}}]
    props = {r["Property"]: r["Value"] for r in parse_table(proc.stdout)}
    assert list(props) == ["adminPass"] and props["adminPass"]
    assert wait_status(stack, a["id"], "ACTIVE")["OS-EXT-SRV-ATTR:host"] in ("compute2", "compute3")


# -- host-evacuate ------------------------------------------------------------------------------------

def _boot_on_compute1(stack: Stack, count: int) -> set[str]:
    return {s["id"] for s in boot(stack, "vm", "--host", "compute1", "--min-count", str(count))}


def test_host_evacuate_refused_while_up_then_parallel_with_progress_and_table(stack):
    ids = _boot_on_compute1(stack, 6)
    kill_agent(stack, "compute1")

    # Still up (fresh heartbeats): each evacuation is refused with Nova's 400, in novaclient's row; exit 1.
    proc = novalite(stack, "host-evacuate", "compute1", version="2.53", rc=1)
    rows = parse_table(proc.stdout)
    assert {r["Server UUID"] for r in rows} == ids
    assert {r["Evacuate Accepted"] for r in rows} == {"False"}
    assert all(r["Error Message"].startswith("Error while evacuating instance: Compute service of compute1 is "
                                             "still in use. (HTTP 400)") for r in rows), proc.stdout
    assert sum(": refused: Compute service of compute1 is still in use." in line
               for line in proc.stdout.splitlines()) == 6

    novalite(stack, "service-force-down", "compute1")
    proc = novalite(stack, "host-evacuate", "compute1", version="2.53")
    lines = proc.stdout.splitlines()
    assert lines[0] == "Evacuating 6 server(s) from compute1 (compute API 2.53)"
    accepted = [line for line in lines if line.endswith(": evacuation accepted")]
    landed = [line for line in lines if re.search(r": ACTIVE on compute[23] \(\d+\.\d s\)$", line)]
    assert {line.split()[0] for line in accepted} == ids == {line.split()[0] for line in landed}
    # Every accept is printed before the server it concerns is reported landed.
    assert all(lines.index(next(a for a in accepted if a.startswith(uuid)))
               < lines.index(next(x for x in landed if x.startswith(uuid))) for uuid in ids)
    assert "6 of 6 server(s) evacuated, 0 failed" in proc.stdout
    rows = parse_table(proc.stdout)
    assert list(rows[0]) == ["Server UUID", "Evacuate Accepted", "Error Message", "Host", "Status"]
    assert {r["Server UUID"] for r in rows} == ids
    assert all((r["Evacuate Accepted"], r["Error Message"], r["Status"]) == ("True", "", "ACTIVE")
               and r["Host"] in ("compute2", "compute3") for r in rows), proc.stdout
    for uuid in ids:  # the API agrees
        found = server(stack, uuid)
        assert (found["status"], found["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", next(
            r["Host"] for r in rows if r["Server UUID"] == uuid))

    # Nothing is left on compute1: an empty table, exit 0.
    again = novalite(stack, "host-evacuate", "compute1")
    assert parse_table(again.stdout) == [] and "Evacuating 0 server(s) from compute1" in again.stdout
    rows = parse_table(novalite(stack, "hypervisor-list", "--matching", "compute1").stdout)
    assert [(r["State"], r["Status"]) for r in rows] == [("down", "enabled")]  # spec 8: forced down is down


def test_host_evacuate_below_2_53_strict_no_wait_and_json(stack):
    ids = _boot_on_compute1(stack, 3)
    kill_agent(stack, "compute1")
    novalite(stack, "service-force-down", "compute1", version="2.11")
    proc = novalite(stack, "host-evacuate", "nosuch", "--strict", version="2.52", rc=1)
    assert proc.stderr.startswith("ERROR (NotFound): No hypervisor matching 'nosuch' could be found.")

    # Below 2.53 the servers come from /os-hypervisors/compute1/servers (clients.md 1.4); --no-wait stops
    # after the accepts with novaclient's three columns; -f json keeps stdout for the records.
    proc = novalite(stack, "--debug", "-f", "json", "host-evacuate", "--strict", "--no-wait", "--target-host",
                    "compute3", "compute1", version="2.52")
    assert "/os-hypervisors/compute1/servers" in proc.stderr
    assert request_bodies(proc.stderr, "/action") == [{"evacuate": {"host": "compute3"}}] * 3
    records = json.loads(proc.stdout)
    assert {r["server_uuid"] for r in records} == ids
    assert all(r["evacuate_accepted"] is True and r["error_message"] == "" for r in records)
    assert "3 of 3 server(s) accepted, 0 failed" in proc.stderr
    for uuid in ids:
        assert wait_status(stack, uuid, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == "compute3"


def test_host_evacuate_on_a_terminal_redraws_one_status_line(stack):
    ids = _boot_on_compute1(stack, 2)
    kill_agent(stack, "compute1")
    novalite(stack, "service-force-down", "compute1")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "novalite.cli.main", "host-evacuate", "compute1"],
                            env=env_of(stack), stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=CLI_TIMEOUT) == 0, proc.stderr.read()
    out = b"".join(chunks).decode()
    # The status line is drawn in place (carriage return + erase line), and cleared before the table.
    assert "\r\x1b[Kevacuating: " in out and "\r\x1b[Kaccepting: " in out
    rows = parse_table(out.replace("\r\x1b[K", "\n").replace("\r\n", "\n"))
    # Default negotiation (2.96 >= 2.95): evacuated servers come to rest stopped (spec 6).
    assert {(r["Server UUID"], r["Evacuate Accepted"], r["Status"]) for r in rows} == {
        (uuid, "True", "SHUTOFF") for uuid in ids}


# -- novalite up --demo -------------------------------------------------------------------------------

@pytest.mark.only_backend("sqlite")  # `novalite up` keeps its own SQLite database in its data dir
def test_up_demo_boots_servers_and_its_next_steps_evacuate_a_host(tmp_path):
    data_dir, port = tmp_path / "stack", free_port()
    up = start_up(data_dir, port, "--demo", "--no-monitor", "--computes", "2", env=client_env())
    try:
        banner = read_banner(up)
        text = "".join(banner)
        assert "demo: 6 servers ACTIVE (compute1 " in text, text
        steps = [line.strip() for line in banner[banner.index(next(b for b in banner if b.startswith("Try "))) + 1:-1]]
        pid = int(re.match(r"kill -9 (\d+)", steps[0]).group(1))
        assert "--host\x00compute1" in Path(f"/proc/{pid}/cmdline").read_text()

        # The printed steps, as a newcomer pastes them (the clouds.yaml of the banner's export line).
        env = client_env(OS_CLIENT_CONFIG_FILE=str(data_dir / "clouds.yaml"), HOME=str(tmp_path))

        def step(index: int, rc: int = 0) -> subprocess.CompletedProcess:
            command = steps[index].split("#")[0].split()
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
            assert proc.returncode == rc, (steps[index], proc.stdout, proc.stderr)
            return proc

        on_compute1 = {r["ID"] for r in parse_table(step(4).stdout) if r["Host"] == "compute1"}
        assert on_compute1
        step(0)  # kill -9
        assert "still in use" in step(1, rc=1).stdout
        step(2)
        rows = parse_table(step(3).stdout)
        assert {r["Server UUID"] for r in rows} == on_compute1
        assert {(r["Evacuate Accepted"], r["Host"], r["Status"]) for r in rows} == {("True", "compute2", "ACTIVE")}
        assert {r["Host"] for r in parse_table(step(4).stdout)} == {"compute2"}
        assert {r["Status"] for r in parse_table(step(5).stdout) if r["Type"] == "evacuation"} == {"done"}
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=30)
