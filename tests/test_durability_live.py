"""Durability of the API (issue 5, item 5): kill -9 of API workers in the middle of writes, and restarts of the
database server. Every write acknowledged with a 2xx is there afterwards; while the database is away clients get
Nova's 500 computeFault promptly, never a hang; the API serves again by itself once the database is back.

Real processes throughout: ``novalite api`` under gunicorn, clients in threads writing through the public
interfaces (agents' registrations, 2.11 force-down toggles, server creates, heartbeats through the API's
heartbeat listener) and reading os-services. Each write leaves its own trace: registrations and servers have
unique names; each service is toggled by one client only, so its final forced_down is the value of its last
acknowledged toggle, unless a later toggle went unanswered (it may or may not have been applied, so either value
is allowed); each heartbeat adds one to its service's report_count, so the count is at least the heartbeats
acknowledged and at most those sent.

- Worker kills run on the run's backend (``database_url``: SQLite, PostgreSQL or MariaDB).
- Database restarts (a clean stop, then a kill -9) run on private servers (tests/db_servers.py), PostgreSQL in
  the PostgreSQL run and MariaDB in the MariaDB run. SQLite has no server to lose, so it has no restart test.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from novalite.cli.up import seed_flavors
from novalite.db import engine as db_engine
from novalite.db.api import services as services_table
from tests.db_servers import private_server
from tests.stack import Stack, wait_until

pytestmark = pytest.mark.live

CLIENT_TIMEOUT = 30.0  # longer than any bound below, so a hang shows as a slow answer or a timeout
FAULT_BOUND = 10.0  # every answer, fault or not, comes within this long
RECOVERY_BOUND = 10.0  # from the database accepting connections to the API's first success
WORKER_KILLS = 6
ACKS_BETWEEN_KILLS = 10
TOGGLERS, SERVICES_PER_TOGGLER = 3, 4
BEATEN_SERVICES = 4
# Spec §2: an unexpected error is a 500 computeFault whose message names only the exception's class.
UNEXPECTED_FAULT = re.compile(r"Unexpected API Error\. Please contact the administrator\n<class '[\w.]+'>")


@dataclass
class Outcome:
    """One request: what it wrote (or read), when, and what came back (status None: no HTTP answer)."""

    client: str
    kind: str  # register | toggle | create | beat | read
    key: str  # the host registered or toggled, the server's name
    value: object
    sent: float
    answered: float
    status: int | None
    body: object = None
    error: str = ""

    @property
    def acked(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Workload:
    """Client threads writing and reading through the API until stopped; every request becomes an Outcome."""

    stack: Stack
    outcomes: list[Outcome] = field(default_factory=list)
    toggled: dict[str, list[str]] = field(default_factory=dict)  # client → the hosts it alone toggles
    beaten: dict[str, str] = field(default_factory=dict)  # host → service UUID, of the services the beater beats
    _stop: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)  # cleared: clients pause between requests
    _waiting: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))  # one per paused client
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        with requests.Session() as session:
            for t in range(TOGGLERS):
                hosts = [f"toggled-{t}-{i}" for i in range(SERVICES_PER_TOGGLER)]
                for host in hosts:
                    assert self._register(session, host).status_code == 200
                self.toggled[f"toggler-{t}"] = hosts
            for i in range(BEATEN_SERVICES):
                resp = self._register(session, f"beaten-{i}")
                assert resp.status_code == 200, resp.text
                self.beaten[f"beaten-{i}"] = resp.json()["service"]["id"]
        loops: dict[str, Callable] = {"registrar": self._registrar, "creator": self._creator, "reader": self._reader,
                                      "beater": self._beater}
        for client, hosts in self.toggled.items():
            loops[client] = self._toggler(hosts)
        self._go.set()
        for client, loop in loops.items():
            thread = threading.Thread(target=self._run, args=(client, loop), name=client, daemon=True)
            self._threads.append(thread)
            thread.start()

    def pause(self) -> None:
        """Return once no client has a request in flight; none sends another until resume()."""
        self._go.clear()
        for _ in self._threads:
            assert self._waiting.acquire(timeout=CLIENT_TIMEOUT + 5), "a client thread hung"

    def resume(self) -> None:
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self._threads), "a client thread hung"

    # -- what the clients do ------------------------------------------------------------------------

    def _run(self, client: str, loop: Callable) -> None:
        with requests.Session() as session:
            for n in itertools.count():
                if not self._go.is_set():
                    self._waiting.release()
                    self._go.wait()
                if self._stop.is_set():
                    return
                loop(session, client, n)

    def _call(self, client: str, kind: str, key: str, value: object, send: Callable[[], requests.Response]) -> None:
        sent = time.monotonic()
        try:
            resp = send()
        except requests.RequestException as error:
            self.outcomes.append(Outcome(client, kind, key, value, sent, time.monotonic(), None,
                                         error=type(error).__name__))
            return
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        self.outcomes.append(Outcome(client, kind, key, value, sent, time.monotonic(), resp.status_code, body))

    def _register(self, session: requests.Session, host: str) -> requests.Response:
        return session.post(self.stack.url + "/agent/v1/services", timeout=CLIENT_TIMEOUT,
                            headers={"X-Agent-Token": self.stack.agent_token},
                            json={"host": host, "binary": "nova-compute", "version": 73})

    def _registrar(self, session: requests.Session, client: str, n: int) -> None:
        host = f"registered-{n}"
        self._call(client, "register", host, None, lambda: self._register(session, host))

    def _toggler(self, hosts: list[str]) -> Callable:
        def toggle(session: requests.Session, client: str, n: int) -> None:
            host, value = hosts[n % len(hosts)], (n // len(hosts)) % 2 == 0  # True, then False, then True…
            self._call(client, "toggle", host, value, lambda: session.put(
                self.stack.endpoint + "/os-services/force-down", headers=self.stack.admin_headers("2.11"),
                json={"host": host, "binary": "nova-compute", "forced_down": value}, timeout=CLIENT_TIMEOUT))

        return toggle

    def _creator(self, session: requests.Session, client: str, n: int) -> None:
        name = f"server-{n}"
        body = {"server": {"name": name, "flavorRef": "1", "imageRef": "", "networks": "none"}}
        self._call(client, "create", name, None, lambda: session.post(
            self.stack.endpoint + "/servers", headers=self.stack.admin_headers("2.37"), json=body,
            timeout=CLIENT_TIMEOUT))

    def _beater(self, session: requests.Session, client: str, n: int) -> None:
        host = f"beaten-{n % BEATEN_SERVICES}"
        self._call(client, "beat", host, None, lambda: session.put(
            f"{self.stack.heartbeat_url}/agent/v1/services/{self.beaten[host]}/heartbeat",
            headers={"X-Agent-Token": self.stack.agent_token}, timeout=CLIENT_TIMEOUT))

    def _reader(self, session: requests.Session, client: str, _n: int) -> None:
        self._call(client, "read", "", None, lambda: session.get(
            self.stack.endpoint + "/os-services", headers=self.stack.admin_headers("2.53"), timeout=CLIENT_TIMEOUT))

    # -- what happened ------------------------------------------------------------------------------

    def acked(self, kind: str | None = None) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.acked and kind in (None, o.kind)]

    def wait_for_more_acked_writes(self, count: int, what: str) -> None:
        def acked_writes() -> int:
            return sum(o.kind != "read" for o in self.acked())

        floor = acked_writes() + count
        wait_until(lambda: acked_writes() >= floor, timeout=30, what=what)

    def clients(self) -> set[str]:
        return {t.name for t in self._threads}

    def each_client_answered(self, since: float, count: int, *, acked: bool = False) -> bool:
        """Each client has ``count`` requests sent at or after ``since`` answered (acknowledged, if ``acked``)."""
        seen: dict[str, int] = {}
        for o in list(self.outcomes):
            if o.sent >= since and o.status is not None and (o.acked or not acked):
                seen[o.client] = seen.get(o.client, 0) + 1
        return all(seen.get(c, 0) >= count for c in self.clients())


# -- what must hold afterwards --------------------------------------------------------------------

def assert_acknowledged_writes_present(stack: Stack, workload: Workload) -> None:
    services = {s["host"]: s for s in stack.services("2.53")}
    missing = [o.key for o in workload.acked("register") if o.key not in services]
    assert not missing, f"acknowledged registrations lost: {missing}"
    for client, hosts in workload.toggled.items():
        toggles = [o for o in workload.outcomes if o.client == client]
        for host in hosts:
            allowed = _allowed_forced_down([o for o in toggles if o.key == host])
            assert services[host]["forced_down"] in allowed, (
                f"{host}: forced_down is {services[host]['forced_down']}, the last acknowledged toggle and the "
                f"unanswered ones after it allow only {allowed}")
    resp = requests.get(stack.endpoint + "/servers", headers=stack.admin_headers("2.37"), timeout=CLIENT_TIMEOUT)
    assert resp.status_code == 200, resp.text
    names = {s["name"] for s in resp.json()["servers"]}
    lost = [o.key for o in workload.acked("create") if o.key not in names]
    assert not lost, f"acknowledged server creates lost: {lost}"
    counts = report_counts(stack.database_url, list(workload.beaten.values()))
    for host, service_uuid in workload.beaten.items():
        beats = [o for o in workload.outcomes if o.kind == "beat" and o.key == host]
        acked = sum(o.acked for o in beats)
        assert acked <= counts[service_uuid] <= len(beats), (
            f"{host}: report_count {counts[service_uuid]}, {acked} heartbeats acknowledged of {len(beats)} sent")


def report_counts(database_url: str, service_uuids: list[str]) -> dict[str, int]:
    engine = db_engine.make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(services_table.c.uuid, services_table.c.report_count)
                                .where(services_table.c.uuid.in_(service_uuids)))
            return {service_uuid: count for service_uuid, count in rows}
    finally:
        engine.dispose()


def _allowed_forced_down(toggles: list[Outcome]) -> set[bool]:
    """The last acknowledged value (False before any), and any unanswered or refused toggle sent after it."""
    last_acked = max((i for i, o in enumerate(toggles) if o.acked), default=None)
    allowed = {False if last_acked is None else toggles[last_acked].value}
    after = toggles[last_acked + 1:] if last_acked is not None else toggles
    return allowed | {o.value for o in after}


def assert_fault(outcome: Outcome) -> None:
    """Spec §2: Nova's fault envelope; code 500 is a computeFault, its message no URL, host or password."""
    assert outcome.status == 500, outcome
    assert isinstance(outcome.body, dict) and set(outcome.body) == {"computeFault"}, outcome
    fault = outcome.body["computeFault"]
    assert fault["code"] == 500, outcome
    assert UNEXPECTED_FAULT.fullmatch(fault["message"]), outcome


