"""All of novalite's settings in one place, named and grouped like Nova's options.

Settings come from, in rising precedence: the defaults below, an INI file (``--config-file``;
oslo.config-style ``[DEFAULT]``, ``[api]``, ``[database]`` … groups), and environment variables
``NOVALITE_<OPTION>`` for ``[DEFAULT]`` or ``NOVALITE_<GROUP>__<OPTION>`` for any group
(e.g. ``NOVALITE_DATABASE__CONNECTION``).
"""

from __future__ import annotations

import configparser
import dataclasses
import fnmatch
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger(__name__)

AUTH_STRATEGIES = ("token", "noauth2", "keystone")


@dataclass
class DefaultOpts:
    # Seconds between two heartbeats of a service (Nova's [DEFAULT]report_interval).
    report_interval: float = 10.0
    # Seconds without a heartbeat after which a service is "down" (Nova's [DEFAULT]service_down_time).
    service_down_time: float = 60.0
    default_availability_zone: str = "nova"
    internal_service_availability_zone: str = "internal"
    # Seconds between two reports of a compute host's hypervisor records (Nova's
    # [DEFAULT]update_resources_interval; Nova's 0 means "every periodic task run", here it is 60).
    update_resources_interval: float = 60.0


@dataclass
class ApiOpts:
    # token: one admin token from admin_token_file (novalite's embedded default);
    # noauth2: Nova's development mode (token "user:project"); keystone: keystonemiddleware auth_token.
    auth_strategy: str = "token"
    admin_token_file: str = ""
    # Shared secret of the compute agents' internal interface (/agent/v1).
    agent_token_file: str = ""
    # host:port where `novalite api` also takes the agents' heartbeats, on asyncio (api/heartbeat_listener.py:
    # a quarter of the CPU of a heartbeat through gunicorn); empty: heartbeats go to the API's own route only.
    heartbeat_listen: str = ""
    compute_link_prefix: str = ""
    # The most items one page of a collection holds (Nova's [api]max_limit).
    max_limit: int = 1000
    # Nova's [api]enable_instance_password: return the generated or given adminPass (evacuate below 2.14).
    enable_instance_password: bool = True


@dataclass
class AgentOpts:
    # Where compute agents reach the control plane's agent interface.
    api_url: str = "http://127.0.0.1:8774"
    # Where they send their heartbeats: the API's [api] heartbeat_listen (http://host:port); empty: api_url.
    heartbeat_url: str = ""


@dataclass
class ComputeOpts:
    # The virt driver the compute agent runs its guests with (agent/virt/__init__.py lists them).
    # Nova names this option [DEFAULT]compute_driver; novalite keeps the compute host's options together.
    compute_driver: str = "simulated"
    # Top directory of the compute hosts' local state; each host keeps its own <state_path>/<host>/.
    # Empty: <directory of the config file, else the working directory>/.novalite-compute.
    state_path: str = ""
    # The simulated hypervisor: its capacity, and how long a guest takes to boot and to stop.
    vcpus: int = 16
    memory_mb: int = 32768
    local_gb: int = 500
    # Host memory and disk kept for the host itself, counted as used (Nova's options of these names).
    reserved_host_memory_mb: int = 512
    reserved_host_disk_mb: int = 0
    # How far the scheduler may overcommit this host (Nova's initial_*_allocation_ratio defaults).
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    # Seconds a simulated guest takes to boot (spawn, power_on) and to stop (power_off, destroy).
    spawn_time: float = 0.0
    stop_time: float = 0.0
    # Where the agent takes nudges ("there is work for you", novalite.nudge); the address is recorded with
    # its service, so it must be one the API and scheduler processes can reach (not a wildcard). Port 0:
    # any free port.
    nudge_host: str = "127.0.0.1"
    nudge_port: int = 0
    # Seconds between two looks at the host's work when nothing nudges it: the backstop for a lost nudge.
    # 0 means report_interval: the agent already calls the control plane that often (heartbeats), so a
    # host costs at most twice what it does anyway, and a lost nudge delays work by at most one heartbeat
    # period. novalite's own: Nova's compute is called over RPC and never polls.
    work_poll_interval: float = 0.0
    # How many builds (spawns and evacuation rebuilds) the agent runs at once; 0: no limit (Nova's option
    # and default). Stops, starts and deletes are not counted, as in Nova.
    max_concurrent_builds: int = 10


