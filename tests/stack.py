"""Real novalite processes for live tests: an API under gunicorn, schedulers and compute agents, on 127.0.0.1.

Each ``Stack`` has its own directory, config file, secrets and database; everything it starts is
stopped by ``close()``.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from novalite.cli.up import free_tcp_port
from novalite.db import engine as db_engine
from novalite.secret_files import ensure_secret
from tests import databases, zygote


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now, outside the ephemeral range (novalite.cli.up.free_tcp_port): the suites
    of three backends run side by side, and their outgoing connections take ephemeral ports."""
    return free_tcp_port()


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05,
               what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    root: Path
    database_url: str
    auth_strategy: str = "token"
    report_interval: float = 10.0
    service_down_time: float = 60.0
    extra_config: dict[str, dict[str, str]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    # Where the API listens and agents reach it: 127.0.0.1, or an address agents in network namespaces reach.
    bind_host: str = "127.0.0.1"
    # The API's heartbeat listener ([api] heartbeat_listen), where the stack's agents send their heartbeats.
    heartbeat_port: int = field(default_factory=free_port)
    procs: list[zygote.Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.admin_token = ensure_secret(self.root / "admin-token")
        self.agent_token = ensure_secret(self.root / "agent-token")
        self.write_config()
        db_engine.sync(self.database_url)

    @property
    def config_file(self) -> Path:
        return self.root / "novalite.conf"

    @property
    def url(self) -> str:
        return f"http://{self.bind_host}:{self.port}"

    @property
    def heartbeat_url(self) -> str:
        return f"http://{self.bind_host}:{self.heartbeat_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v2.1"

    def write_config(self) -> None:
        conf = configparser.ConfigParser(interpolation=None)
        conf.optionxform = str
        conf["DEFAULT"] = {"report_interval": str(self.report_interval),
                           "service_down_time": str(self.service_down_time)}
        conf["api"] = {"auth_strategy": self.auth_strategy,
                       "admin_token_file": str(self.root / "admin-token"),
                       "agent_token_file": str(self.root / "agent-token"),
                       "heartbeat_listen": f"{self.bind_host}:{self.heartbeat_port}"}
        conf["agent"] = {"api_url": self.url, "heartbeat_url": self.heartbeat_url}
        conf["database"] = {"connection": self.database_url}
        for section, values in self.extra_config.items():
            if section != "DEFAULT" and not conf.has_section(section):
                conf.add_section(section)
            for key, value in values.items():
                conf.set(section, key, value)
        with self.config_file.open("w") as out:
            conf.write(out)

    def spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None,
              netns: str | None = None) -> zygote.Process:
        """``novalite ARGS`` in a session of its own, its output in logs/LOG_NAME (tests/zygote.py); stopped by
        close(). ``env`` is its whole environment (default: this process's, without NOVALITE_* variables);
        ``netns``: the network namespace it runs in."""
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("NOVALITE_")}
        proc = zygote.spawn("novalite", args, env=env, log=self.root / "logs" / log_name, netns=netns)
        self.procs.append(proc)
        return proc

    def start_api(self, workers: int = 2, *, threads: int = 1, access_log: bool = False) -> zygote.Process:
        proc = self.spawn(["api", "--config-file", str(self.config_file), "--bind", f"{self.bind_host}:{self.port}",
                           "--workers", str(workers), "--threads", str(threads)]
                          + (["--access-log"] if access_log else []), "api.log")

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"novalite api exited {proc.returncode}:\n{self.log('api.log')}")
            try:
                return requests.get(self.url + "/", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout=30, what="novalite api")
        return proc

    def start_scheduler(self, host: str = "scheduler") -> zygote.Process:
        """``novalite scheduler`` as nova-scheduler on ``host``; returns once it is registered and listening
        (its log says where it takes nudges), so a server created from then on is placed at once."""
        log_name = f"scheduler-{host}.log"
        path = self.root / "logs" / log_name
        start = path.stat().st_size if path.exists() else 0
        proc = self.spawn(["scheduler", "--host", host, "--config-file", str(self.config_file)], log_name)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"novalite scheduler exited {proc.returncode}:\n{self.log(log_name)}")
            with path.open("rb") as log:
                log.seek(start)
                return b"takes nudges on" in log.read()

        wait_until(ready, timeout=30, what=f"novalite scheduler on {host}")
        return proc

    def start_compute(self, host: str) -> zygote.Process:
        return self.spawn(["compute", "--host", host, "--config-file", str(self.config_file)],
                           f"compute-{host}.log")

    def configure_monitor(self, *, listen_host: str = "127.0.0.1", compute: dict[str, str] | None = None) -> None:
        """Agents started from now on beat to a monitor at listen_host, fenced as ``novalite up`` fences
        simulated hosts; the monitor's credentials are the cloud "stack" of <root>/clouds.yaml."""
        from novalite.cli.up import free_udp_port, monitor_options

        key = self.root / "monitor-key"
        ensure_secret(key)
        monitor = monitor_options(key_file=key, config_file=self.config_file, udp_port=free_udp_port(),
                                  listen_host=listen_host, os_cloud="stack")
        self.extra_config = {**self.extra_config,
                             "compute": {**self.extra_config.get("compute", {}), **(compute or {})},
                             "monitor": {**monitor, "fence_timeout": "15",
                                         "state_path": str(self.root / "monitor.sqlite")}}
        self.write_config()
        clouds = {"clouds": {"stack": {"auth_type": "admin_token",
                                       "auth": {"endpoint": self.endpoint, "token": self.admin_token}}}}
        (self.root / "clouds.yaml").write_text(yaml.safe_dump(clouds))

    def admin_headers(self, version: str | None = None) -> dict[str, str]:
        token = "admin:admin" if self.auth_strategy == "noauth2" else self.admin_token
        headers = {"X-Auth-Token": token}
        if version:
            headers["X-OpenStack-Nova-API-Version"] = version
        return headers

    def services(self, version: str = "2.53") -> list[dict]:
        resp = requests.get(self.endpoint + "/os-services", headers=self.admin_headers(version), timeout=5)
        resp.raise_for_status()
        return resp.json()["services"]

    def wait_for_computes(self, *hosts: str, timeout: float = 20.0) -> None:
        """Until each host's nova-compute is registered and its node reported: only then can a server be
        placed there (a service shows in os-services a moment before its hypervisor record does)."""
        def registered():
            found = {s["host"] for s in self.services() if s["binary"] == "nova-compute"}
            return set(hosts) <= found

        def reported():
            resp = requests.get(self.endpoint + "/os-hypervisors", headers=self.admin_headers("2.53"), timeout=5)
            resp.raise_for_status()
            return set(hosts) <= {h["hypervisor_hostname"] for h in resp.json()["hypervisors"]}

        wait_until(registered, timeout=timeout, what=f"compute services {hosts}")
        wait_until(reported, timeout=timeout, what=f"hypervisors of {hosts}")

    def log(self, name: str) -> str:
        path = self.root / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


@contextlib.contextmanager
def module_stack(root: Path, **api) -> Iterator[Stack]:
    """A stack with its API started (``api``: start_api's arguments) on a database of its own, for the tests of
    one module; everything it started is stopped at the end."""
    with databases.for_module(root) as database_url:
        stack = Stack(root=root / "stack", database_url=database_url)
        try:
            stack.start_api(**api)
            yield stack
        finally:
            stack.close()
