"""A raw HTTP/1.1 client for the servers' own tests: bytes exactly as given, responses read one by one, so
keep-alive, pipelining and how the server closes a connection can be checked."""

from __future__ import annotations

import socket


class Connection:
    """A raw TCP connection to a server: send bytes, read whole responses (status, headers, body)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next response; ``head_only``: an answer to HEAD, whose Content-Length announces no body."""
        status_line = self.reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _sep, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b"" if head_only else self.reader.read(int(headers.get("content-length", 0)))
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.reader.read(1) == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
