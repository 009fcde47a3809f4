"""novaclient-style client commands: the service-* commands here, the server commands (boot, list, show,
delete, stop, start, evacuate, migration-list, hypervisor-list) in server_commands.py, host-evacuate in
host_evacuate.py; what they print is output.py's.

Authentication is every OpenStack tool's: openstacksdk's config loader (``openstack.config``) reads
``--os-cloud`` and clouds.yaml, the ``OS_*`` variables and the ``--os-*`` options, and builds the
keystoneauth session; ``novalite.client.ComputeClient`` sends the requests. The loader is imported
(half a second) only when a client command is being run, never for ``novalite api`` or ``compute``.

The global options (``--os-*``, ``--os-compute-api-version``, ``-f``) are accepted before the command,
as novaclient takes them, and after it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from novalite.cli import host_evacuate, server_commands
from novalite.cli.output import Output, Shown, UsageError, render
from novalite.client import (
    DEFAULT_BINARY,
    FORCE_DOWN_VERSION,
    UUID_VERSION,
    ApiVersion,
    ClientError,
    ComputeClient,
    is_uuid_like,
)

SERVICE_COMMANDS = ("service-list", "service-force-down", "service-enable", "service-disable", "service-delete")
COMMANDS = (*SERVICE_COMMANDS, *server_commands.COMMANDS, "host-evacuate")
FORMATS = ("table", "json")
# --os-compute-api-version values that mean "negotiate": openstack.config's major-only form and novaclient's.
NEGOTIATE = {"2", "latest", "2.latest"}


# -- the commands: each takes a connected client and the arguments, returns what to print ---------------

def _columns_of_action(client: ComputeClient, *names: str) -> list[str]:
    # novaclient prints an ID column for the 2.53 PUT, whose answer is the full record (spec 3.4).
    return (["ID"] if client.version >= UUID_VERSION else []) + ["Host", "Binary", *names]


def _check_target(client: ComputeClient, host_or_id: str, binary: str | None) -> None:
    if not is_uuid_like(host_or_id):
        return
    if client.version < UUID_VERSION:
        raise ClientError(f"a service UUID needs compute API version {UUID_VERSION} or later "
                          f"(this session uses {client.version}); give the host name instead")
    if binary is not None:
        raise UsageError("BINARY cannot be combined with a service UUID")


def service_list(client: ComputeClient, args: argparse.Namespace) -> Output:
    services = client.list_services(host=args.host, binary=args.binary)
    columns = ["Id", "Binary", "Host", "Zone", "Status", "State", "Updated_at", "Disabled Reason"]
    if client.version >= FORCE_DOWN_VERSION:
        columns.append("Forced down")
    return Shown(columns, services, one=False)


def service_force_down(client: ComputeClient, args: argparse.Namespace) -> Output:
    _check_target(client, args.host_or_id, args.binary)
    service = client.force_down(args.host_or_id, args.binary, forced_down=not args.unset)
    return Shown(_columns_of_action(client, "Forced down"), [service])


def service_enable(client: ComputeClient, args: argparse.Namespace) -> Output:
    _check_target(client, args.host_or_id, args.binary)
    service = client.enable(args.host_or_id, args.binary)
    return Shown(_columns_of_action(client, "Status"), [service])


def service_disable(client: ComputeClient, args: argparse.Namespace) -> Output:
    _check_target(client, args.host_or_id, args.binary)
    service = client.disable(args.host_or_id, args.binary, reason=args.reason)
    extra = ["Disabled Reason"] if args.reason is not None else []
    return Shown(_columns_of_action(client, "Status", *extra), [service])


def service_delete(client: ComputeClient, args: argparse.Namespace) -> Output:
    client.delete(args.id)
    return None


# -- connecting ---------------------------------------------------------------------------------------

def requested_version(text: str | None) -> ApiVersion | None:
    """The --os-compute-api-version asked for; None means negotiate with the server."""
    if text is None or text.strip().lower() in NEGOTIATE:
        return None
    try:
        return ApiVersion.parse(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def connect(config: Any, args: argparse.Namespace, os_dests: set[str]) -> ComputeClient:
    """A ComputeClient at the negotiated microversion, from the cloud the options and OS_* name."""
    from keystoneauth1 import adapter

    options = argparse.Namespace(**{k: v for k, v in vars(args).items() if k in os_dests})
    cloud = config.get_one(argparse=options)
    # The raw setting: CloudRegion.get_api_version() drops anything that is not a float, "x" included.
    raw = cloud.config.get("compute_api_version")
    version = requested_version(None if raw is None else str(raw))
    compute = adapter.Adapter(
        session=cloud.get_session(),
        service_type=cloud.get_service_type("compute"),
        service_name=cloud.get_service_name("compute"),
        interface=cloud.get_interface("compute"),
        region_name=cloud.get_region_name("compute"),
        endpoint_override=cloud.get_endpoint("compute"),
        user_agent="novalite",
    )
    client = ComputeClient(compute)
    client.negotiate(version)
    return client


def _runner(command: Callable[[ComputeClient, argparse.Namespace], Output], config: Any,
            os_dests: set[str]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from keystoneauth1 import exceptions as ks_exceptions
        from openstack import exceptions as sdk_exceptions

        try:
            client = connect(config, args, os_dests)
            output = command(client, args)
            text = render(output, getattr(args, "format", "table"))
        except UsageError as error:
            print(f"novalite {args.command}: error: {error}", file=sys.stderr)
            return 2
        except ClientError as error:
            print(error, file=sys.stderr)
            return 1
        except (ks_exceptions.ClientException, sdk_exceptions.SDKException) as error:
            print(f"ERROR ({type(error).__name__}): {error}", file=sys.stderr)
            return 1
        if text is not None:
            print(text)
        return output.exit_code if output is not None else 0

    return run


# -- registration -------------------------------------------------------------------------------------

def _add_global_options(parser: argparse.ArgumentParser, config: Any, argv: list[str]) -> None:
    """openstack.config's auth, session and compute options (--os-compute-api-version among them), and -f."""
    config.register_argparse_arguments(parser, argv, service_keys=["compute"])
    parser.add_argument("-f", "--format", choices=FORMATS, default="table",
                        help="output format: table (default) or json")