@dataclass
class SchedulerOpts:
    # How many times one placement reads the nodes afresh when every candidate it picked was filled
    # by concurrent claims between its read and its claim. Each lost attempt means other placements
    # succeeded, so this bounds only starvation. novalite's own option; placement hard-codes 10
    # retries for its equivalent (a resource-provider generation conflict).
    claim_attempts: int = 10
    # Seconds between two placement passes of the scheduler process when nothing nudges it. Nudges
    # (UDP, novalite.nudge) make placement immediate; this poll is the backstop for a lost nudge, so it
    # bounds how late a server can be placed. An idle pass is two indexed SELECTs, so 1 s costs nothing
    # and keeps a lost nudge's delay below a guest's boot time. novalite's own: Nova's conductor is
    # called over RPC and never polls.
    poll_interval: float = 1.0
    # Where the scheduler process takes nudges; the address is recorded with its service, so it must be
    # one the API processes can reach (not a wildcard). Port 0: any free port.
    nudge_host: str = "127.0.0.1"
    nudge_port: int = 0


@dataclass
class MonitorOpts:
    """The fault monitor (``novalite monitor``) and the compute agents' heartbeats to it.

    Agents send a small HMAC-signed UDP heartbeat every ``heartbeat_interval`` to ``heartbeat_address``
    (empty: no monitor). The monitor listens on listen_host:listen_port, probes a silent host as a
    second channel, and acts through the public compute API (credentials: OS_* / clouds.yaml).
    """

    # Both sides: the shared HMAC-SHA256 key (a file, 0600, as the other secrets) and the beat period.
    heartbeat_key_file: str = ""
    heartbeat_interval: float = 0.1
    # The agents' side: where the monitor listens ("host:port"; empty means no monitor).
    heartbeat_address: str = ""
    # The monitor's side.
    listen_host: str = "127.0.0.1"
    listen_port: int = 8795
    # Detection (monitor/detection.py): a host silent for suspect_after intervals is suspect and probed; it has
    # failed when probe_attempts probes, probe_interval apart, go unanswered too: 2 × 0.1 + 3 × 0.04 = 0.32 s
    # after its last beat, leaving time within issue 4's 0.5 s for fencing and force-down. A live host is failed
    # only when silent on both channels that long; probe_attempts × probe_interval must exceed
    # heartbeat_interval, or a monitor that is itself cut off could fail one host while others still count as
    # alive (quorum). bench/README.md has the measurements behind these values (1,000 hosts, under CPU load).
    suspect_after: int = 2  # missed heartbeat intervals before a host is suspect
    probe_attempts: int = 3  # unanswered probes (the second channel) before a suspect host has failed
    probe_interval: float = 0.04
    fencer: str = "none"  # none | command | redfish | ipmi; per-host settings in [fence:<host>] sections
    allow_unfenced: bool = False  # fencer "none" acts only with this explicit, unsafe setting
    fence_timeout: float = 30.0
    fence_poll_interval: float = 0.2  # seconds between two power-state reads while a fencer waits for "off"
    # Seconds between two fencing attempts of a failed host whose fencing failed, while it stays failed (a BMC
    # that was unreachable may answer later); 0: a failed fencing is not retried (an operator acts).
    fence_retry_interval: float = 10.0
    # The command fencer's argv for hosts without a [fence:<host>] command, run without a shell; "{host}" is
    # replaced by the host's name. Exit status 0 must mean "powered off, and confirmed".
    fence_command: str = ""
    min_alive_share: float = 0.5  # quorum: act only while at least this share of known hosts beats
    max_failed_share: float = 0.5  # mass failure: hold and alert when more than this share fails at once
    max_hosts_per_cycle: int = 10
    evacuation_workers: int = 16
    evacuation_retries: int = 3
    evacuation_timeout: float = 300.0
    # Seconds before the first retry of a failed evacuation (or API call); each further retry waits twice as
    # long, so a retry can find room that appears meanwhile (a host added or returned).
    evacuation_retry_delay: float = 1.0
    # Seconds between two looks at the servers still on a failed host while their evacuations run (one
    # listing per look, whatever the number of servers), and the first wait between two force-up attempts.
    poll_interval: float = 0.1
    # Host return: how long to keep asking Nova to force the host up while it refuses (spec 3.6: `done`
    # evacuations remain until the host's compute restarts and cleans up).
    force_up_timeout: float = 600.0
    leave_disabled: bool = False  # after a host returns: force it up but leave it disabled
    reserved_hosts: str = ""  # comma-separated spare hosts, used first as evacuation targets
    evacuable_metadata_key: str = ""  # opt-in: only servers with this metadata key set to true
    evacuable_extra_spec: str = ""  # opt-in: only servers whose flavor has this extra spec set to true
    priority_metadata_key: str = "novalite:priority"  # higher first
    state_path: str = ""  # the monitor's journal (SQLite); empty: <config dir>/monitor.sqlite
    metrics_port: int = 0  # Prometheus /metrics on listen_host; 0: off
    os_cloud: str = ""  # the clouds.yaml cloud to use; empty: OS_* variables


