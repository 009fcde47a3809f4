"""Service bodies as GET /os-services and the 2.53 PUT show them, keys in Nova's order (spec 3.2).

By microversion: forced_down appears with 2.11; with 2.53 the id is the service's UUID.

A listing's JSON is kept per service (ListedServicesJson): each API process lists from the rows it keeps
(novalite.domain.service_listing), and a service whose row and state did not change shows the same text as last
time, so a listing of 1,000 joins 1,000 kept texts instead of building and encoding 1,000 dicts.
"""

from __future__ import annotations

import threading

import orjson

from novalite.api.microversion import Version, v
from novalite.db.api import LISTED_COLUMNS
from novalite.domain.service_listing import Listed, forget_all_but

V2_11, V2_53 = v("2.11"), v("2.53")

_ROW_VERSION = LISTED_COLUMNS.index("row_version")
_SHOWN = LISTED_COLUMNS.index("last_heartbeat")  # the row's columns before it are ServiceState's fields but up


def service_views(states: list[tuple], version: Version) -> list[dict]:
    """Services as shown, from ServiceStates or tuples of their fields in order; one comprehension, the version
    compared once."""
    by_uuid = version >= V2_53
    views = [{"binary": binary, "host": host, "id": uuid if by_uuid else id_, "zone": zone,
              "status": "disabled" if disabled else "enabled", "state": "up" if up else "down",
              "updated_at": updated_at, "disabled_reason": reason, "forced_down": bool(forced_down)}
             for id_, uuid, host, binary, zone, disabled, reason, forced_down, updated_at, up in states]
    if version < V2_11:
        for view in views:
            del view["forced_down"]
    return views


class ListedServicesJson:
    """A listing as its JSON array, each service's text kept by id with the row_version it shows, one text per
    (microversion's form, up). The texts of services no longer listed are dropped at the next whole listing."""

    def __init__(self):
        self._kept: dict[int, tuple[int, dict]] = {}  # id → (row_version, {(form, up): JSON text})
        self._lock = threading.Lock()

    def __call__(self, listed: Listed, version: Version, *, whole: bool) -> orjson.Fragment:
        """``listed`` as shown at ``version``; ``whole``: it is every listed service (no filter)."""
        form = (version >= V2_53, version >= V2_11)
        kept = self._kept
        texts = []
        for row, up in zip(listed.rows, listed.up, strict=True):
            entry = kept.get(row[0])
            if entry is None or entry[0] != row[_ROW_VERSION]:
                entry = kept[row[0]] = (row[_ROW_VERSION], {})
            text = entry[1].get((form, up))
            if text is None:
                text = entry[1][form, up] = orjson.dumps(service_views([row[:_SHOWN] + (up,)], version)[0])
            texts.append(text)
        if whole and len(kept) > len(listed.rows):
            forget_all_but(self._kept, self._lock, (row[0] for row in listed.rows))
        return orjson.Fragment(b"[" + b",".join(texts) + b"]")

    def __len__(self) -> int:
        """How many services' texts are kept."""
        return len(self._kept)
