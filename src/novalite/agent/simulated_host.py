"""The simulated host's power switch: what a BMC is to a real host, for hosts that are only processes.

A simulated host is its compute agent process (its guests exist only in the agent's state file), so
"powered on" means that process runs and "powered off" means it is gone. The agent records its pid in
``<state dir>/agent.pid`` when it starts; ``power_off`` kills that process and returns only once it is
gone (a confirmed power-off, as a fencer needs). The pidfile holds the process's start time too
(``/proc/<pid>/stat``, clock ticks since boot), so a reused pid, whose process started later, is never
killed (a pidfile without it, from an older agent, is checked against the command line, ``compute --host
<host>``); the kill and the wait for the exit go through
a pidfd (Linux ≥ 5.3), so they reach that very process and the exit is known the moment it happens.

A confirmed power-off also marks every guest in the driver's state file SHUTDOWN: a real host's guests die
with its power. Without it, a fenced host powered on again would come back with the guests it ran still
running — a second running copy of each server evacuated away from it, until the agent's start-up
cleanup destroys them.

    novalite simulated-host power-off HOST --data-dir DIR      # exit 0: off, confirmed
    novalite simulated-host power-state HOST --data-dir DIR    # prints on or off

The same as a bare command, for the command fencer (``novalite up`` wires it): ``python -m
novalite.agent.simulated_host power-off HOST --config-file F``. It runs once per host failure, on the way to
forced_down, so its start-up is fencing time: it reads the one option it needs ([compute] state_path, as
config.Settings.compute_state_dir does) without argparse or the configuration module, and starts in about a
third of the time of ``novalite simulated-host`` (bench/README.md).
"""

from __future__ import annotations

import configparser
import json
import os
import select
import signal
import sys
import time
from pathlib import Path

PIDFILE = "agent.pid"
# The simulated driver's state file (agent/virt/simulated.py STATE_FILE, format 1), not imported from there:
# that module brings asyncio, and this one runs as the command fencer, where start-up is fencing time.
GUESTS_FILE = "guests.json"


def record_agent(state_dir: str | os.PathLike) -> None:
    """Called by the agent at start: this process is the host's power."""
    path = Path(state_dir)
    path.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (path / PIDFILE).write_text(f"{pid} {_start_time(pid)}\n")


def _start_time(pid: int) -> int:
    """When the process started, in clock ticks since boot (/proc/<pid>/stat field 22); OSError if gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # from field 3 on
    return int(fields[19])


def _is_agent(pid: int, recorded: list[str], host: str) -> bool:
    """Whether ``pid`` is still the process the pidfile recorded (OSError if gone)."""
    if len(recorded) > 1:
        return _start_time(pid) == int(recorded[1])
    args = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    return "compute" in args and host in args and "--host" in args


def _agent_pid(state_dir: Path, host: str) -> int | None:
    """The running agent of ``host`` recorded in ``state_dir``, or None when no such process runs."""
    try:
        recorded = (state_dir / PIDFILE).read_text().split()
        pid = int(recorded[0])
        if not _is_agent(pid, recorded, host):
            return None  # the pid was reused by another process: this host's agent is not running
    except (OSError, ValueError, IndexError):
        return None
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
    """Kill the host's agent and wait until it is gone, then shut its guests down; True once off (also when
    it already was)."""
    state_dir = Path(state_dir)
    if not _kill_agent(state_dir, host, timeout):
        return False
    _shut_down_guests(state_dir, host)
    return True


def _shut_down_guests(state_dir: Path, host: str) -> None:
    """The power is off, so are the guests: each one not SHUTDOWN in the state file becomes so. Only once no
    agent runs (it alone writes the file otherwise). A whole new file renamed over the old one, so a reader
    never sees half of it; not fsynced, unlike the driver's writes: a crash of the machine running the
    simulation is not what this simulates, and the fencer's time is the failover's."""
    path = state_dir / GUESTS_FILE
    try:
        state = json.loads(path.read_text())
        guests = [g for g in state["guests"].values() if g["power_state"] != "SHUTDOWN"]
    except FileNotFoundError:
        return
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # off all the same; the agent will refuse it
        print(f"{host}: off, but {path} is unreadable ({error!r}); its guests are left as they were", file=sys.stderr)
        return
    if not guests:
        return
    for guest in guests:
        guest["power_state"] = "SHUTDOWN"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.power-off")
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(json.dumps(state, indent=1, sort_keys=True))
    os.replace(temporary, path)


def _kill_agent(state_dir: Path, host: str, timeout: float) -> bool:
    """Kill the host's agent; True once it is gone (also when none ran)."""
    deadline = time.monotonic() + timeout
    while (pid := _agent_pid(state_dir, host)) is not None:
        if time.monotonic() >= deadline:
            return False
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone meanwhile: look again
        except (AttributeError, OSError):  # no pidfds (not Linux ≥ 5.3): signal the pid, poll /proc
            return _kill_and_poll(state_dir, host, pid, deadline)
        try:
            # The pidfd holds the process the pid named when it was opened. The pid is checked after the
            # open, and the process found not yet exited after the check: so the checked command line was
            # that process's, a pid reused in between is never signalled, and the wait below is for it.
            if _agent_pid(state_dir, host) != pid or _exited(pidfd, 0):
                continue
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                continue
            # Readable once the process has exited (all its threads): off, confirmed, without polling.
            return _exited(pidfd, max(0.0, deadline - time.monotonic()))
        finally:
            os.close(pidfd)
    return True


