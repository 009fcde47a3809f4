"""``novalite host-evacuate HOST``: evacuate every server of a failed host, in parallel, and watch it happen.

Like novaclient's host-evacuate (spec clients.md 1.4) it is a client-side loop: the host's servers come
from os-hypervisors (``/os-hypervisors/{host}/servers`` below 2.53, ``?hypervisor_hostname_pattern=&
with_servers=True`` from 2.53), and each gets its own ``POST /servers/{id}/action {"evacuate": ...}``
with the body of the session's microversion. Unlike novaclient it sends them from a bounded pool of
threads, prints one line per server as Nova accepts (or refuses) it, then polls each accepted server
until it rests ACTIVE or SHUTOFF on another host (SHUTOFF is Nova's result from 2.95), or fails.
The table at the end is novaclient's (Server UUID | Evacuate Accepted | Error Message) plus where each
server ended up; the exit status is 1 if any server was not evacuated.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from novalite.cli.output import Output, Progress, Shown
from novalite.cli.server_commands import check_evacuate_options, message_of, progress_stream
from novalite.client import ApiError, ClientError, ComputeClient

WORKERS = 16  # evacuate requests (and later status reads) in flight at once
# Seconds between two looks at the evacuating servers: soon at first (an evacuation can take well under a
# second), then less and less often.
FIRST_POLL_INTERVAL = 0.2
MAX_POLL_INTERVAL = 2.0
DEFAULT_TIMEOUT = 600.0  # how long to wait for the servers to land before giving up on them
RESTING = ("ACTIVE", "SHUTOFF")  # where an evacuated server comes to rest (SHUTOFF: stopped, or 2.95+)


@dataclass
class Evacuation:
    """One server's evacuation, as the final table shows it."""

    server_uuid: str
    name: str
    source: str  # the hypervisor hostname it was found on
    evacuate_accepted: bool = False
    error_message: str = ""
    host: str | None = None
    status: str | None = None
    finished: bool = False
    seconds: float | None = None

    @property
    def label(self) -> str:
        return f"{self.server_uuid} {self.name}" if self.name else self.server_uuid

    @property
    def failed(self) -> bool:
        return not self.evacuate_accepted or bool(self.error_message)

    def record(self) -> dict:
        return {"server_uuid": self.server_uuid, "evacuate_accepted": self.evacuate_accepted,
                "error_message": self.error_message, "host": self.host, "status": self.status}


def host_evacuate(client: ComputeClient, args: argparse.Namespace) -> Output:
    check_evacuate_options(client, args)
    evacuations = [Evacuation(server["uuid"], server.get("name", ""), hypervisor.get("hypervisor_hostname", ""))
                   for hypervisor, server in client.hypervisor_servers(args.host, args.strict)]
    progress = Progress(progress_stream(args))
    progress.line(f"Evacuating {len(evacuations)} server(s) from {args.host} (compute API {client.version})")
    started = time.monotonic()
    if evacuations:
        client.allow_parallel(WORKERS)
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(evacuations))) as pool:
            try:
                _accept_all(client, args, evacuations, pool, progress)
                if not args.no_wait:
                    _wait_all(client, evacuations, pool, progress, started, args.wait_timeout)
            except KeyboardInterrupt:
                # Ctrl-C: send nothing more, let the requests in flight finish, and still report.
                pool.shutdown(wait=True, cancel_futures=True)
                _interrupted(evacuations, waiting=not args.no_wait)
    progress.done()
    failed = sum(e.failed for e in evacuations)
    progress.line(f"{len(evacuations) - failed} of {len(evacuations)} server(s) "
                  f"{'accepted' if args.no_wait else 'evacuated'}, {failed} failed, "
                  f"in {time.monotonic() - started:.1f} s")
    columns = ["Server UUID", "Evacuate Accepted", "Error Message"]
    if not args.no_wait:
        columns += ["Host", "Status"]
    return Shown(columns, [e.record() for e in evacuations], one=False, exit_code=1 if failed else 0)


# -- accepting ----------------------------------------------------------------------------------------

def _accept_all(client: ComputeClient, args: argparse.Namespace, evacuations: list[Evacuation],
                pool: ThreadPoolExecutor, progress: Progress) -> None:
    from keystoneauth1 import exceptions as ks_exceptions

    def send(evacuation: Evacuation) -> None:
        try:
            client.evacuate(evacuation.server_uuid, args.target_host, force=args.force,
                            on_shared_storage=args.on_shared_storage)
        except (ClientError, ks_exceptions.ClientException) as error:
            evacuation.error_message = f"Error while evacuating instance: {message_of(error)}"
            evacuation.finished = True
            progress.line(f"{evacuation.label}: refused: {message_of(error)}")
            return
        evacuation.evacuate_accepted = True
        progress.line(f"{evacuation.label}: evacuation accepted")

    _run_each(pool, send, evacuations, progress, lambda: _summary(evacuations, started=None))


