"""The monitor's heartbeat wire format: what agents (monitor/heartbeat_sender.py) and the Detector
(monitor/detection.py) send each other over UDP.

Big-endian; every datagram ends with HMAC-SHA256(key, everything before it); the key is the content of
[monitor] heartbeat_key_file (novalite.secret_files.read_secret) as UTF-8 bytes:

    beat    "NLhb" 1 1  incarnation:u64 seq:u64 sent_ns:u64  host (UTF-8, 1–255 bytes)
    probe   "NLhb" 1 2  nonce:16 bytes                        host
    reply   "NLhb" 1 3  nonce:16 bytes incarnation:u64        host
    leave   "NLhb" 1 4  incarnation:u64 seq:u64 sent_ns:u64  host   (sent three times by a stopping agent)

decode() never raises: a foreign, truncated or wrongly signed datagram is None.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

MAGIC = b"NLhb"
VERSION = 1
KIND_BEAT, KIND_PROBE, KIND_REPLY, KIND_LEAVE = 1, 2, 3, 4
MAC_SIZE = 32
NONCE_SIZE = 16
MAX_HOST_BYTES = 255
_HEAD = struct.Struct("!4sBB")
_BEAT = struct.Struct("!4sBBQQQ")
_PROBE = struct.Struct(f"!4sBB{NONCE_SIZE}s")
_REPLY = struct.Struct(f"!4sBB{NONCE_SIZE}sQ")
_FIXED = {KIND_BEAT: _BEAT, KIND_PROBE: _PROBE, KIND_REPLY: _REPLY, KIND_LEAVE: _BEAT}


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


def host_bytes(host: str) -> bytes:
    raw = host.encode()
    if not 1 <= len(raw) <= MAX_HOST_BYTES:
        raise ValueError(f"host name must be 1 to {MAX_HOST_BYTES} bytes of UTF-8: {host!r}")
    return raw


def encode_beat(key: bytes, host: str, seq: int, sent_ns: int, incarnation: int = 0) -> bytes:
    return _sign(key, _BEAT.pack(MAGIC, VERSION, KIND_BEAT, incarnation, seq, sent_ns) + host_bytes(host))


def encode_leave(key: bytes, host: str, seq: int, sent_ns: int, incarnation: int = 0) -> bytes:
    return _sign(key, _BEAT.pack(MAGIC, VERSION, KIND_LEAVE, incarnation, seq, sent_ns) + host_bytes(host))


def encode_probe(key: bytes, nonce: bytes, host: str) -> bytes:
    """A probe for ``host`` (named, so one socket may answer for several simulated hosts)."""
    return _sign(key, _PROBE.pack(MAGIC, VERSION, KIND_PROBE, nonce) + host_bytes(host))


def encode_probe_reply(key: bytes, host: str, nonce: bytes, incarnation: int = 0) -> bytes:
    return _sign(key, _REPLY.pack(MAGIC, VERSION, KIND_REPLY, nonce, incarnation) + host_bytes(host))


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
