"""The monitor's fencers against real things: scripts, sushy-tools' Redfish emulator, pyghmi's IPMI BMC.

The Nova fact all of them serve (spec/ha-anchors.md §4, §9): evacuation requires that "the failed host must
be fenced and no longer running the original server", and force-down of an unfenced host "will likely
result in the corruption of VMs". So a fencer says ok only when power-off is confirmed, and every other
outcome — refusal, silence, timeout — is "not fenced" with a reason an operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from novalite import config
from novalite.monitor.fencing import FenceResult, load_fencer
from tests.stack import free_port, wait_until

pytestmark = pytest.mark.no_database

REPO = Path(__file__).resolve().parents[1]


def settings(tmp_path: Path, monitor: dict[str, object], fence: dict[str, dict[str, object]] | None = None):
    """Settings through the real loader, from an INI file with [monitor] and [fence:<host>] sections."""
    lines = ["[api]", "auth_strategy = noauth2", "[monitor]", *(f"{k} = {v}" for k, v in monitor.items())]
    for host, options in (fence or {}).items():
        lines += [f"[fence:{host}]", *(f"{k} = {v}" for k, v in options.items())]
    path = tmp_path / "novalite.conf"
    path.write_text("\n".join(lines) + "\n")
    return config.load(path, environ={})


def fence(fencer, host: str) -> FenceResult:
    return asyncio.run(fencer.power_off(host))


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- choosing a fencer ---------------------------------------------------------------------------------------

def test_unknown_fencer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fencer must be one of none, command, redfish, ipmi"):
        load_fencer(settings(tmp_path, {"fencer": "stonith"}))


def test_fencer_none_is_refused_without_allow_unfenced(tmp_path):
    # Pins §4: force-down of an unfenced host corrupts VMs, so "no fencing" is never a default.
    with pytest.raises(ValueError, match="allow_unfenced = true"):
        load_fencer(settings(tmp_path, {"fencer": "none"}))


def test_fencer_none_warns_loudly_on_every_use(tmp_path, caplog):
    fencer = load_fencer(settings(tmp_path, {"fencer": "none", "allow_unfenced": "true"}))
    with caplog.at_level(logging.WARNING, logger="novalite.monitor"):
        results = [fence(fencer, "compute1"), fence(fencer, "compute2")]
    assert all(r.ok and r.detail.startswith("NOT FENCED") for r in results)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "UNFENCED: host compute1 is NOT powered off" in warnings[0]
    assert asyncio.run(fencer.power_state("compute1")) is None


def test_a_misspelt_fence_option_is_refused_when_the_fencer_loads(tmp_path):
    # A typo would otherwise surface only when the host fails, as a fence that cannot log in.
    conf = settings(tmp_path, {"fencer": "redfish"}, {"compute1": {"address": "http://127.0.0.1:1", "pasword": "x"}})
    with pytest.raises(ValueError, match=r"\[fence:compute1\] has options the redfish fencer does not know: pasword"):
        load_fencer(conf)


def test_a_bmc_section_without_address_is_refused(tmp_path):
    conf = settings(tmp_path, {"fencer": "ipmi"}, {"compute1": {"username": "admin", "password": "x"}})
    with pytest.raises(ValueError, match=r"\[fence:compute1\] needs address for the ipmi fencer"):
        load_fencer(conf)


def test_a_host_without_bmc_settings_is_not_fenced(tmp_path):
    fencer = load_fencer(settings(tmp_path, {"fencer": "redfish"}))
    result = fence(fencer, "compute9")
    assert not result.ok and "no [fence:compute9] section" in result.detail


# --- command -------------------------------------------------------------------------------------------------

def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_command_exit_0_fences_with_host_substituted_and_output_captured(tmp_path):
    # Pins the contract: exit 0 means "powered off and confirmed"; its output is kept for the journal.
    argv_file = tmp_path / "argv"
    cmd = script(tmp_path, "power-off", f'printf "%s\\n" "$@" > {argv_file}\necho "chassis $2 off"\n'
                                        'echo "bmc warning" >&2\n')
    fencer = load_fencer(settings(tmp_path, {"fencer": "command", "fence_command": f"{cmd} --host {{host}}"}))
    result = fence(fencer, "compute1")
    assert result.ok, result.detail
    assert argv_file.read_text().splitlines() == ["--host", "compute1"]
    assert "exit status 0" in result.detail
    assert "chassis compute1 off" in result.detail and "bmc warning" in result.detail
    assert 0 < result.seconds < 5


def test_command_runs_without_a_shell(tmp_path):
    argv_file, marker = tmp_path / "argv", tmp_path / "marker"
    cmd = script(tmp_path, "power-off", f'printf "%s\\n" "$@" > {argv_file}\n')
    fencer = load_fencer(settings(tmp_path, {"fencer": "command",
                                             "fence_command": f"{cmd} '{{host}}; touch {marker}' $HOME"}))
    assert fence(fencer, "compute1").ok
    assert argv_file.read_text().splitlines() == [f"compute1; touch {marker}", "$HOME"]
    assert not marker.exists()


def test_a_host_s_own_command_overrides_the_monitor_template(tmp_path):
    ok_cmd = script(tmp_path, "ok", "exit 0\n")
    fail_cmd = script(tmp_path, "fail", "exit 1\n")
    fencer = load_fencer(settings(tmp_path, {"fencer": "command", "fence_command": f"{fail_cmd} {{host}}"},
                                  {"compute2": {"command": f"{ok_cmd} {{host}}"}}))
    assert not fence(fencer, "compute1").ok
    result = fence(fencer, "compute2")
    assert result.ok and result.detail.startswith(f"{ok_cmd} compute2: exit status 0")


def test_command_non_zero_exit_is_not_fenced(tmp_path):
    cmd = script(tmp_path, "power-off", 'echo "BMC said no: $1" >&2\nexit 3\n')
    fencer = load_fencer(settings(tmp_path, {"fencer": "command", "fence_command": f"{cmd} {{host}}"}))
    result = fence(fencer, "compute1")
    assert not result.ok
    assert "exit status 3" in result.detail and "BMC said no: compute1" in result.detail


def test_command_timeout_is_not_fenced_and_kills_it_with_its_children(tmp_path):
    pids = tmp_path / "pids"
    cmd = script(tmp_path, "hang", f"sleep 60 &\necho $$ $! > {pids}\necho started\nwait\n")
    fencer = load_fencer(settings(tmp_path, {"fencer": "command", "fence_command": str(cmd),
                                             "fence_timeout": "0.5"}))
    result = fence(fencer, "compute1")
    assert not result.ok
    assert "timed out after 0.5 s (fence_timeout), killed" in result.detail and "output: started" in result.detail
    assert 0.5 <= result.seconds < 3
    shell, sleeper = map(int, pids.read_text().split())
    wait_until(lambda: not alive(shell) and not alive(sleeper), timeout=5, what="the fence command's processes to end")


def test_a_command_that_cannot_run_is_not_fenced(tmp_path):
    fencer = load_fencer(settings(tmp_path, {"fencer": "command", "fence_command": f"{tmp_path}/missing {{host}}"}))
    result = fence(fencer, "compute1")
    assert not result.ok and "cannot run" in result.detail and "No such file" in result.detail


def test_a_host_without_any_command_is_not_fenced(tmp_path):
    fencer = load_fencer(settings(tmp_path, {"fencer": "command"}, {"compute1": {"command": "true"}}))
    result = fence(fencer, "compute2")
    assert not result.ok and "no fence command for compute2" in result.detail


def test_a_command_with_unbalanced_quotes_is_refused_when_the_fencer_loads(tmp_path):
    with pytest.raises(ValueError, match="quotation"):
        load_fencer(settings(tmp_path, {"fencer": "command", "fence_command": "fence 'compute"}))


# --- redfish: sushy-tools' emulator with its fake (in-memory) systems driver --------------------------------

UUIDS = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(1, 6)]


def exit_with_parent() -> None:
    """In a child process: end it when the test process ends, even a killed one."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve_emulator() -> None:
    """sushy-tools' emulator (``sushy-emulator`` with its arguments), in a child process."""
    from sushy_tools.emulator import main

    exit_with_parent()
    sys.argv[0] = "sushy-emulator"
    sys.exit(main.main())


