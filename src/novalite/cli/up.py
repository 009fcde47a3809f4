"""``novalite up``: the whole stack on one machine — the API, the scheduler and compute agents compute1..N.

Each part runs as its own process, as on real hosts, started in this order: the API (once it answers),
the scheduler (``novalite scheduler``, its service named after this machine), then the agents. If the
API or the scheduler exits, the stack stops. Everything lives under the data dir:

    novalite.conf   the configuration every process reads
    admin-token     the admin credential (0600), accepted by the API with auth_strategy=token
    agent-token     the compute agents' secret for /agent/v1 (0600)
    clouds.yaml     a "novalite" cloud for openstack/nova/openstacksdk (keystoneauth admin_token)
    novalite.sqlite the database, unless --database-url says otherwise
"""

from __future__ import annotations

import configparser
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from novalite.db import engine as db_engine
from novalite.secret_files import ensure_secret

CONFIG_NAME = "novalite.conf"
STARTUP_TIMEOUT = 30.0


@dataclass
class StackPaths:
    data_dir: Path

    @property
    def config(self) -> Path:
        return self.data_dir / CONFIG_NAME

    @property
    def admin_token(self) -> Path:
        return self.data_dir / "admin-token"

    @property
    def agent_token(self) -> Path:
        return self.data_dir / "agent-token"

    @property
    def monitor_key(self) -> Path:
        return self.data_dir / "monitor-key"

    @property
    def clouds_yaml(self) -> Path:
        return self.data_dir / "clouds.yaml"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"


def free_udp_port() -> int:
    return _free_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    return _free_port(socket.SOCK_STREAM)


LOWEST_PORT = 10000


def _free_port(kind: int) -> int:
    """A port of 127.0.0.1 free now, below the kernel's ephemeral range: one the kernel gave out there could be
    taken by an outgoing connection's own end (to the database, say) before the service binds it."""
    first_ephemeral = _first_ephemeral_port()
    for _attempt in range(100):
        port = random.randrange(LOWEST_PORT, first_ephemeral)
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as sock:  # a crowded machine: any port the kernel has
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_ephemeral_port() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(low, LOWEST_PORT + 1000)


def monitor_options(*, key_file: Path, config_file: Path, udp_port: int, listen_host: str = "127.0.0.1",
                    os_cloud: str = "novalite") -> dict[str, str]:
    """[monitor] for simulated hosts: agents beat to the monitor at listen_host:udp_port with the key in
    ``key_file``; the command fencer powers a host off by killing its agent (novalite simulated-host, by its
    quick-starting entry point: its start-up is fencing time)."""
    fence = f"{sys.executable} -m novalite.agent.simulated_host power-off {{host}} --config-file {config_file}"
    return {"heartbeat_key_file": str(key_file), "heartbeat_address": f"{listen_host}:{udp_port}",
            "listen_host": listen_host, "listen_port": str(udp_port), "fencer": "command",
            "fence_command": fence, "os_cloud": os_cloud}


def write_config(paths: StackPaths, *, port: int, database_url: str | None, auth_strategy: str,
                 monitor: dict[str, str] | None = None) -> None:
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str
    if paths.config.exists():
        conf.read(paths.config)
    for section in ("api", "agent", "database", "monitor"):
        if not conf.has_section(section):
            conf.add_section(section)
    if monitor is None:
        conf.remove_option("monitor", "heartbeat_address")  # agents beat to no monitor
    for option, value in (monitor or {}).items():
        conf.set("monitor", option, value)
    conf.set("api", "auth_strategy", auth_strategy)
    conf.set("api", "admin_token_file", str(paths.admin_token))
    conf.set("api", "agent_token_file", str(paths.agent_token))
    conf.set("agent", "api_url", f"http://127.0.0.1:{port}")
    # The agents' heartbeats go to the API's asyncio heartbeat listener (api/heartbeat_listener.py).
    heartbeat_port = free_tcp_port()
    conf.set("api", "heartbeat_listen", f"127.0.0.1:{heartbeat_port}")
    conf.set("agent", "heartbeat_url", f"http://127.0.0.1:{heartbeat_port}")
    conf.set("database", "connection", database_url or f"sqlite:///{paths.data_dir / 'novalite.sqlite'}")
    with paths.config.open("w") as out:
        conf.write(out)


def write_clouds_yaml(paths: StackPaths, *, port: int, auth_strategy: str) -> None:
    endpoint = f"http://127.0.0.1:{port}/v2.1"
    if auth_strategy == "noauth2":
        token = "admin:admin"
    else:
        token = paths.admin_token.read_text().strip()
    clouds = {"clouds": {"novalite": {"auth_type": "admin_token",
                                      "auth": {"endpoint": endpoint, "token": token}}}}
    fd = os.open(paths.clouds_yaml, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(clouds, out, default_flow_style=False)


def seed_flavors(database_url: str) -> None:
    """Nova's classic m1.* flavors, so a new stack can boot servers; flavors an admin set are kept."""
    from novalite.domain.flavors import ensure_default_flavors

    engine = db_engine.make_engine(database_url)
    try:
        ensure_default_flavors(engine)
    finally:
        engine.dispose()


def _spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "novalite.cli.main", *args], stdout=log, stderr=log, env=env)


