"""The ``novalite`` command: the servers (api, scheduler, compute, up, db) and the novaclient-style client commands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from novalite import config

# The commands served by this module alone. Their runs skip the client and monitor commands' imports
# (requests, keystoneauth's configuration, json, sqlite3 …): a compute agent or `simulated-host power-off`
# (a fencer, whose start-up is fencing time: bench/README.md) has no use for them.
OWN_COMMANDS = ("api", "compute", "scheduler", "simulated-host", "up", "db")


def _settings(args: argparse.Namespace) -> config.Settings:
    try:
        return config.load(args.config_file)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"novalite: configuration error: {error}") from None


def cmd_api(args: argparse.Namespace) -> int:
    from novalite.api.app import base_dir_of
    from novalite.cli.api_server import serve

    settings = _settings(args)
    heartbeat_bind = settings.api.heartbeat_listen if args.heartbeat_bind is None else args.heartbeat_bind
    worker = args.worker or ("novalite" if args.threads == 1 else "gthread")
    if worker == "novalite" and args.threads != 1:
        raise SystemExit("novalite api: the novalite worker serves one request at a time; --threads needs "
                         "--worker gthread")
    serve(settings, base_dir_of(args.config_file), args.bind, args.workers, args.threads, args.access_log,
          heartbeat_bind, worker)
    return 0


def _driver_options(settings: config.Settings, host: str, config_file: str | None) -> dict:
    """The virt driver's keyword arguments, from [compute]."""
    compute = settings.compute
    state_dir = settings.compute_state_dir(host, Path(config_file).parent if config_file else None)
    options: dict = {"state_dir": str(state_dir)}
    if compute.compute_driver == "simulated":
        options.update(
            vcpus=compute.vcpus, memory_mb=compute.memory_mb, local_gb=compute.local_gb,
            reserved_host_memory_mb=compute.reserved_host_memory_mb,
            reserved_host_disk_mb=compute.reserved_host_disk_mb,
            spawn_time=compute.spawn_time, stop_time=compute.stop_time,
        )
    return options


def cmd_compute(args: argparse.Namespace) -> int:
    from novalite.agent.compute import AgentConfig, run_agent
    from novalite.agent.virt import DRIVERS
    from novalite.secret_files import read_secret

    if args.data_dir and not args.config_file:
        args.config_file = str(Path(args.data_dir) / "novalite.conf")
    settings = _settings(args)
    token_file = settings.api.agent_token_file
    if not token_file:
        raise SystemExit("novalite compute: no agent token "
                         "([api] agent_token_file, or --data-dir of a stack)")
    compute = settings.compute
    if compute.compute_driver not in DRIVERS:
        raise SystemExit(f"novalite compute: configuration error: unknown [compute] compute_driver "
                         f"{compute.compute_driver!r}; known: {', '.join(sorted(DRIVERS))}")
    monitor = settings.monitor
    if monitor.heartbeat_address and not monitor.heartbeat_key_file:
        raise SystemExit("novalite compute: configuration error: [monitor] heartbeat_address needs "
                         "[monitor] heartbeat_key_file")
    if monitor.heartbeat_address and monitor.heartbeat_interval <= 0:
        raise SystemExit("novalite compute: configuration error: [monitor] heartbeat_interval must be "
                         "greater than 0")
    driver_options = _driver_options(settings, args.host, args.config_file)
    if compute.compute_driver == "simulated":
        from novalite.agent.simulated_host import record_agent

        record_agent(driver_options["state_dir"])  # this process is the simulated host's power
    run_agent(AgentConfig(
        host=args.host,
        api_url=args.api_url or settings.agent.api_url,
        heartbeat_url=settings.agent.heartbeat_url,
        agent_token=read_secret(token_file),
        report_interval=settings.DEFAULT.report_interval,
        update_resources_interval=settings.DEFAULT.update_resources_interval,
        compute_driver=compute.compute_driver,
        driver_options=driver_options,
        allocation_ratios={"cpu_allocation_ratio": compute.cpu_allocation_ratio,
                           "ram_allocation_ratio": compute.ram_allocation_ratio,
                           "disk_allocation_ratio": compute.disk_allocation_ratio},
        nudge_host=compute.nudge_host,
        nudge_port=compute.nudge_port,
        work_poll_interval=settings.effective_work_poll_interval,
        max_concurrent_builds=compute.max_concurrent_builds,
        heartbeat_address=monitor.heartbeat_address,
        heartbeat_key=read_secret(monitor.heartbeat_key_file).encode() if monitor.heartbeat_address else b"",
        heartbeat_interval=monitor.heartbeat_interval,
    ))
    return 0


