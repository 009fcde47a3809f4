"""Wake-up datagrams: "there is work for you", from the control plane to a scheduler or a host's agent.

The work itself is always in the database (an instance's task_state, a migration's status): a
nudge only says "look now" instead of at the next periodic look. So a nudge carries nothing, is
sent over UDP without waiting for anything, and may be lost or forged without harm — a lost one
delays the work to the receiver's next periodic look, a forged one costs one extra look.

    sender:    Nudger().send(["127.0.0.1:40123", ...])
    receiver:  listener = await NudgeListener.start("127.0.0.1", 0); listener.address; await listener.wait(t)
"""

from __future__ import annotations

import asyncio
import logging
import socket

LOG = logging.getLogger(__name__)
PAYLOAD = b"nudge"


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Nudger:
    """Sends nudges from one UDP socket; safe to share between threads."""

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}

    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is None:
            sock = self._sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        return sock

    def send(self, addresses) -> None:
        for address in addresses:
            if not address:
                continue
            try:
                host, port = parse_address(address)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                self._socket(family).sendto(PAYLOAD, (host, port))
            except (OSError, ValueError) as error:  # never fails the caller: the work is already recorded
                LOG.debug("nudge to %s not sent: %s", address, error)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, event: asyncio.Event):
        self.event = event

    def datagram_received(self, data: bytes, addr) -> None:
        self.event.set()


class NudgeListener:
    """Receives nudges on a UDP port; ``wait`` returns when one came or the timeout passed."""

    def __init__(self, transport: asyncio.DatagramTransport, event: asyncio.Event):
        self._transport = transport
        self._event = event
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @classmethod
    async def start(cls, host: str = "127.0.0.1", port: int = 0) -> NudgeListener:
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(event), local_addr=(host, port))
        return cls(transport, event)

    def set(self) -> None:
        """Nudge ourselves (a local wake-up, e.g. when stopping)."""
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if nudged (the nudge is consumed), False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._transport.close()
