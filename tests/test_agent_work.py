"""The compute agent's work loop (agent/work.py) in one process, against the real API over real HTTP.

novalite's WSGI application is served on 127.0.0.1 by a threaded wsgiref server; between it and the
agent sits a ``Gate``, the network of these tests: it counts requests and can refuse some with 503,
as an unreachable or failing control plane would. The agent runs its real simulated driver, which
records when its calls start and end. Servers are made and placed with novalite.domain (Servers,
Conductor) and nudged as the scheduler process would nudge. What each test pins is said in it.
"""

from __future__ import annotations

import asyncio
import collections
import socketserver
import threading
import time
from collections.abc import Awaitable, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from novalite import config
from novalite.agent.compute import AgentConfig, ComputeAgent
from novalite.agent.virt.simulated import SimulatedDriver
from novalite.config import ComputeOpts
from novalite.db import compute_nodes
from novalite.db import servers as servers_db
from novalite.domain import states
from novalite.domain.conductor import Conductor
from novalite.domain.flavors import Flavors
from novalite.domain.servers import Requester, Servers
from tests.api_client import AGENT_SECRET, Api

ADMIN = Requester(user_id="admin", project_id="6f70656e737461636b", is_admin=True)
HOST = "compute1"
NOAUTH = {"NOVALITE_API__AUTH_STRATEGY": "noauth2"}


