"""The evacuation of one failed host's servers, through the public compute API (recovery.py's step 4-5).

- Plan, by the host's policy (groups.py: its [host_group:<name>]'s options over [monitor]'s, each decision
  citing it): the servers still on the host (admin listing, all_tenants, host filter) that opted in
  (gates.opt_in: evacuable_metadata_key / evacuable_extra_spec), by priority (priority_metadata_key, higher
  first; Nova's listing order within a priority); each first attempt's target by targets.py's rules (spares
  first while they have room, then the group's hosts or the scheduler). Each planned server is journaled
  with the status it had, so a resumed recovery restores what ran before the failure, not what it finds.
- Move: at most evacuation_workers evacuate requests at once, taken in priority order. Each evacuate goes
  by a read of the server — for a first attempt, the plan's listing (taken at this run's start); for a
  retry, a fresh GET: one already off the host has moved, one whose task_state is set is in flight, and
  neither is evacuated again (never two evacuations of one server at once). Nova's own guards cover what
  changes after that read: a 409 on a task_state set meanwhile (then read again), a 400 from the up host
  a server already landed on.
- Track: one listing of what is still on the host every poll_interval, whatever the number of servers; a
  server gone from it is read once. A server rests when its task_state is null: ACTIVE or SHUTOFF on
  another host is moved, anything else on the failed host is a failed attempt, retried evacuation_retries
  times, each after twice the last delay (so room that appears meanwhile is found), each retry's target
  chosen afresh (targets.py).
- Restore: a moved server is brought back to its planned status (os-start / os-stop): from 2.95 Nova lands
  every evacuated server SHUTOFF (spec 6), and an ERROR server (a failed attempt) lands ACTIVE.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from novalite.client import ApiError, ClientError, ComputeClient
from novalite.config import MonitorOpts
from novalite.monitor import gates
from novalite.monitor.groups import Policy
from novalite.monitor.journal import Journal
from novalite.monitor.targets import COMPUTE, Move, Targets

__all__ = ["COMPUTE", "ApiCalls", "Evacuator", "Move", "Tally"]
RESTING = ("ACTIVE", "SHUTOFF")
REBUILD_TASK_STATES = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
LOG = logging.getLogger("novalite.monitor")


def transient(error: BaseException) -> bool:
    """An API call worth repeating: no answer (keystoneauth's connection errors) or a 5xx."""
    from keystoneauth1 import exceptions as ks_exceptions

    if isinstance(error, ApiError):
        return error.status >= 500
    return isinstance(error, ks_exceptions.ConnectionError)


class ApiCalls:
    """The ComputeClient's blocking calls, run in a thread pool off the event loop."""

    def __init__(self, client: ComputeClient, opts: MonitorOpts, threads: int):
        self.client = client
        self.opts = opts
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="monitor-api")
        client.allow_parallel(threads)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def retrying(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """An idempotent call, repeated while the API does not answer (or answers 5xx)."""
        delay = self.opts.evacuation_retry_delay
        for attempt in range(self.opts.evacuation_retries + 1):
            try:
                return await self.call(fn, *args, **kwargs)
            except Exception as error:
                if attempt == self.opts.evacuation_retries or not transient(error):
                    raise
            await asyncio.sleep(delay)
            delay *= 2

    async def server(self, server_id: str) -> dict | None:
        """The server, or None once it is deleted."""
        try:
            return await self.retrying(self.client.get_server, server_id)
        except ApiError as error:
            if error.status == 404:
                return None
            raise


@dataclass(frozen=True)
class Tally:
    moved: int  # by this recovery, a run interrupted before this one included
    failed: int
    skipped: int  # not opted in, or deleted meanwhile


class _Tracking:
    """The servers of one host whose evacuation is in flight, and who waits for each."""

    def __init__(self, host: str):
        self.host = host
        self.waiting: dict[str, asyncio.Future] = {}
        self.wake = asyncio.Event()

    async def wait(self, server_id: str, timeout: float) -> dict | None:
        """The server once Nova is done with it (task_state null), None once deleted; TimeoutError."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[server_id] = future
        self.wake.set()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(server_id, None)

    def settle(self, server_id: str, server: dict | None) -> None:
        future = self.waiting.get(server_id)
        if future is not None and not future.done():
            future.set_result(server)


def where(server: dict | None, source: str) -> str:
    """Where one server's evacuation from ``source`` stands."""
    if server is None:
        return "gone"
    task_state, status = server.get("OS-EXT-STS:task_state"), server.get("status")
    if server.get("OS-EXT-SRV-ATTR:host") != source:
        if task_state is None and status in RESTING:
            return "moved"
        return "in-flight" if task_state is not None else f"failed elsewhere ({status})"
    if task_state in REBUILD_TASK_STATES:
        return "in-flight"
    if task_state is not None:
        return f"busy (task_state {task_state})"
    return "ready"


class Evacuator:
    """Evacuates failed hosts' servers; evacuation_workers bounds the requests of all hosts together."""

    def __init__(self, api: ApiCalls, journal: Journal, opts: MonitorOpts):
        self.api = api
        self.client = api.client
        self.journal = journal
        self.opts = opts
        self._slots = asyncio.Semaphore(opts.evacuation_workers)
        self._flavors: dict[str, dict] = {}
        self.targets = Targets(api, journal)

    async def run(self, host: str, recovery_id: str, policy: Policy) -> Tally:
        """Evacuate what ``host`` runs by its ``policy``: every opted-in server moved, failed or skipped."""
        servers = await self.api.retrying(self.client.list_servers, all_tenants="1", host=host)
        # What an earlier run of this recovery planned (each server's status before the failure), and the
        # last thing it noted per server.
        history = self.journal.events(recovery_id=recovery_id)
        plan = {e.server: e.detail for e in history if e.kind == "planned"}
        last = {e.server: e.kind for e in history if e.server}
        moves, skipped = [], 0
        for server in servers:
            held = await self._opt_in(server, policy)
            if held:
                skipped += 1
                if server["id"] not in last:
                    self.journal.record(host, recovery_id, "skipped", server=server["id"], rule=gates.OPT_IN,
                                        reason=held, **policy.cited())
                continue
            status = plan.get(server["id"], {}).get("status") or server.get("status", "")
            moves.append(await self._move_of(server, status, policy))
        # Planned by an interrupted run, off the host since, not yet seen landed: landed or in flight.
        listed = {server["id"] for server in servers}
        moves += [Move(sid, detail.get("status", ""), detail.get("priority", 0), 0, 0) for sid, detail in plan.items()
                  if sid not in listed and last.get(sid) not in ("landed", "skipped")]
        moves.sort(key=lambda move: -move.priority)  # stable: Nova's listing order within a priority
        await self.targets.plan(host, recovery_id, policy, [m for m in moves if m.server_id in listed])
        for move in moves:
            if move.server_id not in plan:
                self.journal.record(host, recovery_id, "planned", server=move.server_id, status=move.status,
                                    priority=move.priority, target=move.target, target_rule=move.target_rule,
                                    policy=policy.source)
        tracking = _Tracking(host)
        tracker = asyncio.ensure_future(self._track(tracking))
        by_id = {server["id"]: server for server in servers}
        try:
            outcomes = await asyncio.gather(*(self._move(tracking, recovery_id, move, policy, by_id.get(move.server_id))
                                              for move in moves))
        finally:
            tracker.cancel()
        moved = len({e.server for e in self.journal.events(recovery_id=recovery_id, kind="landed")})
        return Tally(moved, outcomes.count("failed"), skipped + outcomes.count("skipped"))

    # -- planning -------------------------------------------------------------------------------------

    async def _flavor(self, server: dict, with_extra_specs: bool = False) -> dict:
        """The server's flavor: embedded from 2.47, else looked up by id (once; its extra specs once asked)."""
        flavor = server.get("flavor") or {}
        if "ram" in flavor:
            return flavor
        flavor_id = str(flavor.get("id"))
        if flavor_id not in self._flavors:
            self._flavors[flavor_id] = dict(await self.api.retrying(self.client.find_flavor, flavor_id))
        found = self._flavors[flavor_id]
        if with_extra_specs and "extra_specs" not in found:
            found["extra_specs"] = await self.api.retrying(self.client.flavor_extra_specs, flavor_id)
        return found

    async def _opt_in(self, server: dict, policy: Policy) -> str | None:
        extra_specs = None
        if policy.evacuable_extra_spec:
            extra_specs = (await self._flavor(server, with_extra_specs=True)).get("extra_specs") or {}
        return gates.opt_in(server, policy.evacuable_metadata_key, policy.evacuable_extra_spec, extra_specs)

    async def _move_of(self, server: dict, status: str, policy: Policy) -> Move:
        flavor = await self._flavor(server)
        try:
            priority = int((server.get("metadata") or {}).get(policy.priority_metadata_key, 0))
        except ValueError:
            priority = 0
        disk = (flavor.get("disk") or 0) + (flavor.get("OS-FLV-EXT-DATA:ephemeral") or flavor.get("ephemeral") or 0)
        swap = flavor.get("swap") or 0  # MB; the flavors API shows "" for none
        return Move(server["id"], status, priority, int(flavor.get("ram") or 0),
                    int(disk + math.ceil((swap if isinstance(swap, int) else 0) / 1024)))

    # -- moving one server ----------------------------------------------------------------------------

    async def _move(self, tracking: _Tracking, recovery_id: str, move: Move, policy: Policy,
                    listed: dict | None) -> str:
        """Evacuate one server until it rests elsewhere: "landed", "failed" or "skipped" (deleted).
        ``listed``: the server as the plan's listing showed it (None: not on the host then)."""
        host, sid = tracking.host, move.server_id
        delay = self.opts.evacuation_retry_delay
        attempts = self.opts.evacuation_retries + 1
        for attempt in range(1, attempts + 1):
            error = None
            if attempt > 1:
                await self.targets.retarget(host, policy, move)
            async with self._slots:
                server = listed if attempt == 1 and listed is not None else await self.api.server(sid)
                state = where(server, host)
                if state == "gone":
                    self.journal.record(host, recovery_id, "skipped", server=sid, reason="the server was deleted")
                    return "skipped"
                if state == "moved":
                    return await self._landed(tracking, recovery_id, move, server, already=True)
                if state == "ready" and move.stranded:
                    # No host may take it (targets.py's fallback rule): a failed attempt, so the retries
                    # look again for room, in the group only.
                    error = move.target_rule
                elif state == "ready":
                    try:
                        await self.api.call(self.client.evacuate, sid, move.target)
                        self.journal.record(host, recovery_id, "evacuation_accepted", server=sid, attempt=attempt,
                                            target=move.target, target_rule=move.target_rule)
                        self.targets.claim(host, move, move.target)
                    except ApiError as refused:
                        # Refused for a change since the read: in flight after all (409, a task_state set
                        # meanwhile), moved already (400, its host is up) or deleted (404). The wait below
                        # sees where it ends.
                        if where(await self.api.server(sid), host) not in ("in-flight", "moved", "gone"):
                            error = f"refused: {refused.message}"
                elif state == "in-flight":
                    self.journal.record(host, recovery_id, "in_flight", server=sid,
                                        task_state=server.get("OS-EXT-STS:task_state"))
                else:
                    error = f"cannot evacuate: {state}"
            if error is None:
                try:
                    server = await tracking.wait(sid, self.opts.evacuation_timeout)
                except TimeoutError:
                    # Still in flight: evacuating it again would be refused, and would be a second copy.
                    self.journal.record(host, recovery_id, "evacuation_timeout", server=sid,
                                        seconds=self.opts.evacuation_timeout)
                    return "failed"
                state = where(server, host)
                if state == "gone":
                    self.journal.record(host, recovery_id, "skipped", server=sid, reason="the server was deleted")
                    return "skipped"
                if state == "moved":
                    return await self._landed(tracking, recovery_id, move, server)
                error = (server.get("fault") or {}).get("message") or f"the server is {server.get('status')}"
            self.journal.record(host, recovery_id, "evacuation_failed", server=sid, attempt=attempt, reason=error)
            self.targets.claim(host, move, None)
            if state.startswith("failed elsewhere") or attempt == attempts:
                break
            self.journal.record(host, recovery_id, "retry", server=sid, attempt=attempt + 1, delay=delay)
            await asyncio.sleep(delay)
            delay *= 2
        self.journal.record(host, recovery_id, "gave_up", server=sid, attempts=attempt,
                            **({"rule": move.target_rule, "policy": policy.source} if move.stranded else {}))
        return "failed"

    async def _landed(self, tracking: _Tracking, recovery_id: str, move: Move, server: dict,
                      already: bool = False) -> str:
        status = server.get("status")
        self.targets.claim(tracking.host, move, server.get("OS-EXT-SRV-ATTR:host"))
        self.journal.record(tracking.host, recovery_id, "landed", server=move.server_id,
                            on=server.get("OS-EXT-SRV-ATTR:host"), status=status,
                            **({"already": True} if already else {}))
        restore = {("ACTIVE", "SHUTOFF"): ("start", self.client.start_server),
                   ("SHUTOFF", "ACTIVE"): ("stop", self.client.stop_server)}.get((move.status, status))
        if restore is not None:
            action, call = restore
            try:
                await self.api.retrying(call, move.server_id)
                self.journal.record(tracking.host, recovery_id, "power_restored", server=move.server_id,
                                    action=action, was=move.status)
            except ClientError as error:
                self.journal.record(tracking.host, recovery_id, "power_restore_failed", server=move.server_id,
                                    action=action, reason=str(error))
        return "landed"

    async def _track(self, tracking: _Tracking) -> None:
        """Every poll_interval while servers are in flight: one listing of what is still on the host;
        a server gone from it is read once (it landed, or is on its way, or was deleted)."""
        while True:
            if not tracking.waiting:
                await tracking.wake.wait()
                tracking.wake.clear()
            await asyncio.sleep(self.opts.poll_interval)
            # Only servers already waiting before the listing was asked for: their acceptance (task_state
            # set) was committed by then, so a null task_state in it means the attempt is over.
            asked = list(tracking.waiting)
            try:
                still = {s["id"]: s for s in await self.api.call(
                    self.client.list_servers, all_tenants="1", host=tracking.host)}
            except Exception as error:  # look again next time; the waits have their own timeout
                LOG.warning("cannot list the servers of %s: %s", tracking.host, error)
                continue
            left = []
            for sid in asked:
                if sid not in still:
                    left.append(sid)
                elif still[sid].get("OS-EXT-STS:task_state") is None:
                    tracking.settle(sid, still[sid])
            found = await asyncio.gather(*(self.api.server(sid) for sid in left), return_exceptions=True)
            for sid, server in zip(left, found, strict=True):
                if isinstance(server, BaseException):
                    continue
                if server is None or server.get("OS-EXT-STS:task_state") is None:
                    tracking.settle(sid, server)
