"""The simulated host's power switch: a fencer's confirmed power-off of a host that is only a process."""

from __future__ import annotations

import subprocess
import sys

from tests.clients import agent_process
from tests.stack import wait_until


def simulated_host(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "novalite.cli.main", "simulated-host", *args, "--config-file",
                           str(stack.config_file)], capture_output=True, text=True, timeout=30)


def test_power_off_kills_the_hosts_agent_and_confirms_it(make_stack):
    stack = make_stack()
    stack.start_compute("compute1")
    stack.start_compute("compute2")
    stack.wait_for_computes("compute1", "compute2")
    assert simulated_host(stack, "power-state", "compute1").stdout.strip() == "on"

    off = simulated_host(stack, "power-off", "compute1")
    assert (off.returncode, off.stdout.strip()) == (0, "compute1: off")
    wait_until(lambda: agent_process(stack, "compute1").poll() is not None, timeout=5, what="agent gone")
    assert simulated_host(stack, "power-state", "compute1").stdout.strip() == "off"
    # Only that host: its neighbour still runs.
    assert agent_process(stack, "compute2").poll() is None
    assert simulated_host(stack, "power-state", "compute2").stdout.strip() == "on"
    # Powering off a host that is off is a confirmed off, not an error.
    assert simulated_host(stack, "power-off", "compute1").returncode == 0


def test_a_reused_pid_is_not_the_host(make_stack, tmp_path):
    stack = make_stack()
    state_dir = stack.root / ".novalite-compute" / "compute9"
    state_dir.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (state_dir / "agent.pid").write_text(f"{bystander.pid}\n")
        assert simulated_host(stack, "power-state", "compute9").stdout.strip() == "off"
        assert simulated_host(stack, "power-off", "compute9").returncode == 0
        assert bystander.poll() is None  # not killed: its command line is not compute9's agent
    finally:
        bystander.kill()
        bystander.wait()
