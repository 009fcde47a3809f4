"""The Date header's value (RFC 9110's IMF-fixdate) for novalite's own HTTP servers, formatted once a second."""

from __future__ import annotations

import time
from email.utils import formatdate


class _Dates:
    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value


http_date = _Dates()