HOST_GROUP_METHODS = ("evacuate", "notify")
HOST_GROUP_TARGETS = ("any", "group")
HOST_GROUP_FALLBACKS = ("scheduler", "none")
_GLOB = frozenset("*?[")


@dataclass
class HostGroupOpts:
    """A ``[host_group:<name>]`` section: the hosts of one group and the monitor's recovery policy for them.

    A policy option left out (None) takes the [monitor] option of the same name; hosts in no group follow
    [monitor] alone (monitor/groups.py resolves a host to its policy).
    """

    hosts: str = ""  # comma-separated host names and fnmatch patterns (compute-a-*); a host is in one group
    recovery_method: str = "evacuate"  # evacuate | notify (journal and metric only, no fencing: a human acts)
    reserved_hosts: str | None = None  # the group's spares, used first; each one of the group's hosts
    evacuable_metadata_key: str | None = None
    evacuable_extra_spec: str | None = None
    priority_metadata_key: str | None = None
    leave_disabled: bool | None = None
    # any: after the spares the scheduler picks; group: each evacuate names a host of the group (the scheduler
    # still checks it), and when no host of the group can take a server, `fallback` decides.
    targets: str = "any"
    fallback: str = "scheduler"  # scheduler: let the scheduler pick any host | none: leave it for a human

    def patterns(self) -> list[str]:
        return [h for h in (part.strip() for part in self.hosts.split(",")) if h]

    def spares(self) -> list[str]:
        return [h for h in (part.strip() for part in (self.reserved_hosts or "").split(",")) if h]

    def matching(self, host: str) -> str | None:
        """The entry of ``hosts`` that names ``host`` (a name or a pattern), None when the host is not in."""
        return next((p for p in self.patterns() if fnmatch.fnmatchcase(host, p)), None)


def _is_pattern(entry: str) -> bool:
    return not _GLOB.isdisjoint(entry)


@dataclass
class DatabaseOpts:
    connection: str = "sqlite:///novalite.sqlite"
    # Each process's connection pool (PostgreSQL, MariaDB), under oslo.db's option names, with novalite's defaults
    # (db/engine.py): connections kept open, more opened when all are busy, seconds a request waits for one
    # before its 500, seconds before a connection is replaced (under the server's idle timeout).
    max_pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 3.0
    connection_recycle_time: int = 3600


@dataclass
class PolicyOpts:
    policy_file: str = "policy.yaml"
    enforce_new_defaults: bool = True