class Emulator:
    def __init__(self, root: Path, systems: list[tuple[str, str, str]]):
        """systems: (uuid, name, "On" | "Off")."""
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "emulator.log"
        (root / "htpasswd").write_text("admin:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode() + "\n")
        fake = [{"uuid": u, "name": n, "power_state": s, "nics": []} for u, n, s in systems]
        (root / "emulator.conf").write_text(
            f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {self.port}\n"
            f"SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_FAKE_SYSTEMS = {fake!r}\n"
            f"SUSHY_EMULATOR_STATE_DIR = {str(root / 'state')!r}\n"
            f"SUSHY_EMULATOR_AUTH_FILE = {str(root / 'htpasswd')!r}\n")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from tests.test_monitor_fencing import serve_emulator; serve_emulator()",
                 "--config", str(root / "emulator.conf")], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        wait_until(self._ready, timeout=20, what="the Redfish emulator")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        with contextlib.suppress(requests.ConnectionError):
            return requests.get(f"{self.url}/redfish/v1/", timeout=1).ok
        return False

    def power_state(self, uuid: str) -> str:
        reply = requests.get(f"{self.url}/redfish/v1/Systems/{uuid}", auth=("admin", "secret"), timeout=5)
        reply.raise_for_status()
        return reply.json()["PowerState"]

    def resets(self, uuid: str) -> int:
        return self.log.read_text().count(f"POST /redfish/v1/Systems/{uuid}/Actions/ComputerSystem.Reset")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def emulators(tmp_path) -> Iterator[callable]:
    started: list[Emulator] = []

    def start(systems):
        started.append(Emulator(tmp_path / f"bmc{len(started)}", systems))
        return started[-1]

    yield start
    for emulator in started:
        emulator.close()