# -- kill -9 of API workers -------------------------------------------------------------------------

def gunicorn_workers(master_pid: int) -> list[int]:
    """The live worker processes of a gunicorn master: its children."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master_pid and fields[0] != "Z":  # ppid; zombies are dead already
            workers.append(int(entry.name))
    return workers


def test_acknowledged_writes_survive_sigkill_of_api_workers_mid_write(make_stack, database_url):
    stack = make_stack(database_url=database_url, start=False)
    seed_flavors(stack.database_url)
    master = stack.start_api(workers=4)
    wait_until(lambda: len(gunicorn_workers(master.pid)) == 4, timeout=30, what="4 gunicorn workers")
    workload = Workload(stack)
    workload.start()
    killed = []
    rng = random.Random(5)
    try:
        for _ in range(WORKER_KILLS):
            # Only once the API has acknowledged more writes (workers serve again) is the next one killed.
            workload.wait_for_more_acked_writes(ACKS_BETWEEN_KILLS, "writes acknowledged again")
            victim = rng.choice(gunicorn_workers(master.pid))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        workload.wait_for_more_acked_writes(ACKS_BETWEEN_KILLS, "writes acknowledged after the kills")
    finally:
        workload.stop()

    assert master.poll() is None, "the gunicorn master died"
    wait_until(lambda: len(gunicorn_workers(master.pid)) == 4, timeout=30, what="killed workers replaced")
    unanswered = [o for o in workload.outcomes if o.status is None]
    print(f"{len(workload.outcomes)} requests, {len(workload.acked())} acknowledged, {len(unanswered)} cut off by "
          f"{len(killed)} worker kills ({sorted({o.error for o in unanswered})})")
    # A request cut off by a kill fails at once; one that was answered was answered within the bound.
    assert not [o for o in unanswered if o.error == "Timeout"], "requests hung"
    slow = [o for o in workload.outcomes if o.status is not None and o.answered - o.sent > FAULT_BOUND]
    assert not slow, slow[:3]
    for outcome in workload.outcomes:
        if outcome.status is not None and not outcome.acked:
            assert_fault(outcome)
    assert {o.kind for o in workload.acked()} >= {"register", "toggle", "create", "read", "beat"}
    assert_acknowledged_writes_present(stack, workload)


# -- restarts of the database server ----------------------------------------------------------------

@dataclass
class Outage:
    how: str  # stop | kill
    busy: bool  # clients kept sending while the database was away; otherwise the API sat idle meanwhile
    stopping: float = 0.0  # the server is told to stop (or killed)
    stopped: float = 0.0  # it is gone
    starting: float = 0.0  # it is started again
    back: float = 0.0  # it accepts connections again
    recovered_after: float = 0.0  # seconds from back to the API's first acknowledged request


def _outage(server, how: str, busy: bool, workload: Workload) -> Outage:
    if not busy:
        workload.pause()
    outage = Outage(how, busy, stopping=time.monotonic())
    getattr(server, how)()
    outage.stopped = time.monotonic()
    if busy:  # every client has had answers while the database was away (wait_until fails if one hangs)
        wait_until(lambda: workload.each_client_answered(outage.stopped, 3), timeout=FAULT_BOUND * 2,
                   what=f"answers from the API with its database {how}ped")
    outage.starting = time.monotonic()
    server.start()
    outage.back = time.monotonic()
    workload.resume()
    wait_until(lambda: workload.each_client_answered(outage.back, 2, acked=True), timeout=RECOVERY_BOUND,
               what="the API to serve again after the database came back")
    outage.recovered_after = min(o.answered for o in workload.acked() if o.sent >= outage.back) - outage.back
    return outage


def _check_outage(outage: Outage, end: float, workload: Workload) -> None:
    """While the database was away: prompt faults. Once it was back, up to ``end``: every request succeeded."""
    down = [o for o in workload.outcomes if outage.stopped <= o.sent and o.answered <= outage.starting]
    slowest = max((o.answered - o.sent for o in down), default=0.0)
    print(f"database {outage.how} ({'busy' if outage.busy else 'idle'} API): {len(down)} requests answered while "
          f"it was away, the slowest in {slowest:.3f} s; first success {outage.recovered_after:.3f} s after it "
          f"accepted connections again")
    for outcome in down:  # nothing can be served without the database
        assert_fault(outcome)
    # Recovered alone, and at once: even connections that sat idle in the workers' pools while the server was
    # restarted (the idle outage) were replaced without failing a request.
    after = [o for o in workload.outcomes if outage.back <= o.sent and o.answered < end]
    assert after and all(o.acked for o in after), [o for o in after if not o.acked][:3]


@pytest.mark.parametrize("backend_name", [
    pytest.param("postgresql", marks=pytest.mark.only_backend("postgresql")),
    pytest.param("mariadb", marks=pytest.mark.only_backend("mariadb")),
])
def test_database_restart_gives_prompt_faults_then_the_api_recovers_alone(make_stack, tmp_path, backend_name):
    with private_server(backend_name, tmp_path) as server:
        stack = make_stack(database_url=server.create_database("novalite"), start=False)
        seed_flavors(stack.database_url)
        stack.start_api(workers=2)
        workload = Workload(stack)
        workload.start()
        try:
            wait_until(lambda: workload.each_client_answered(0, 5, acked=True), timeout=30, what="a warm API")
            outages = [_outage(server, how, busy, workload)
                       for how, busy in (("stop", True), ("kill", True), ("kill", False))]
            workload.wait_for_more_acked_writes(ACKS_BETWEEN_KILLS, "writes after the restarts")
        finally:
            workload.stop()

        ends = [outage.stopping for outage in outages[1:]] + [time.monotonic()]
        for outage, end in zip(outages, ends, strict=True):
            _check_outage(outage, end, workload)
        # The API itself never failed a request: every one was answered, success or fault, within the bound.
        assert all(o.status is not None for o in workload.outcomes), [o for o in workload.outcomes if o.status is None]
        slow = [o for o in workload.outcomes if o.answered - o.sent > FAULT_BOUND]
        assert not slow, slow[:3]
        for outcome in workload.outcomes:
            if not outcome.acked:
                assert_fault(outcome)
        assert_acknowledged_writes_present(stack, workload)
