"""novaclient-style server commands: boot, list, show, delete, stop, start, evacuate, migration-list,
hypervisor-list (host-evacuate is in host_evacuate.py).

Syntax, columns and messages are python-novaclient 18's ``nova`` (novaclient/v2/shell.py): a server is
named by UUID or by its unique name, a flavor by id or name; tables are print_list / print_dict.
``list --long`` is novalite's own: it adds where each server runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from novalite.cli.output import Details, Output, Progress, Shown, UsageError, render
from novalite.client import (
    BOOT_HOST,
    EMBEDDED_FLAVOR,
    EVACUATE_FORCE,
    EVACUATE_NO_FORCE,
    EVACUATE_NO_SHARED_STORAGE,
    ApiError,
    ApiVersion,
    ClientError,
    ComputeClient,
)

COMMANDS = ("boot", "list", "show", "delete", "stop", "start", "evacuate", "migration-list", "hypervisor-list")
BOOT_POLL_INTERVAL = 1.0  # seconds between two looks at a booting server (novaclient waits 5)
# novaclient's names of Nova's power_state values (0-7), as `nova list` prints them.
POWER_STATES = ("NOSTATE", "Running", "", "Paused", "Shutdown", "", "Crashed", "Suspended")
# Where novaclient's migration-list gains columns: Id and Type, the migration UUID, project and user.
MIGRATION_ID_AND_TYPE = ApiVersion(2, 23)
MIGRATION_UUID = ApiVersion(2, 59)
MIGRATION_OWNER = ApiVersion(2, 80)


class ResourceInErrorState(ClientError):
    name = "ResourceInErrorState"


def message_of(error: Exception) -> str:
    """What novaclient prints for a failed item of a multi-server action: str() of its exception."""
    if isinstance(error, ApiError):
        return error.detail
    return str(error.args[0]) if isinstance(error, ClientError) else str(error)


def progress_stream(args: argparse.Namespace):
    """Progress goes to stdout beside a table, to stderr when stdout carries JSON."""
    return sys.stderr if getattr(args, "format", "table") == "json" else sys.stdout


# -- how a server reads -------------------------------------------------------------------------------

def power_state_name(server: dict) -> str:
    value = server.get("OS-EXT-STS:power_state")
    if value is None:
        return "N/A"
    return POWER_STATES[value] if isinstance(value, int) and 0 <= value < len(POWER_STATES) else str(value)


def networks_text(server: dict) -> str:
    """novaclient's Networks cell: "label=addr, addr; label2=addr"."""
    groups = [f"{label}={', '.join(a.get('addr', '') for a in addresses)}"
              for label, addresses in (server.get("addresses") or {}).items() if addresses]
    return "; ".join(groups)


def flavor_text(server: dict) -> str:
    flavor = server.get("flavor") or {}
    return flavor.get("original_name") or flavor.get("id") or ""


SERVER_CELLS: dict[str, Callable[[dict], object]] = {
    "Tenant ID": lambda s: s.get("tenant_id"),
    "Task State": lambda s: s.get("OS-EXT-STS:task_state", "N/A"),
    "Power State": power_state_name,
    "Networks": networks_text,
    "Flavor": flavor_text,
    "Availability Zone": lambda s: s.get("OS-EXT-AZ:availability_zone"),
    "Host": lambda s: s.get("OS-EXT-SRV-ATTR:host"),
    "Host Status": lambda s: s.get("host_status"),
}


