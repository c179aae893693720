"""The CLI insert route (seed 2025-10-21): psycopg2 straight to the database over SSL, one
``SKU-CLI-...`` row, the real command tag and the server's view of the session's TLS.

Reused by the deploy flow after its app probe:

    row = insert_cli_row(secret, settings)            # Prefect task -> plain dict
    bundle.write_text("papyrus_psql_insert_cli", format_insert_log(row), ext="log")

``insert_cli_row`` never raises for a database answer (a missing table, a constraint): it
returns ``ok=False`` with a one-line ``error``. It raises ``DbConnectError`` only when no session
could be opened — then nothing was sent, and Prefect retries it (a retry never double-inserts).
"""

from __future__ import annotations

import contextlib
import secrets as _secrets
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.settings import Settings
from tasks.db import DbSecret, connect, describe, one_line, retry_on_connect_error, ssl_status

INSERT_SQL = "INSERT INTO skus (sku, name, source) VALUES (%s, %s, 'cli')"
SSL_SQL = "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
EXPECTED_TAG = "INSERT 0 1"


def new_cli_sku(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"SKU-CLI-{now:%Y%m%dT%H%M%SZ}-{_secrets.token_hex(4)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def base_record(secret: DbSecret, settings: Settings, sku: str,
                name: str = "papyrus-ops insert-check", database: str | None = None,
                error: str | None = None) -> dict[str, Any]:
    """The record `insert_cli_row` fills in; with `error`, the record of an attempt that never
    reached the database (for the evidence log when the task itself failed)."""
    return {
        "sku": sku, "source": "cli", "name": name, "tag": None, "ssl": False,
        "ssl_version": None, "cipher": None, "database": database or secret.dbname,
        "db_user": secret.username, "server_version": None,
        "connection": describe(secret, settings, database), "sql": INSERT_SQL,
        "started_at": _now(), "finished_at": _now() if error else None, "committed": False,
        "ok": False, "error": error,
    }


def _session_facts(cur, rec: dict[str, Any]) -> None:
    rec.update(ssl_status(cur))
    cur.execute("SELECT current_database(), current_setting('server_version')")
    rec["database"], rec["server_version"] = cur.fetchone()


@task(name="insert-cli-row", retries=2, retry_delay_seconds=[1, 4],
      retry_condition_fn=retry_on_connect_error, cache_policy=NO_CACHE, persist_result=False)
def insert_cli_row(secret: DbSecret, settings: Settings, sku: str | None = None,
                   name: str = "papyrus-ops insert-check", database: str | None = None
                   ) -> dict[str, Any]:
    """Insert one `SKU-CLI-...` row (source 'cli') and read the session's SSL state.

    Returns {sku, source, name, tag, ssl, ssl_version, cipher, database, db_user,
    server_version, connection, sql, started_at, finished_at, committed, ok, error, log};
    `ok` is tag == "INSERT 0 1" and ssl true; `log` is `format_insert_log(record)`, the text of
    `*_papyrus_psql_insert_cli.log`.
    """
    import psycopg2

    rec = base_record(secret, settings, sku or new_cli_sku(), name, database)
    conn = connect(secret, settings, dbname=database,
                   application_name="papyrus-ops insert-check")
    try:
        try:
            with conn.cursor() as cur:
                cur.execute(INSERT_SQL, (rec["sku"], name))
                rec["tag"] = cur.statusmessage
                _session_facts(cur, rec)
            conn.commit()
            rec["committed"] = True
        except psycopg2.Error as e:
            conn.rollback()
            rec["error"] = one_line(e)
            if getattr(e, "pgcode", None) == "42P01":
                rec["error"] += " (is the schema applied? papyrus-ops schema-init --apply)"
            with contextlib.suppress(psycopg2.Error), conn.cursor() as cur:
                _session_facts(cur, rec)  # the TLS facts still help whoever reads the log
                conn.rollback()
    finally:
        conn.close()
    rec["finished_at"] = _now()
    if rec["error"] is None:
        problems = []
        if rec["tag"] != EXPECTED_TAG:
            problems.append(f"command tag {rec['tag']!r}, expected {EXPECTED_TAG!r}")
        if rec["ssl"] is not True:
            problems.append("session is not SSL (pg_stat_ssl.ssl is not true)")
        rec["error"] = "; ".join(problems) or None
    rec["ok"] = rec["error"] is None
    rec["log"] = format_insert_log(rec)
    return rec


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _shown_insert(rec: dict[str, Any]) -> str:
    """The INSERT as psql would echo it (display only; the real one is parameterised)."""
    values = f"({_literal(rec['sku'])}, {_literal(rec['name'])}, 'cli')"
    return "INSERT INTO skus (sku, name, source) VALUES " + values  # noqa: S608


def format_insert_log(rec: dict[str, Any]) -> str:
    """`*_papyrus_psql_insert_cli.log`: what a psql session would have shown, plus the verdict."""
    ssl = "t" if rec.get("ssl") else "f"
    lines = [
        "-- papyrus-ops insert-check: CLI route (psycopg2 direct, one transaction)",
        f"-- connection: {rec['connection']}",
        f"-- server: {rec.get('server_version') or '?'}  database: {rec['database']}  "
        f"user: {rec['db_user']}",
        f"-- started: {rec['started_at']}",
        f"{rec['database']}=> {_shown_insert(rec)};",
    ]
    lines.append(rec["tag"] if rec.get("tag") else f"ERROR:  {rec.get('error') or '?'}")
    if rec.get("ssl_version") or rec.get("ssl"):
        lines += [
            f"{rec['database']}=> {SSL_SQL};",
            " ssl | version | cipher",
            f" {ssl}   | {rec.get('ssl_version') or ''} | {rec.get('cipher') or ''}",
            "(1 row)",
        ]
    lines += [
        "COMMIT" if rec.get("committed") else "ROLLBACK",
        f"-- finished: {rec.get('finished_at') or '?'}",
        f"-- command tag: {rec.get('tag') or '-'}",
        f"-- ssl: {str(bool(rec.get('ssl'))).lower()} ({rec.get('ssl_version') or '-'}, "
        f"{rec.get('cipher') or '-'})",
        f"-- sku: {rec['sku']} (source cli)",
        f"-- verdict: {'success' if rec.get('ok') else 'failed'}"
        + (f" ({rec['error']})" if rec.get("error") else ""),
    ]
    return "\n".join(lines) + "\n"
