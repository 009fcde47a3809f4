"""Fencers: power a failed host off, and confirm it is off, before anything acts on its servers.

Nova trusts the caller of force-down: its API reference requires that "the failed host must be fenced and no
longer running the original server", and warns that forcing down an unfenced host corrupts VMs. So a fencer
answers ``ok`` only once the host's power is *confirmed* off within ``[monitor] fence_timeout``; anything
else (a refusal, no answer, a timeout) is "not fenced", with the reason in ``detail``, and the monitor acts on
nothing. Fencers never raise.

    none      no fencing at all; refused unless ``[monitor] allow_unfenced = true``, loud on every use.
    command   an operator's program, run without a shell: ``[fence:<host>] command`` or the ``[monitor]
              fence_command`` template, "{host}" replaced by the host; exit status 0 means "off, confirmed".
    redfish   the host's BMC through sushy: ForceOff, then PowerState read until Off.
    ipmi      the host's BMC through pyghmi: chassis power off, then the power state read until off.

The BMC libraries block, so they run in threads (``asyncio.to_thread``); every call is bounded by the
time left before the deadline, and ``asyncio.wait_for`` is the backstop for a library that overstays it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from novalite.config import Settings

LOG = logging.getLogger(__name__)

# How long past the deadline a BMC library may overstay before the fencer stops waiting for it.
_LIBRARY_GRACE = 1.0
# The most output of a fence command kept in a result's detail (its tail: errors come last).
_OUTPUT_LIMIT = 2000


@dataclass(frozen=True)
class FenceResult:
    ok: bool  # True only when the host's power-off is confirmed
    detail: str
    seconds: float


class Fencer(abc.ABC):
    name: str

    @abc.abstractmethod
    async def power_off(self, host: str) -> FenceResult:
        """Power ``host`` off and confirm it; ok=False with the reason when that cannot be confirmed."""

    async def power_state(self, host: str) -> str | None:
        """The host's power as its BMC says: "on", "off" (or its own word, lower case); None when unknown."""
        return None


class _NotFenced(Exception):
    """Why a host could not be fenced; its message becomes the result's detail."""


class _Unreachable(_NotFenced):
    """No answer from the BMC at all: worth another try before the deadline."""


def load_fencer(settings: Settings) -> Fencer:
    """The fencer ``[monitor] fencer`` names, its [fence:<host>] sections checked; ValueError when unusable."""
    m = settings.monitor
    if m.fencer not in FENCERS:
        raise ValueError(f"[monitor] fencer must be one of {', '.join(FENCERS)}, not {m.fencer!r}")
    if m.fence_timeout <= 0 or m.fence_poll_interval <= 0:
        raise ValueError("[monitor] fence_timeout and fence_poll_interval must be greater than 0")
    return FENCERS[m.fencer](settings)


def _host_sections(settings: Settings, fencer: str, known: set[str], required: set[str]) -> dict[str, dict]:
    """Each [fence:<host>] section, checked: a misspelt option would only show when a host fails."""
    for host, options in settings.fence_hosts.items():
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"[fence:{host}] has options the {fencer} fencer does not know: {', '.join(unknown)} "
                             f"(it knows {', '.join(sorted(known))})")
        missing = sorted(name for name in required if not options.get(name))
        if missing:
            raise ValueError(f"[fence:{host}] needs {', '.join(missing)} for the {fencer} fencer")
    return settings.fence_hosts


def _secret(host: str, options: dict[str, str]) -> str:
    if options.get("password_file"):
        return Path(options["password_file"]).read_text().strip()
    return options.get("password", "")


def _finish(fencer: str, host: str, ok: bool, detail: str, started: float) -> FenceResult:
    result = FenceResult(ok=ok, detail=detail, seconds=round(time.monotonic() - started, 3))
    LOG.log(logging.INFO if ok else logging.ERROR, "fence fencer=%s host=%s ok=%s seconds=%.3f detail=%s",
            fencer, host, ok, result.seconds, detail)
    return result