def server_properties(client: ComputeClient, server: dict) -> dict[str, object]:
    """A server as `nova show` lists it (novaclient's _print_server)."""
    info = dict(server)
    for label, addresses in (server.get("addresses") or {}).items():
        info[f"{label} network"] = ", ".join(a.get("addr", "") for a in addresses)
    flavor = info.pop("flavor", None) or {}
    if client.version >= EMBEDDED_FLAVOR:
        info.update({f"flavor:{key}": value for key, value in flavor.items()})
    else:
        flavor_id = flavor.get("id", "")
        try:
            info["flavor"] = f"{client.find_flavor(flavor_id)['name']} ({flavor_id})"
        except ClientError:
            info["flavor"] = f"Flavor not found ({flavor_id})"
    if "security_groups" in info:
        info["security_groups"] = ", ".join(sorted({g.get("name", "") for g in info["security_groups"] or ()}))
    image = info.get("image")
    # novalite has no image service to name an image by: its id stands for it.
    info["image"] = image.get("id", "") if image else "Attempt to boot from volume - no image supplied"
    for key in ("links", "addresses", "OS-EXT-SRV-ATTR:user_data"):
        info.pop(key, None)
    return info


# -- boot --------------------------------------------------------------------------------------------

def _metadata(pairs: list[str]) -> dict[str, str]:
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"'{pair}' is not in the format of 'key=value'")
    return dict(pair.split("=", 1) for pair in pairs)


def _counts(args: argparse.Namespace) -> tuple[int, int]:
    """novaclient's rule: --min-count alone sets both, --max-count raises the upper bound."""
    low = high = 1
    if args.min_count is not None:
        if args.min_count < 1:
            raise ClientError("min_count should be >= 1")
        low = high = args.min_count
    if args.max_count is not None:
        if args.max_count < 1:
            raise ClientError("max_count should be >= 1")
        high = args.max_count
    if args.min_count is not None and args.max_count is not None and args.min_count > args.max_count:
        raise ClientError("min_count should be <= max_count")
    return low, high


def boot(client: ComputeClient, args: argparse.Namespace) -> Output:
    if args.host is not None and client.version < BOOT_HOST:
        raise UsageError(f"--host needs compute API version {BOOT_HOST} or later (this session uses "
                         f"{client.version})")
    low, high = _counts(args)
    metadata = _metadata(args.meta)
    flavor = client.find_flavor(args.flavor)
    created = client.create_server(args.name, str(flavor["id"]), image_ref=args.image,
                                   availability_zone=args.availability_zone, metadata=metadata,
                                   min_count=low, max_count=high, host=args.host)
    server = client.get_server(created["id"])
    if "adminPass" in created:
        server["adminPass"] = created["adminPass"]
    shown = Details(server, server_properties(client, server))
    if not args.poll:
        return shown
    print(render(shown, args.format), flush=True)
    _poll_boot(client, server, high > 1, Progress(progress_stream(args)))
    return None


def _poll_boot(client: ComputeClient, first: dict, several: bool, progress: Progress) -> None:
    """novaclient's --poll: report progress until the server (each of the reservation) is ACTIVE."""
    reservation = first.get("OS-EXT-SRV-ATTR:reservation_id")
    last = None
    while True:
        if several and reservation:
            servers = client.list_servers(reservation_id=reservation)
        else:
            servers = [client.get_server(first["id"])]
        failed = [s for s in servers if s.get("status") == "ERROR"]
        if failed:
            progress.done()
            progress.line("Error building server")
            fault = (failed[0].get("fault") or {}).get("message")
            due = f" due to '{fault}'" if fault else ""
            raise ResourceInErrorState(f"`Server` resource is in the error state{due}.")
        active = sum(s.get("status") == "ACTIVE" for s in servers)
        if len(servers) > 1:
            text = f"Server building... {active}/{len(servers)} active"
        else:
            text = f"Server building... {100 if active else servers[0].get('progress') or 0}% complete"
        if progress.tty:
            progress.status(text)
        elif text != last:
            progress.line(text)
        last = text
        if active == len(servers):
            progress.done()
            progress.line("Finished")
            return
        time.sleep(BOOT_POLL_INTERVAL)


# -- list, show ---------------------------------------------------------------------------------------

