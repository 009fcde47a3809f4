"""Engine set-up per backend and the schema commands behind ``novalite db``.

SQLite runs in WAL mode with a busy timeout so several API workers and agents can share one file;
PostgreSQL and MariaDB use the same code through their URLs.

A database that is down or drops connections must cost a request a prompt error (the API answers Nova's 500
fault), never a hang, and the engine must recover alone when the database returns. So every wait is bounded
(connecting, reading a statement's answer, waiting for a pooled connection), and a connection found dead is
replaced: SQLAlchemy invalidates it (and, at the first disconnect error, every connection pooled before it),
and a transaction whose FIRST statement fails with a disconnect is run again once on a new connection. That
retry is safe because nothing of the transaction can have been written: it had not committed, and the server
rolls back what a lost session did. It replaces ``pool_pre_ping``, whose round trip on every checkout costs
more than the hooks of the retry (bench/pre_ping.py). Nothing later in a transaction is retried: the caller
gets the error, as the transaction may already have been committed (a lost answer to COMMIT).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from novalite.config import DatabaseOpts

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

LOG = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

# A server that does not accept a connection within this long is treated as down (libpq's minimum is 2 s).
CONNECT_TIMEOUT = 5
# The longest a statement may wait for its answer (lock waits included), and how soon a server that vanished
# without closing its connections (host down, link cut) is given up on. Under gunicorn's 60 s worker timeout,
# so the client gets a 500 rather than a reset; far over any statement novalite runs (listing 10,000
# services takes tens of milliseconds). Schema migrations run without it.
READ_TIMEOUT = 30
# The pool's defaults ([database] pool_timeout, max_pool_size, max_overflow, connection_recycle_time): the longest
# a request waits for a pooled connection when all are in use; connections kept; more opened when all are busy;
# connections are replaced after an hour, before servers' idle timeouts (MariaDB's wait_timeout) cut them.
POOL_TIMEOUT = DatabaseOpts.pool_timeout
POOL_SIZE = DatabaseOpts.max_pool_size
MAX_OVERFLOW = DatabaseOpts.max_overflow
POOL_RECYCLE = DatabaseOpts.connection_recycle_time
SQLITE_BUSY_TIMEOUT_MS = 10000

# Set in a pooled connection's info when it is checked out, cleared by its first statement.
_FIRST_STATEMENT = "novalite.first_statement"
# The execution option of read_connection's connections: a read in autocommit may be run again.
_READ_ONLY = "novalite_read_only"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _postgresql_connect_args(read_timeout: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if read_timeout:
        # libpq has no read timeout: the server cancels a statement that runs too long, and TCP keepalives
        # (and tcp_user_timeout for unacknowledged writes) notice a server that is gone.
        interval = max(1, read_timeout // 6)
        args.update(options=f"-c statement_timeout={read_timeout * 1000}", keepalives=1,
                    keepalives_idle=read_timeout - 3 * interval, keepalives_interval=interval, keepalives_count=3,
                    tcp_user_timeout=read_timeout * 1000)
    return args


def _mysql_connect_args(read_timeout: int | None) -> dict[str, Any]:
    # The same keywords for mysqlclient and PyMySQL. MariaDB Connector/C, under mysqlclient, gives up a read
    # after read_timeout, as PyMySQL does (Oracle's libmysqlclient would try three times: 3 x read_timeout).
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if read_timeout:
        args.update(read_timeout=read_timeout, write_timeout=read_timeout)
    return args


def connect_args(url: URL, read_timeout: int | None = READ_TIMEOUT) -> dict[str, Any]:
    """The DBAPI connect arguments make_engine adds for ``url``'s backend; what the URL's query sets wins."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        args = _postgresql_connect_args(read_timeout)
    elif backend in ("mysql", "mariadb"):
        args = _mysql_connect_args(read_timeout)
    else:
        args = {}
    return {key: value for key, value in args.items() if key not in url.query}


def engine_for(database: DatabaseOpts) -> Engine:
    """The engine of a process's [database] settings."""
    return make_engine(database.connection, pool_size=database.max_pool_size, max_overflow=database.max_overflow,
                       pool_timeout=database.pool_timeout, pool_recycle=database.connection_recycle_time)


