"""``novalite api``: the WSGI app under gunicorn, one app (and database engine) per worker."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from novalite.config import Settings
from novalite.db import engine as db_engine


class GunicornServer(BaseApplication):
    def __init__(self, settings: Settings, base_dir: str | None, options: dict):
        self.settings = settings
        self.base_dir = base_dir
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Called in each worker after the fork: its own app and database engine.
        from novalite.api.app import create_app

        return create_app(self.settings, base_dir=self.base_dir)


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
    settings: Settings, base_dir: str | None, bind: str, workers: int, threads: int, access_log: bool
) -> None:
    check_schema(settings)
    # The app's modules are imported once, here in the master: a worker forks with them loaded and builds only
    # its app (2 s of CPU less per worker started, and their pages shared). Nothing the import makes holds a
    # connection or a thread.
    import novalite.api.app  # noqa: F401

    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 5,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "loglevel": "info",
        "proc_name": "novalite-api",
    }
    GunicornServer(settings, base_dir, options).run()