class NoFencer(Fencer):
    """Fences nothing. Only for clouds where a failed host is known to be dead by other means, or for tests."""

    name = "none"

    def __init__(self, settings: Settings) -> None:
        if not settings.monitor.allow_unfenced:
            raise ValueError("[monitor] fencer = none evacuates servers of hosts that may still run them; "
                             "it needs [monitor] allow_unfenced = true")

    async def power_off(self, host: str) -> FenceResult:
        LOG.warning("UNFENCED: host %s is NOT powered off (fencer none, allow_unfenced = true); if it still "
                    "runs, its servers will run twice and their disks may be corrupted", host)
        return FenceResult(ok=True, detail=f"NOT FENCED: fencer none; {host} may still be running", seconds=0.0)


class CommandFencer(Fencer):
    """Runs an operator's program that powers the host off and returns only once it is off."""

    name = "command"

    def __init__(self, settings: Settings) -> None:
        self._template = settings.monitor.fence_command
        self._timeout = settings.monitor.fence_timeout
        self._commands = {host: options["command"] for host, options in
                          _host_sections(settings, self.name, {"command"}, {"command"}).items()}
        for template in [self._template, *self._commands.values()]:
            if template:
                shlex.split(template)  # unbalanced quotes: ValueError now, not when a host fails

    def argv(self, host: str) -> list[str]:
        template = self._commands.get(host) or self._template
        if not template:
            raise _NotFenced(f"no fence command for {host}: set [fence:{host}] command or [monitor] fence_command")
        return [arg.replace("{host}", host) for arg in shlex.split(template)]

    async def power_off(self, host: str) -> FenceResult:
        started = time.monotonic()
        try:
            ok, detail = await self._run(self.argv(host))
        except _NotFenced as exc:
            ok, detail = False, str(exc)
        return _finish(self.name, host, ok, detail, started)

    async def _run(self, argv: list[str]) -> tuple[bool, str]:
        try:
            # Its own session, so a timeout ends the command and everything it started.
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return False, f"cannot run {shlex.join(argv)}: {exc}"
        chunks: list[bytes] = []
        reader = asyncio.ensure_future(_read_all(proc.stdout, chunks))
        try:
            status = await asyncio.wait_for(proc.wait(), self._timeout)
        except TimeoutError:
            status = None
        finally:  # timed out, or the caller gave up: end the command and all it started
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        # A daemon the command left behind may hold the pipe open: do not wait for it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), 1.0)
        reader.cancel()
        output = b"".join(chunks).decode(errors="replace").strip()
        if len(output) > _OUTPUT_LIMIT:
            output = "…" + output[-_OUTPUT_LIMIT:]
        if status is None:
            outcome = f"timed out after {self._timeout:g} s (fence_timeout), killed"
        else:
            outcome = f"exit status {status}" if status >= 0 else f"killed by signal {-status}"
        detail = f"{shlex.join(argv)}: {outcome}" + (f"; output: {output}" if output else "")
        return status == 0, detail


async def _read_all(stream: asyncio.StreamReader, chunks: list[bytes]) -> None:
    while chunk := await stream.read(65536):
        chunks.append(chunk)