def make_engine(url: str, *, read_timeout: int | None = READ_TIMEOUT, pool_size: int = POOL_SIZE,
                max_overflow: int = MAX_OVERFLOW, pool_timeout: float = POOL_TIMEOUT,
                pool_recycle: int = POOL_RECYCLE) -> Engine:
    """The engine for ``url``; ``read_timeout=None`` lets statements run as long as they need (migrations)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool_args: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # A file's pool is a queue, as a server's; memory has one connection.
            pool_args.update(pool_timeout=pool_timeout, pool_size=pool_size, max_overflow=max_overflow)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **pool_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # The drivers novalite installs. The URL stays an object: str() of a SQLAlchemy URL masks the password.
    # MariaDB gets mysqlclient, the C driver: PyMySQL decodes rows in Python, which doubled the time of listing
    # 1,000 services (23 ms against 11 ms, measured); an explicit mysql+pymysql:// URL still selects PyMySQL.
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername in ("mysql", "mariadb"):
        parsed = parsed.set(drivername="mysql+mysqldb")
    engine = create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout,
                           pool_recycle=pool_recycle, connect_args=connect_args(parsed, read_timeout))
    _retry_first_statement_on_disconnect(engine)
    return engine


# -- the first statement's retry -----------------------------------------------------------------------

def _retry_first_statement_on_disconnect(engine: Engine) -> None:
    # A pool event, not the Connection's "begin": any Connection event switches SQLAlchemy to its slower
    # evented execution path (about 20 µs a transaction, measured), which would cost more than the pre-ping.
    event.listen(engine.pool, "checkout", _note_checkout)
    event.listen(engine, "do_execute", _do_execute)
    event.listen(engine, "do_executemany", _do_executemany)
    event.listen(engine, "do_execute_no_params", _do_execute_no_params)


def _note_checkout(_dbapi_connection, entry, _proxied) -> None:
    # A connection comes out of the pool with no transaction open on the server (the pool rolls back on
    # return), so the next statement on it is a transaction's first. Later transactions of the same checkout
    # (commit, then more statements) are not retried: a connection that just worked is rarely the dead one.
    entry.info[_FIRST_STATEMENT] = True


def _do_execute(cursor, statement, parameters, context) -> bool:
    return _execute(context, lambda cur: context.dialect.do_execute(cur, statement, parameters, context))


def _do_executemany(cursor, statement, parameters, context) -> bool:
    return _execute(context, lambda cur: context.dialect.do_executemany(cur, statement, parameters, context))


def _do_execute_no_params(cursor, statement, context) -> bool:
    return _execute(context, lambda cur: context.dialect.do_execute_no_params(cur, statement, context))


def _execute(context, run) -> bool:
    """Run a statement on the context's cursor; if it is the first since the connection left the pool and the
    connection turns out dead, run it once more on a new connection. True: SQLAlchemy must not run it itself."""
    conn = context.root_connection
    first = _pop_first_statement(conn)
    try:
        run(context.cursor)
    except context.dialect.loaded_dbapi.Error as error:
        if not first or not _retry_allowed(context, error):
            raise
        LOG.warning("database connection lost before the transaction's first statement (%s: %s); reconnecting",
                    type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        try:
            _reconnect(conn, error)
        except context.dialect.loaded_dbapi.Error as connect_error:
            # Still unreachable: fail as the lost connection, which SQLAlchemy then invalidates with the pool.
            raise error from connect_error
        context.cursor = context.create_cursor()
        run(context.cursor)
    return True


def _pop_first_statement(conn: Connection) -> bool:
    try:
        info = conn.info
    except NotImplementedError:  # the dialect's own queries on a new connection, before any checkout
        return False
    return info.pop(_FIRST_STATEMENT, False)


def read_connection(engine: Engine) -> Connection:
    """A connection for reading. On PostgreSQL it runs in autocommit: one round trip a statement instead of three
    (psycopg's BEGIN, the statement, the pool's ROLLBACK), which under load is most of a listing's wait; its
    first statement is still run again on a connection found dead (a read changes nothing). Elsewhere a plain
    connection: MariaDB has no BEGIN to spare, and switching its autocommit costs a round trip each way."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT", **{_READ_ONLY: True})
    return conn


def _retry_allowed(context, error: Exception) -> bool:
    options = context.execution_options
    if options.get("isolation_level") == "AUTOCOMMIT" and not (
            options.get(_READ_ONLY) and not (context.isinsert or context.isupdate or context.isdelete)):
        return False  # the statement commits by itself: it may have been applied
    return context.dialect.is_disconnect(error, context.root_connection.connection.dbapi_connection, context.cursor)


def _reconnect(conn: Connection, error: Exception) -> None:
    """Give the checked-out pool entry a new DBAPI connection in place, as the pool does for a failed
    pre-ping: the Connection and its transaction (which had not started on the server) carry on over it."""
    proxied = conn.connection
    entry = proxied._connection_record  # the pool entry behind the checkout; no public route to it
    entry.invalidate(error)
    proxied.dbapi_connection = entry.get_connection()


# -- schema ---------------------------------------------------------------------------------------------
# alembic is imported by these functions only: the processes that never migrate (agents' control plane side,
# the scheduler) start without it.

def _alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def sync(url: str, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``; running it again changes nothing."""
    from alembic import command

    engine = make_engine(url, read_timeout=None)
    try:
        cfg = _alembic_config(url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
