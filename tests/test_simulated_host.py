"""The simulated host's power switch: a fencer's confirmed power-off of a host that is only a process.

Both of its commands: ``novalite simulated-host`` and the quick-starting ``python -m
novalite.agent.simulated_host`` that ``novalite up`` wires as its command fencer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from novalite import config
from novalite.agent.simulated_host import state_dir_of
from tests.clients import agent_process

ENTRY_POINTS = {"cli": ["-m", "novalite.cli.main", "simulated-host"], "fencer": ["-m", "novalite.agent.simulated_host"]}
HEAVY = ["requests", "urllib3", "keystoneauth1", "openstack", "sqlalchemy", "alembic", "falcon", "gunicorn",
         "oslo_policy", "sqlite3", "novalite.client", "novalite.monitor", "novalite.db", "novalite.api"]


@pytest.fixture(params=sorted(ENTRY_POINTS))
def entry(request) -> list[str]:
    return ENTRY_POINTS[request.param]


def simulated_host(stack, *args: str, entry: list[str] = ENTRY_POINTS["cli"]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *entry, *args, "--config-file", str(stack.config_file)],
                          capture_output=True, text=True, timeout=30)


def test_power_off_kills_the_hosts_agent_and_confirms_it(make_stack, entry):
    stack = make_stack()
    stack.start_compute("compute1")
    stack.start_compute("compute2")
    stack.wait_for_computes("compute1", "compute2")
    assert simulated_host(stack, "power-state", "compute1", entry=entry).stdout.strip() == "on"

    off = simulated_host(stack, "power-off", "compute1", entry=entry)
    assert (off.returncode, off.stdout.strip()) == (0, "compute1: off")
    # Confirmed: when it answers, the agent has exited (its parent, this test, reaps it without waiting).
    assert agent_process(stack, "compute1").poll() is not None
    assert simulated_host(stack, "power-state", "compute1", entry=entry).stdout.strip() == "off"
    # Only that host: its neighbour still runs.
    assert agent_process(stack, "compute2").poll() is None
    assert simulated_host(stack, "power-state", "compute2", entry=entry).stdout.strip() == "on"
    # Powering off a host that is off is a confirmed off, not an error.
    assert simulated_host(stack, "power-off", "compute1", entry=entry).returncode == 0


def _imports_of(main: str, argv: list[str], watched: list[str]) -> str:
    """Run ``main(argv)`` (module:function) in a new interpreter: its status and which of ``watched`` it imported."""
    module, function = main.split(":")
    probe = (f"import sys\nfrom {module} import {function}\nstatus = {function}({argv!r})\n"
             f"print(status, sorted(m for m in {watched!r} if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert run.stdout, run.stderr
    return run.stdout.splitlines()[-1]


@pytest.mark.no_database
def test_the_fence_commands_start_without_the_client_or_server_libraries(tmp_path):
    # The command fencer of `novalite up` runs a new interpreter per host failure, on the way to forced_down
    # (issue 4: forced_down visible ≤ 0.5 s after the failure). Its start-up is fencing time, so neither
    # command imports what only the client commands, the API or the monitor need; the fencer's own entry point
    # not even argparse or the configuration module.
    conf = tmp_path / "novalite.conf"
    conf.write_text("[api]\nauth_strategy = noauth2\n")
    argv = ["power-off", "compute9", "--config-file", str(conf)]
    assert _imports_of("novalite.cli.main:main", ["simulated-host", *argv], HEAVY) == "0 []"
    assert _imports_of("novalite.agent.simulated_host:main", argv, [*HEAVY, "argparse", "novalite.config"]) == "0 []"


@pytest.mark.no_database
@pytest.mark.parametrize("compute, environ", [
    ("", {}),
    ("[compute]\nstate_path = /srv/novalite-hosts\n", {}),
    ("[compute]\nstate_path = /srv/novalite-hosts\n", {"NOVALITE_COMPUTE__STATE_PATH": "/elsewhere"}),
    ("", {"NOVALITE_COMPUTE__STATE_PATH": "relative/hosts"}),
])
def test_the_fencers_entry_point_finds_the_host_where_the_configuration_puts_it(tmp_path, compute, environ):
    # It reads [compute] state_path without the configuration module: a directory other than the agent's
    # would find no agent there and answer "off" while the host runs.
    conf = tmp_path / "novalite.conf"
    conf.write_text(f"[api]\nauth_strategy = noauth2\n{compute}")
    expected = config.load(conf, environ=environ).compute_state_dir("compute1", conf.parent)
    assert state_dir_of(conf, "compute1", environ) == expected


@pytest.mark.no_database
@pytest.mark.parametrize("argv", [[], ["power-off"], ["reboot", "compute1", "--data-dir", "d"],
                                  ["power-off", "compute1"], ["power-off", "compute1", "--data-dir"],
                                  ["power-off", "compute1", "--data-dir", "d", "--config-file", "f"],
                                  ["power-off", "compute1", "--data-dir", "d", "--force"]])
def test_the_fencers_entry_point_refuses_a_command_line_it_does_not_know(argv, capsys):
    from novalite.agent.simulated_host import main

    assert main(argv) == 2
    assert "usage: python -m novalite.agent.simulated_host" in capsys.readouterr().err


@pytest.mark.parametrize("recorded", ["{pid} {started_before}", "{pid}"], ids=["start-time", "older-pidfile"])
def test_a_reused_pid_is_not_the_host(make_stack, tmp_path, entry, recorded):
    stack = make_stack()
    state_dir = stack.root / ".novalite-compute" / "compute9"
    state_dir.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The agent recorded its pid and start time; a process started later got the pid. A pidfile of an
        # older agent has no start time: the command line tells (not compute9's agent).
        started = int(Path(f"/proc/{bystander.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        (state_dir / "agent.pid").write_text(recorded.format(pid=bystander.pid, started_before=started - 1) + "\n")
        assert simulated_host(stack, "power-state", "compute9", entry=entry).stdout.strip() == "off"
        assert simulated_host(stack, "power-off", "compute9", entry=entry).returncode == 0
        assert bystander.poll() is None  # not killed
    finally:
        bystander.kill()
        bystander.wait()


def test_power_off_shuts_the_hosts_guests_down_as_a_power_cut_does(tmp_path):
    # A fenced host powered on again must not come back running the servers evacuated away from it (issue 4:
    # never two running copies); its agent is already gone here, as after a kill -9, and it is still a power cut.
    import asyncio

    from novalite.agent.virt.driver import GuestSpec, PowerState
    from novalite.agent.virt.simulated import SimulatedDriver

    conf = tmp_path / "novalite.conf"
    conf.write_text("[api]\nauth_strategy = noauth2\n")  # the least a config file needs; nothing else is read
    state_dir = tmp_path / ".novalite-compute" / "compute1"
    specs = [GuestSpec(uuid=f"11111111-0000-0000-0000-{n:012d}", name=f"vm{n}", vcpus=1, memory_mb=512, root_gb=1)
             for n in (1, 2)]

    async def guests(stop: str | None = None) -> dict[str, PowerState]:
        driver = SimulatedDriver(state_dir=state_dir)
        await driver.init_host("compute1")
        for spec in specs if stop else []:
            await driver.spawn(spec)
        if stop:
            await driver.power_off(stop)
        return {uuid: (await driver.get_info(uuid)).power_state for uuid in await driver.list_instance_uuids()}

    assert asyncio.run(guests(stop=specs[1].uuid)) == {specs[0].uuid: PowerState.RUNNING,
                                                        specs[1].uuid: PowerState.SHUTDOWN}
    off = subprocess.run([sys.executable, "-m", "novalite.cli.main", "simulated-host", "power-off", "compute1",
                          "--config-file", str(conf)], capture_output=True, text=True, timeout=30)
    assert (off.returncode, off.stdout.strip()) == (0, "compute1: off"), off.stderr
    assert asyncio.run(guests()) == {s.uuid: PowerState.SHUTDOWN for s in specs}  # defined still, none running