class _BmcFencer(Fencer):
    """A fencer speaking to each host's BMC with a blocking library, in a thread, within fence_timeout."""

    KNOWN: set[str] = set()
    REQUIRED: set[str] = {"address"}

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.monitor.fence_timeout
        self._poll = settings.monitor.fence_poll_interval
        self._targets = {host: self._target(host, options) for host, options in
                         _host_sections(settings, self.name, self.KNOWN, self.REQUIRED).items()}

    @abc.abstractmethod
    def _target(self, host: str, options: dict[str, str]) -> object: ...

    @abc.abstractmethod
    def _off(self, target, deadline: float) -> str:
        """Blocking: power off and confirm before ``deadline``; the success detail, or _NotFenced."""

    @abc.abstractmethod
    def _state(self, target, deadline: float) -> str: ...

    async def _in_thread(self, host: str, work: Callable[[object, float], str]) -> str:
        target = self._targets.get(host)
        if target is None:
            raise _NotFenced(f"no [fence:{host}] section: the {self.name} fencer does not know {host}'s BMC")
        deadline = time.monotonic() + self._timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(work, target, deadline), self._timeout + _LIBRARY_GRACE)
        except TimeoutError:
            raise _NotFenced(f"the BMC at {target.where} did not answer within {self._timeout:g} s "
                             f"(fence_timeout)") from None

    async def power_off(self, host: str) -> FenceResult:
        started = time.monotonic()
        try:
            ok, detail = True, await self._in_thread(host, self._off)
        except _NotFenced as exc:
            ok, detail = False, str(exc)
        except Exception as exc:  # a library's surprise must not stop the monitor; the host is not fenced
            LOG.exception("fencing %s failed unexpectedly", host)
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return _finish(self.name, host, ok, detail, started)

    async def power_state(self, host: str) -> str | None:
        try:
            return await self._in_thread(host, self._state)
        except Exception as exc:
            LOG.warning("power state of %s unknown: %s", host, exc)
            return None

    def _until_off(self, read_state: Callable[[], str], deadline: float, what: str) -> str:
        """Read the power state every fence_poll_interval, and once at the deadline, until "off"."""
        started, last = time.monotonic(), "no reading yet"
        while True:
            try:
                last = read_state()
                if last == "off":
                    return f"{what}; power off confirmed after {time.monotonic() - started:.2f} s"
            except Exception as exc:  # a BMC busy powering off may drop a request: read again
                last = f"error: {exc}"
            left = deadline - time.monotonic()
            if left <= 0:
                raise _NotFenced(f"{what}, but power off not confirmed within {self._timeout:g} s "
                                 f"(fence_timeout); last power state: {last}")
            time.sleep(min(self._poll, left))

    def _retry_unreachable(self, connect: Callable[[], object], deadline: float):
        """``connect()`` again every fence_poll_interval while the BMC does not answer, until the deadline."""
        while True:
            try:
                return connect()
            except _Unreachable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _NotFenced(str(exc)) from None
                time.sleep(min(self._poll, left))