def test_redfish_powers_off_the_only_system_and_confirms_it(tmp_path, emulators):
    # Pins §9 step 1: fence and confirm power-off (the emulator applies ForceOff 0-11 s later, like a BMC).
    bmc = emulators([(UUIDS[0], "compute1", "On")])
    fencer = load_fencer(settings(tmp_path, {"fencer": "redfish"}, {"compute1": {
        "address": bmc.url, "username": "admin", "password": "secret"}}))
    assert asyncio.run(fencer.power_state("compute1")) == "on"
    result = fence(fencer, "compute1")
    assert result.ok, result.detail
    assert f"ForceOff sent to system {UUIDS[0]} at {bmc.url}; power off confirmed" in result.detail
    assert bmc.power_state(UUIDS[0]) == "Off" and bmc.resets(UUIDS[0]) == 1
    assert asyncio.run(fencer.power_state("compute1")) == "off"


def test_redfish_finds_each_host_s_system_on_a_shared_bmc(tmp_path, emulators):
    bmc = emulators([(UUIDS[0], "node-a", "On"), (UUIDS[1], "node-b", "On"), (UUIDS[2], "node-c", "Off")])
    creds = {"address": bmc.url, "username": "admin", "password_file": tmp_path / "bmc-password"}
    (tmp_path / "bmc-password").write_text("secret\n")
    fencer = load_fencer(settings(tmp_path, {"fencer": "redfish"}, {
        "compute1": {**creds, "system_id": UUIDS[0]},                # by Id
        "compute2": {**creds, "system_id": "node-b"},                # by name (the emulator's alias)
        "compute3": {**creds, "system_id": f"/redfish/v1/Systems/{UUIDS[2]}"},  # by path
        "compute4": creds,                                            # three systems: which?
        "compute5": {**creds, "system_id": "no-such-node"}}))

    async def fence_all():
        return await asyncio.gather(*(fencer.power_off(f"compute{i}") for i in range(1, 6)))

    r1, r2, r3, r4, r5 = asyncio.run(fence_all())
    assert r1.ok and r2.ok, (r1, r2)
    assert bmc.power_state(UUIDS[0]) == bmc.power_state(UUIDS[1]) == "Off"
    assert r3.ok and r3.detail == f"system {UUIDS[2]} at {bmc.url} was already off"
    assert bmc.resets(UUIDS[2]) == 0  # an off host is fenced without touching it
    assert not r4.ok and "does not have exactly one system: set system_id" in r4.detail
    assert not r5.ok and "has no system 'no-such-node'" in r5.detail


