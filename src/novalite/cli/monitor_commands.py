"""``novalite monitor``: the fault monitor's commands. ``run`` is the monitor process (monitor/service.py);
``events`` lists what the monitor decided and did, from its journal ([monitor] state_path; by default
monitor.sqlite beside the config file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from novalite import config
from novalite.cli.output import Shown, render
from novalite.monitor.journal import Event, Journal, iso, journal_path

DEFAULT_DATA_DIR = "./.novalite"  # novalite up's


def config_file_of(args: argparse.Namespace) -> Path:
    """--config-file, else <--data-dir>/novalite.conf (``novalite up``'s stack by default)."""
    if args.config_file:
        return Path(args.config_file)
    return Path(args.data_dir or DEFAULT_DATA_DIR) / "novalite.conf"


def _detail_text(event: Event) -> str:
    return " ".join(f"{key}={value}" for key, value in event.detail.items() if value is not None)


def _load(config_file: Path) -> config.Settings:
    try:
        return config.load(str(config_file))
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"novalite: configuration error: {error}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from novalite.monitor.service import run_monitor

    config_file = config_file_of(args)
    try:
        run_monitor(_load(config_file), config_file.parent)
    except ValueError as error:  # a fencer or [monitor] option that cannot work
        raise SystemExit(f"novalite monitor: configuration error: {error}") from None
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    config_file = config_file_of(args)
    settings = _load(config_file)
    path = journal_path(settings, config_file.parent)
    if not path.exists():
        print(f"novalite monitor events: no journal at {path} (has the monitor run?)", file=sys.stderr)
        return 1
    journal = Journal(path, readonly=True)
    try:
        events = journal.events(host=args.host, recovery_id=args.recovery)
    finally:
        journal.close()
    columns = ["Time", "Host", "Recovery", "Event", "Server", "Detail"]
    cells = {"Time": lambda e: iso(e["_at"]), "Event": lambda e: e["kind"],
             "Recovery": lambda e: e["recovery_id"], "Detail": lambda e: e["_text"]}
    records = [{**event.to_json(), "_at": event.at, "_text": _detail_text(event)} for event in events]
    if args.format == "json":
        records = [event.to_json() for event in events]
    print(render(Shown(columns, records, one=False, cells=cells), args.format))
    return 0


def register(subparsers, with_config) -> argparse._SubParsersAction:
    """Add ``novalite monitor`` and its ``events`` command; returns the group's subparsers (for ``run``)."""
    monitor = subparsers.add_parser("monitor", help="the fault monitor: from a host's failure to its servers "
                                                    "running elsewhere")
    commands = monitor.add_subparsers(dest="monitor_command", metavar="MONITOR_COMMAND", required=True)

    p = with_config(commands.add_parser("run", help="run the monitor: detect failed hosts, fence them, evacuate"))
    p.add_argument("--data-dir", default=None, help=f"the stack's directory (default {DEFAULT_DATA_DIR}, "
                                                    "unless --config-file is given)")
    p.set_defaults(func=cmd_run)

    p = with_config(commands.add_parser("events", help="what the monitor decided and did, oldest first"))
    p.add_argument("--data-dir", default=None, help=f"the stack's directory (default {DEFAULT_DATA_DIR}, "
                                                    "unless --config-file is given)")
    p.add_argument("--host", default=None, help="only this host's events")
    p.add_argument("--recovery", default=None, metavar="ID", help="only this recovery's events")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table",
                   help="output format: table (default) or json")
    p.set_defaults(func=cmd_events)
    return commands
