"""Detection: the heartbeat wire format, the agents' HeartbeatSender and the monitor's Detector.

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

Wire format (big-endian), every datagram ends with HMAC-SHA256(key, everything before it); the key is the
content of [monitor] heartbeat_key_file (novalite.secret_files.read_secret) as UTF-8 bytes:

    beat    "NLhb" 1 1  incarnation:u64 seq:u64 sent_ns:u64  host (UTF-8, 1–255 bytes)
    probe   "NLhb" 1 2  nonce:16 bytes                        host
    reply   "NLhb" 1 3  nonce:16 bytes incarnation:u64        host
    leave   "NLhb" 1 4  incarnation:u64 seq:u64 sent_ns:u64  host   (sent three times by a stopping agent)

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
import hashlib
import hmac
import logging
import secrets
import select
import socket
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from novalite.config import MonitorOpts
from novalite.nudge import parse_address

LOG = logging.getLogger("novalite.monitor.detection")

MAGIC = b"NLhb"
VERSION = 1
KIND_BEAT, KIND_PROBE, KIND_REPLY, KIND_LEAVE = 1, 2, 3, 4
LEAVE_COPIES = 3  # a leave is sent this many times: one lost datagram must not turn a clean stop into a failure
MAC_SIZE = 32
NONCE_SIZE = 16
MAX_HOST_BYTES = 255
_HEAD = struct.Struct("!4sBB")
_BEAT = struct.Struct("!4sBBQQQ")
_PROBE = struct.Struct(f"!4sBB{NONCE_SIZE}s")
_REPLY = struct.Struct(f"!4sBB{NONCE_SIZE}sQ")
_FIXED = {KIND_BEAT: _BEAT, KIND_PROBE: _PROBE, KIND_REPLY: _REPLY, KIND_LEAVE: _BEAT}
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


@dataclass(frozen=True, slots=True)
class Beat:
    host: str
    incarnation: int
    seq: int
    sent_ns: int  # the sender's wall clock


@dataclass(frozen=True, slots=True)
class Leave:
    """An agent stopping cleanly: its host is no longer to be watched (until it beats again)."""

    host: str
    incarnation: int
    seq: int
    sent_ns: int


@dataclass(frozen=True, slots=True)
class Probe:
    host: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class ProbeReply:
    host: str
    nonce: bytes
    incarnation: int


def _sign(key: bytes, body: bytes) -> bytes:
    return body + hmac.digest(key, body, hashlib.sha256)


def _host_bytes(host: str) -> bytes:
    raw = host.encode()
    if not 1 <= len(raw) <= MAX_HOST_BYTES:
        raise ValueError(f"host name must be 1 to {MAX_HOST_BYTES} bytes of UTF-8: {host!r}")
    return raw


def encode_beat(key: bytes, host: str, seq: int, sent_ns: int, incarnation: int = 0) -> bytes:
    return _sign(key, _BEAT.pack(MAGIC, VERSION, KIND_BEAT, incarnation, seq, sent_ns) + _host_bytes(host))


def encode_leave(key: bytes, host: str, seq: int, sent_ns: int, incarnation: int = 0) -> bytes:
    return _sign(key, _BEAT.pack(MAGIC, VERSION, KIND_LEAVE, incarnation, seq, sent_ns) + _host_bytes(host))


def encode_probe(key: bytes, nonce: bytes, host: str) -> bytes:
    """A probe for ``host`` (named, so one socket may answer for several simulated hosts)."""
    return _sign(key, _PROBE.pack(MAGIC, VERSION, KIND_PROBE, nonce) + _host_bytes(host))


def encode_probe_reply(key: bytes, host: str, nonce: bytes, incarnation: int = 0) -> bytes:
    return _sign(key, _REPLY.pack(MAGIC, VERSION, KIND_REPLY, nonce, incarnation) + _host_bytes(host))


def decode(key: bytes, data: bytes) -> Beat | Leave | Probe | ProbeReply | None:
    """The message in ``data``; None if it is foreign, truncated or not signed with ``key``. Never raises."""
    if len(data) < _HEAD.size + MAC_SIZE or data[:4] != MAGIC:
        return None
    body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not hmac.compare_digest(hmac.digest(key, body, hashlib.sha256), mac):
        return None
    _, version, kind = _HEAD.unpack_from(body)
    fixed = _FIXED.get(kind)
    if version != VERSION or fixed is None or not fixed.size < len(body) <= fixed.size + MAX_HOST_BYTES:
        return None
    try:
        host = body[fixed.size:].decode()
    except UnicodeDecodeError:
        return None
    fields = fixed.unpack_from(body)
    if kind == KIND_BEAT:
        return Beat(host, fields[3], fields[4], fields[5])
    if kind == KIND_LEAVE:
        return Leave(host, fields[3], fields[4], fields[5])
    if kind == KIND_PROBE:
        return Probe(host, fields[3])
    return ProbeReply(host, fields[3], fields[4])


def decode_beat(key: bytes, data: bytes) -> Beat | None:
    message = decode(key, data)
    return message if isinstance(message, Beat) else None


def decode_probe(key: bytes, data: bytes) -> Probe | None:
    message = decode(key, data)
    return message if isinstance(message, Probe) else None


def decode_probe_reply(key: bytes, data: bytes) -> ProbeReply | None:
    message = decode(key, data)
    return message if isinstance(message, ProbeReply) else None


def format_address(addr: tuple) -> str:
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HeartbeatSender:
    """An agent's side: a beat every ``interval`` to ``address`` ("host:port"), answers to probes.

    The socket is served by a thread of its own rather than the agent's event loop, so a busy or stalled
    loop (a large batch of work being applied) never reads as a dead host; a stopped or killed process
    stops it as it stops the agent.
    """

    def __init__(self, host: str, key: bytes, address: str, interval: float = MonitorOpts.heartbeat_interval):
        _host_bytes(host)
        self.host = host
        self.key = key
        self.address = address
        self.interval = interval
        self.incarnation = secrets.randbits(64)
        self.seq = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until ``stop`` is set."""
        target = await self._resolve(stop)
        if target is None:
            return
        family, addr = target
        sock = socket.socket(family, socket.SOCK_DGRAM)
        halt = threading.Event()
        thread = threading.Thread(target=self._serve, args=(sock, addr, halt), daemon=True,
                                  name=f"heartbeat-{self.host}")
        try:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            sock.setblocking(False)
            thread.start()
            LOG.info("heartbeats of %s to %s every %s s (incarnation %016x)", self.host, self.address,
                     self.interval, self.incarnation)
            await stop.wait()
        finally:
            halt.set()
            if thread.is_alive():
                await asyncio.to_thread(thread.join)
            sock.close()

    async def _resolve(self, stop: asyncio.Event) -> tuple[int, tuple] | None:
        loop = asyncio.get_running_loop()
        failing = False
        while not stop.is_set():
            try:
                host, port = parse_address(self.address)
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                return infos[0][0], infos[0][4]
            except (OSError, ValueError) as error:
                if not failing:
                    LOG.warning("cannot resolve the monitor's address %r (%s); retrying", self.address, error)
                    failing = True
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(self.interval, 1.0))
            except TimeoutError:
                pass
        return None

    def _serve(self, sock: socket.socket, addr: tuple, halt: threading.Event) -> None:
        poller = select.poll()  # not select(): the agent may hold more than 1,024 descriptors
        poller.register(sock, select.POLLIN)
        next_beat = time.monotonic()
        failing = False
        while not halt.is_set():
            now = time.monotonic()
            if now >= next_beat:
                try:
                    sock.sendto(encode_beat(self.key, self.host, self.seq, time.time_ns(), self.incarnation), addr)
                    if failing:
                        LOG.info("heartbeats of %s leave again", self.host)
                    failing = False
                except OSError as error:
                    if not failing:
                        LOG.warning("heartbeat of %s to %s not sent (%s); will keep trying", self.host,
                                    self.address, error)
                    failing = True
                self.seq += 1
                # Keep the period; after a stall (SIGSTOP, a suspended VM) this beat went at once and the
                # next follows an interval later.
                next_beat += self.interval
                if next_beat <= now:
                    next_beat = now + self.interval
            if poller.poll(max(0.0, next_beat - time.monotonic()) * 1000):
                self._answer_probes(sock)
        self._leave(sock, addr)

    def _leave(self, sock: socket.socket, addr: tuple) -> None:
        """A clean stop: tell the monitor this host is leaving, not failing."""
        for _ in range(LEAVE_COPIES):
            try:
                sock.sendto(encode_leave(self.key, self.host, self.seq, time.time_ns(), self.incarnation), addr)
            except OSError as error:
                LOG.debug("leave of %s not sent: %s", self.host, error)
            self.seq += 1
        LOG.info("heartbeats of %s stopped; told the monitor it leaves", self.host)

    def _answer_probes(self, sock: socket.socket) -> None:
        while True:
            try:
                data, source = sock.recvfrom(2048)
            except OSError:  # nothing more to read, or an ICMP error queued on the socket
                return
            probe = decode_probe(self.key, data)
            if probe is None or probe.host != self.host:
                continue
            try:
                sock.sendto(encode_probe_reply(self.key, self.host, probe.nonce, self.incarnation), source)
            except OSError as error:
                LOG.debug("probe reply to %s not sent: %s", source, error)


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