def list_servers(client: ComputeClient, args: argparse.Namespace) -> Output:
    servers = client.list_servers(host=args.host, all_tenants="1" if args.all_tenants else None,
                                  status=args.status, name=args.name)
    columns = ["ID", "Name", "Status", "Task State", "Power State", "Networks"]
    if args.all_tenants:
        columns.insert(2, "Tenant ID")
    if args.long:
        columns += ["Flavor", "Availability Zone", "Host", "Host Status"]
    return Shown(columns, servers, one=False, cells=SERVER_CELLS, sort_by="Name")


def show(client: ComputeClient, args: argparse.Namespace) -> Output:
    server = client.find_server(args.server)
    return Details(server, server_properties(client, server))


# -- delete, stop, start -------------------------------------------------------------------------------

def _on_each(action: Callable[[ComputeClient, str], None], verb: str) -> Callable:
    """novaclient's do_action_on_many: one line per server, then an error if any failed."""

    def command(client: ComputeClient, args: argparse.Namespace) -> Output:
        failed = False
        for name_or_id in args.server:
            try:
                action(client, client.find_server(name_or_id, all_tenants=args.all_tenants)["id"])
            except ClientError as error:
                failed = True
                print(message_of(error), file=sys.stderr, flush=True)
                continue
            print(f"Request to {verb} server {name_or_id} has been accepted.", flush=True)
        if failed:
            raise ClientError(f"Unable to {verb} the specified server(s).")
        return None

    return command


delete = _on_each(ComputeClient.delete_server, "delete")
stop = _on_each(ComputeClient.stop_server, "stop")
start = _on_each(ComputeClient.start_server, "start")


# -- evacuate -----------------------------------------------------------------------------------------

def check_evacuate_options(client: ComputeClient, args: argparse.Namespace) -> None:
    """novaclient offers --force only from 2.29 to 2.67 and --on-shared-storage only before 2.14."""
    if getattr(args, "force", False) and not EVACUATE_FORCE <= client.version < EVACUATE_NO_FORCE:
        raise UsageError(f"--force needs compute API version {EVACUATE_FORCE} to 2.67 (this session uses "
                         f"{client.version})")
    if getattr(args, "on_shared_storage", False) and client.version >= EVACUATE_NO_SHARED_STORAGE:
        raise UsageError(f"--on-shared-storage needs compute API version 2.13 or earlier (this session uses "
                         f"{client.version})")


def evacuate(client: ComputeClient, args: argparse.Namespace) -> Output:
    check_evacuate_options(client, args)
    server = client.find_server(args.server)
    answer = client.evacuate(server["id"], args.host, force=args.force, password=args.password,
                             on_shared_storage=args.on_shared_storage)
    if isinstance(answer, dict):  # before 2.14: the new admin password
        return Details(answer, dict(answer))
    return None


# -- migration-list, hypervisor-list -------------------------------------------------------------------

def migration_list(client: ComputeClient, args: argparse.Namespace) -> Output:
    migrations = client.list_migrations(host=args.host, status=args.status, instance_uuid=args.instance_uuid,
                                        migration_type=args.migration_type, source_compute=args.source_compute)
    columns = ["Source Node", "Dest Node", "Source Compute", "Dest Compute", "Dest Host", "Status",
               "Instance UUID", "Old Flavor", "New Flavor", "Created At", "Updated At"]
    if client.version >= MIGRATION_UUID:
        columns.insert(0, "UUID")
    if client.version >= MIGRATION_ID_AND_TYPE:
        columns = ["Id", *columns, "Type"]
    if client.version >= MIGRATION_OWNER:
        columns += ["Project ID", "User ID"]
    cells = {"Old Flavor": lambda m: m.get("old_instance_type_id"),
             "New Flavor": lambda m: m.get("new_instance_type_id"),
             "Type": lambda m: m.get("migration_type")}
    return Shown(columns, migrations, one=False, cells=cells)


def hypervisor_list(client: ComputeClient, args: argparse.Namespace) -> Output:
    hypervisors = client.list_hypervisors(matching=args.matching)
    return Shown(["ID", "Hypervisor hostname", "State", "Status"], hypervisors, one=False)