def _command_parsers(subparsers, parents: Sequence[argparse.ArgumentParser],
                     run: Callable[[Callable], Callable]) -> None:
    def add(name: str, command: Callable, help_text: str, usage: str) -> argparse.ArgumentParser:
        # A short usage line: the dozens of --os-* options are listed under "options" by --help.
        p = subparsers.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                                  usage=f"%(prog)s [--os-* options] [-f {{table,json}}] {usage}")
        p.set_defaults(func=run(command))
        return p

    p = add("service-list", service_list, "list compute services", "[--host HOST] [--binary BINARY]")
    p.add_argument("--host", default=None, help="only the services of this host")
    p.add_argument("--binary", default=None, help="only the services of this binary")

    p = add("service-force-down", service_force_down,
            f"mark a service forced down, or up again with --unset (compute API {FORCE_DOWN_VERSION}+)",
            "[--unset] HOST_OR_ID [BINARY]")
    p.add_argument("--unset", action="store_true", help="unset forced_down (the service may report up again)")
    _target_arguments(p)

    p = add("service-enable", service_enable, "enable a service", "HOST_OR_ID [BINARY]")
    _target_arguments(p)

    p = add("service-disable", service_disable, "disable a service", "[--reason REASON] HOST_OR_ID [BINARY]")
    p.add_argument("--reason", default=None, help="why it is disabled (disabled_reason)")
    _target_arguments(p)

    p = add("service-delete", service_delete, "delete a service", "ID")
    p.add_argument("id", metavar="ID", help=f"service id: an integer below {UUID_VERSION}, a UUID from it on")

    server_commands.add_parsers(add)
    host_evacuate.add_parser(add)


def _target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("host_or_id", metavar="HOST_OR_ID",
                   help=f"host name, or the service UUID at compute API {UUID_VERSION} and later")
    p.add_argument("binary", metavar="BINARY", nargs="?", default=None,
                   help=f"service binary for a host name (default: {DEFAULT_BINARY})")


def register(subparsers, parser: argparse.ArgumentParser | None = None,
             argv: list[str] | None = None) -> None:
    """Add the client commands; with ``parser``, their global options go before the command too.

    ``argv`` is the command line about to be parsed: openstack.config peeks at it to know which auth
    plugin's options to offer, and may fix ``--os_x`` spellings in it in place.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not any(arg in COMMANDS for arg in argv):
        # Another command, or plain --help: list the client commands without loading openstack.config.
        _command_parsers(subparsers, [], lambda command: None)
        return

    from openstack import config as os_config
    from openstack import exceptions as sdk_exceptions

    config = os_config.OpenStackConfig()
    after = argparse.ArgumentParser(add_help=False)
    try:
        _add_global_options(after, config, argv)
        if parser is not None:
            _add_global_options(parser, config, argv)
    except sdk_exceptions.SDKException as error:
        raise SystemExit(f"ERROR ({type(error).__name__}): {error}") from None
    os_dests = {action.dest for action in after._actions} - {"format"}
    if parser is not None:
        # The copy after the command must not overwrite what was given before it: argparse copies
        # a subcommand's defaults over the main parser's values, so that copy has none.
        for action in after._actions:
            action.default = argparse.SUPPRESS
    _command_parsers(subparsers, [after], lambda command: _runner(command, config, os_dests))
