"""Every write to a service record is atomic (issue 5, item 2): a live API under 4 gunicorn workers, 100 admins.

100 client threads, each with its own HTTP session, toggle forced_down (the 2.11 ``force-down`` action and the
2.53 ``PUT /os-services/{uuid}``) and the status (legacy enable / disable / disable-log-reason and the 2.53
``status``, spec 3.3 and 3.4) of one hot service all of them share and of four others, while one "agent" per
service heartbeats through the agents' interface (the API's route or its asyncio heartbeat listener, alternately
per service), one beat after the other, as fast as it is answered. Threads are enough: a request holds no GIL
while it waits for its answer, so dozens are in flight at once; the parallelism that can lose an update is the
server's (4 worker processes, each in its own transaction), and the test prints how many writes were in flight
together.

Each field of each service is a register: forced_down, and the status as the pair (disabled, disabled_reason)
that every status write sets together. Writes come in rounds; after each (and so at the end) the value read back
must be one a linearizable register allows: the value of a write that no other write to that field was sent
after (in real time) it was acknowledged. The rounds are shaped so that a read-modify-write anywhere (a status
write saving the forced_down it read, the reverse, a heartbeat saving the flags it read) leaves a value no write
of the round set (see SCHEDULE). Every 200 must show what its write set. Heartbeats are counted: report_count
ends equal to the heartbeats acknowledged, last_seen_up at the time of the last one, and both, sampled
throughout, never go back (spec 4.3).
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from novalite.db import engine as db_engine
from novalite.db.api import services as services_table
from tests.stack import Stack

pytestmark = pytest.mark.live

CLIENTS = 100
SERVICES = 5  # concur-0 is the hot one: half of all writes go to it
WRITES_PER_CLIENT = 1  # per round
FORCED_DOWN, STATUS = "forced_down", "status"
INITIAL = {FORCED_DOWN: False, STATUS: (False, None)}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class Target:
    host: str
    uuid: str


@dataclass
class Write:
    """One admin write: what it sets (field → register value), its request, and when it was sent and answered."""

    service: int
    kind: str
    sets: dict[str, Any]
    version: str
    path: str
    body: dict
    sent: float = 0.0
    acked: float = 0.0
    status_code: int = 0
    answer: Any = None


# -- the writes -----------------------------------------------------------------------------------------

FORCE_DOWN_KINDS = ("legacy-force-down", "force-down")
STATUS_KINDS = ("legacy-enable", "legacy-disable", "legacy-disable-log-reason", "disable", "enable")
BOTH = "disable-and-force-down"


def _write(kind: str, index: int, target: Target, forced_down: bool, reason: str) -> Write:
    """The request of one ``kind`` of write to service ``index``, and the register values it sets."""
    legacy = {"host": target.host, "binary": "nova-compute"}
    by_uuid = f"/os-services/{target.uuid}"
    if kind == "legacy-force-down":
        return Write(index, kind, {FORCED_DOWN: forced_down}, "2.11", "/os-services/force-down",
                     {**legacy, "forced_down": forced_down})
    if kind == "force-down":
        return Write(index, kind, {FORCED_DOWN: forced_down}, "2.53", by_uuid, {"forced_down": forced_down})
    if kind == "legacy-enable":
        return Write(index, kind, {STATUS: (False, None)}, "2.11", "/os-services/enable", legacy)
    if kind == "legacy-disable":
        return Write(index, kind, {STATUS: (True, None)}, "2.11", "/os-services/disable", legacy)
    if kind == "legacy-disable-log-reason":
        return Write(index, kind, {STATUS: (True, reason)}, "2.11", "/os-services/disable-log-reason",
                     {**legacy, "disabled_reason": reason})
    if kind == "disable":
        return Write(index, kind, {STATUS: (True, reason)}, "2.53", by_uuid,
                     {"status": "disabled", "disabled_reason": reason})
    if kind == "enable":
        return Write(index, kind, {STATUS: (False, None)}, "2.53", by_uuid, {"status": "enabled"})
    assert kind == BOTH
    return Write(index, kind, {STATUS: (True, reason), FORCED_DOWN: forced_down}, "2.53", by_uuid,
                 {"status": "disabled", "disabled_reason": reason, "forced_down": forced_down})


def _answer_problem(write: Write, target: Target) -> str | None:
    """Why the 200 body does not show the state the write set, or None (spec 3.3 step 4, 3.4 step 10)."""
    if write.status_code != 200:
        return f"{write.kind} answered {write.status_code}: {write.answer}"
    shown = write.answer["service"]
    if write.version == "2.11":  # legacy: the action's own keys, host and binary first
        expected: dict[str, Any] = {"host": target.host, "binary": "nova-compute"}
        if FORCED_DOWN in write.sets:
            expected["forced_down"] = write.sets[FORCED_DOWN]
        else:
            disabled, reason = write.sets[STATUS]
            expected["status"] = "disabled" if disabled else "enabled"
            if reason:
                expected["disabled_reason"] = reason
        return None if shown == expected else f"{write.kind} showed {shown}, expected {expected}"
    # 2.53: the whole record after the save; the fields this write set must show its values.
    problems = []
    if (shown["id"], shown["host"], shown["binary"]) != (target.uuid, target.host, "nova-compute"):
        problems.append("another service")
    if FORCED_DOWN in write.sets:
        if shown["forced_down"] != write.sets[FORCED_DOWN]:
            problems.append("forced_down")
        if write.sets[FORCED_DOWN] and shown["state"] != "down":  # state is computed after the save
            problems.append("state")
    if STATUS in write.sets:
        disabled, reason = write.sets[STATUS]
        if (shown["status"], shown["disabled_reason"]) != ("disabled" if disabled else "enabled", reason):
            problems.append("status")
    return f"{write.kind} {write.body} showed {shown}: {', '.join(problems)}" if problems else None


class Admins:
    """The 100 clients: a session each per round, a round's writes started together at a barrier.

    A session lives one round: a keep-alive connection left idle between rounds may be closed by the server
    (gunicorn's keepalive) just as the next write goes out, and that write's fate would be unknown."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS)

    def _run_client(self, writes: list[Write], barrier: threading.Barrier) -> None:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            for write in writes:
                headers = self.stack.admin_headers(write.version)
                write.sent = time.monotonic()
                resp = session.put(self.stack.endpoint + write.path, json=write.body, headers=headers, timeout=30)
                write.acked = time.monotonic()
                write.status_code = resp.status_code
                write.answer = resp.json() if resp.content else None

    def run_round(self, plans: list[list[Write]]) -> list[Write]:
        """Each client sends its writes one after the other; all clients start together."""
        barrier = threading.Barrier(len(plans))
        for future in [self.pool.submit(self._run_client, plan, barrier) for plan in plans]:
            future.result()
        return [write for plan in plans for write in plan]

    def close(self) -> None:
        self.pool.shutdown()


# A check can only see a lost update that is still there when the round ends, so most rounds are shaped to
# make one visible. "contended": every client writes either field with random values, the same field of one
# service from many clients at once. "one forced_down write" per service, flipping it, amid that service's status
# writes: a status write that saves the forced_down it read before that write committed leaves the old value,
# which no write of the round set. "one status write" per service (a new reason) amid forced_down writes: the
# same for a forced_down write that saves the status it read. "one of each": a forced_down flip and a status
# change per service and nothing else, so the heartbeats of the same service race them (a heartbeat that saves
# the flags it read brings the old ones back) and the two race each other; these rounds are cheap, hence many.
SCHEDULE = ("contended", "one forced_down write", "one status write") * 4 + ("one of each",) * 24


def _slots(rng: random.Random, round_kind: str, services: int) -> list[tuple[int, int, int, str]]:
    """(client, seq, service, role) of each write of the round; role "single" is a service's one write of a
    field, "fill" the rest."""
    if round_kind == "one of each":
        clients = rng.sample(range(CLIENTS), 2 * services)
        return [(clients[2 * index + role], 0, index, ("forced_down", "status")[role])
                for index in range(services) for role in (0, 1)]
    slots = [(client, seq, 0 if rng.random() < 0.5 else rng.randrange(1, services), "fill")
             for client in range(CLIENTS) for seq in range(WRITES_PER_CLIENT)]
    if round_kind != "contended":
        for index in range(services):
            mine = [n for n, slot in enumerate(slots) if slot[2] == index]
            if mine:
                single = rng.choice(mine)
                slots[single] = (*slots[single][:3], "single")
    return slots


def _status_change(rng: random.Random, current: tuple[bool, str | None]) -> str:
    """A status write that changes ``current``: a new reason, or enabled when it is disabled."""
    if current[0] and rng.random() < 0.5:
        return rng.choice(("legacy-enable", "enable"))
    return rng.choice(("legacy-disable-log-reason", "disable"))


def plan_round(number: int, targets: list[Target], current: list[dict[str, Any]]) -> list[list[Write]]:
    """Each client's writes of round ``number``; ``current`` is each service's state before the round."""
    rng = random.Random(number)
    round_kind = SCHEDULE[number]
    plans: list[list[Write]] = [[] for _ in range(CLIENTS)]
    for client, seq, index, role in _slots(rng, round_kind, len(targets)):
        forced_down = rng.random() < 0.5
        flipped = not current[index][FORCED_DOWN]
        if round_kind == "contended":
            kind = rng.choice((*FORCE_DOWN_KINDS, *STATUS_KINDS, BOTH))
        elif round_kind == "one forced_down write":
            kind, forced_down = (rng.choice(FORCE_DOWN_KINDS), flipped) if role == "single" else \
                (rng.choice(STATUS_KINDS), forced_down)
        elif round_kind == "one status write":
            kind = _status_change(rng, current[index][STATUS]) if role == "single" else rng.choice(FORCE_DOWN_KINDS)
        else:
            kind, forced_down = (rng.choice(FORCE_DOWN_KINDS), flipped) if role == "forced_down" else \
                (_status_change(rng, current[index][STATUS]), forced_down)
        plans[client].append(_write(kind, index, targets[index], forced_down, f"r{number}-c{client}-w{seq}"))
    return plans


# -- the agents' side -----------------------------------------------------------------------------------

@dataclass
class Beats:
    acked: int = 0
    last_sent: dt.datetime | None = None  # wall clock around the last acknowledged heartbeat
    last_acked: dt.datetime | None = None
    failures: list[str] = field(default_factory=list)


def _heartbeat(base_url: str, stack: Stack, target: Target, beats: Beats, stop: threading.Event) -> None:
    """One service's agent: heartbeats one after the other (as an agent sends them), as fast as answered, to the
    API's route or to its heartbeat listener (``base_url``)."""
    session = requests.Session()
    url = f"{base_url}/agent/v1/services/{target.uuid}/heartbeat"
    while not stop.is_set():
        sent = _utcnow()
        try:
            resp = session.put(url, headers={"X-Agent-Token": stack.agent_token}, timeout=30)
        except requests.RequestException as exc:
            beats.failures.append(f"heartbeat: {exc!r}")
            return
        if resp.status_code != 204:
            beats.failures.append(f"heartbeat {resp.status_code}: {resp.text}")
            return
        beats.acked, beats.last_sent, beats.last_acked = beats.acked + 1, sent, _utcnow()


def _heartbeat_columns(engine: sa.Engine) -> dict[str, tuple[int, dt.datetime | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(services_table.c.uuid, services_table.c.report_count,
                                      services_table.c.last_seen_up).where(services_table.c.deleted == 0))
        return {uuid: (count, seen) for uuid, count, seen in rows}


def _watch_heartbeat_columns(engine: sa.Engine, stop: threading.Event, regressions: list[str]) -> None:
    """Sample report_count and last_seen_up throughout: neither may ever go back."""
    previous: dict[str, tuple[int, dt.datetime]] = {}
    while not stop.is_set():
        for uuid, (count, seen) in _heartbeat_columns(engine).items():
            if uuid in previous and seen is not None:
                old_count, old_seen = previous[uuid]
                if count < old_count or seen < old_seen:
                    regressions.append(f"{uuid}: ({old_count}, {old_seen}) then ({count}, {seen})")
            if seen is not None:
                previous[uuid] = (count, seen)
        stop.wait(0.02)


# -- the check ------------------------------------------------------------------------------------------

def allowed_values(writes: list[Write], field_name: str, initial: Any) -> set:
    """What a linearizable register may hold after ``writes``: the value of each write that no other write
    was sent after it was acknowledged; the initial value if none wrote."""
    mine = [w for w in writes if field_name in w.sets]
    if not mine:
        return {initial}
    last_sent = max(w.sent for w in mine)
    return {w.sets[field_name] for w in mine if w.acked >= last_sent}


def _register_values(shown: dict) -> dict[str, Any]:
    return {FORCED_DOWN: shown["forced_down"],
            STATUS: (shown["status"] == "disabled", shown["disabled_reason"])}


def _max_in_flight(writes: list[Write]) -> int:
    edges = sorted([(w.sent, 1) for w in writes] + [(w.acked, -1) for w in writes])
    most = current = 0
    for _at, step in edges:
        current += step
        most = max(most, current)
    return most


def _register(stack: Stack, host: str) -> Target:
    resp = requests.post(f"{stack.url}/agent/v1/services", headers={"X-Agent-Token": stack.agent_token},
                         json={"host": host, "binary": "nova-compute", "version": 73}, timeout=10)
    assert resp.status_code == 200, resp.text
    return Target(host, resp.json()["service"]["id"])


def _read_back(stack: Stack, targets: list[Target], history: dict[int, list[Write]],
               round_name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each service's registers as GET /os-services shows them, and why any is not one its writes allow."""
    listed = {shown["id"]: shown for shown in stack.services("2.53")}
    current, problems = [], []
    for index, target in enumerate(targets):
        values = _register_values(listed[target.uuid])
        current.append(values)
        for name, value in values.items():
            allowed = allowed_values(history[index], name, INITIAL[name])
            if value not in allowed:
                problems.append(f"{round_name}, {target.host} {name}: {value!r} not in {allowed!r}")
    return current, problems


def test_concurrent_admins_and_heartbeats_end_in_the_last_acknowledged_write_of_each_service(
        make_stack, database_url, backend):
    stack = make_stack(database_url=database_url, start=False)
    stack.start_api(workers=4)
    targets = [_register(stack, f"concur-{index}") for index in range(SERVICES)]
    engine = db_engine.make_engine(database_url)
    admins = Admins(stack)
    beats = [Beats() for _ in targets]
    stop = threading.Event()
    regressions: list[str] = []
    # Half the agents beat through the API's own route, half through its heartbeat listener (api/heartbeat_listener.py).
    background = [threading.Thread(target=_heartbeat, args=(url, stack, t, b, stop), daemon=True)
                  for url, t, b in zip(itertools.cycle((stack.url, stack.heartbeat_url)), targets, beats)]
    background.append(threading.Thread(target=_watch_heartbeat_columns, args=(engine, stop, regressions),
                                       daemon=True))
    history: dict[int, list[Write]] = defaultdict(list)
    problems: list[str] = []
    started = time.monotonic()
    try:
        for thread in background:
            thread.start()
        current = [dict(INITIAL) for _ in targets]
        for number, round_kind in enumerate(SCHEDULE):
            writes = admins.run_round(plan_round(number, targets, current))
            problems += [p for w in writes if (p := _answer_problem(w, targets[w.service]))]
            for write in writes:
                history[write.service].append(write)
            # Read back while the heartbeats go on: they must not change these fields.
            current, found = _read_back(stack, targets, history, f"round {number} ({round_kind})")
            problems += found
        stop.set()
        for thread in background:
            thread.join(timeout=35)
        elapsed = time.monotonic() - started
        final_columns = _heartbeat_columns(engine)
    finally:
        stop.set()
        admins.close()
        engine.dispose()

    hot = history[0]
    print(f"\n{backend}: {sum(map(len, history.values()))} admin writes ({len(hot)} to the hot service) and "
          f"{sum(b.acked for b in beats)} heartbeats in {elapsed:.1f} s; at most {_max_in_flight(hot)} writes "
          f"to the hot service in flight at once; load {os.getloadavg()[0]:.1f}")
    assert problems == [], f"{len(problems)} problems:\n" + "\n".join(problems[:20])
    assert regressions == [], "\n".join(regressions[:20])
    assert _max_in_flight(hot) > 1
    for target, beat in zip(targets, beats, strict=True):
        assert beat.failures == []
        count, last_seen_up = final_columns[target.uuid]
        # Every acknowledged heartbeat counted once, none lost to an admin write (spec 4.3)...
        assert count == beat.acked, target.host
        # ...and last_seen_up is the time of the last one.
        assert beat.last_sent <= last_seen_up <= beat.last_acked, target.host