def test_redfish_wrong_password_is_not_fenced(tmp_path, emulators):
    bmc = emulators([(UUIDS[0], "compute1", "On")])
    fencer = load_fencer(settings(tmp_path, {"fencer": "redfish"}, {"compute1": {
        "address": bmc.url, "username": "admin", "password": "guess"}}))
    result = fence(fencer, "compute1")
    assert not result.ok
    assert result.detail == f"the BMC at {bmc.url} refused the credentials of user 'admin' (HTTP 401)"
    assert result.seconds < 5  # a refusal is final: no retries until fence_timeout
    assert bmc.power_state(UUIDS[0]) == "On" and bmc.resets(UUIDS[0]) == 0
    assert asyncio.run(fencer.power_state("compute1")) is None


def test_redfish_unreachable_bmc_is_not_fenced(tmp_path):
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fencer = load_fencer(settings(tmp_path, {"fencer": "redfish", "fence_timeout": "1"}, {"compute1": {
        "address": address, "username": "admin", "password": "secret"}}))
    result = fence(fencer, "compute1")
    assert not result.ok
    assert result.detail.startswith(f"cannot reach the BMC at {address}") and "Connection refused" in result.detail
    assert 0.5 < result.seconds < 3  # retried until fence_timeout, not beyond


def test_redfish_bmc_that_never_answers_is_not_fenced_within_fence_timeout(tmp_path):
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        fencer = load_fencer(settings(tmp_path, {"fencer": "redfish", "fence_timeout": "1"}, {"compute1": {
            "address": address, "username": "admin", "password": "secret"}}))
        result = fence(fencer, "compute1")
    assert not result.ok and address in result.detail
    assert result.seconds < 3


# --- ipmi: a pyghmi.ipmi.bmc.Bmc in a process of its own -----------------------------------------------------

def serve_ipmi_bmc() -> None:
    """The simulated BMC (run in a child process: pyghmi keeps its sessions process-wide).

    argv: port password power(on|off) off_delay(seconds; negative: never) ready_file log_file
    """
    import pyghmi.ipmi.bmc as bmc
    from pyghmi.ipmi.private import serversession
    from pyghmi.ipmi.private import session as ipmisession

    port, password, power, delay, ready, log = sys.argv[1:7]

    class Suite3Session(serversession.ServerSession):
        # pyghmi's server speaks cipher suite 3 only but accepts the client's suite 17 proposal and then
        # answers with SHA-1; a real suite-3 BMC refuses the proposal, and pyghmi's client falls back.
        def create_open_session_response(self, request):
            if request[12] != 1 or request[20] != 1:  # authentication, integrity: HMAC-SHA1
                return bytearray([request[0], 0x11, 0, 0]) + request[4:8]
            return super().create_open_session_response(request)

    class SimBmc(bmc.Bmc):
        def __init__(self):
            super().__init__({"admin": password}, port=int(port), address="127.0.0.1")
            self.power, self.off_at = power, None

        def sessionless_data(self, data, sockaddr):
            if len(data) >= 22 and data[0] == 6 and data[2:4] == b"\xff\x07" and data[4] == 6 and data[5] == 16:
                Suite3Session(self.authdata, self.kg, sockaddr, self.serversocket, bytearray(data)[16:],
                              self.uuid, bmc=self)
                return None
            return super().sessionless_data(data, sockaddr)

        def get_power_state(self):
            if self.off_at is not None and time.monotonic() >= self.off_at:
                self.power, self.off_at = "off", None
            return self.power

        def power_off(self):
            with open(log, "a") as f:
                f.write("power_off\n")
            if float(delay) >= 0:
                self.off_at = time.monotonic() + float(delay)

        def is_active(self):
            return self.power == "on"

    exit_with_parent()
    SimBmc()
    Path(ready).touch()
    while True:
        ipmisession.Session.wait_for_rsp(0.1)