def _remaining(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


@dataclass(frozen=True)
class RedfishTarget:
    address: str  # the BMC's base URL; https:// when no scheme is given
    username: str
    password: str = field(repr=False)
    system_id: str = ""  # the ComputerSystem's Id (or path); empty: the BMC's only system
    verify: bool | str = True  # verify_tls: true, false, or a CA bundle path

    @property
    def where(self) -> str:
        return self.address


class RedfishFencer(_BmcFencer):
    name = "redfish"
    KNOWN = {"address", "system_id", "username", "password", "password_file", "verify_tls"}

    def _target(self, host: str, options: dict[str, str]) -> RedfishTarget:
        address = options["address"] if "://" in options["address"] else f"https://{options['address']}"
        verify: bool | str = options.get("verify_tls", "true")
        if verify.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            verify = verify.lower() in ("true", "yes", "1", "on")
        return RedfishTarget(address.rstrip("/"), options.get("username", ""), _secret(host, options),
                             options.get("system_id", ""), verify)

    def _system(self, t: RedfishTarget, deadline: float):
        import sushy
        from sushy import exceptions as sx

        where = f"the BMC at {t.address}"
        try:
            # Basic auth: no session left open on a BMC with few session slots; one attempt per request
            # (server_side_retries=1), the fencer's own loop retries within fence_timeout.
            root = sushy.Sushy(t.address, auth=sushy.auth.BasicAuth(t.username, t.password), verify=t.verify,
                               server_side_retries=1, server_side_retries_delay=self._poll,
                               connect_timeout=_remaining(deadline), read_timeout=_remaining(deadline))
            path = t.system_id if t.system_id.startswith("/") or not t.system_id else \
                f"{root.get_system_collection().path.rstrip('/')}/{t.system_id}"
            return root.get_system(path or None)
        except sx.AccessError as exc:
            raise _NotFenced(f"{where} refused the credentials of user {t.username!r} "
                             f"(HTTP {exc.status_code})") from None
        except sx.ResourceNotFoundError:
            raise _NotFenced(f"{where} has no system {t.system_id!r}") from None
        except sx.UnknownDefaultError:
            raise _NotFenced(f"{where} does not have exactly one system: set system_id in its "
                             f"[fence:<host>] section") from None
        except sx.ConnectionError as exc:
            raise _Unreachable(f"cannot reach {where}: {exc}") from None
        except sx.SushyError as exc:
            raise _NotFenced(f"{where} failed: {exc}") from None

    def _off(self, t: RedfishTarget, deadline: float) -> str:
        from sushy import exceptions as sx
        from sushy.resources.constants import ResetType

        system = self._retry_unreachable(lambda: self._system(t, deadline), deadline)
        what = f"system {system.identity} at {t.address}"
        if _word(system.power_state) == "off":
            return f"{what} was already off"
        try:
            system.reset_system(ResetType.FORCE_OFF)
        except sx.SushyError as exc:
            raise _NotFenced(f"{what} refused ForceOff: {exc}") from None

        def read() -> str:
            system.refresh(force=True)
            return _word(system.power_state)

        return self._until_off(read, deadline, f"ForceOff sent to {what}")

    def _state(self, t: RedfishTarget, deadline: float) -> str:
        return _word(self._system(t, deadline).power_state)


def _word(power_state) -> str:
    value = getattr(power_state, "value", power_state)
    return str(value).lower() if value is not None else "unknown"


@dataclass(frozen=True)
class IpmiTarget:
    address: str
    port: int
    username: str
    password: str = field(repr=False)

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


class IpmiFencer(_BmcFencer):
    name = "ipmi"
    KNOWN = {"address", "port", "username", "password", "password_file"}

    def _target(self, host: str, options: dict[str, str]) -> IpmiTarget:
        return IpmiTarget(options["address"], int(options.get("port", "623")), options.get("username", ""),
                          _secret(host, options))

    def _session(self, t: IpmiTarget, deadline: float):
        """A pyghmi Command on the host's BMC.

        pyghmi keeps one logged-in session per BMC and user, shared by threads and kept alive for the next
        use. The credentials go in as bytes: pyghmi stores them so, and looks a session up by comparing
        them; given str it never finds the live session and waits forever on a stale half-made one.
        """
        from pyghmi import exceptions as px
        from pyghmi.ipmi import command

        def login():
            try:
                return command.Command(bmc=t.address, userid=t.username.encode(), password=t.password.encode(),
                                       port=t.port)
            except px.IpmiException as exc:
                # pyghmi gives no message when the BMC never answered: that is retried until the deadline;
                # a BMC that answered and refused (password, name, privilege) will refuse again.
                if exc.args and exc.args[0] is not None:
                    raise _NotFenced(f"the BMC at {t.where} refused the session of user {t.username!r}: "
                                     f"{exc}") from None
                raise _Unreachable(f"cannot reach the BMC at {t.where}: no IPMI answer") from None

        return self._retry_unreachable(login, deadline)

    def _off(self, t: IpmiTarget, deadline: float) -> str:
        from pyghmi import exceptions as px

        what = f"the BMC at {t.where}"
        cmd = self._session(t, deadline)
        try:
            if cmd.get_power()["powerstate"] == "off":
                return f"{what}: host was already off"
            # Not set_power(wait=...): pyghmi then reads the state once a second, a second lost per fence.
            cmd.set_power("off")
        except px.IpmiException as exc:
            raise _NotFenced(f"{what} refused power off: {exc}") from None
        return self._until_off(lambda: cmd.get_power()["powerstate"], deadline, f"power off sent to {what}")

    def _state(self, t: IpmiTarget, deadline: float) -> str:
        return self._session(t, deadline).get_power()["powerstate"]


FENCERS: dict[str, type[Fencer]] = {
    "none": NoFencer, "command": CommandFencer, "redfish": RedfishFencer, "ipmi": IpmiFencer,
}
