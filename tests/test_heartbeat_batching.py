"""Heartbeats written together (novalite.domain.heartbeats) on the backend under test.

Heartbeats that arrive while another is being written wait for it, then go in one UPDATE and one commit.
These tests hold the first write open (a SQLAlchemy event on the real engine, inside the write's own
statement) until the other threads' heartbeats are waiting, so the batch is certain; they pin that a batch
keeps spec 4.3 for each of its heartbeats: report_count + 1 each, last_seen_up the write's time, a deleted
service's heartbeat fails without recreating anything, and nothing is acknowledged that was not committed.
The same for AsyncHeartbeats, the group commit of the heartbeat listener's asyncio loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from novalite.db import api as db
from novalite.domain.heartbeats import AsyncHeartbeats, HeartbeatBatcher
from novalite.domain.services import Services
from novalite.timeutils import utcnow

DEADLINE = 10.0


def _rows(services: Services) -> dict[str, sa.Row]:
    with services.engine.connect() as conn:
        return {row.uuid: row for row in conn.execute(sa.select(db.services))}


class HeldWrites:
    """Counts the heartbeat UPDATEs on an engine; holds the first one until ``waiting`` heartbeats wait behind it,
    and makes the writes listed in ``fail`` (1 = the first) fail."""

    def __init__(self, batcher: HeartbeatBatcher, waiting: int, fail: tuple[int, ...] = ()):
        self.batcher, self.waiting, self.fail = batcher, waiting, fail
        self.writes = 0
        self.first_write = threading.Event()

    def before_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith("UPDATE SERVICES"):
            return
        self.writes += 1
        if self.writes == 1:
            self.first_write.set()
            deadline = time.monotonic() + DEADLINE
            while self.batcher.waiting < self.waiting:
                assert time.monotonic() < deadline, f"only {self.batcher.waiting} heartbeats waiting"
                time.sleep(0.005)
        if self.writes in self.fail:
            raise sa.exc.OperationalError(statement, parameters, RuntimeError("write failed (test)"))


@contextmanager
def held_writes(batcher: HeartbeatBatcher, waiting: int, fail: tuple[int, ...] = ()) -> Iterator[HeldWrites]:
    held = HeldWrites(batcher, waiting, fail)
    sa.event.listen(batcher.engine, "before_cursor_execute", held.before_execute)
    try:
        yield held
    finally:
        sa.event.remove(batcher.engine, "before_cursor_execute", held.before_execute)


def beat_concurrently(held: HeldWrites, uuids: list[str]) -> list[tuple[object, float, float]]:
    """Each UUID's heartbeat from its own thread, the others once the first one's write is held;
    returns (True/False or the exception, time before, time after) in order."""
    batcher = held.batcher
    results: list = [None] * len(uuids)

    def run(i: int) -> None:
        before = utcnow()
        try:
            outcome: object = batcher.beat(uuids[i])
        except Exception as error:  # noqa: BLE001 - asserted by the caller
            outcome = error
        results[i] = (outcome, before, utcnow())

    first = threading.Thread(target=run, args=(0,))
    first.start()
    assert held.first_write.wait(DEADLINE)
    others = [threading.Thread(target=run, args=(i,)) for i in range(1, len(uuids))]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a heartbeat never returned"
    return results


def test_heartbeats_arriving_during_a_write_go_together_in_the_next_one(services):
    # spec 4.3 for each of them: report_count + 1, last_seen_up = the time of the write (never before the
    # heartbeat arrived, never after it was acknowledged); nothing else changes.
    uuids = [services.register(f"compute{i}", "nova-compute", 1).uuid for i in range(12)]
    services.set_forced_down_by_host("compute3", "nova-compute", True)
    services.set_disabled_by_host("compute4", "nova-compute", True, "maintenance")
    batcher = HeartbeatBatcher(services.engine)
    with held_writes(batcher, waiting=11) as held:
        results = beat_concurrently(held, uuids)
    assert held.writes == 2  # the first alone, the other eleven in one UPDATE
    rows = _rows(services)
    for service_uuid, (outcome, before, after) in zip(uuids, results, strict=True):
        assert outcome is True
        row = rows[service_uuid]
        assert row.report_count == 1
        assert before <= row.last_seen_up <= after and row.updated_at == row.last_seen_up
    assert (rows[uuids[3]].forced_down, rows[uuids[4]].disabled, rows[uuids[4]].disabled_reason) == \
        (True, True, "maintenance")


def test_a_service_beating_twice_during_a_write_is_counted_twice(services):
    # report_count counts every acknowledged heartbeat; the second of one service waits for a write of its own
    uuids = [services.register(f"compute{i}", "nova-compute", 1).uuid for i in range(3)]
    batcher = HeartbeatBatcher(services.engine)
    with held_writes(batcher, waiting=4) as held:
        results = beat_concurrently(held, [uuids[0], uuids[1], uuids[2], uuids[1], uuids[2]])
    assert [outcome for outcome, _before, _after in results] == [True] * 5
    assert held.writes == 3
    rows = _rows(services)
    assert [rows[u].report_count for u in uuids] == [1, 2, 2]


def test_a_deleted_service_in_a_batch_fails_alone_and_is_not_recreated(services):
    # spec 4.3: the heartbeat of a deleted record fails (the agent's 404) and does not recreate it
    uuids = [services.register(f"compute{i}", "nova-compute", 1).uuid for i in range(4)]
    services.delete(uuids[2])
    batcher = HeartbeatBatcher(services.engine)
    with held_writes(batcher, waiting=3) as held:
        results = beat_concurrently(held, uuids)
    assert [outcome for outcome, _before, _after in results] == [True, True, False, True]
    rows = _rows(services)
    assert [rows[u].report_count for u in uuids] == [1, 1, 0, 1]
    assert rows[uuids[2]].last_seen_up is None and rows[uuids[2]].deleted
    assert len(services.list()) == 3


def test_a_failed_write_fails_every_heartbeat_it_held_and_the_next_write_goes_on(services):
    # nothing is acknowledged that was not committed: each heartbeat of the failed batch gets the error
    uuids = [services.register(f"compute{i}", "nova-compute", 1).uuid for i in range(5)]
    batcher = HeartbeatBatcher(services.engine)
    with held_writes(batcher, waiting=4, fail=(2,)) as held:
        results = beat_concurrently(held, uuids)
    assert held.writes == 2
    assert results[0][0] is True
    assert all(isinstance(outcome, sa.exc.OperationalError) for outcome, _b, _a in results[1:])
    assert [r.report_count for r in (_rows(services)[u] for u in uuids)] == [1, 0, 0, 0, 0]
    assert batcher.beat(uuids[1]) is True  # the batcher is not stuck
    assert _rows(services)[uuids[1]].report_count == 1


def test_many_threads_heartbeating_end_with_every_acknowledged_heartbeat_counted(services):
    # No timing is forced here: whatever batches form, report_count equals the heartbeats acknowledged.
    uuids = [services.register(f"compute{i}", "nova-compute", 1).uuid for i in range(6)]
    batcher = HeartbeatBatcher(services.engine)
    acknowledged = {u: 0 for u in uuids}
    lock = threading.Lock()

    def agent(i: int) -> None:
        for n in range(15):
            service_uuid = uuids[(i + n) % len(uuids)]
            if batcher.beat(service_uuid):
                with lock:
                    acknowledged[service_uuid] += 1

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert sum(acknowledged.values()) == 8 * 15
    assert {u: row.report_count for u, row in _rows(services).items()} == acknowledged


def test_a_loops_heartbeats_in_one_window_go_in_one_write_each_counted_and_a_deleted_one_fails(services):
    # AsyncHeartbeats: heartbeats submitted within the window share a write; a service's second heartbeat of the
    # window waits for the next write (report_count counts both); a deleted service's fails and is not recreated.
    uuids = [services.register(f"compute{i}", "nova-compute", 1).uuid for i in range(4)]
    services.delete(uuids[3])
    writes = []
    sa.event.listen(services.engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: writes.append(statement) if "report_count" in statement else None)

    async def beat_all() -> list[bool]:
        heartbeats = AsyncHeartbeats(services.engine, window=0.05)
        return list(await asyncio.gather(*(heartbeats.beat(u) for u in [*uuids, uuids[0]])))

    assert asyncio.run(beat_all()) == [True, True, True, False, True]
    assert len(writes) == 2  # the four services together, then compute0's second heartbeat
    rows = _rows(services)
    assert [rows[u].report_count for u in uuids] == [2, 1, 1, 0]
    assert rows[uuids[3]].last_seen_up is None and rows[uuids[3]].deleted


def test_a_failed_async_write_fails_each_of_its_heartbeats_and_the_next_goes_on(services):
    service_uuid = services.register("compute1", "nova-compute", 1).uuid
    failing = {"on": True}

    def fail_once(_conn, _cursor, statement, *_args):
        if "report_count" in statement and failing.pop("on", False):
            raise sa.exc.OperationalError(statement, {}, Exception("the database went away"))

    sa.event.listen(services.engine, "before_cursor_execute", fail_once)

    async def beats() -> tuple[list, bool]:
        heartbeats = AsyncHeartbeats(services.engine, window=0.02)
        failed = await asyncio.gather(heartbeats.beat(service_uuid), heartbeats.beat(service_uuid),
                                      return_exceptions=True)
        return failed, await heartbeats.beat(service_uuid)

    failed, after = asyncio.run(beats())
    # The first write (the first heartbeat) failed: it is not acknowledged; the second went in the next write.
    assert isinstance(failed[0], sa.exc.OperationalError) and failed[1] is True and after is True
    assert _rows(services)[service_uuid].report_count == 2
