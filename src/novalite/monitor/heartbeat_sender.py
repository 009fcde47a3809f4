"""The agents' side of the monitor's detection: HeartbeatSender beats to the monitor every [monitor]
heartbeat_interval and answers its probes (monitor/heartbeat_wire.py has the datagrams).

A clean stop of an agent (SIGTERM: an operator's restart, maintenance) is not a failure: the sender says
"leave" as it stops (LEAVE_COPIES times, one lost datagram must not turn a clean stop into a failure), and the
Detector no longer watches the host until its next beat (monitor/detection.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import select
import socket
import threading
import time

from novalite.config import MonitorOpts
from novalite.monitor.heartbeat_wire import (
    decode_probe,
    encode_beat,
    encode_leave,
    encode_probe_reply,
    host_bytes,
)
from novalite.nudge import parse_address

LOG = logging.getLogger(__name__)

LEAVE_COPIES = 3  # a leave is sent this many times: one lost datagram must not turn a clean stop into a failure


class HeartbeatSender:
    """An agent's side: a beat every ``interval`` to ``address`` ("host:port"), answers to probes.

    The socket is served by a thread of its own rather than the agent's event loop, so a busy or stalled
    loop (a large batch of work being applied) never reads as a dead host; a stopped or killed process
    stops it as it stops the agent.
    """

    def __init__(self, host: str, key: bytes, address: str, interval: float = MonitorOpts.heartbeat_interval):
        host_bytes(host)
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