def _exited(pidfd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _kill_and_poll(state_dir: Path, host: str, pid: int, deadline: float) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while time.monotonic() < deadline:
        if _agent_pid(state_dir, host) is None:
            return True
        time.sleep(0.002)
    return False


USAGE = ("usage: python -m novalite.agent.simulated_host {power-off,power-state} HOST "
         "(--config-file F | --data-dir DIR) [--timeout SECONDS]")
STATE_PATH_VARIABLE = "NOVALITE_COMPUTE__STATE_PATH"  # config.load's override of [compute] state_path


def state_dir_of(config_file: str | os.PathLike, host: str, environ: dict[str, str] | None = None) -> Path:
    """``host``'s state directory under the configuration in ``config_file``: what
    ``config.load(config_file).compute_state_dir(host, <its directory>)`` gives, read with configparser alone."""
    environ = os.environ if environ is None else environ
    top = environ.get(STATE_PATH_VARIABLE)
    if top is None:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        if not parser.read(config_file):
            raise FileNotFoundError(f"config file {config_file} not found")
        top = parser.get("compute", "state_path", fallback="")
    return (Path(top) if top else Path(config_file).parent / ".novalite-compute") / host


def main(argv: list[str] | None = None) -> int:
    """``power-off`` (exit 0 once off, confirmed) or ``power-state`` (prints on or off) of one host."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        action, host, options = _parse(args)
        config_file = options.get("--config-file") or str(Path(options["--data-dir"]) / "novalite.conf")
        state_dir = state_dir_of(config_file, host)
        timeout = float(options.get("--timeout", "10"))
    except (ValueError, KeyError, FileNotFoundError, configparser.Error) as error:
        print(f"{error}\n{USAGE}", file=sys.stderr)
        return 2
    if action == "power-state":
        print(power_state(state_dir, host))
        return 0
    if power_off(state_dir, host, timeout=timeout):
        print(f"{host}: off")
        return 0
    print(f"{host}: still on after {timeout:g} s", file=sys.stderr)
    return 1


def _parse(args: list[str]) -> tuple[str, str, dict[str, str]]:
    if len(args) < 2 or args[0] not in ("power-off", "power-state"):
        raise ValueError("an action (power-off or power-state) and a host are needed")
    action, host, rest = args[0], args[1], args[2:]
    options: dict[str, str] = {}
    while rest:
        name, _, value = rest.pop(0).partition("=")
        if name not in ("--config-file", "--data-dir", "--timeout"):
            raise ValueError(f"unknown argument {name!r}")
        options[name] = value or (rest.pop(0) if rest else "")
        if not options[name]:
            raise ValueError(f"{name} needs a value")
    if ("--config-file" in options) == ("--data-dir" in options):
        raise ValueError("one of --config-file and --data-dir is needed")
    return action, host, options


if __name__ == "__main__":
    sys.exit(main())
