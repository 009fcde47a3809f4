"""The simulated host's power switch: what a BMC is to a real host, for hosts that are only processes.

A simulated host is its compute agent process (its guests exist only in the agent's state file), so
"powered on" means that process runs and "powered off" means it is gone. The agent records its pid in
``<state dir>/agent.pid`` when it starts; ``power_off`` kills that process and returns only once it is
gone (a confirmed power-off, as a fencer needs). The pid is checked against the process's command line
(``compute --host <host>``) so a reused pid is never killed.

    novalite simulated-host power-off HOST --data-dir DIR      # exit 0: off, confirmed
    novalite simulated-host power-state HOST --data-dir DIR    # prints on or off
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PIDFILE = "agent.pid"


def record_agent(state_dir: str | os.PathLike) -> None:
    """Called by the agent at start: this process is the host's power."""
    path = Path(state_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / PIDFILE).write_text(f"{os.getpid()}\n")


def _agent_pid(state_dir: Path, host: str) -> int | None:
    """The running agent of ``host`` recorded in ``state_dir``, or None when no such process runs."""
    try:
        pid = int((state_dir / PIDFILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    args = [a.decode(errors="replace") for a in cmdline]
    if "compute" not in args or host not in args or "--host" not in args:
        return None  # the pid was reused by another process: this host's agent is not running
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    if "\nState:\tZ" in status:
        return None  # a zombie no longer runs anything
    return pid


def power_state(state_dir: str | os.PathLike, host: str) -> str:
    return "on" if _agent_pid(Path(state_dir), host) is not None else "off"


def power_off(state_dir: str | os.PathLike, host: str, timeout: float = 10.0) -> bool:
    """Kill the host's agent and wait until it is gone; True once off (also when it already was)."""
    state_dir = Path(state_dir)
    pid = _agent_pid(state_dir, host)
    if pid is None:
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _agent_pid(state_dir, host) is None:
            return True
        time.sleep(0.01)
    return False