def wait_for_api(port: int, proc: subprocess.Popen, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"novalite api exited with {proc.returncode}; see its log")
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"novalite api did not answer on port {port} within {timeout:.0f} s")


def stop_all(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_up(*, data_dir: str, computes: int, port: int, database_url: str | None, workers: int,
           auth_strategy: str, demo: bool = False, monitor: bool = True) -> int:
    paths = StackPaths(Path(data_dir).resolve())
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(exist_ok=True)
    ensure_secret(paths.admin_token)
    ensure_secret(paths.agent_token)
    if monitor and auth_strategy == "keystone":
        print("novalite up: no monitor with --auth-strategy keystone (it would need a Keystone user); "
              "run `novalite monitor run` with OS_* credentials", file=sys.stderr)
        monitor = False
    monitor_opts = None
    if monitor:
        ensure_secret(paths.monitor_key)
        monitor_opts = monitor_options(key_file=paths.monitor_key, config_file=paths.config, udp_port=free_udp_port())
    write_config(paths, port=port, database_url=database_url, auth_strategy=auth_strategy, monitor=monitor_opts)
    from novalite import config

    settings = config.load(paths.config)
    if auth_strategy == "keystone" and not settings.keystone_authtoken:
        raise SystemExit(f"--auth-strategy keystone needs a [keystone_authtoken] section in {paths.config}")
    if demo and auth_strategy == "keystone":
        raise SystemExit("--demo boots its servers with the admin token: use --auth-strategy token or noauth2")
    db_engine.sync(settings.database.connection)
    seed_flavors(settings.database.connection)
    if auth_strategy != "keystone":
        write_clouds_yaml(paths, port=port, auth_strategy=auth_strategy)

    procs: list[subprocess.Popen] = []
    stopping = False

    def on_signal(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        api = _spawn(["api", "--config-file", str(paths.config), "--bind", f"127.0.0.1:{port}",
                      "--workers", str(workers)], paths.logs / "api.log")
        procs.append(api)
        wait_for_api(port, api)
        scheduler = _spawn(["scheduler", "--config-file", str(paths.config)], paths.logs / "scheduler.log")
        procs.append(scheduler)
        watched = [("api", api), ("scheduler", scheduler)]
        if monitor:
            monitor_proc = _spawn(["monitor", "run", "--config-file", str(paths.config)], paths.logs / "monitor.log",
                                  env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(paths.clouds_yaml)})
            procs.append(monitor_proc)
            watched.append(("monitor", monitor_proc))
        for i in range(1, computes + 1):
            procs.append(_spawn(["compute", "--host", f"compute{i}", "--data-dir", str(paths.data_dir)],
                                paths.logs / f"compute{i}.log"))
        # Steps that need the running stack (e.g. a demo workload) go here, before the banner.
        if demo and computes:
            from novalite.cli.demo import next_steps, run_demo

            token = "admin:admin" if auth_strategy == "noauth2" else paths.admin_token.read_text().strip()
            run_demo(f"http://127.0.0.1:{port}/v2.1", token, [f"compute{i}" for i in range(1, computes + 1)],
                     lambda: stopping)
        print(f"novalite is up: API http://127.0.0.1:{port}/v2.1 ({auth_strategy} auth), the scheduler, "
              f"{'the fault monitor, ' if monitor else ''}"
              f"{computes} compute agent(s): {', '.join(f'compute{i}' for i in range(1, computes + 1))}")
        if auth_strategy == "token":
            print(f"  admin token:  {paths.admin_token}")
        print(f"  logs:         {paths.logs}")
        if auth_strategy == "keystone":
            print("  authenticate with your Keystone (OS_AUTH_URL, OS_USERNAME, …)")
        else:
            print(f"  clouds.yaml:  {paths.clouds_yaml}  (cloud 'novalite')")
            print(f"  export OS_CLIENT_CONFIG_FILE={paths.clouds_yaml}")
            print("  then: openstack --os-cloud novalite compute service list --long")
        if demo and computes:
            first_agent = procs[-computes].pid  # procs ends with compute1..N
            print(next_steps(first_agent, "compute1", monitor=monitor, data_dir=paths.data_dir))
        print("Ctrl-C stops everything.", flush=True)
        while not stopping:
            for name, proc in watched:
                if proc.poll() is not None:
                    print(f"novalite {name} exited with {proc.returncode}; stopping (see its log)", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        stop_all(procs)
        print("novalite stopped.", flush=True)
