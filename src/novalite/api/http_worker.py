"""gunicorn's worker for ``novalite api``: HTTP/1.1 on asyncio and httptools, the WSGI app called in line.

gunicorn stays the server: its master binds the sockets, forks, watches and restarts the workers, and handles
signals, as with any worker class. What this worker replaces is gunicorn's per-request machinery (its
pure-Python parser, the threaded worker's poll loop, queue and hand-offs between threads), which on a slow
2-core machine costs about 0.9 ms a request (bench/README.md): the API's floor, more than the whole force-down
target on SQLite. Here a request is read by httptools (llhttp's C parser) on an asyncio loop, the app is called
right there, in the loop's thread, and the answer written from its bytes: the same one request at a time per
worker as the threaded worker with one thread, without the hand-offs.

The WSGI side is PEP 3333's: the environ gunicorn would build (PATH_INFO %-decoded as latin-1, HTTP_* headers,
headers with an underscore dropped as gunicorn does, repeated ones joined with commas), a complete
``wsgi.input`` (a chunked body arrives whole, with its CONTENT_LENGTH), ``start_response`` with ``exc_info``,
any iterable (closed after), a body framed by the app's Content-Length or, without one, by the length of what
it returned. HTTP/1.1 connections stay open (pipelined
requests are answered in order); HTTP/1.0 and ``Connection: close`` close after the answer; ``Expect:
100-continue`` gets its 100; HEAD gets no body; a malformed request a 400 and the connection closed; a body
over MAX_BODY a 413.

Lifecycle as gunicorn's workers: it tells the master it is alive every second (the ``timeout`` watchdog); on
SIGTERM, or after ``max_requests``, it stops accepting, finishes the request in hand and closes its
connections; it exits if the master is gone.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import httptools
from gunicorn.workers.base import Worker

from novalite.api.http_date import http_date

MAX_BODY = 1024 * 1024  # larger request bodies are refused (413); Nova's own limit is 112 KiB
MAX_URL = 65536
MAX_HEADERS = 256 * 1024  # names and values together
IDLE_CHECK = 1.0  # seconds between two looks at the worker's state (notify the master, stop, idle connections)
NO_BODY_STATUSES = (204, 304)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
                b"Connection: close\r\n\r\nBad Request")
_TOO_LARGE = (b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n"
              b"Connection: close\r\n\r\nRequest Entity Too Large")


class HttpToolsWorker(Worker):
    """A gunicorn worker (``worker_class``) serving the WSGI app on asyncio with httptools."""

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.stop)  # gunicorn's graceful stop
        self.connections: set[_Connection] = set()
        self.logs_access = bool(self.cfg.accesslog)
        servers = [await loop.create_server(lambda: _Connection(self, loop), sock=listener.sock)
                   for listener in self.sockets]
        idle_timeout = float(self.cfg.keepalive)
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            now = loop.time()
            for conn in list(self.connections):
                if conn.idle_since is not None and now - conn.idle_since > idle_timeout:
                    conn.close()
            try:
                await asyncio.wait_for(self.stopping.wait(), IDLE_CHECK)
            except TimeoutError:
                pass
        for server in servers:
            server.close()
        for conn in list(self.connections):  # the app is called in line: no request is in hand here
            conn.close()
        await asyncio.sleep(0)  # the transports close

    def stop(self) -> None:
        self.alive = False
        self.stopping.set()

    def request_served(self) -> None:
        self.nr += 1
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.stop()


class _Connection(asyncio.Protocol):
    """One client connection: each request read whole, then answered by the app before the next is read."""

    def __init__(self, worker: HttpToolsWorker, loop: asyncio.AbstractEventLoop):
        self.worker = worker
        self.app: Callable = worker.wsgi
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server_address: tuple = ("", 0)
        self.peer: tuple = ("", 0)
        self.idle_since: float | None = loop.time()
        self.closing = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_size = 0
        self._body: list[bytes] = []
        self._body_size = 0

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.server_address = transport.get_extra_info("sockname") or ("", 0)
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.worker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.worker.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:  # malformed; or a callback refused it (too large)
            if isinstance(error.__context__, BaseException) and not isinstance(error.__context__, Exception):
                raise error.__context__ from None  # gunicorn's SIGQUIT / SIGINT (sys.exit) during a request
            self._refuse(_TOO_LARGE if self._body_size > MAX_BODY else _BAD_REQUEST)
        if not self.closing:
            self.idle_since = self.loop.time()

    def pause_writing(self) -> None:
        # The client reads its answers slower than it sends requests: read no more of them until it catches up,
        # so pipelined requests cannot pile answers up in memory.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, response: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response)
        self.close()

    # -- httptools callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._header_size, self._body, self._body_size = b"", [], 0, [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            raise ValueError("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value)
        if self._header_size > MAX_HEADERS:
            raise ValueError("request headers too large")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_BODY:
            raise ValueError("request body too large")  # feed_data raises HttpParserCallbackError
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return  # a request pipelined after one that closed the connection is not served
        started = time.time()
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method().decode("latin-1")
        environ = self._environ(method)
        response, close, logged = self._call_app(environ, method)
        if self.worker.logs_access:
            self._log_access(environ, logged, started)
        self.worker.request_served()
        if self.transport is None:
            return
        close = close or not keep_alive or not self.worker.alive
        if close:
            response = response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        self.transport.write(response)
        if close:
            self.close()

    # -- WSGI --------------------------------------------------------------------------------------------

    def _environ(self, method: str) -> dict:
        path, _sep, query = self._url.partition(b"?")
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.partition(b"#")[0].decode("latin-1"),
            "RAW_URI": self._url.decode("latin-1"),
            "SERVER_NAME": str(self.server_address[0]),
            "SERVER_PORT": str(self.server_address[1]),
            "SERVER_PROTOCOL": f"HTTP/{self.parser.get_http_version()}",
            "REMOTE_ADDR": str(self.peer[0]),
            "REMOTE_PORT": str(self.peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b"".join(self._body)),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": self.worker.cfg.workers > 1,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in self._headers:
            name = raw_name.decode("latin-1").upper()
            if "_" in name:
                continue  # as gunicorn: X-Auth_Token must not pass for X-Auth-Token
            key = name.replace("-", "_")
            if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                key = "HTTP_" + key
            value = raw_value.decode("latin-1").strip()
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        if environ.pop("HTTP_TRANSFER_ENCODING", None) is not None:
            environ["CONTENT_LENGTH"] = str(self._body_size)  # a chunked body, read whole: the app sees its length
        return environ

    def _log_access(self, environ: dict, logged: _Logged, started: float) -> None:
        self.worker.log.access(logged, self._request_headers(), environ,
                               datetime.timedelta(seconds=time.time() - started))

    def _request_headers(self) -> list[tuple[str, str]]:
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self._headers]

    def _call_app(self, environ: dict, method: str) -> tuple[bytes, bool, _Logged]:
        """The response's bytes, whether the app asked to close the connection, and what the access log says."""
        started: list = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return _no_write

        try:
            result = self.app(environ, start_response)
            try:
                chunks = [chunk for chunk in result if chunk]
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:  # noqa: BLE001 - as gunicorn: log it, answer 500, keep serving
            self.worker.log.exception("Error handling request %s", environ.get("RAW_URI"))
            return _INTERNAL_ERROR, True, _INTERNAL_ERROR_LOGGED
        status, headers = started
        code = int(status[:3])
        body = b"".join(chunks)
        date = http_date()
        head = [f"HTTP/1.1 {status}".encode("latin-1"), b"Date: " + date]
        sent = [("Date", date.decode("latin-1"))]
        length_given = close = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                length_given = True
            elif lowered == "connection":
                close = value.strip().lower() == "close"
                continue
            elif lowered == "transfer-encoding":
                continue  # the body goes whole, with its Content-Length
            head.append(f"{name}: {value}".encode("latin-1"))
            sent.append((name, value))
        if code in NO_BODY_STATUSES or code < 200:
            body = b""
        elif not length_given:
            head.append(b"Content-Length: %d" % len(body))
            sent.append(("Content-Length", str(len(body))))
        if method == "HEAD":
            body = b""
        return b"\r\n".join(head) + b"\r\n\r\n" + body, close, _Logged(status, sent, len(body))


_INTERNAL_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\n"
                   b"Internal Server Error")


def _no_write(_data: bytes) -> None:
    raise RuntimeError("start_response's write() is not supported: return the body")


@dataclass
class _Logged:
    """What gunicorn's access log reads of a response."""

    status: str
    headers: list[tuple[str, str]]
    sent: int


_INTERNAL_ERROR_LOGGED = _Logged("500 Internal Server Error",
                                 [("Content-Type", "text/plain"), ("Content-Length", "21")], 21)
