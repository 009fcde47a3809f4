"""Detection with real ``novalite compute`` agents (tests/stack.py) beating to a Detector run by the test.

Facts pinned (issue 4): agents send the monitor signed UDP heartbeats every 100 ms by default ([monitor]
heartbeat_address, heartbeat_key_file); a host whose agent is killed with SIGKILL is failed within 0.5 s of
its last beat (item 1: "default detection ≤ 0.5 s"); a host whose beats resume after a failure has returned
(item 5: "heartbeats resume after power-on"). As in Nova's Service.start, an agent beats only once its
start-up cleanup is done, so a returning host is not seen before its evacuated copies are gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from novalite.monitor.detection import Detector, HostFailed, HostReturned
from novalite.secret_files import ensure_secret
from tests.stack import wait_until

pytestmark = pytest.mark.live

# suspect_after × heartbeat_interval + probe_attempts × probe_interval, the defaults: last beat → HostFailed
DETECTION_WINDOW = 2 * 0.1 + 3 * 0.04


class LiveDetector:
    """A Detector on its own event loop in a thread of the test, collecting its events."""

    def __init__(self, key: bytes):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.detector = Detector(key)
        self.events: list[object] = []
        self._call_soon(self.detector.start("127.0.0.1", 0))
        self.address = self.detector.address
        self._collector = asyncio.run_coroutine_threadsafe(self._collect(), self.loop)

    def _call_soon(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _collect(self) -> None:
        async for event in self.detector.events():
            self.events.append(event)

    def hosts(self) -> dict:
        async def snapshot():
            return self.detector.hosts()

        return self._call_soon(snapshot())

    def of(self, kind: type, host: str) -> list:
        return [e for e in list(self.events) if isinstance(e, kind) and e.host == host]

    def wait(self, kind: type, host: str, timeout: float = 10.0):
        return wait_until(lambda: self.of(kind, host), timeout=timeout, interval=0.01,
                          what=f"{kind.__name__} for {host}")[0]

    def wait_alive(self, *hosts: str, timeout: float = 30.0) -> dict:
        def alive():
            now = self.hosts()
            return now if all(now.get(h) is not None and now[h].state == "alive" for h in hosts) else None

        return wait_until(alive, timeout=timeout, what=f"heartbeats of {hosts}")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.detector.close)
        self._collector.result(timeout=5)  # the events end with close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def monitored(make_stack, tmp_path):
    """(stack, detector): a stack (API not started) whose agents beat to a Detector of the test."""
    key = ensure_secret(tmp_path / "heartbeat-key")
    live = LiveDetector(key.encode())
    stack = make_stack(start=False, extra_config={"monitor": {
        "heartbeat_address": live.address, "heartbeat_key_file": str(tmp_path / "heartbeat-key"),
        "heartbeat_interval": "0.1"}})
    yield stack, live
    for proc in stack.procs:  # a stopped agent must run again to be stopped
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
    live.close()


def test_agents_beat_only_once_registered_and_cleaned_up(monitored):
    stack, live = monitored
    stack.start_compute("compute1")
    time.sleep(1.0)  # the agent runs, but cannot reach the control plane: no beats yet
    assert live.hosts() == {}
    stack.start_api()
    stack.wait_for_computes("compute1")
    beats = live.wait_alive("compute1")["compute1"]
    assert beats.address.startswith("127.0.0.1:") and beats.incarnation is not None
    first_seq = beats.last_seq
    wait_until(lambda: live.hosts()["compute1"].last_seq >= first_seq + 5, timeout=5, what="5 more beats")


def test_kill_9_of_an_agent_fails_its_host_within_half_a_second_of_its_last_beat(monitored):
    stack, live = monitored
    stack.start_api()
    agent = stack.start_compute("compute1")
    stack.start_compute("compute2")
    live.wait_alive("compute1", "compute2")
    time.sleep(0.5)  # steady beating
    before = live.hosts()["compute1"]

    os.killpg(agent.pid, signal.SIGKILL)
    failed = live.wait(HostFailed, "compute1")
    assert DETECTION_WINDOW - 1e-3 <= failed.silence_seconds <= 0.5
    assert failed.detected_wall - failed.last_beat_wall <= 0.5
    assert failed.last_beat_wall >= before.last_beat_wall
    assert live.of(HostFailed, "compute2") == []
    assert live.hosts()["compute2"].state == "alive"
    assert live.hosts()["compute1"].state == "failed"

    # The host comes back (a new agent, after its start-up cleanup): returned, as a new incarnation.
    stack.start_compute("compute1")
    returned = live.wait(HostReturned, "compute1", timeout=30)
    assert returned.at > failed.detected_wall
    after = live.hosts()["compute1"]
    assert after.state == "alive" and after.incarnation != before.incarnation


def test_a_stopped_agent_fails_then_returns_when_continued(monitored):
    stack, live = monitored
    stack.start_api()
    agent = stack.start_compute("compute1")
    live.wait_alive("compute1")
    time.sleep(0.3)

    os.killpg(agent.pid, signal.SIGSTOP)
    stopped = time.time()
    failed = live.wait(HostFailed, "compute1")
    assert failed.silence_seconds <= 0.5 and failed.detected_wall - stopped <= 0.5
    before = live.hosts()["compute1"]
    time.sleep(0.5)
    assert len(live.of(HostFailed, "compute1")) == 1  # reported once, not once per missed beat

    os.killpg(agent.pid, signal.SIGCONT)
    continued = time.time()
    returned = live.wait(HostReturned, "compute1")
    assert returned.at - continued < 0.5  # the first beat goes out at once, not an interval later
    after = live.hosts()["compute1"]
    assert after.state == "alive"
    assert after.incarnation == before.incarnation and after.last_seq > before.last_seq