# -- parsers ------------------------------------------------------------------------------------------

def add_parsers(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the server commands through ``add(name, command, help, usage)``."""
    p = add("boot", boot, "boot a new server",
            "--flavor FLAVOR [--image IMAGE] [--availability-zone AZ] [--meta KEY=VALUE ...] "
            "[--min-count N] [--max-count N] [--host HOST] [--poll] NAME")
    p.add_argument("name", metavar="NAME", help="name for the new server")
    p.add_argument("--flavor", required=True, help="name or ID of the flavor")
    p.add_argument("--image", default=None, help="image ID (novalite has no image service: it is only recorded)")
    p.add_argument("--availability-zone", default=None, help="the availability zone to place the server in")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="server metadata; repeat for several")
    p.add_argument("--min-count", type=int, default=None, metavar="N", help="boot at least N servers")
    p.add_argument("--max-count", type=int, default=None, metavar="N", help="boot up to N servers")
    p.add_argument("--host", default=None, help=f"requested compute host (admin; compute API {BOOT_HOST}+)")
    p.add_argument("--poll", action="store_true", help="report the boot's progress until it completes")

    p = add("list", list_servers, "list servers",
            "[--host HOST] [--all-tenants] [--status STATUS] [--name NAME] [--long]")
    p.add_argument("--host", default=None, help="only the servers on this compute host (admin)")
    p.add_argument("--all-tenants", nargs="?", type=int, const=1, default=0, metavar="0|1",
                   help="servers of every project (admin)")
    p.add_argument("--status", default=None, help="only the servers with this status, e.g. ACTIVE")
    p.add_argument("--name", default=None, help="only the servers whose name matches this regular expression")
    p.add_argument("--long", action="store_true", help="also show flavor, availability zone, host and host status")

    p = add("show", show, "show a server", "SERVER")
    p.add_argument("server", metavar="SERVER", help="name or ID of the server")

    for name, command, verb in (("delete", delete, "delete"), ("stop", stop, "stop"), ("start", start, "start")):
        p = add(name, command, f"{verb} servers", "[--all-tenants] SERVER [SERVER ...]")
        p.add_argument("server", metavar="SERVER", nargs="+", help="name or ID of a server")
        p.add_argument("--all-tenants", action="store_true", help="find servers of other projects by name (admin)")

    p = add("evacuate", evacuate, "evacuate a server from a failed host",
            "[--password PASSWORD] [--on-shared-storage] [--force] SERVER [HOST]")
    p.add_argument("server", metavar="SERVER", help="name or ID of the server")
    p.add_argument("host", metavar="HOST", nargs="?", default=None,
                   help="target host (default: the scheduler chooses)")
    p.add_argument("--password", default=None, help="admin password to set on the evacuated server")
    p.add_argument("--on-shared-storage", action="store_true",
                   help="the server's files are on shared storage (compute API 2.13 and earlier)")
    p.add_argument("--force", action="store_true",
                   help="skip the scheduler's check of HOST (compute API 2.29 to 2.67)")

    p = add("migration-list", migration_list, "list migrations",
            "[--host HOST] [--status STATUS] [--migration-type TYPE] [--instance-uuid UUID] "
            "[--source-compute HOST]")
    p.add_argument("--host", default=None, help="migrations from or to this host")
    p.add_argument("--status", default=None, help="migrations in this status")
    p.add_argument("--migration-type", default=None,
                   help="evacuation, live-migration, migration (cold) or resize")
    p.add_argument("--instance-uuid", default=None, help="migrations of this server")
    p.add_argument("--source-compute", default=None, help="migrations from this host")

    p = add("hypervisor-list", hypervisor_list, "list hypervisors", "[--matching HOSTNAME]")
    p.add_argument("--matching", default=None, metavar="HOSTNAME",
                   help="hypervisors whose hostname contains HOSTNAME")
