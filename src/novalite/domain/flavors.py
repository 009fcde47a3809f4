"""Flavors: listing with Nova's filters and pagination, show, create, describe and delete.

Nova's rules (nova/compute/flavors.py, nova/objects/flavor.py), free of HTTP: callers get Flavor
values or a NovaError carrying Nova's status and message. Private flavors are visible to admins and
to the projects given access; everyone else gets "not found".
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from novalite.db import flavors as db
from novalite.exceptions import BadRequest, Conflict, NotFound


@dataclass(frozen=True)
class Caller:
    """Who asks: visibility of private flavors depends on the project and on being admin."""

    project_id: str | None
    is_admin: bool


@dataclass
class Flavor:
    id: int
    flavorid: str
    name: str
    memory_mb: int
    vcpus: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    rxtx_factor: float
    is_public: bool
    disabled: bool
    description: str | None
    extra_specs: dict[str, str | None] = field(default_factory=dict)


@dataclass
class ListFilters:
    """GET /flavors parameters after parsing (is_public None means every flavor)."""

    is_public: bool | None = True
    min_memory_mb: int | None = None
    min_root_gb: int | None = None
    sort_key: str = "flavorid"
    sort_dir: str = "asc"
    limit: int = 1000
    marker: str | None = None


class FlavorNotFound(NotFound):
    def __init__(self, flavor_id: str):
        super().__init__(f"Flavor {flavor_id} could not be found.")


def _flavor(row: Row, extra_specs: dict[str, str | None] | None = None) -> Flavor:
    return Flavor(
        id=row.id, flavorid=row.flavorid, name=row.name, memory_mb=row.memory_mb, vcpus=row.vcpus,
        root_gb=row.root_gb, ephemeral_gb=row.ephemeral_gb, swap=row.swap, rxtx_factor=row.rxtx_factor,
        is_public=bool(row.is_public), disabled=bool(row.disabled), description=row.description,
        extra_specs=extra_specs or {},
    )


class Flavors:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _with_specs(self, conn: Connection, rows: list[Row]) -> list[Flavor]:
        specs = db.extra_specs_of(conn, [r.id for r in rows])
        return [_flavor(r, specs[r.id]) for r in rows]

    def get(self, flavorid: str, caller: Caller) -> Flavor:
        with self.engine.connect() as conn:
            row = db.flavor_get_by_flavorid(conn, flavorid, project_id=caller.project_id,
                                            is_admin=caller.is_admin)
            if row is None:
                raise FlavorNotFound(flavorid)
            return self._with_specs(conn, [row])[0]

    def list(self, caller: Caller, filters: ListFilters) -> list[Flavor]:
        """Admins filter by is_public; everyone else sees enabled flavors they may use."""
        with self.engine.connect() as conn:
            try:
                rows = db.flavor_get_all(
                    conn, project_id=caller.project_id, is_admin=caller.is_admin,
                    is_public=filters.is_public if caller.is_admin else True,
                    only_enabled=not caller.is_admin,
                    min_memory_mb=filters.min_memory_mb, min_root_gb=filters.min_root_gb,
                    sort_key=filters.sort_key, sort_dir=filters.sort_dir,
                    limit=filters.limit, marker=filters.marker,
                )
            except LookupError:
                raise BadRequest(f"marker [{filters.marker}] not found") from None
            return self._with_specs(conn, rows)

    def create(self, *, name: str, memory_mb: Any, vcpus: Any, root_gb: Any, flavorid: Any = None,
               ephemeral_gb: Any = 0, swap: Any = 0, rxtx_factor: Any = 1.0, is_public: bool = True,
               description: str | None = None) -> Flavor:
        """Nova's flavors.create: a UUID when no id is given (null, absent, or 0), ids as strings."""
        values = {
            "name": name.strip(),
            "flavorid": str(flavorid) if flavorid else str(uuidlib.uuid4()),
            "memory_mb": int(str(memory_mb)), "vcpus": int(str(vcpus)), "root_gb": int(str(root_gb)),
            "ephemeral_gb": int(str(ephemeral_gb)), "swap": int(str(swap)),
            "rxtx_factor": float(rxtx_factor), "is_public": is_public, "disabled": False,
            "description": description,
        }
        try:
            with self.engine.begin() as conn:
                self._refuse_duplicates(conn, values["flavorid"], values["name"])
                row = db.flavor_create(conn, values)
        except IntegrityError:
            # A concurrent create won the race: report what now exists.
            with self.engine.connect() as conn:
                self._refuse_duplicates(conn, values["flavorid"], values["name"])
            raise
        return _flavor(row)

    @staticmethod
    def _refuse_duplicates(conn: Connection, flavorid: str, name: str) -> None:
        if db.flavor_get_by_flavorid(conn, flavorid) is not None:
            raise Conflict(f"Flavor with ID {flavorid} already exists.")
        if db.flavor_get_by_name(conn, name) is not None:
            raise Conflict(f"Flavor with name {name} already exists.")

    def update_description(self, flavorid: str, description: str | None) -> Flavor:
        with self.engine.begin() as conn:
            row = db.flavor_get_by_flavorid(conn, flavorid)
            if row is None:
                raise FlavorNotFound(flavorid)
            row = db.flavor_update_description(conn, row.id, description)
            return self._with_specs(conn, [row])[0]

    def delete(self, flavorid: str) -> None:
        with self.engine.begin() as conn:
            if not db.flavor_destroy(conn, flavorid):
                raise FlavorNotFound(flavorid)


# Nova's classic default flavors (what nova-manage used to create): name, id, MB, vCPUs, GB.
DEFAULT_FLAVORS = (
    ("m1.tiny", "1", 512, 1, 1),
    ("m1.small", "2", 2048, 1, 20),
    ("m1.medium", "3", 4096, 2, 40),
    ("m1.large", "4", 8192, 4, 80),
    ("m1.xlarge", "5", 16384, 8, 160),
)


def ensure_default_flavors(engine: Engine) -> list[str]:
    """Create whichever of the m1.* flavors is missing (by id or name); returns the names created.

    Safe to run on every start: a flavor an admin deleted or renamed is created again only if
    neither its id nor its name is taken.
    """
    created = []
    flavors = Flavors(engine)
    for name, flavorid, memory_mb, vcpus, root_gb in DEFAULT_FLAVORS:
        with engine.connect() as conn:
            taken = (db.flavor_get_by_flavorid(conn, flavorid) is not None
                     or db.flavor_get_by_name(conn, name) is not None)
        if taken:
            continue
        try:
            flavors.create(name=name, flavorid=flavorid, memory_mb=memory_mb, vcpus=vcpus, root_gb=root_gb)
        except (Conflict, IntegrityError):
            continue  # another process seeded it first
        created.append(name)
    return created
