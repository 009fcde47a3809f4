"""In-process API harness for the API tests: a fresh database, the WSGI app, and request helpers.

``Api`` builds novalite's WSGI application over a fresh database of the run's backend (tests/databases.py)
and talks to it through Falcon's TestClient, or directly through WSGI (``raw``) when a test needs the
exact response header lines.
Compute services come to exist the public way, through the agents' interface; rows the API cannot
create yet (other binaries, instances, migrations) are written with the db layer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import falcon.testing
from sqlalchemy import insert, select

from novalite import config
from novalite.api import auth
from novalite.api.app import build_falcon_app, create_app, make_application, split_vary
from novalite.api.policy import Enforcer
from novalite.db import api as db
from novalite.db import engine as db_engine
from novalite.secret_files import read_secret
from novalite.timeutils import utcnow
from tests import databases

# noauth2 tokens are "user:project"; user "admin" is admin. Project ids are hex, as Nova's URLs need.
PROJECT = "6f70656e737461636b"
OTHER_PROJECT = "0123456789abcdef"
ADMIN = f"admin:{PROJECT}"
MEMBER = f"demo:{PROJECT}"
AGENT_SECRET = "agent-secret-for-tests"
ADMIN_SECRET = "admin-secret-for-tests"

TEST_HOST = "falconframework.org"  # the host Falcon's TestClient sends
FAULT_CONTENT_TYPE = "application/json; charset=UTF-8"
UPDATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


@dataclass
class Raw:
    """A response as the WSGI server sees it: every header line, in order."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_code(self) -> int:
        return int(self.status.split()[0])

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """novalite's API over a fresh database of the run's backend, with the admin, member and agent credentials."""

    def __init__(self, root: Path, *, auth_strategy: str = "noauth2", env: dict[str, str] | None = None,
                 config_file: Path | None = None, keystone_headers: bool = False):
        root.mkdir(parents=True, exist_ok=True)
        self.url = databases.fresh_url(root)
        (root / "agent-token").write_text(AGENT_SECRET + "\n")
        (root / "admin-token").write_text(ADMIN_SECRET + "\n")
        environ = {
            "NOVALITE_DATABASE__CONNECTION": self.url,
            "NOVALITE_API__AUTH_STRATEGY": auth_strategy,
            "NOVALITE_API__AGENT_TOKEN_FILE": str(root / "agent-token"),
            "NOVALITE_API__ADMIN_TOKEN_FILE": str(root / "admin-token"),
            **(env or {}),
        }
        self.settings = config.load(config_file, environ=environ)
        base_dir = str(config_file.parent) if config_file else str(root)
        if keystone_headers:
            self.app = _keystone_headers_app(self.settings, base_dir)
        else:
            self.app = create_app(self.settings, base_dir=base_dir)
        self.client = falcon.testing.TestClient(self.app)
        self.engine = db_engine.make_engine(self.url)
        self.token = ADMIN_SECRET if auth_strategy == "token" else ADMIN
        # With keystone_headers: the identity headers sent by default (a test sets them).
        self.identity: dict[str, str] = {}

    # -- requests ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, version: str | None = None, token: str | None = "",
                headers: dict[str, str] | None = None, **kwargs) -> falcon.testing.Result:
        """A request with the admin token ("" → the default; None → no token) at ``version``."""
        sent = {}
        token = self.token if token == "" else token
        if token is not None:
            sent["X-Auth-Token"] = token
        if token == self.token:
            sent.update(self.identity)
        if version is not None:
            sent["X-OpenStack-Nova-API-Version"] = version
        sent.update(headers or {})
        return self.client.simulate_request(method, path, headers=sent, **kwargs)

    def get(self, path: str, **kwargs) -> falcon.testing.Result:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs) -> falcon.testing.Result:
        return self.request("PUT", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs) -> falcon.testing.Result:
        return self.request("DELETE", path, **kwargs)

    def raw(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
            query: str = "") -> Raw:
        """Call the WSGI app directly; ``headers`` are sent as given (names as CGI variables)."""
        environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                                   "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                                   "HTTP_HOST": TEST_HOST}
        setup_testing_defaults(environ)
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
        captured: dict[str, Any] = {}

        def start_response(status, response_headers, exc_info=None):
            captured.update(status=status, headers=list(response_headers))

        chunks = self.app(environ, start_response)
        try:
            body_out = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return Raw(captured["status"], captured["headers"], body_out)

    # -- the agents' side --------------------------------------------------------------------------

    def register(self, host: str, binary: str = "nova-compute", version: int = 1,
                 secret: str = AGENT_SECRET) -> falcon.testing.Result:
        return self.client.simulate_post(
            "/agent/v1/services", json={"host": host, "binary": binary, "version": version},
            headers={"X-Agent-Token": secret},
        )

    def compute(self, host: str) -> dict:
        """Register a nova-compute on ``host`` and return its record (as the 2.53+ API shows it)."""
        result = self.register(host)
        assert result.status_code == 200, result.text
        return result.json["service"]

    def heartbeat(self, service_uuid: str, secret: str = AGENT_SECRET) -> falcon.testing.Result:
        return self.client.simulate_put(f"/agent/v1/services/{service_uuid}/heartbeat",
                                        headers={"X-Agent-Token": secret})

    # -- rows the API cannot create yet ------------------------------------------------------------

    def add_service(self, host: str, binary: str, topic: str | None = None) -> dict:
        """A non-compute service row (scheduler, conductor, the API's own records)."""
        with self.engine.begin() as conn:
            row = db.service_create(conn, host=host, binary=binary, topic=topic, version=1)
        return dict(row._mapping)

    def add_instance(self, host: str, deleted: bool = False) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(insert(db.instances).values(
                uuid=str(uuid.uuid4()), host=host, node=host, vm_state="active", created_at=now, deleted=0,
            ))
            if deleted:
                row_id = result.inserted_primary_key[0]
                conn.execute(db.instances.update().where(db.instances.c.id == row_id)
                             .values(deleted=row_id, deleted_at=now))

    def add_migration(self, *, source: str, dest: str = "elsewhere", status: str,
                      migration_type: str = "evacuation") -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(db.migrations).values(
                uuid=str(uuid.uuid4()), instance_uuid=str(uuid.uuid4()), source_compute=source,
                source_node=source, dest_compute=dest, dest_node=dest, status=status,
                migration_type=migration_type, created_at=utcnow(), deleted=0,
            ))

    def set_times(self, service_uuid: str, **values: dt.datetime | None) -> None:
        """Move a service's created_at / last_seen_up / updated_at (liveness set-ups)."""
        with self.engine.begin() as conn:
            conn.execute(db.services.update().where(db.services.c.uuid == service_uuid).values(**values))

    # -- reading back ------------------------------------------------------------------------------

    def services(self, version: str = "2.53", **kwargs) -> list[dict]:
        result = self.get("/v2.1/os-services", version=version, **kwargs)
        assert result.status_code == 200, result.text
        return result.json["services"]

    def rows(self) -> list[dict]:
        """Every services row, deleted ones included, every column."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(db.services).order_by(db.services.c.id))]

    @contextlib.contextmanager
    def unchanged(self) -> Iterator[None]:
        """Assert the request(s) inside changed nothing: not the list, not a single column."""
        rows, listed = self.rows(), self.services()
        yield
        assert self.rows() == rows
        assert self.services() == listed


def assert_fault(result: falcon.testing.Result | Raw, code: int, message: str) -> None:
    """Nova's fault envelope (spec 2): {"<faultName>": {"code", "message"}} as application/json; UTF-8."""
    names = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 406: "computeFault",
             409: "conflictingRequest", 415: "badMediaType", 500: "computeFault",
             501: "notImplemented"}
    expected = {names[code]: {"code": code, "message": message}}
    if isinstance(result, Raw):
        assert (result.status_code, result.json()) == (code, expected)
        assert result.values("Content-Type") == [FAULT_CONTENT_TYPE]
    else:
        assert (result.status_code, result.json) == (code, expected)
        assert result.headers["Content-Type"] == FAULT_CONTENT_TYPE


def _keystone_headers_app(settings: config.Settings, base_dir: str):
    """The app as create_app builds it for auth_strategy=keystone, minus keystonemiddleware itself,
    so a test can present the identity headers auth_token would set (X-Identity-Status, X-Roles, …)."""
    engine = db_engine.make_engine(settings.database.connection)
    app = make_application(settings, engine, Enforcer(settings.oslo_policy, base_dir=base_dir),
                           auth.AgentAuth(read_secret(settings.api.agent_token_file)))
    return split_vary(build_falcon_app(app))


def parse_updated_at(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, UPDATED_AT_FORMAT)