@dataclass
class Settings:
    DEFAULT: DefaultOpts = field(default_factory=DefaultOpts)
    api: ApiOpts = field(default_factory=ApiOpts)
    agent: AgentOpts = field(default_factory=AgentOpts)
    compute: ComputeOpts = field(default_factory=ComputeOpts)
    scheduler: SchedulerOpts = field(default_factory=SchedulerOpts)
    monitor: MonitorOpts = field(default_factory=MonitorOpts)
    database: DatabaseOpts = field(default_factory=DatabaseOpts)
    oslo_policy: PolicyOpts = field(default_factory=PolicyOpts)
    # Passed unchanged to keystonemiddleware's auth_token (auth_url, www_authenticate_uri, …).
    keystone_authtoken: dict[str, str] = field(default_factory=dict)
    # [fence:<host>] sections: each host's fencing settings (BMC address, credentials, command), by host.
    fence_hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    # [host_group:<name>] sections: the monitor's recovery policy per group of hosts, by group name.
    host_groups: dict[str, HostGroupOpts] = field(default_factory=dict)

    @property
    def effective_service_down_time(self) -> float:
        """Nova's override: a down time not above report_interval becomes int(report_interval * 2.5)."""
        d = self.DEFAULT
        if d.service_down_time <= d.report_interval:
            return float(int(d.report_interval * 2.5))
        return d.service_down_time

    def compute_state_dir(self, host: str, base_dir: str | os.PathLike | None = None) -> Path:
        """Where ``host``'s compute agent keeps its local state: <[compute] state_path>/<host>.

        An empty state_path means ``<base_dir>/.novalite-compute``; base_dir is the directory of the
        config file (a stack's data dir), else the working directory.
        """
        top = Path(self.compute.state_path) if self.compute.state_path else (
            Path(base_dir or Path.cwd()) / ".novalite-compute")
        return top / host

    def validate(self) -> None:
        if self.api.auth_strategy not in AUTH_STRATEGIES:
            raise ValueError(
                f"[api] auth_strategy must be one of {', '.join(AUTH_STRATEGIES)}, "
                f"not {self.api.auth_strategy!r}"
            )
        if self.api.auth_strategy == "token" and not self.api.admin_token_file:
            raise ValueError("[api] auth_strategy = token needs [api] admin_token_file")
        self._validate_compute()
        self._validate_scheduler()
        self._validate_database()
        self._validate_host_groups()
        if self.DEFAULT.service_down_time <= self.DEFAULT.report_interval:
            LOG.warning(
                "service_down_time (%s) is not greater than report_interval (%s); using %s",
                self.DEFAULT.service_down_time,
                self.DEFAULT.report_interval,
                self.effective_service_down_time,
            )

    def _validate_database(self) -> None:
        d = self.database
        if d.max_pool_size < 1:
            raise ValueError("[database] max_pool_size must be at least 1")
        if d.max_overflow < 0:
            raise ValueError("[database] max_overflow must not be negative")
        if d.pool_timeout <= 0:
            raise ValueError("[database] pool_timeout must be greater than 0")
        if d.connection_recycle_time <= 0:
            raise ValueError("[database] connection_recycle_time must be greater than 0")

    def _validate_scheduler(self) -> None:
        s = self.scheduler
        if s.claim_attempts < 1:
            raise ValueError("[scheduler] claim_attempts must be at least 1")
        if s.poll_interval <= 0:
            raise ValueError("[scheduler] poll_interval must be greater than 0")
        if not 0 <= s.nudge_port <= 65535:
            raise ValueError("[scheduler] nudge_port must be between 0 and 65535")
        if s.nudge_host.strip("[]") in ("", "0.0.0.0", "::"):
            raise ValueError("[scheduler] nudge_host must be an address the API can send to, not a wildcard")

    def _validate_host_groups(self) -> None:
        """Each group's values, its spares among its hosts, and no host named by two groups. A host matched
        only by two groups' patterns shows once the monitor knows its name (monitor/groups.py)."""
        for name, group in self.host_groups.items():
            where = f"[host_group:{name}]"
            if not group.patterns():
                raise ValueError(f"{where} needs hosts: host names or fnmatch patterns, comma-separated")
            for option, allowed in (("recovery_method", HOST_GROUP_METHODS), ("targets", HOST_GROUP_TARGETS),
                                    ("fallback", HOST_GROUP_FALLBACKS)):
                if getattr(group, option) not in allowed:
                    raise ValueError(f"{where} {option} must be one of {', '.join(allowed)}, "
                                     f"not {getattr(group, option)!r}")
            strays = [spare for spare in group.spares() if group.matching(spare) is None]
            if strays:
                raise ValueError(f"{where} reserved_hosts: {', '.join(strays)} not among the group's hosts "
                                 f"({group.hosts}); a group's spares are its own hosts")
        groups = sorted(self.host_groups.items())
        for i, (name, group) in enumerate(groups):
            for other_name, other in groups[i + 1:]:
                clash = _host_group_clash(name, group, other_name, other)
                if clash:
                    raise ValueError(clash)

    def _validate_compute(self) -> None:
        for ratio in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
            if getattr(self.compute, ratio) <= 0:
                raise ValueError(f"[compute] {ratio} must be greater than 0")
        if self.DEFAULT.update_resources_interval <= 0:
            raise ValueError("[DEFAULT] update_resources_interval must be greater than 0")
        c = self.compute
        for name in ("vcpus", "memory_mb", "local_gb", "reserved_host_memory_mb", "reserved_host_disk_mb",
                     "spawn_time", "stop_time", "work_poll_interval", "max_concurrent_builds"):
            if getattr(c, name) < 0:
                raise ValueError(f"[compute] {name} must not be negative")
        if not 0 <= c.nudge_port <= 65535:
            raise ValueError("[compute] nudge_port must be between 0 and 65535")
        if c.nudge_host.strip("[]") in ("", "0.0.0.0", "::"):
            raise ValueError("[compute] nudge_host must be an address the API can send to, not a wildcard")

    @property
    def effective_work_poll_interval(self) -> float:
        """[compute] work_poll_interval, where 0 means report_interval."""
        return self.compute.work_poll_interval or self.DEFAULT.report_interval


