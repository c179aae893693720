"""One SQLAlchemy engine per app, and the few things the service asks of the database.

The engine is created on first use, not in create_app: the app must build (CI lists its URL
map, /healthz answers) with no database at all. Failures are reduced to a short reason
("connection refused", "authentication failed", ...) so that neither a stack trace nor the
DSN ever reaches a response or a log line.
"""

from __future__ import annotations

import atexit
import re
import threading
import weakref

import psycopg2
from flask import Flask, current_app
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from . import settings

EXTENSION = "papyrus.db"

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
         r"|connection already closed", "connection lost", False),
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
            state["engine"] = create_engine(
                "postgresql+psycopg2://",  # everything goes in connect_args, not in a URL
                connect_args=settings.resolve(app.config),
                pool_size=2,
                max_overflow=2,
                pool_timeout=5,
                pool_pre_ping=True,  # a restarted database is noticed before a request fails
                pool_recycle=1800,
            )
        return state["engine"]


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
        with get_engine().begin() as conn:
            result = conn.exec_driver_sql(INSERT_SKU, {"sku": sku, "name": name, "source": source})
            tag = result.context.cursor.statusmessage  # "INSERT 0 1", as psql would print
            ssl, ssl_version, dbname = conn.exec_driver_sql(SSL_STATUS).one()
    except (settings.ConfigError, sa_exc.SQLAlchemyError, psycopg2.Error) as exc:
        reason, _ = classify(exc)
        current_app.logger.warning("database unavailable (%s)", reason)
        raise DatabaseUnavailable(reason) from None
    return {"result": tag, "sku": sku, "ssl": bool(ssl), "ssl_version": ssl_version, "db": dbname}


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
