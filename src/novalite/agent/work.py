"""The compute agent's work loop: do what the control plane says this host must do, and report it.

The work is never queued anywhere: GET /agent/v1/services/{uuid}/work lists what the database says
the host must do now (novalite.domain.host_work). The agent looks when nudged (a UDP datagram from the
API or the scheduler, novalite.nudge) and every ``poll_interval`` seconds in case a nudge was lost.

Each task runs as its own asyncio task through the virt driver; tasks on one server run one after the
other (Nova serialises a server's operations on its UUID), and builds — spawns and evacuation rebuilds —
are bounded by ``max_concurrent_builds`` (Nova's option; 0 is no limit). Results go back in batches:
whatever is ready when the previous POST .../results returns goes in the next one, so a hundred
evacuations cost a few round trips, not a hundred.

Nothing is done twice and nothing is lost:
- a task in flight, or done but not yet acknowledged, is not started again by a later look; looks and
  result posts take turns (``_exchange``), so a look never sees work whose result is being applied;
- a result the control plane did not take (unreachable, 5xx) stays ready and is posted again; applying
  one twice is harmless (each is applied only from the state it was started in);
- after a crash the database still lists the unfinished work, and a spawn that finds its guest already
  there (it finished before the crash, its result was lost) counts as done.

An answer with ``discard`` means the server is no longer this host's (deleted during its build or its
evacuation here): the local guest is destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import requests

from novalite.agent.virt.driver import ComputeDriver, GuestExists, GuestSpec, PowerState
from novalite.asyncutils import sleep_unless_stopped
from novalite.work_kinds import DESTROY, POWER_OFF, POWER_ON, REBUILD, SPAWN, format_exception

LOG = logging.getLogger("novalite.compute.work")

# Seconds before a failed look or post is tried again (a nudge also retries a look at once).
RETRY_DELAY = 1.0
# The most results one POST carries; more wait for the next one.
MAX_BATCH = 500

TaskKey = tuple[str, str, str | None]  # (kind, instance_uuid, migration_uuid)


class WorkApi(Protocol):
    def work(self, service_uuid: str) -> list[dict]:
        """The host's tasks (GET .../work)."""

    def post_results(self, service_uuid: str, results: list[dict]) -> list[dict]:
        """One answer per result (POST .../results)."""


class Waker(Protocol):
    """What the loop waits on between looks: a NudgeListener."""

    async def wait(self, timeout: float) -> bool: ...

    def set(self) -> None: ...


def task_key(task: dict) -> TaskKey:
    return task["kind"], task["instance_uuid"], task.get("migration_uuid")


def guest_spec(guest: dict) -> GuestSpec:
    """The driver's GuestSpec from a task's "guest" (which may carry more, such as the flavor's name)."""
    return GuestSpec(uuid=guest["uuid"], name=guest["name"], vcpus=guest["vcpus"], memory_mb=guest["memory_mb"],
                     root_gb=guest["root_gb"], ephemeral_gb=guest.get("ephemeral_gb") or 0,
                     image_ref=guest.get("image_ref"))


@dataclass
class _InstanceLock:
    lock: asyncio.Lock
    users: int = 0


