"""One SQLAlchemy engine per app, and the few things the service asks of the database.

The engine is created on first use, not in create_app: the app must build (CI lists its URL
map, /healthz answers) with no database at all. Failures are reduced to a short reason
("connection refused", "authentication failed", ...) so that neither a stack trace nor the
DSN ever reaches a response or a log line.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import threading
import time
import weakref

import psycopg2
from flask import Flask, current_app
from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from . import settings

EXTENSION = "papyrus.db"
# A pooled connection idle longer than this is pinged before use (a database restart while
# nobody asked is then noticed without failing a request); busy connections are not.
PING_AFTER_IDLE_S = 1.0

INSERT_SKU = "INSERT INTO skus (sku, name, source) VALUES (%(sku)s, %(name)s, %(source)s)"
SSL_STATUS = (
    "SELECT s.ssl, s.version, current_database() "
    "FROM pg_stat_ssl AS s WHERE s.pid = pg_backend_pid()"
)

# libpq message fragment -> (reason, fatal). "Fatal" means the database rejects our
# configuration: waiting will not fix it, so the service must not start. First match wins;
# the transient SSL EOF must be tested before the certificate errors.
_REASONS: tuple[tuple[re.Pattern, str, bool], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason, fatal)
    for pattern, reason, fatal in (
        (r"timeout expired|timed out", "timeout", False),
        (r"connection refused|no such file or directory", "connection refused", False),
        (r"could not translate host name|name or service not known", "host not found", False),
        (r"starting up|shutting down|recovery mode", "database starting or stopping", False),
        (r"too many connections|connection slots are reserved", "too many connections", False),
        (r"server closed the connection|terminating connection|ssl syscall error|eof detected"
         r"|connection already closed|closed unexpectedly", "connection lost", False),
        (r"password authentication failed|no password supplied|authentication failed"
         r'|role ".*" does not exist', "authentication failed", True),
        (r'database ".*" does not exist', "database does not exist", True),
        (r"pg_hba\.conf", "rejected by server", True),
        (r"certificate|does not match host name", "ssl verification failed", True),
        (r"does not support ssl", "ssl unavailable", True),
        (r"invalid .* value|invalid connection option", "configuration error", True),
    )
)


class DatabaseUnavailable(RuntimeError):
    """The database could not serve a request; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"database unavailable: {reason}")
        self.reason = reason


class DatabaseRejected(RuntimeError):
    """The database refuses our configuration at startup: fail the boot (exit 3)."""


def classify(exc: BaseException) -> tuple[str, bool]:
    """(short reason, fatal) for a database failure, without the message's details."""
    if isinstance(exc, settings.ConfigError):
        return "configuration error", True
    if isinstance(exc, sa_exc.TimeoutError):  # no free pooled connection
        return "timeout", False
    orig = getattr(exc, "orig", None) or exc
    pgcode = getattr(orig, "pgcode", None)
    if pgcode == "42P01":
        return "schema missing", False
    if pgcode == "57014":  # statement_timeout
        return "timeout", False
    text = str(orig)
    for pattern, reason, fatal in _REASONS:
        if pattern.search(text):
            return reason, fatal
    return "database error", False


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = {"lock": threading.Lock(), "engine": None}
    # Flask has no app-shutdown hook; gunicorn's worker_exit calls dispose_engine too.
    atexit.register(_dispose_ref, weakref.ref(app))


def get_engine(app: Flask | None = None) -> Engine:
    app = app or current_app
    state = app.extensions[EXTENSION]
    with state["lock"]:  # gthread workers: two first requests must not build two pools
        if state["engine"] is None:
            engine = create_engine(
                "postgresql+psycopg2://",  # everything goes in connect_args, not in a URL
                connect_args=settings.resolve(app.config),
                # One pooled connection per gthread request thread: with fewer, each request
                # beyond the pool opened (and closed) a new TLS connection (docs/benchmarks.md).
                pool_size=int(os.environ.get("PAPYRUS_THREADS", "4")),
                max_overflow=2,
                pool_timeout=5,
                pool_recycle=1800,
            )
            event.listen(engine, "connect", _remember_ssl_status)
            event.listen(engine, "checkout", _ping_if_idle)
            event.listen(engine, "checkin", _mark_used)
            state["engine"] = engine
        return state["engine"]