def cmd_simulated_host(args: argparse.Namespace) -> int:
    from novalite.agent import simulated_host

    if args.data_dir and not args.config_file:
        args.config_file = str(Path(args.data_dir) / "novalite.conf")
    settings = _settings(args)
    state_dir = settings.compute_state_dir(args.host, Path(args.config_file).parent if args.config_file else None)
    if args.action == "power-state":
        print(simulated_host.power_state(state_dir, args.host))
        return 0
    if simulated_host.power_off(state_dir, args.host, timeout=args.timeout):
        print(f"{args.host}: off")
        return 0
    print(f"{args.host}: still on after {args.timeout:g} s", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    from novalite.cli.up import run_up

    return run_up(data_dir=args.data_dir, computes=args.computes, port=args.port,
                  database_url=args.database_url, workers=args.workers, auth_strategy=args.auth_strategy,
                  demo=args.demo, monitor=args.monitor)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from novalite.scheduler_service import default_host, run_scheduler

    if args.data_dir and not args.config_file:
        args.config_file = str(Path(args.data_dir) / "novalite.conf")
    run_scheduler(_settings(args), args.host or default_host())
    return 0


def cmd_db_sync(args: argparse.Namespace) -> int:
    from novalite.db import engine

    engine.sync(_settings(args).database.connection)
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from novalite.db import engine

    eng = engine.make_engine(_settings(args).database.connection)
    try:
        current = engine.current_revision(eng)
    finally:
        eng.dispose()
    head = engine.head_revision()
    print(f"current: {current or '(empty)'}\nhead:    {head}")
    return 0 if current == head else 1


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``argv`` (the arguments about to be parsed) lets the client commands
    load openstack.config's options only when one of them runs."""
    parser = argparse.ArgumentParser(prog="novalite", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config-file", default=None, help="INI file; NOVALITE_* variables override it")
        return p

    p = with_config(sub.add_parser("api", help="serve the compute API under gunicorn"))
    p.add_argument("--bind", default="127.0.0.1:8774")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="threads per worker (1 measured fastest on 2 cores: bench/README.md)")
    p.add_argument("--worker", choices=["novalite", "gthread"], default=None,
                   help="gunicorn worker: novalite's (asyncio + httptools, one request at a time; the default with "
                        "1 thread) or gunicorn's threaded one (the default with more threads)")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--heartbeat-bind", default=None, metavar="HOST:PORT",
                   help="also take the agents' heartbeats here, on asyncio (default: [api] heartbeat_listen; "
                        "'' for none)")
    p.set_defaults(func=cmd_api)

    p = with_config(sub.add_parser("compute", help="run the compute agent of one host"))
    p.add_argument("--host", required=True)
    p.add_argument("--data-dir", default=None, help="join the stack `novalite up` runs on this dir")
    p.add_argument("--api-url", default=None, help="the control plane (default: [agent] api_url)")
    p.set_defaults(func=cmd_compute)

    p = with_config(sub.add_parser("scheduler", help="place new servers and evacuations (nova-scheduler)"))
    p.add_argument("--host", default=None,
                   help="the host of its nova-scheduler service record (default: this machine's hostname)")
    p.add_argument("--data-dir", default=None, help="join the stack `novalite up` runs on this dir")
    p.set_defaults(func=cmd_scheduler)

    p = with_config(sub.add_parser("simulated-host", help="power off a simulated host (its agent), as a BMC would"))
    p.add_argument("action", choices=["power-off", "power-state"])
    p.add_argument("host")
    p.add_argument("--data-dir", default=None, help="the stack `novalite up` runs on this dir")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the power-off (default 10)")
    p.set_defaults(func=cmd_simulated_host)

    p = sub.add_parser("up", help="start the API and compute agents compute1..N on this machine")
    p.add_argument("--data-dir", default="./.novalite")
    p.add_argument("--computes", type=int, default=3)
    p.add_argument("--port", type=int, default=8774)
    p.add_argument("--database-url", default=None)
    p.add_argument("--demo", action="store_true",
                   help="boot 3 m1.tiny servers per compute host, then print how to fail and evacuate a host")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--auth-strategy", choices=config.AUTH_STRATEGIES, default="token")
    p.add_argument("--no-monitor", dest="monitor", action="store_false",
                   help="no fault monitor: fail and evacuate hosts by hand (service-force-down, host-evacuate)")
    p.set_defaults(func=cmd_up)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    with_config(db_sub.add_parser("sync", help="upgrade the schema (idempotent)")).set_defaults(
        func=cmd_db_sync)
    with_config(db_sub.add_parser("status", help="show the schema revision")).set_defaults(func=cmd_db_status)

    argv = sys.argv[1:] if argv is None else argv
    if _command_of(argv) not in OWN_COMMANDS:
        from novalite.cli import client_commands, monitor_commands

        monitor_commands.register(sub, with_config)
        client_commands.register(sub, parser, argv)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command ``argv`` runs when it names it first (after --debug); None otherwise. Only then is it
    known without the client commands' global options, which may come before the command."""
    words = [arg for arg in argv if arg != "--debug"]
    return words[0] if words else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