def _run_each(pool: ThreadPoolExecutor, task: Callable[[Evacuation], None], evacuations: list[Evacuation],
              progress: Progress, summary: Callable[[], str]) -> None:
    futures = [pool.submit(task, e) for e in evacuations]
    for future in as_completed(futures):
        future.result()
        progress.status(summary())


# -- waiting ------------------------------------------------------------------------------------------

def _wait_all(client: ComputeClient, evacuations: list[Evacuation], pool: ThreadPoolExecutor,
              progress: Progress, started: float, timeout: float) -> None:
    """Look at every accepted server until each has landed or failed, or ``timeout`` has passed."""
    from keystoneauth1 import exceptions as ks_exceptions

    pending = [e for e in evacuations if e.evacuate_accepted]
    deadline = time.monotonic() + timeout
    interval = FIRST_POLL_INTERVAL

    def look(evacuation: Evacuation) -> None:
        try:
            server = client.get_server(evacuation.server_uuid)
        except ApiError as error:
            if error.status == 404:
                _finish(evacuation, progress, started, error="The server was deleted")
            return  # anything else: look again next round
        except ks_exceptions.ClientException:
            return  # the API is unreachable for a moment: look again next round
        _settle(evacuation, server, progress, started)

    while pending:
        _run_each(pool, look, pending, progress, lambda: _summary(evacuations, started))
        pending = [e for e in pending if not e.finished]
        if not pending:
            return
        if time.monotonic() >= deadline:
            for evacuation in pending:
                _finish(evacuation, progress, started,
                        error=f"Timed out after {timeout:.0f} s waiting for the evacuation "
                              f"(status {evacuation.status})")
            return
        time.sleep(interval)
        interval = min(interval * 2, MAX_POLL_INTERVAL)


def _interrupted(evacuations: list[Evacuation], *, waiting: bool) -> None:
    for evacuation in evacuations:
        if not evacuation.evacuate_accepted and not evacuation.error_message:
            evacuation.error_message = "Not sent: interrupted"
        elif evacuation.evacuate_accepted and not evacuation.finished and waiting:
            evacuation.error_message = f"Stopped waiting (interrupted) with the server in {evacuation.status}"


def _settle(evacuation: Evacuation, server: dict, progress: Progress, started: float) -> None:
    """Note where the server is; finish its evacuation once Nova is done with it (task_state null)."""
    evacuation.status = server.get("status")
    evacuation.host = server.get("OS-EXT-SRV-ATTR:host")
    if server.get("OS-EXT-STS:task_state") is not None:
        return
    node = server.get("OS-EXT-SRV-ATTR:hypervisor_hostname") or evacuation.host
    if evacuation.status in RESTING and node != evacuation.source:
        _finish(evacuation, progress, started)
    elif evacuation.status in RESTING:
        _finish(evacuation, progress, started, error=f"The server is still on {evacuation.source}")
    elif evacuation.status == "ERROR":
        fault = (server.get("fault") or {}).get("message")
        _finish(evacuation, progress, started, error=f"Evacuation failed: {fault or 'the server is in ERROR'}")


def _finish(evacuation: Evacuation, progress: Progress, started: float, error: str = "") -> None:
    evacuation.finished = True
    evacuation.seconds = time.monotonic() - started
    if error:
        evacuation.error_message = error
        progress.line(f"{evacuation.label}: failed: {error}")
    else:
        progress.line(f"{evacuation.label}: {evacuation.status} on {evacuation.host} "
                      f"({evacuation.seconds:.1f} s)")


def _summary(evacuations: list[Evacuation], started: float | None) -> str:
    done = sum(e.finished and not e.failed for e in evacuations)
    failed = sum(e.failed for e in evacuations)
    if started is None:
        accepted = sum(e.evacuate_accepted for e in evacuations)
        return f"accepting: {accepted} accepted, {failed} refused of {len(evacuations)}"
    waiting = len(evacuations) - done - failed
    return (f"evacuating: {done} done, {waiting} in progress, {failed} failed "
            f"({time.monotonic() - started:.0f} s)")


# -- parser -------------------------------------------------------------------------------------------

def add_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("host-evacuate", host_evacuate, "evacuate all servers of a failed host, in parallel",
            "[--target-host HOST] [--strict] [--force] [--on-shared-storage] [--no-wait] [--wait-timeout SECONDS] "
            "HOST")
    p.add_argument("host", metavar="HOST",
                   help="hypervisor hostname (or pattern: every hypervisor whose name contains it, unless --strict)")
    p.add_argument("--target-host", "--target_host", dest="target_host", default=None, metavar="HOST",
                   help="target host for every server (default: the scheduler chooses)")
    p.add_argument("--strict", action="store_true", help="only the hypervisor named exactly HOST")
    p.add_argument("--force", action="store_true",
                   help="skip the scheduler's check of the target host (compute API 2.29 to 2.67)")
    p.add_argument("--on-shared-storage", action="store_true",
                   help="the servers' files are on shared storage (compute API 2.13 and earlier)")
    p.add_argument("--no-wait", action="store_true", help="stop once every evacuation is accepted or refused")
    p.add_argument("--wait-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"how long to wait for the servers to land (default {DEFAULT_TIMEOUT:.0f})")
