"""The recovery of one failed host, and its return, through the public compute API only.

``Recovery.recover(host, detected)``, in the order of ha-anchors.md section 9:

0. the host's policy (groups.py): its [host_group:<name>]'s, or [monitor]'s; every decision cites it. A host
   two groups claim is held (rule host-group); a group with recovery_method = notify only journals the
   failure (rule notify-only): no fencing, no force-down, no evacuation;
1. the operator-disabled gate (gates.py): a host someone else disabled is left alone;
2. fence, and go on only once the fencer has *confirmed* the power-off (never two copies of a server);
3. forced_down=true and disabled with the marker reason ``novalite-monitor: recovering <id> since <iso>``
   (one 2.53 PUT saves both; below 2.53 force-down goes first). The marker is the recovery's state in
   Nova itself: a monitor that restarts finds it (``resume()``) and finishes the job;
4. evacuate the host's servers (evacuation.py: those that opted in, by priority, spare hosts first, in
   parallel with bounded workers, each re-read before its evacuate and never evacuated twice, tracked to
   its resting state, retried, restored to the status it had, every move journaled);
5. the marker becomes ``novalite-monitor: evacuated <id> at <iso>: <n> moved, <m> failed``.

The monitor evacuates at microversion 2.94 (``open_client``), the newest before 2.95: from 2.95 Nova
always lands an evacuated server SHUTOFF (spec 6; ha-anchors 4), while users of an HA monitor expect what
ran before the failure to run again, as below 2.95 Nova does by itself (a stopped server stays stopped).
Whatever the version, each moved server is brought back to the status it had when the recovery planned
it (os-start / os-stop), which also covers a server that failed an attempt (ERROR) and then landed ACTIVE.

``host_returned(host)``: finish the host's recovery if it is unfinished, force it up (retrying while Nova
refuses, spec 3.6, until the host's compute has restarted and completed its `done` evacuations), then
enable it, or with leave_disabled (the host's policy) leave it disabled under a ``returned`` marker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from novalite.client import ApiError, ApiVersion, ClientError, ComputeClient
from novalite.config import MonitorOpts, Settings
from novalite.monitor import gates
from novalite.monitor.evacuation import COMPUTE, ApiCalls, Evacuator
from novalite.monitor.fencing import Fencer
from novalite.monitor.groups import HOST_GROUP, NOTIFY, NOTIFY_ONLY, AmbiguousHost, HostGroups, Policy
from novalite.monitor.journal import Journal, iso

EVACUATE_VERSION = ApiVersion(2, 94)  # the newest before 2.95's stopped target state
FORCE_DOWN_VERSION = ApiVersion(2, 11)
RECOVERING, EVACUATED, RETURNED = "recovering", "evacuated", "returned"
_MARKER = re.compile(rf"^{re.escape(gates.MARKER_PREFIX)} ({RECOVERING}|{EVACUATED}|{RETURNED}) (\S+)")
MAX_FORCE_UP_INTERVAL = 2.0  # the force-up retries slow down to one every this many seconds
LOG = logging.getLogger("novalite.monitor")


@dataclass(frozen=True)
class Marker:
    state: str
    recovery_id: str


def parse_marker(reason: str | None) -> Marker | None:
    match = _MARKER.match(reason or "")
    return Marker(match.group(1), match.group(2)) if match else None


def marker(state: str, recovery_id: str, text: str) -> str:
    return f"{gates.MARKER_PREFIX} {state} {recovery_id} {text}"[:255]  # disabled_reason: 1-255 (spec 3.4)


@dataclass
class RecoveryResult:
    host: str
    recovery_id: str | None
    outcome: str  # recovered | held | fence-failed | notified
    reason: str = ""
    moved: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0


def open_client(os_cloud: str = "") -> ComputeClient:
    """A ComputeClient from clouds.yaml's ``os_cloud`` (empty: the OS_* variables) at the monitor's
    microversion: min(the server's newest, 2.94), at least 2.11 (force-down)."""
    from keystoneauth1 import adapter
    from openstack import config as os_config

    cloud = os_config.OpenStackConfig().get_one(cloud=os_cloud or None)
    compute = adapter.Adapter(
        session=cloud.get_session(), service_type=cloud.get_service_type("compute"),
        service_name=cloud.get_service_name("compute"), interface=cloud.get_interface("compute"),
        region_name=cloud.get_region_name("compute"), endpoint_override=cloud.get_endpoint("compute"),
        user_agent="novalite-monitor")
    client = ComputeClient(compute)
    client.version = min(client.supported_versions()[1], EVACUATE_VERSION)
    if client.version < FORCE_DOWN_VERSION:
        raise ClientError(f"the compute API serves up to {client.version}; the monitor needs {FORCE_DOWN_VERSION}")
    return client


def check_options(opts: MonitorOpts) -> None:
    """The [monitor] options recovery uses; ValueError naming the wrong one. (Checked here, not when the
    config file is loaded: the compute agents read the same file and have no use for them.)"""
    for name in ("poll_interval", "evacuation_timeout", "force_up_timeout"):
        if getattr(opts, name) <= 0:
            raise ValueError(f"[monitor] {name} must be greater than 0")
    for name in ("evacuation_retries", "evacuation_retry_delay"):
        if getattr(opts, name) < 0:
            raise ValueError(f"[monitor] {name} must not be negative")
    if opts.evacuation_workers < 1:
        raise ValueError("[monitor] evacuation_workers must be at least 1")


class Recovery:
    def __init__(self, client: ComputeClient, fencer: Fencer, journal: Journal, settings: Settings):
        if client.version < FORCE_DOWN_VERSION:
            raise ValueError(f"the monitor needs compute API {FORCE_DOWN_VERSION} or later, not {client.version}")
        check_options(settings.monitor)
        self.client = client
        self.fencer = fencer
        self.journal = journal
        self.opts = settings.monitor
        self.groups = HostGroups(settings)
        self.api = ApiCalls(client, self.opts, threads=self.opts.evacuation_workers + 4)
        self.evacuator = Evacuator(self.api, journal, self.opts)
        self._retrying = self.api.retrying
        self._running: dict[str, asyncio.Task] = {}

    def close(self) -> None:
        self.api.close()

    # -- recovery -------------------------------------------------------------------------------------

    async def recover(self, host: str, detected: Any = None, retry_of: str | None = None) -> RecoveryResult:
        """Recover ``host`` (``detected``: the detector's HostFailed, for the record). ``retry_of``: the id of
        this host's recovery whose fencing failed, tried again under the same id. A second call for a host
        whose recovery runs in this process waits for that one."""
        running = self._running.get(host)
        if running is not None:
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._recover(host, detected, retry_of))
        self._running[host] = task
        try:
            return await task
        except Exception as error:
            self.journal.record(host, None, "error", reason=f"{type(error).__name__}: {error}")
            raise
        finally:
            if self._running.get(host) is task:
                del self._running[host]

    async def _recover(self, host: str, detected: Any, retry_of: str | None) -> RecoveryResult:
        started = time.monotonic()
        service = await self._retrying(self.client.find_service, host)
        try:
            policy = self.groups.policy(host)
        except AmbiguousHost as ambiguous:
            self.journal.record(host, None, "held", rule=HOST_GROUP, reason=str(ambiguous))
            LOG.warning("ALERT: recovery of %s held: %s", host, ambiguous)
            return RecoveryResult(host, None, "held", reason=str(ambiguous))
        mark = parse_marker(service.get("disabled_reason")) if service.get("status") == "disabled" else None
        if mark is not None and mark.state in (RECOVERING, EVACUATED) and service.get("forced_down"):
            # Fenced and forced down by an earlier run: finish that recovery.
            self.journal.record(host, mark.recovery_id, "resumed", marker=service.get("disabled_reason"),
                                **policy.cited())
            return await self._evacuate_host(host, mark.recovery_id, started, policy)
        held = gates.operator_disabled(service)
        if held:
            self.journal.record(host, None, "held", rule=gates.OPERATOR_DISABLED, reason=held, **policy.cited())
            return RecoveryResult(host, None, "held", reason=held)
        if retry_of is None:
            recovery_id = uuid.uuid4().hex[:12]
            self.journal.record(host, recovery_id, "detected", **_detected(detected), **policy.summary())
        else:
            recovery_id = retry_of
            self.journal.record(host, recovery_id, "fence_retry", fencer=self.fencer.name)
        if policy.recovery_method == NOTIFY:
            reason = (f"{NOTIFY_ONLY}: {policy.source} recovery_method = notify: not fenced, not forced down, "
                      f"nothing evacuated; an operator decides")
            self.journal.record(host, recovery_id, "notified", rule=NOTIFY_ONLY, reason=reason, **policy.cited())
            return RecoveryResult(host, recovery_id, "notified", reason, seconds=time.monotonic() - started)
        try:
            fenced = await self.fencer.power_off(host)
            ok, detail, seconds = bool(fenced.ok), str(fenced.detail), float(fenced.seconds)
        except Exception as error:  # a fencer that breaks has not fenced
            ok, detail, seconds = False, f"{type(error).__name__}: {error}", time.monotonic() - started
        if not ok:
            self.journal.record(host, recovery_id, "fence_failed", fencer=self.fencer.name, detail=detail,
                                seconds=round(seconds, 3))
            return RecoveryResult(host, recovery_id, "fence-failed", reason=detail,
                                  seconds=time.monotonic() - started)
        self.journal.record(host, recovery_id, "fenced", fencer=self.fencer.name, detail=detail,
                            seconds=round(seconds, 3))
        reason = marker(RECOVERING, recovery_id, f"since {iso(time.time())}")
        await self._retrying(self.client.force_down_and_disable, host, reason)
        self.journal.record(host, recovery_id, "forced_down")
        self.journal.record(host, recovery_id, "disabled", reason=reason)
        return await self._evacuate_host(host, recovery_id, started, policy)

    async def resume(self) -> list[RecoveryResult]:
        """Finish every recovery a previous monitor left unfinished: compute services forced down and
        disabled with a ``recovering`` marker. ValueError when two host groups claim a known host."""
        services = await self._retrying(self.client.list_services, binary=COMPUTE)
        # A host two groups' patterns claim is a configuration error; say so now rather than at its failure.
        self.groups.check(s["host"] for s in services)
        hosts = [s["host"] for s in services if s.get("forced_down") and s.get("status") == "disabled"
                 and (m := parse_marker(s.get("disabled_reason"))) is not None and m.state == RECOVERING]
        return list(await asyncio.gather(*(self.recover(host) for host in hosts)))

    async def awaiting_return(self) -> list[str]:
        """Hosts the monitor recovered that are still forced down: their return is the next step."""
        services = await self._retrying(self.client.list_services, binary=COMPUTE)
        return [s["host"] for s in services if s.get("forced_down") and s.get("status") == "disabled"
                and (m := parse_marker(s.get("disabled_reason"))) is not None and m.state == EVACUATED]

    async def _evacuate_host(self, host: str, recovery_id: str, started: float, policy: Policy) -> RecoveryResult:
        tally = await self.evacuator.run(host, recovery_id, policy)
        moved, failed, skipped = tally.moved, tally.failed, tally.skipped
        reason = marker(EVACUATED, recovery_id, f"at {iso(time.time())}: {moved} moved, {failed} failed")
        await self._retrying(self.client.disable, host, reason=reason)
        seconds = time.monotonic() - started
        self.journal.record(host, recovery_id, "recovered", moved=moved, failed=failed, skipped=skipped,
                            seconds=round(seconds, 3), reason=reason)
        return RecoveryResult(host, recovery_id, "recovered", reason, moved, failed, skipped, seconds)

    # -- the host's return ----------------------------------------------------------------------------

    async def host_returned(self, host: str) -> str:
        """Force the returned host up and enable it: "enabled", "left-disabled", "refused" (Nova still
        refuses the force-up after force_up_timeout) or "not-ours" (not a host the monitor recovered)."""
        running = self._running.get(host)
        if running is not None:
            await asyncio.shield(running)
        service = await self._retrying(self.client.find_service, host)
        mark = parse_marker(service.get("disabled_reason")) if service.get("status") == "disabled" else None
        if mark is None:
            if service.get("forced_down"):
                self.journal.record(host, None, "held", rule=gates.OPERATOR_DISABLED,
                                    reason=f"{host} is forced down, but not by the monitor; left alone")
            return "not-ours"
        if mark.state == RECOVERING and service.get("forced_down"):
            await self.recover(host)  # never let a host up before its servers were moved
        recovery_id = mark.recovery_id
        self.journal.record(host, recovery_id, "host_returned")
        if service.get("forced_down"):
            if not await self._force_up(host, recovery_id):
                return "refused"
        leave, source, cited = self._leave_disabled(host)
        if leave:
            reason = marker(RETURNED, recovery_id, f"at {iso(time.time())}; left disabled ({source} leave_disabled)")
            await self._retrying(self.client.disable, host, reason=reason)
            self.journal.record(host, recovery_id, "left_disabled", reason=reason, **cited)
            return "left-disabled"
        await self._retrying(self.client.enable, host)
        self.journal.record(host, recovery_id, "enabled", **cited)
        return "enabled"

    def _leave_disabled(self, host: str) -> tuple[bool, str, dict]:
        """The host's policy's leave_disabled, where it comes from, and the policy as cited. A host two
        groups claim stays disabled: which policy holds is for the operator to say."""
        try:
            policy = self.groups.policy(host)
        except AmbiguousHost as ambiguous:
            return True, "ambiguous host groups", {"policy_rule": str(ambiguous)}
        return policy.leave_disabled, policy.source, policy.cited()

    async def _force_up(self, host: str, recovery_id: str) -> bool:
        deadline = time.monotonic() + self.opts.force_up_timeout
        interval, refusals = self.opts.poll_interval, 0
        while True:
            try:
                await self._retrying(self.client.force_down, host, None, False)
                self.journal.record(host, recovery_id, "forced_up", refusals=refusals)
                return True
            except ApiError as error:
                if error.status != 400:
                    raise
                if refusals == 0:
                    self.journal.record(host, recovery_id, "force_up_refused", reason=error.message)
                refusals += 1
            if time.monotonic() >= deadline:
                self.journal.record(host, recovery_id, "force_up_gave_up", refusals=refusals,
                                    seconds=self.opts.force_up_timeout)
                return False
            await asyncio.sleep(interval)
            interval = min(interval * 2, MAX_FORCE_UP_INTERVAL)


def _detected(detected: Any) -> dict:
    """The detector's HostFailed, for the journal."""
    detail: dict = {}
    for name in ("last_beat_wall", "detected_wall"):
        value = getattr(detected, name, None)
        if value is not None:
            detail[name.removesuffix("_wall")] = iso(value)
    silence = getattr(detected, "silence_seconds", None)
    if silence is not None:
        detail["silence_seconds"] = round(silence, 3)
    return detail
