"""``novalite api``: the WSGI app under gunicorn, one app (and database engine) per worker, and with
--heartbeat-bind the agents' heartbeat listener (api/heartbeat_listener.py) in each worker too."""

from __future__ import annotations

import socket

from gunicorn.app.base import BaseApplication

from novalite.config import Settings
from novalite.db import engine as db_engine


class GunicornServer(BaseApplication):
    def __init__(self, settings: Settings, base_dir: str | None, options: dict,
                 heartbeat_socket: socket.socket | None = None):
        self.settings = settings
        self.base_dir = base_dir
        self.options = options
        self.heartbeat_socket = heartbeat_socket
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Called in each worker after the fork: its own app and database engine, and its heartbeat listener.
        from novalite.api.app import create_application, wsgi_app_of

        app = create_application(self.settings, base_dir=self.base_dir)
        if self.heartbeat_socket is not None:
            from novalite.api.heartbeat_listener import BATCH_WINDOW, HeartbeatListener
            from novalite.domain.heartbeats import AsyncHeartbeats

            HeartbeatListener(self.heartbeat_socket, AsyncHeartbeats(app.engine, BATCH_WINDOW), app.agent_auth,
                              heartbeat_idle_timeout(self.settings)).start_in_thread()
        return wsgi_app_of(app)


def heartbeat_idle_timeout(settings: Settings) -> float:
    """How long a heartbeat connection may idle: over two report intervals, so an agent's connection lasts from
    one heartbeat to the next even when one is late, and at least a minute."""
    return max(60.0, 2.5 * settings.DEFAULT.report_interval)


# novalite's worker (api/http_worker.py) serves one request at a time with the least CPU per request: the default
# with one thread; gunicorn's threaded worker serves --threads requests at once per worker.
WORKER_CLASSES = {"novalite": "novalite.api.http_worker.HttpToolsWorker", "gthread": "gthread"}


def check_schema(settings: Settings) -> None:
    engine = db_engine.make_engine(settings.database.connection)
    try:
        current = db_engine.current_revision(engine)
    finally:
        engine.dispose()
    head = db_engine.head_revision()
    if current != head:
        raise SystemExit(
            f"database schema is at {current or 'nothing'}, code needs {head}: run `novalite db sync` first"
        )


def serve(
    settings: Settings, base_dir: str | None, bind: str, workers: int, threads: int, access_log: bool,
    heartbeat_bind: str = "", worker: str = "novalite",
) -> None:
    check_schema(settings)
    heartbeat_socket = None
    if heartbeat_bind:
        from novalite.api.heartbeat_listener import listening_socket

        try:
            heartbeat_socket = listening_socket(heartbeat_bind)
        except (OSError, ValueError) as error:
            raise SystemExit(f"novalite api: cannot listen for heartbeats on {heartbeat_bind}: {error}") from None
    # The app's modules are imported once, here in the master: a worker forks with them loaded and builds only
    # its app (2 s of CPU less per worker started, and their pages shared). Nothing the import makes holds a
    # connection or a thread.
    import novalite.api.app  # noqa: F401

    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": WORKER_CLASSES[worker],
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 5,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "loglevel": "info",
        "proc_name": "novalite-api",
    }
    GunicornServer(settings, base_dir, options, heartbeat_socket).run()