def _host_group_clash(name: str, group: HostGroupOpts, other_name: str, other: HostGroupOpts) -> str | None:
    """Why two groups both claim a host, when they do by what they write: a host name of one that the other
    names or matches, or one pattern written in both."""
    for (a_name, a), (b_name, b) in (((name, group), (other_name, other)), ((other_name, other), (name, group))):
        for entry in a.patterns():
            if _is_pattern(entry):
                if entry in b.patterns():
                    return (f"host pattern {entry!r} is in two host groups, [host_group:{a_name}] and "
                            f"[host_group:{b_name}]; a host follows one recovery policy")
                continue
            matched = b.matching(entry)
            if matched is not None:
                return (f"host {entry} is in two host groups: [host_group:{a_name}] (hosts {entry!r}) and "
                        f"[host_group:{b_name}] (hosts {matched!r}); a host follows one recovery policy")
    return None


def _set_host_group(settings: Settings, name: str, option: str, value: str) -> None:
    group = settings.host_groups.setdefault(name, HostGroupOpts())
    known = [f.name for f in dataclasses.fields(HostGroupOpts)]
    if option not in known:
        raise ValueError(f"unknown option [host_group:{name}] {option} (a host group knows {', '.join(known)})")
    setattr(group, option, _coerce(value, False) if option == "leave_disabled" else value.strip())


def _coerce(value: str, like: object) -> object:
    if isinstance(like, bool):
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if isinstance(like, float):
        return float(value)
    if isinstance(like, int):
        return int(value)
    return value


def _set(settings: Settings, group: str, option: str, value: str) -> None:
    if group == "keystone_authtoken":
        settings.keystone_authtoken[option] = value
        return
    if group.startswith("fence:") and group != "fence:":
        settings.fence_hosts.setdefault(group[len("fence:"):], {})[option] = value
        return
    if group.startswith("host_group:") and group != "host_group:":
        _set_host_group(settings, group[len("host_group:"):], option, value)
        return
    opts = getattr(settings, group, None)
    if opts is None or not dataclasses.is_dataclass(opts):
        raise ValueError(f"unknown option group [{group}]")
    if not hasattr(opts, option):
        raise ValueError(f"unknown option [{group}] {option}")
    setattr(opts, option, _coerce(value, getattr(opts, option)))


def load(config_file: str | os.PathLike | None = None, environ: dict | None = None) -> Settings:
    """Build Settings from the defaults, an optional INI file and NOVALITE_* variables."""
    settings = Settings()
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # keep option case as written
        parser.read(path)
        for option, value in parser.defaults().items():
            _set(settings, "DEFAULT", option, value)
        for section in parser.sections():
            for option in parser.options(section):
                if option in parser.defaults():
                    continue
                _set(settings, section, option, parser.get(section, option))
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if not key.startswith("NOVALITE_") or key in ("NOVALITE_CONFIG_FILE",):
            continue
        name = key[len("NOVALITE_"):].lower()
        group, sep, option = name.partition("__")
        if not sep:
            group, option = "DEFAULT", name
        _set(settings, group, option, value)
    settings.validate()
    return settings
