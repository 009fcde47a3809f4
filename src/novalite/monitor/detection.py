"""Detection: the monitor's Detector, which tells from the agents' heartbeats which hosts have failed.

The datagrams are monitor/heartbeat_wire.py's; the agents send them with monitor/heartbeat_sender.py.

Two channels (issue 4, ha-anchors 2.2 and 9): each agent sends a signed UDP heartbeat every
[monitor] heartbeat_interval; when a host has been silent for suspect_after intervals it is *suspect* and
the Detector probes it actively (a signed probe to the address its beats came from, answered by the
sender on the same socket). It has *failed* when probe_attempts probes in a row, probe_interval apart,
go unanswered: both channels agree. With the defaults ([monitor] in config.py), last beat → HostFailed is
2 × 0.1 + 3 × 0.04 = 0.32 s, so a SIGKILL is detected 0.22–0.32 s after it (the kill comes 0–0.1 s after
a beat). A live host is failed only if it is silent on both channels for that whole window, and no
decision to fail a host is taken while a datagram waits unread.

    alive    silent for suspect_after × interval  → suspect  (HostSuspect; a probe every probe_interval)
    suspect  a beat                               → alive
    suspect  a probe answered                     → suspect, answers_probes: not failed; probing goes on
    suspect  probe_attempts probes unanswered     → failed   (HostFailed, once)
    failed   a beat sent after it was failed      → alive    (HostReturned)
    any      a "leave" of its current incarnation → left     (a clean agent stop: never failed, not counted)
    left     a beat                               → alive

A clean stop of an agent (SIGTERM: an operator's restart, maintenance) is not a failure: its sender says
"leave" as it stops, and the host is *left* — no longer watched, no longer counted by the quorum — until
its next beat. A killed or frozen agent, a dead host or a cut link sends no leave; a leave must carry the
host's current incarnation and a seq above its last beat, so an old or replayed one changes nothing.

Replays: within one agent incarnation (random per agent start) a beat is taken only if its seq is above
the last one taken for the host; a new incarnation is taken from any seq (the agent restarted), unless it
is one the host already left behind. A reply counts only for a nonce of a probe still outstanding.
A freshly started Detector knows no history: it takes the first valid beat it sees of each host.
A failed host returns only with a beat its agent sent after the monitor failed it: a new incarnation (the
agent restarted: the host was powered on again), or one of its current incarnation sent at least the
silence that failed it after its last beat taken — a beat held up in a queue or a cut link and delivered
late was sent while the host was going silent, and is no sign of life now. That compares two timestamps
of the sender's own clock, so no clock skew between host and monitor matters.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from novalite.config import MonitorOpts
from novalite.monitor.heartbeat_wire import (
    NONCE_SIZE,
    Beat,
    Leave,
    ProbeReply,
    decode,
    encode_probe,
    format_address,
)

LOG = logging.getLogger("novalite.monitor.detection")

# Reading: after each wake-up the Detector drains the socket, then leaves it for READ_PACE seconds, so
# at 10,000 beats/s one loop iteration takes ~20 datagrams instead of one (the loop's own cost per wake-up
# is 4 times that of a beat). Beats wait at most READ_PACE in the kernel; every decision drains first.
READ_PACE = 0.002
READ_BATCH = 512  # at most per drain (about 2 ms of work), so timers keep their turn
# Before a host is failed the socket is drained to the end, up to this many batches: a monitor starved of
# CPU may find more than one batch waiting, and a beat or reply among them must still count.
FULL_DRAIN_BATCHES = 64
RECEIVE_BUFFER = 4 * 1024 * 1024  # bursts of 1,000 hosts' beats; the kernel caps it at net.core.rmem_max
RETIRED_INCARNATIONS = 16


@dataclass
class HostHealth:
    """What the Detector knows of one host (a snapshot)."""

    host: str
    state: str  # "alive" | "suspect" | "failed" | "left"
    last_beat_monotonic: float | None  # None: expected, never heard from
    last_beat_wall: float | None
    last_seq: int | None
    incarnation: int | None
    address: str | None  # where its beats come from, and where probes go
    last_sent_wall: float | None = None  # the sender's clock at its last beat
    answers_probes: bool = False  # suspect, but its probes are answered: only the heartbeat channel is lost


@dataclass(frozen=True)
class HostSuspect:
    host: str
    at: float  # wall time


@dataclass(frozen=True)
class HostFailed:
    host: str
    last_beat_wall: float | None  # None: an expected host never heard from
    detected_wall: float
    silence_seconds: float


@dataclass(frozen=True)
class HostReturned:
    host: str
    at: float


@dataclass
class DetectorStats:
    datagrams: int = 0
    beats: int = 0
    rejected: int = 0  # foreign, truncated, or not signed with the key
    stale: int = 0  # replayed or reordered beats, beats of a retired incarnation
    probes_sent: int = 0
    replies: int = 0


@dataclass(slots=True, eq=False)
class _Host:
    name: str
    since: float  # monotonic: the last beat, or when it was expected
    state: str = "alive"
    last_beat: float | None = None
    last_wall: float | None = None
    last_sent_ns: int = 0
    seq: int = -1
    incarnation: int | None = None
    addr: tuple | None = None
    return_sent_ns: int = 0  # failed: a beat of this incarnation sent before this is stale
    retired: deque = field(default_factory=lambda: deque(maxlen=RETIRED_INCARNATIONS))
    nonces: deque = field(default_factory=lambda: deque())
    next_probe: float = 0.0
    rounds: int = 0  # probes due this suspect episode so far
    unanswered: int = 0
    replied: bool = False
    answering: bool = False


class Detector:
    """The monitor's side. ``await start(host, port)``; ``async for event in events()``."""

    def __init__(self, key: bytes, interval: float = MonitorOpts.heartbeat_interval,
                 suspect_after: int = MonitorOpts.suspect_after, probe_attempts: int = MonitorOpts.probe_attempts,
                 probe_interval: float = MonitorOpts.probe_interval):
        if interval <= 0 or probe_interval <= 0 or suspect_after < 1 or probe_attempts < 1:
            raise ValueError("intervals must be positive, suspect_after and probe_attempts at least 1")
        self.key = key
        self.interval = interval
        self.suspect_after = suspect_after
        self.probe_attempts = probe_attempts
        self.probe_interval = probe_interval
        if probe_attempts * probe_interval <= interval:
            LOG.warning("probe_attempts × probe_interval (%s s) does not exceed the heartbeat interval (%s s): "
                        "when the monitor is cut off, the first failure may come while other hosts still "
                        "count as alive", probe_attempts * probe_interval, interval)
        self.stats = DetectorStats()
        self._hosts: dict[str, _Host] = {}
        self._alive: OrderedDict[str, _Host] = OrderedDict()  # oldest beat first: the next to go suspect
        self._suspect: dict[str, _Host] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused: asyncio.TimerHandle | None = None

    @property
    def suspect_window(self) -> float:
        return self.suspect_after * self.interval

    @property
    def detection_window(self) -> float:
        """Seconds from a host's last beat to HostFailed when it is dead."""
        return self.suspect_window + self.probe_attempts * self.probe_interval

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(addr)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._read_ready)
        LOG.info("detector listens on %s: suspect after %d × %s s, failed after %d probes %s s apart",
                 self.address, self.suspect_after, self.interval, self.probe_attempts, self.probe_interval)

    @property
    def address(self) -> str:
        return format_address(self._sock.getsockname())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[HostSuspect | HostFailed | HostReturned]:
        """The events, in order, until close(); one consumer."""
        while (event := await self._events.get()) is not None:
            yield event

    def expect(self, hosts: Iterable[str]) -> None:
        """Count ``hosts`` as known though not heard from yet: each has one detection window from now to
        send its first beat, or it fails (HostFailed with last_beat_wall None)."""
        now = time.monotonic()
        for name in hosts:
            if name not in self._hosts:
                self._hosts[name] = self._alive[name] = _Host(name, since=now)
        self._arm()

    def forget(self, hosts: Iterable[str]) -> None:
        """No longer know ``hosts`` (e.g. their services were deleted); a later beat makes one known again."""
        for name in hosts:
            self._hosts.pop(name, None)
            self._alive.pop(name, None)
            self._suspect.pop(name, None)

    def hosts(self) -> dict[str, HostHealth]:
        return {name: HostHealth(
            host=name, state=h.state, last_beat_monotonic=h.last_beat, last_beat_wall=h.last_wall,
            last_seq=h.seq if h.seq >= 0 else None, incarnation=h.incarnation,
            address=format_address(h.addr) if h.addr else None,
            last_sent_wall=h.last_sent_ns / 1e9 if h.last_sent_ns else None,
            answers_probes=h.state == "suspect" and h.answering,
        ) for name, h in self._hosts.items()}

    def alive_share(self) -> float:
        """Hosts heard from on either channel / known hosts (0.0 when none is known), for the quorum gate.
        A suspect host counts only while it answers probes: when the monitor itself is cut off, every
        host is suspect or failed by the time the first one fails (as long as probe_attempts ×
        probe_interval exceeds interval: the others' last beats came at most one interval later)."""
        known = sum(1 for h in self._hosts.values() if h.state != "left")
        if not known:
            return 0.0
        answering = sum(1 for h in self._suspect.values() if h.answering)
        return (len(self._alive) + answering) / known

    # Receiving.

    def _read_ready(self) -> None:
        self._drain()
        if self._sock is not None and self._paused is None:
            self._loop.remove_reader(self._sock.fileno())
            self._paused = self._loop.call_later(READ_PACE, self._resume_reading)

    def _resume_reading(self) -> None:
        self._paused = None
        if self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._read_ready)

    def _drain(self, limit: int = READ_BATCH) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(limit):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                LOG.debug("detector socket: %s", error)
                return
            self.stats.datagrams += 1
            message = decode(self.key, data)
            if type(message) is Beat:
                self._take_beat(message, addr)
            elif type(message) is Leave:
                self._take_leave(message)
            elif type(message) is ProbeReply:
                self._take_reply(message)
            else:
                self.stats.rejected += 1

    def _take_beat(self, beat: Beat, addr: tuple) -> None:
        h = self._hosts.get(beat.host)
        if h is None:
            h = self._hosts[beat.host] = _Host(beat.host, since=0.0)
            LOG.info("host %s: first heartbeat, from %s", beat.host, format_address(addr))
        elif beat.incarnation != h.incarnation:
            if beat.incarnation in h.retired:
                self.stats.stale += 1
                return
            if h.incarnation is not None:
                h.retired.append(h.incarnation)
                LOG.info("host %s: its agent restarted (incarnation %016x)", beat.host, beat.incarnation)
        elif beat.seq <= h.seq or (h.state == "failed" and beat.sent_ns < h.return_sent_ns):
            self.stats.stale += 1
            return
        self.stats.beats += 1
        now = time.monotonic()
        h.incarnation, h.seq, h.last_sent_ns, h.addr = beat.incarnation, beat.seq, beat.sent_ns, addr
        h.since = h.last_beat = now
        h.last_wall = time.time()
        if h.state == "alive" and beat.host in self._alive:
            self._alive.move_to_end(beat.host)
            return
        was = h.state
        self._suspect.pop(beat.host, None)
        h.state, h.answering = "alive", False
        h.nonces.clear()
        self._alive[beat.host] = h
        if was == "failed":
            LOG.warning("host %s returned: heartbeats resumed", beat.host)
            self._events.put_nowait(HostReturned(beat.host, h.last_wall))
        elif was == "suspect":
            LOG.info("host %s: heartbeats resumed while suspect", beat.host)
        self._arm()

    def _take_leave(self, leave: Leave) -> None:
        h = self._hosts.get(leave.host)
        if h is None or h.state == "left" or leave.incarnation != h.incarnation or leave.seq <= h.seq:
            self.stats.stale += 1
            return
        h.seq = leave.seq
        self._alive.pop(leave.host, None)
        self._suspect.pop(leave.host, None)
        was, h.state, h.answering = h.state, "left", False
        h.nonces.clear()
        LOG.info("host %s left: its agent stopped cleanly (was %s); not watched until it beats again", leave.host,
                 was)
        self._arm()

    def _take_reply(self, reply: ProbeReply) -> None:
        self.stats.replies += 1
        h = self._suspect.get(reply.host)
        if h is None or reply.nonce not in h.nonces:
            return
        h.nonces.remove(reply.nonce)
        h.replied = True
        if not h.answering:
            h.answering = True
            LOG.warning("host %s: heartbeat channel lost, host answers probes; not failed", reply.host)

    # Timing: one timer, at the earliest moment something can change.

    def _arm(self) -> None:
        if self._loop is None or self._sock is None:
            return
        when = None
        if self._alive:
            when = next(iter(self._alive.values())).since + self.suspect_window
        for h in self._suspect.values():
            if when is None or h.next_probe < when:
                when = h.next_probe
        if self._timer is not None:
            if when is not None and self._timer.when() <= when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer = None
        self._drain()  # no host is judged while a beat of it waits unread
        now = time.monotonic()
        window = self.suspect_window
        while self._alive:
            h = next(iter(self._alive.values()))
            if now - h.since < window:
                break
            del self._alive[h.name]
            self._suspect[h.name] = h
            h.state, h.rounds, h.unanswered, h.replied, h.answering = "suspect", 0, 0, False, False
            h.next_probe = now
            LOG.info("host %s suspect: no heartbeat for %.3f s (suspect_after=%d × %s s); probing", h.name,
                     now - h.since, self.suspect_after, self.interval)
            self._events.put_nowait(HostSuspect(h.name, time.time()))
        due = [h for h in self._suspect.values() if now >= h.next_probe]
        if any(self._fails_this_round(h) for h in due):
            self._drain(READ_BATCH * FULL_DRAIN_BATCHES)  # a beat or reply still unread saves its host
        for h in due:
            if self._suspect.get(h.name) is h:  # not alive again (a beat) or left meanwhile
                self._probe_round(h, now)
        self._arm()

    def _fails_this_round(self, h: _Host) -> bool:
        return h.rounds > 0 and not h.replied and h.unanswered + 1 >= self.probe_attempts

    def _probe_round(self, h: _Host, now: float) -> None:
        """Count the last probe's answer, then fail the host or send the next probe."""
        if h.rounds:
            h.unanswered = 0 if h.replied else h.unanswered + 1
        h.replied = False
        h.rounds += 1
        if h.unanswered >= self.probe_attempts:
            self._fail(h, now)
            return
        nonce = secrets.token_bytes(NONCE_SIZE)
        h.nonces.append(nonce)
        if len(h.nonces) > self.probe_attempts:
            h.nonces.popleft()
        if h.addr is not None:
            try:
                self._sock.sendto(encode_probe(self.key, nonce, h.name), h.addr)
                self.stats.probes_sent += 1
            except OSError as error:
                LOG.debug("probe to %s not sent: %s", h.name, error)
        h.next_probe = now + self.probe_interval

    def _fail(self, h: _Host, now: float) -> None:
        del self._suspect[h.name]
        h.state, h.answering = "failed", False
        h.nonces.clear()
        silence = now - h.since
        h.return_sent_ns = h.last_sent_ns + int(silence * 1e9)
        LOG.warning("host %s failed: no heartbeat for %.3f s and %d probes unanswered", h.name, silence,
                    self.probe_attempts)
        self._events.put_nowait(HostFailed(h.name, h.last_wall, time.time(), silence))