class IpmiBmc:
    def __init__(self, root: Path, power: str = "on", off_delay: float = 0.5):
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log, ready = root / "bmc.log", root / "ready"
        self.log.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_monitor_fencing import serve_ipmi_bmc; serve_ipmi_bmc()",
             str(self.port), "secret", power, str(off_delay), str(ready), str(self.log)], cwd=REPO)
        wait_until(lambda: ready.exists() or self.proc.poll() is not None, timeout=20, what="the IPMI BMC")
        assert self.proc.poll() is None

    def power_offs(self) -> int:
        return self.log.read_text().count("power_off")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def ipmi_bmc(tmp_path) -> Iterator[callable]:
    started: list[IpmiBmc] = []

    def start(**kwargs):
        started.append(IpmiBmc(tmp_path / f"bmc{len(started)}", **kwargs))
        return started[-1]

    yield start
    for bmc in started:
        bmc.close()


def ipmi_fencer(tmp_path, port: int, password="secret", timeout=10.0):
    return load_fencer(settings(tmp_path, {"fencer": "ipmi", "fence_timeout": timeout}, {"compute1": {
        "address": "127.0.0.1", "port": port, "username": "admin", "password": password}}))


def test_ipmi_powers_off_and_confirms_it(tmp_path, ipmi_bmc):
    # Pins §9 step 1 (Masakari's IPMI "Power is off" check, §1.3): off is confirmed, not assumed.
    bmc = ipmi_bmc(off_delay=0.5)
    fencer = ipmi_fencer(tmp_path, bmc.port)
    assert asyncio.run(fencer.power_state("compute1")) == "on"
    result = fence(fencer, "compute1")
    assert result.ok, result.detail
    assert f"power off sent to the BMC at 127.0.0.1:{bmc.port}; power off confirmed" in result.detail
    assert 0.5 <= result.seconds < 5 and bmc.power_offs() == 1
    assert asyncio.run(fencer.power_state("compute1")) == "off"


def test_ipmi_host_already_off_is_fenced_without_a_command(tmp_path, ipmi_bmc):
    bmc = ipmi_bmc(power="off")
    result = fence(ipmi_fencer(tmp_path, bmc.port), "compute1")
    assert result.ok and "host was already off" in result.detail
    assert bmc.power_offs() == 0


def test_ipmi_power_off_never_confirmed_is_not_fenced(tmp_path, ipmi_bmc):
    bmc = ipmi_bmc(off_delay=-1)  # takes the command, never powers off
    # 3 s: pyghmi's session set-up alone took over 1 s while three test runs shared two cores.
    result = fence(ipmi_fencer(tmp_path, bmc.port, timeout=3.0), "compute1")
    assert not result.ok
    assert "power off not confirmed within 3 s (fence_timeout); last power state: on" in result.detail
    assert bmc.power_offs() == 1 and 3 <= result.seconds < 6  # the last reading is at the deadline


def test_ipmi_wrong_password_is_not_fenced(tmp_path, ipmi_bmc):
    bmc = ipmi_bmc()
    result = fence(ipmi_fencer(tmp_path, bmc.port, password="guess"), "compute1")
    assert not result.ok
    assert result.detail == (f"the BMC at 127.0.0.1:{bmc.port} refused the session of user 'admin': "
                             "Incorrect password provided")
    assert result.seconds < 5 and bmc.power_offs() == 0
    assert asyncio.run(ipmi_fencer(tmp_path, bmc.port).power_state("compute1")) == "on"


def test_ipmi_unreachable_bmc_is_not_fenced(tmp_path):
    port = free_port()  # no BMC answers there
    result = fence(ipmi_fencer(tmp_path, port, timeout=2.0), "compute1")
    assert not result.ok
    # pyghmi gives up on a silent BMC after ~5 s of its own retries; the fencer stops waiting at the deadline.
    assert result.detail in (f"cannot reach the BMC at 127.0.0.1:{port}: no IPMI answer",
                             f"the BMC at 127.0.0.1:{port} did not answer within 2 s (fence_timeout)")
    assert result.seconds < 4