class Gate:
    """WSGI middleware: counts requests by (method, last path segment); refuses those ``closed`` matches,
    loses the answers of those ``lost`` matches (they are served, the caller gets a 503), and holds those
    ``slow`` matches for ``slow_seconds`` before serving them."""

    def __init__(self, app):
        self.app = app
        self.counts: collections.Counter = collections.Counter()
        self.closed: Callable[[str, str], bool] = lambda method, path: False
        self.lost: Callable[[str, str], bool] = lambda method, path: False
        self.slow: Callable[[str, str], bool] = lambda method, path: False
        self.slow_seconds = 0.2
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        with self._lock:
            self.counts[method, path.rsplit("/", 1)[-1]] += 1
        # Each rule is asked once per request: a test may change it meanwhile.
        closed, lost, slow = self.closed(method, path), self.lost(method, path), self.slow(method, path)
        if slow:
            time.sleep(self.slow_seconds)
        if lost:
            served = self.app(environ, lambda status, headers, exc_info=None: None)
            b"".join(served)
        if closed or lost:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"closed by the test"]
        return self.app(environ, start_response)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class RecordingDriver(SimulatedDriver):
    """The simulated hypervisor, with a record of its calls: (what, uuid, monotonic time)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[tuple[str, str, float]] = []
        self.building = 0
        self.most_building = 0

    async def spawn(self, guest):
        self.calls.append(("spawn", guest.uuid, time.monotonic()))
        self.building += 1
        self.most_building = max(self.most_building, self.building)
        try:
            await super().spawn(guest)
        finally:
            self.building -= 1
            self.calls.append(("spawned", guest.uuid, time.monotonic()))

    async def destroy(self, uuid):
        self.calls.append(("destroy", uuid, time.monotonic()))
        await super().destroy(uuid)

    def count(self, what: str, uuid: str | None = None) -> int:
        return sum(1 for call in self.calls if call[0] == what and uuid in (None, call[1]))


class Harness:
    def __init__(self, tmp_path):
        self.api = Api(tmp_path / "api")
        self.gate = Gate(self.api.app)
        self.httpd = make_server("127.0.0.1", 0, self.gate, server_class=_ThreadingServer,
                                 handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.engine = self.api.engine
        self.servers = Servers(self.engine, self.api.settings)
        self.flavor = Flavors(self.engine).create(name="small", memory_mb=512, vcpus=1, root_gb=1)
        self.state_dir = tmp_path / "state"

    def agent(self, spawn_time: float = 0.0, **config) -> ComputeAgent:
        opts = ComputeOpts()  # the host's capacity rule as `novalite compute` reports it by default
        ratios = {name: getattr(opts, name)
                  for name in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio")}
        values = {"host": HOST, "api_url": self.url, "agent_token": AGENT_SECRET, "report_interval": 0.1,
                  "work_poll_interval": 30.0, "allocation_ratios": ratios, **config}
        driver = RecordingDriver(state_dir=self.state_dir, spawn_time=spawn_time)
        return ComputeAgent(AgentConfig(**values), driver=driver)

    # -- the control plane's side, as the API and the scheduler process do it ------------------------

    def create_and_place(self, count: int = 1) -> list[str]:
        rows = self.servers.create(ADMIN, name="vm", flavor=self.flavor, image_ref=None, requested_host=HOST,
                                   count=count)
        hosts = Conductor(self.engine, self.api.settings).place_pending().hosts
        self.servers.nudge_hosts(hosts)
        return [row.uuid for row in rows]

    def server(self, uuid: str):
        with self.engine.connect() as conn:
            return servers_db.instance_get(conn, uuid)

    def active(self, *uuids: str) -> bool:
        return all((r := self.server(u)) is not None and r.vm_state == states.ACTIVE and r.task_state is None
                   for u in uuids)

    def ready(self) -> bool:
        """The agent heartbeats and its node is reported: it takes work."""
        with self.engine.connect() as conn:
            return compute_nodes.compute_node_get_by_host_and_nodename(conn, HOST, HOST) is not None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.engine.dispose()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


async def eventually(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(predicate)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


def run(agent: ComputeAgent, scenario: Callable[[ComputeAgent], Awaitable[None]]) -> None:
    """Run ``agent`` while ``scenario`` plays, then stop it (SIGTERM's path) and wait for it to end."""

    async def main():
        task = asyncio.create_task(agent.run())
        try:
            await scenario(agent)
        finally:
            agent.stop()
            await asyncio.wait_for(task, timeout=10)

    asyncio.run(main())


def test_max_concurrent_builds_defaults_to_novas_10_and_bounds_the_spawns(harness):
    # Nova's [DEFAULT] max_concurrent_builds: 10 builds at once by default; the rest wait their turn.
    assert ComputeOpts().max_concurrent_builds == 10
    agent = harness.agent(spawn_time=0.2, max_concurrent_builds=2)

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        uuids = await asyncio.to_thread(harness.create_and_place, 6)
        await eventually(lambda: harness.active(*uuids), what="six servers ACTIVE")

    run(agent, scenario)
    assert agent.driver.most_building == 2
    assert agent.driver.count("spawn") == 6


def test_a_servers_tasks_run_one_after_the_other(harness):
    # Nova serialises a server's operations on its UUID: a delete that arrives during the build waits for
    # it, then destroys the guest (the spawn is not cut short, the destroy does not run beside it).
    agent = harness.agent(spawn_time=0.5)

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        [uuid] = await asyncio.to_thread(harness.create_and_place)
        await eventually(lambda: agent.driver.count("spawn", uuid), what="the spawn under way")
        await asyncio.to_thread(harness.servers.delete, ADMIN, uuid)
        await eventually(lambda: harness.server(uuid) is None, what="the server deleted by its host")
        assert await agent.driver.list_instance_uuids() == []

    run(agent, scenario)
    [(first, *_), (second, *_), (third, _, destroyed_at)] = agent.driver.calls
    assert (first, second, third) == ("spawn", "spawned", "destroy")
    assert destroyed_at >= agent.driver.calls[1][2]


def test_results_go_back_in_batches(harness):
    # Fifty spawns' results take a handful of POSTs, not fifty: whatever is ready goes in the next one.
    # Each POST takes 0.2 s here, so the count does not depend on how fast this machine is today.
    agent = harness.agent()
    harness.gate.slow = lambda method, path: path.endswith("/results")

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        uuids = await asyncio.to_thread(harness.create_and_place, 50)
        await eventually(lambda: harness.active(*uuids), what="fifty servers ACTIVE")

    run(agent, scenario)
    assert agent.driver.count("spawn") == 50
    assert harness.gate.counts["POST", "results"] <= 10, harness.gate.counts


def test_a_result_the_api_did_not_take_is_posted_again_and_the_task_not_redone(harness):
    # Never lost, never done twice: while the results endpoint fails, the agent keeps the result and
    # keeps looking at its work (which still lists the spawn), without starting the spawn again.
    agent = harness.agent()
    harness.gate.closed = lambda method, path: path.endswith("/results")

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        [uuid] = await asyncio.to_thread(harness.create_and_place)
        await eventually(lambda: harness.gate.counts["POST", "results"] >= 2, what="a refused post retried")
        looks = harness.gate.counts["GET", "work"]
        await asyncio.to_thread(harness.servers.nudge_hosts, [HOST])  # one more look at the work
        await eventually(lambda: harness.gate.counts["GET", "work"] > looks, what="another look")
        assert harness.server(uuid).task_state == states.SPAWNING
        harness.gate.closed = lambda method, path: False
        await eventually(lambda: harness.active(uuid), what="the server ACTIVE once the API takes results")
        assert agent.driver.count("spawn", uuid) == 1

    run(agent, scenario)


def test_results_applied_but_unanswered_are_posted_again_harmlessly(harness):
    # The control plane applied a batch but its answer never came back: the agent posts it again, and the
    # repeat neither changes the servers nor has the agent discard their guests (a build, an evacuation).
    agent = harness.agent()

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        harness.gate.lost = lambda method, path: path.endswith("/results")
        [uuid] = await asyncio.to_thread(harness.create_and_place)
        await eventually(lambda: harness.active(uuid), what="the server ACTIVE (its answer lost)")
        await eventually(lambda: harness.gate.counts["POST", "results"] >= 2, what="the result posted again")
        harness.gate.lost = lambda method, path: False
        await eventually(lambda: not agent.work.unreported, what="the result acknowledged")
        await asyncio.sleep(0.2)  # a discard would start at once; give it the time to show
        assert await agent.driver.list_instance_uuids() == [uuid]
        assert agent.driver.count("destroy") == 0

    run(agent, scenario)


def test_a_spawn_whose_server_was_deleted_meanwhile_is_discarded(harness):
    # The server was deleted while its host built it and its host was down (a local delete): the host's
    # report is answered "discard", and the agent destroys the guest nobody owns.
    agent = harness.agent(spawn_time=0.5)

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        [uuid] = await asyncio.to_thread(harness.create_and_place)
        await eventually(lambda: agent.driver.count("spawn", uuid), what="the spawn under way")
        forced = harness.api.put("/v2.1/os-services/force-down", version="2.11",
                                 body={"host": HOST, "binary": "nova-compute", "forced_down": True})
        assert forced.status_code == 200
        await asyncio.to_thread(harness.servers.delete, ADMIN, uuid)
        assert harness.server(uuid) is None  # deleted in the database at once
        await eventually(lambda: agent.driver.count("destroy", uuid), what="the guest discarded")
        assert await agent.driver.list_instance_uuids() == []

    run(agent, scenario)


def test_no_heartbeat_before_the_evacuation_cleanup_succeeded(harness):
    # Spec 6 "On restart, the source compute …" comes before the host counts as up again: while the
    # control plane cannot answer the cleanup, the agent retries and does not heartbeat.
    agent = harness.agent()
    harness.gate.closed = lambda method, path: path.endswith("/evacuations")

    async def scenario(agent):
        await eventually(lambda: harness.gate.counts["GET", "evacuations"] >= 2, what="the cleanup retried")
        assert harness.gate.counts["PUT", "heartbeat"] == 0
        assert harness.gate.counts["GET", "work"] == 0
        harness.gate.closed = lambda method, path: False
        await eventually(lambda: harness.gate.counts["PUT", "heartbeat"], what="a heartbeat after the cleanup")

    run(agent, scenario)
    assert harness.gate.counts["POST", "services"] == 1  # registered once, before the cleanup


def test_stop_ends_the_agent_with_work_in_flight_and_it_is_done_after_a_restart(harness):
    # SIGTERM's path: the spawn in flight is abandoned (its guest never reached the hypervisor's file);
    # the database still lists it, so the next start does it.
    agent = harness.agent(spawn_time=5.0)
    uuids: list[str] = []

    async def scenario(agent):
        await eventually(harness.ready, what="the agent ready")
        uuids.extend(await asyncio.to_thread(harness.create_and_place))
        await eventually(lambda: agent.driver.count("spawn", uuids[0]), what="the spawn under way")

    started = time.monotonic()
    run(agent, scenario)
    assert time.monotonic() - started < 5.0  # did not wait for the 5 s boot
    assert harness.server(uuids[0]).task_state == states.SPAWNING

    async def after_restart(agent):
        await eventually(lambda: harness.active(*uuids), what="the build done after the restart")

    run(harness.agent(), after_restart)


def test_work_poll_interval_zero_follows_report_interval_and_nudges_need_a_reachable_address():
    # novalite's own options: 0 means "look as often as the agent heartbeats"; a wildcard nudge address
    # would be recorded where no API process could send to it.
    settings = config.load(None, environ={**NOAUTH, "NOVALITE_REPORT_INTERVAL": "3"})
    assert (settings.compute.work_poll_interval, settings.effective_work_poll_interval) == (0.0, 3.0)
    settings = config.load(None, environ={**NOAUTH, "NOVALITE_COMPUTE__WORK_POLL_INTERVAL": "0.5"})
    assert settings.effective_work_poll_interval == 0.5
    for wildcard in ("0.0.0.0", "::", "[::]"):
        with pytest.raises(ValueError, match="nudge_host"):
            config.load(None, environ={**NOAUTH, "NOVALITE_COMPUTE__NUDGE_HOST": wildcard})
    with pytest.raises(ValueError, match="max_concurrent_builds"):
        config.load(None, environ={**NOAUTH, "NOVALITE_COMPUTE__MAX_CONCURRENT_BUILDS": "-1"})
