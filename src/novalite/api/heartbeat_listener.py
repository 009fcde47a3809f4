"""The agents' heartbeat listener: ``PUT /agent/v1/services/{uuid}/heartbeat`` on asyncio, beside gunicorn.

10,000 compute hosts reporting every 10 s send 1,000 heartbeats a second. Through gunicorn's threaded worker a
heartbeat costs about a millisecond of CPU, nearly all of it gunicorn's own request machinery (parsing, its poll
loop and queue, the response), so one API host would spend more than a core on them (bench/README.md,
"Heartbeat absorption"). This listener answers the same request on one asyncio loop over keep-alive connections
(httptools, the C parser of llhttp, reads the requests): a quarter of that CPU, the write's share included.

It serves exactly the heartbeat of handlers/agent.py, with the same answers and the same rules (spec 4.3):

    PUT /agent/v1/services/{uuid}/heartbeat   X-Agent-Token: <secret>
      204  committed: report_count + 1, last_seen_up = the write's time (nothing else is written)
      404  itemNotFound fault: the service record is deleted (it is not recreated)
      401  the agent token is missing or wrong
      500  computeFault: the write failed (nothing was acknowledged)
    any other method or path: the router's bare 404

Nothing is acknowledged before its write committed: heartbeats go through the loop's group commit
(domain/heartbeats.AsyncHeartbeats, with a BATCH_WINDOW), each answer waits for the write holding its
heartbeat. HTTP/1.1 keeps the connection open (answers to pipelined requests go in order), HTTP/1.0 or
``Connection: close`` closes it after the answer, and a connection idle for ``idle_timeout`` (longer than
report_interval, so an agent's connection lasts from one heartbeat to the next) is closed.

``novalite api --heartbeat-bind`` ([api] heartbeat_listen) opens the socket in gunicorn's master; each worker
serves it from a thread of its own (``start_in_thread``), with its loop, its group commit and its engine, so
workers share the heartbeats as they share the API's requests and gunicorn restarts them alike.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from collections import deque
from functools import partial
from urllib.parse import unquote

import httptools

from novalite.api import faults
from novalite.api.auth import AgentAuth
from novalite.api.http_date import http_date
from novalite.domain.heartbeats import AsyncHeartbeats
from novalite.domain.services import service_not_found
from novalite.exceptions import Unauthorized

LOG = logging.getLogger(__name__)

PREFIX, SUFFIX = b"/agent/v1/services/", b"/heartbeat"
MAX_URL = 8192  # longer request targets are refused (400) and the connection closed
MAX_PIPELINED = 64  # a connection's unanswered requests before the listener stops reading it
# How long a heartbeat waits for others to share its write. At 1,000 heartbeats/s a write each costs the API
# three times the CPU of a write per 10 ms (bench/README.md); 10 ms more before an agent's 204 changes nothing
# for liveness, which counts in seconds (the write stamps its time when it starts, never before a heartbeat).
BATCH_WINDOW = 0.01
REASONS = {204: b"No Content", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
           500: b"Internal Server Error"}


BIND_ATTEMPTS = 5  # as gunicorn binds its own: an address still held (a previous process ending) gets 5 s


def listening_socket(address: str) -> socket.socket:
    """A TCP socket listening on ``address`` (host:port, [v6]:port), made before gunicorn forks its workers."""
    host, _sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"heartbeat listen address {address!r} is not host:port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    attempt = 1
    while True:
        try:
            return socket.create_server((host, int(port)), family=family, backlog=1024)
        except OSError as error:
            if error.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS:
                raise
        LOG.warning("heartbeat listen address %s in use; retrying in 1 s", address)
        time.sleep(1)
        attempt += 1


class HeartbeatListener:
    """Serves the heartbeats arriving on ``sock`` from one asyncio loop."""

    def __init__(self, sock: socket.socket, heartbeats: AsyncHeartbeats, agent_auth: AgentAuth,
                 idle_timeout: float):
        self.sock = sock
        self.heartbeats = heartbeats
        self.agent_auth = agent_auth
        self.idle_timeout = idle_timeout
        self.connections: set[_Connection] = set()
        self._last_logged: BaseException | None = None

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=asyncio.run, args=(self.serve(),), name="heartbeat-listener", daemon=True)
        thread.start()
        return thread

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self, loop), sock=self.sock)
        async with server:
            while True:
                await asyncio.sleep(self.idle_timeout / 4)
                self._close_idle(loop.time())

    def _close_idle(self, now: float) -> None:
        for conn in list(self.connections):
            if not conn.answers and now - conn.last_active > self.idle_timeout:
                conn.close()

    def route(self, method: bytes, url: bytes, token: bytes, accept: bytes | None) -> str | tuple:
        """The UUID of the service to beat, or the answer (status, content type, body) when there is none."""
        path = url.partition(b"?")[0]
        segment = path[len(PREFIX):-len(SUFFIX)]
        if method != b"PUT" or not segment or b"/" in segment or not path.startswith(PREFIX) \
                or not path.endswith(SUFFIX):
            content_type, body = faults.bare_not_found(accept.decode("latin-1") if accept else None)
            return 404, content_type, body
        try:
            self.agent_auth.check_token(token)
        except Unauthorized as error:
            return _fault(error.code, error.message)
        return unquote(segment.decode("latin-1"))

    def written(self, service_uuid: str, future: asyncio.Future) -> tuple:
        """The answer to a heartbeat whose write ended."""
        error = future.exception()
        if error is None:
            if future.result():
                return 204, None, b""
            not_found = service_not_found(service_uuid)
            return _fault(not_found.code, not_found.message)
        if error is not self._last_logged:  # one batch's error, once
            self._last_logged = error
            LOG.error("heartbeat write failed", exc_info=error)
        return _fault(500, faults.unexpected_error_message(error))


def _fault(code: int, message: str) -> tuple:
    return code, faults.FAULT_CONTENT_TYPE, faults.fault_body(code, message)


class _Connection(asyncio.Protocol):
    """One agent's connection: requests parsed as they arrive, answered in their order."""

    def __init__(self, listener: HeartbeatListener, loop: asyncio.AbstractEventLoop):
        self.listener = listener
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.answers: deque[list] = deque()  # [response bytes or None while its write is in flight, close after]
        self.last_active = loop.time()
        self.paused = False
        self.closing = False
        self._url = b""
        self._token = b""
        self._accept: bytes | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.listener.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # malformed, an upgrade, or a request target over MAX_URL
            self._queue_answer((400, faults.FAULT_CONTENT_TYPE, faults.fault_body(400, "Malformed request")), True)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- httptools callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._token, self._accept = b"", b"", None

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            raise ValueError("request target too long")  # feed_data raises HttpParserCallbackError

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"x-agent-token":
            self._token = value
        elif name == b"accept":
            self._accept = value

    def on_message_complete(self) -> None:
        if self.closing:
            return  # a request pipelined after one that closed the connection is not served
        close = not self.parser.should_keep_alive()
        routed = self.listener.route(self.parser.get_method(), self._url, self._token, self._accept)
        if isinstance(routed, tuple):
            self._queue_answer(routed, close)
            return
        slot = [None, close]
        self.answers.append(slot)
        self.listener.heartbeats.submit(routed).add_done_callback(partial(self._written, slot, routed))
        if close:
            self.closing = True
        elif len(self.answers) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    # -- answers ----------------------------------------------------------------------------------------

    def _queue_answer(self, answer: tuple, close: bool) -> None:
        self.answers.append([self._response(answer, close), close])
        if close:
            self.closing = True
        self._flush()

    def _written(self, slot: list, service_uuid: str, future: asyncio.Future) -> None:
        slot[0] = self._response(self.listener.written(service_uuid, future), slot[1])
        self._flush()

    def _flush(self) -> None:
        out = []
        while self.answers and self.answers[0][0] is not None:
            data, close = self.answers.popleft()
            out.append(data)
            if close:
                self.answers.clear()
                break
        if self.transport is None or not out:
            return
        self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self.closing and not self.answers:
            self.transport.close()
        elif self.paused and len(self.answers) < MAX_PIPELINED // 2:
            self.paused = False
            self.transport.resume_reading()

    def _response(self, answer: tuple, close: bool) -> bytes:
        status, content_type, body = answer
        head = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"")), b"Date: " + http_date()]
        if status != 204:
            head += [b"Content-Type: " + content_type.encode(), b"Content-Length: %d" % len(body)]
        if close:
            head.append(b"Connection: close")
        return b"\r\n".join(head) + b"\r\n\r\n" + body