class WorkRunner:
    def __init__(self, driver: ComputeDriver, api: WorkApi, service_uuid: str, waker: Waker, *,
                 poll_interval: float, max_concurrent_builds: int = 10,
                 on_guests_changed: Callable[[], None] | None = None):
        self.driver = driver
        self.api = api
        self.service_uuid = service_uuid
        self.waker = waker
        self.poll_interval = poll_interval
        self.on_guests_changed = on_guests_changed or (lambda: None)
        self._builds = asyncio.Semaphore(max_concurrent_builds) if max_concurrent_builds > 0 else None
        self._running: dict[TaskKey, asyncio.Task] = {}
        self._ready: dict[TaskKey, dict] = {}  # results not yet acknowledged by the control plane
        self._discarding: set[asyncio.Task] = set()
        self._locks: dict[str, _InstanceLock] = {}
        self._exchange = asyncio.Lock()  # looks and posts take turns
        self._results_ready = asyncio.Event()
        self._stop = asyncio.Event()

    # -- the loop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self.waker.set()
        self._results_ready.set()

    async def run(self) -> None:
        """Look and report until stop(); then abandon what is in flight (the database still lists it, so
        the next start does it) and try once more to report what is done."""
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(self._look_forever())
                loops.create_task(self._post_forever())
        finally:
            await self._abandon()
            if self._ready:
                try:
                    await self.post_once()
                except requests.RequestException as error:
                    LOG.warning("%d result(s) not reported before stopping (%s); the next start redoes them",
                                len(self._ready), error)

    async def _look_forever(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                await self.look_once()
                if failing:
                    LOG.info("work reaches the agent again")
                failing = False
            except requests.RequestException as error:
                if not failing:
                    LOG.warning("cannot read this host's work (%s); will keep trying", error)
                failing = True
            except Exception:
                # A bug must not end the loop (nor, through the agent's task group, the heartbeats).
                LOG.exception("cannot read this host's work")
                failing = True
            await self.waker.wait(RETRY_DELAY if failing else self.poll_interval)

    async def _post_forever(self) -> None:
        failing = False
        while not self._stop.is_set():
            await self._results_ready.wait()
            self._results_ready.clear()
            while self._ready and not self._stop.is_set():
                try:
                    await self.post_once()
                    if failing:
                        LOG.info("results reach the control plane again")
                    failing = False
                except requests.RequestException as error:
                    if not failing:
                        LOG.warning("cannot report %d result(s) (%s); will keep trying", len(self._ready), error)
                    failing = True
                except Exception:
                    LOG.exception("cannot report %d result(s)", len(self._ready))
                    failing = True
                if failing:
                    await sleep_unless_stopped(self._stop, RETRY_DELAY)

    # -- looking -----------------------------------------------------------------------------------

    async def look_once(self) -> int:
        """Read the host's work and start every task not already in flight or done; how many started."""
        started = 0
        async with self._exchange:
            tasks = await asyncio.to_thread(self.api.work, self.service_uuid)
            for task in tasks:
                key = task_key(task)
                if key in self._running or key in self._ready:
                    continue
                self._running[key] = asyncio.create_task(self._run(key, task), name=f"{key[0]} {key[1]}")
                started += 1
        if started:
            LOG.debug("started %d task(s)", started)
        return started

    # -- doing -------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _instance_lock(self, uuid: str) -> AsyncIterator[None]:
        entry = self._locks.setdefault(uuid, _InstanceLock(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[uuid]

    async def _run(self, key: TaskKey, task: dict) -> None:
        kind, uuid, migration_uuid = key
        result = {"kind": kind, "instance_uuid": uuid, "migration_uuid": migration_uuid}
        try:
            async with self._instance_lock(uuid):
                LOG.info("%s of %s started", kind, uuid)
                power_state = await self._do(task)
            result.update(ok=True, power_state=int(power_state))
            LOG.info("%s of %s done", kind, uuid)
        except asyncio.CancelledError:
            self._running.pop(key, None)
            raise
        except Exception as error:
            LOG.warning("%s of %s failed: %s", kind, uuid, error, exc_info=True)
            result.update(ok=False, error=str(error) or type(error).__name__, details=format_exception(error))
        # In one step, so a look never finds the task neither running nor ready.
        self._ready[key] = result
        del self._running[key]
        self._results_ready.set()

    async def _do(self, task: dict) -> PowerState:
        """Do one task through the driver; the guest's power state after it."""
        kind, uuid = task["kind"], task["instance_uuid"]
        if kind in (SPAWN, REBUILD):
            async with self._builds or contextlib.nullcontext():
                try:
                    await self.driver.spawn(guest_spec(task["guest"]))
                except GuestExists:
                    # Spawned before a crash (or a lost answer) that kept its result from the control plane.
                    LOG.info("%s of %s: the guest is already here", kind, uuid)
            if task.get("stopped"):
                await self.driver.power_off(uuid)
        elif kind == POWER_OFF:
            await self.driver.power_off(uuid)
        elif kind == POWER_ON:
            await self.driver.power_on(uuid)
        elif kind == DESTROY:
            await self.driver.destroy(uuid)
            return PowerState.NOSTATE
        else:
            raise ValueError(f"unknown task kind {kind!r}")
        return (await self.driver.get_info(uuid)).power_state

    async def _abandon(self) -> None:
        running = list(self._running.values()) + list(self._discarding)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
            LOG.info("abandoned %d task(s) in flight", len(running))

    # -- reporting ---------------------------------------------------------------------------------

    async def post_once(self) -> int:
        """Post the results ready now (at most MAX_BATCH); how many the control plane took.

        Raises what the transport raised (the results stay ready). A result the control plane refuses
        (4xx: a malformed result, or this host's record is gone) can never be taken: it is logged and
        dropped, so it does not block every later one; the task, if still listed, runs again.
        """
        async with self._exchange:
            batch = dict(list(self._ready.items())[:MAX_BATCH])
            if not batch:
                return 0
            try:
                answers = await asyncio.to_thread(self.api.post_results, self.service_uuid, list(batch.values()))
            except requests.HTTPError as error:
                if error.response is None or not 400 <= error.response.status_code < 500:
                    raise
                LOG.error("the control plane refused %d result(s): %s", len(batch), error)
                answers = []
            for key in batch:
                del self._ready[key]
        LOG.debug("reported %d result(s)", len(batch))
        for answer in answers:
            if answer.get("discard"):
                self._discard(answer["instance_uuid"])
        self.on_guests_changed()
        return len(batch)

    def _discard(self, uuid: str) -> None:
        """Destroy a guest the control plane says is no longer this host's."""

        async def destroy() -> None:
            try:
                async with self._instance_lock(uuid):
                    await self.driver.destroy(uuid)
                LOG.info("destroyed guest %s: its server is no longer this host's", uuid)
                self.on_guests_changed()
            except Exception:
                # Left for the reaper at the next start (POST .../reap lists it then).
                LOG.exception("cannot destroy guest %s, which is no longer this host's", uuid)

        task = asyncio.create_task(destroy(), name=f"discard {uuid}")
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    # -- for tests and logs ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Tasks under way."""
        return len(self._running)

    @property
    def unreported(self) -> int:
        """Results done but not yet taken by the control plane."""
        return len(self._ready)