def _remember_ssl_status(dbapi_connection, connection_record) -> None:
    # A session's SSL state cannot change: ask once per connection, not once per request.
    with dbapi_connection.cursor() as cur:
        cur.execute(SSL_STATUS)
        connection_record.info["ssl_status"] = cur.fetchone()
    dbapi_connection.rollback()
    connection_record.info["used_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, connection_record, connection_proxy) -> None:
    # SQLAlchemy's pool_pre_ping costs a round trip on every request. Instead: a connection
    # in steady use proves itself, unless the server spoke while nobody asked (a shutdown's
    # "terminating connection" or the TCP close makes the idle socket readable: one syscall,
    # no round trip); one that sat idle is pinged. DisconnectionError makes the pool drop
    # it and check out a fresh one (SQLAlchemy's documented pessimistic recipe).
    idle = time.monotonic() - connection_record.info.get("used_at", 0.0)
    if idle < PING_AFTER_IDLE_S and not _server_spoke(dbapi_connection):
        return
    try:
        with dbapi_connection.cursor() as cur:
            cur.execute("SELECT 1")
        dbapi_connection.rollback()
    except psycopg2.Error:
        raise sa_exc.DisconnectionError("stale pooled connection") from None


def _server_spoke(dbapi_connection) -> bool:
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return True
    return bool(readable)


def _mark_used(dbapi_connection, connection_record) -> None:
    connection_record.info["used_at"] = time.monotonic()


def dispose_engine(app: Flask) -> None:
    state = app.extensions.get(EXTENSION)
    if state and state["engine"] is not None:
        with state["lock"]:
            state["engine"].dispose()
            state["engine"] = None


def _dispose_ref(ref: weakref.ref) -> None:
    app = ref()
    if app is not None:
        dispose_engine(app)


def insert_sku(sku: str, name: str, source: str) -> dict:
    """Insert one row; return the real command tag and the session's SSL state."""
    try:
        engine = get_engine()
        conn = engine.raw_connection()  # the pooled psycopg2 connection
    except (settings.ConfigError, sa_exc.SQLAlchemyError, psycopg2.Error) as exc:
        raise _unavailable(exc) from None
    try:
        # One statement in autocommit: no BEGIN/COMMIT round trips. The driver connection
        # goes back to the pool in its default mode (schema.py relies on transactions).
        conn.driver_connection.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(INSERT_SKU, {"sku": sku, "name": name, "source": source})
                tag = cur.statusmessage  # "INSERT 0 1", as psql would print
        finally:
            if not conn.driver_connection.closed:
                conn.driver_connection.autocommit = False
        ssl, ssl_version, dbname = conn.info["ssl_status"]
    except psycopg2.Error as exc:
        if conn.driver_connection.closed:
            # The server went away: this connection is dead, and so are its pool siblings.
            conn.invalidate()
            engine.dispose()
        raise _unavailable(exc) from None
    finally:
        conn.close()  # back to the pool (a no-op once invalidated)
    return {"result": tag, "sku": sku, "ssl": bool(ssl), "ssl_version": ssl_version, "db": dbname}


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    reason, _ = classify(exc)
    current_app.logger.warning("database unavailable (%s)", reason)
    return DatabaseUnavailable(reason)


def startup_check(app: Flask) -> None:
    """Connect once. Raise on a configuration the database rejects; warn on an outage."""
    try:
        params = settings.resolve(app.config)
        conn = psycopg2.connect(**params)
        conn.close()
    except (settings.ConfigError, psycopg2.Error) as exc:
        reason, fatal = classify(exc)
        if isinstance(exc, settings.ConfigError):
            reason = str(exc)  # written to be safe to show, and more useful than the class
        if fatal:
            app.logger.error("database rejected the configuration: %s", reason)
            raise DatabaseRejected(f"database rejected the configuration: {reason}") from None
        app.logger.warning("database unreachable at startup (%s); starting anyway", reason)
        return
    app.logger.info("database check ok: %s", settings.describe(params))
