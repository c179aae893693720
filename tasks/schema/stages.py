"""init.sql in two explicit stages: a dry run inside BEGIN ... ROLLBACK, then the apply inside
BEGIN ... COMMIT (the seed's 2025-10-21 procedure; "init.sql is production data").

- ``execute_dry_run`` / ``execute_apply`` run a `Script` (tasks.schema.script) on an open
  connection, each statement on its own so that every command tag and error is numbered.
- ``schema_dry_run`` / ``schema_apply`` (Prefect tasks; ``.fn`` for tests) open the connection
  and return plain dicts, including ``log``: the text of ``*_schema_dryrun_exec.log`` /
  ``*_schema_apply_exec.log``.

Both stages take ``pg_try_advisory_xact_lock(SCHEMA_LOCK_KEY)`` first: another run holding it is a
clear ``lock_held`` outcome at once, never a wait. ``lock_timeout`` bounds every other wait. The
apply records the script's checksum in ``papyrus_schema_migrations`` in the same transaction; the
same checksum again is a no-op, a different one over an applied script is refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.redact import REDACTOR
from ground.settings import Settings
from tasks.db import DbSecret, connect, describe, one_line, retry_on_connect_error, ssl_status
from tasks.schema.script import Script

MIGRATIONS_TABLE = "papyrus_schema_migrations"
# A fixed key for pg_try_advisory_xact_lock: "PAPYRUS\x01" as a signed bigint.
SCHEMA_LOCK_KEY = int.from_bytes(b"PAPYRUS\x01", "big", signed=True)
LOCK_TIMEOUT = "5s"  # any other lock (an app holding skus) fails the stage instead of hanging
STATEMENT_TIMEOUT = "5min"

MIGRATIONS_DDL = f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    checksum    text        PRIMARY KEY CHECK (checksum ~ '^[0-9a-f]{{64}}$'),
    script_name text        NOT NULL,
    statements  integer     NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text        NOT NULL
)"""


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        self.lines.append(REDACTOR.redact(line))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header(log: _Log, title: str, script: Script, where: str) -> None:
    log(f"-- papyrus-ops schema_init: {title}")
    log(f"-- script: {script.name} ({len(script.statements)} statements, {len(script.data)} bytes)")
    log(f"-- sha256: {script.sha256}")
    log(f"-- connection: {where}")
    log(f"-- started: {_now()}")


def _session_line(log: _Log, cur) -> dict[str, Any]:
    ssl = ssl_status(cur)
    cur.execute("SELECT current_user, current_database(), current_setting('server_version')")
    user, db, version = cur.fetchone()
    log(f"-- session: user={user} database={db} server={version} ssl={str(ssl['ssl']).lower()} "
        f"{ssl['ssl_version']} {ssl['cipher']}")
    return {**ssl, "db_user": user, "database": db, "server_version": version}


def _begin(log: _Log, cur) -> bool:
    """BEGIN (psycopg2 opens the transaction with the first statement), timeouts, the lock."""
    log("BEGIN")
    cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    cur.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
    cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
    got = cur.fetchone()[0] is True
    log(f"SELECT pg_try_advisory_xact_lock({SCHEMA_LOCK_KEY}) -> {str(got).lower()}")
    return got


def _applied(cur) -> list[dict[str, Any]]:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,))
    if not cur.fetchone()[0]:
        return []
    cur.execute(f"SELECT checksum, script_name, statements, applied_at, applied_by "  # noqa: S608
                f"FROM {MIGRATIONS_TABLE} ORDER BY applied_at")
    return [{"checksum": r[0], "script_name": r[1], "statements": r[2],
             "applied_at": r[3].isoformat(), "applied_by": r[4]} for r in cur.fetchall()]


def _flush_notices(log: _Log, conn) -> None:
    for notice in conn.notices:
        log(notice.strip())
    conn.notices.clear()


def _run_statements(log: _Log, conn, cur, script: Script) -> tuple[list[dict], dict | None]:
    """Each statement with its command tag; stops at the first error and describes it."""
    import psycopg2

    done: list[dict] = []
    total = len(script.statements)
    for st in script.statements:
        log(f"[{st.number}/{total}] line {st.line}: {st.first_line}")
        t0 = time.perf_counter()
        try:
            cur.execute(st.text)
        except psycopg2.Error as e:
            _flush_notices(log, conn)
            pos = getattr(getattr(e, "diag", None), "statement_position", None)
            at = st.line_at(int(pos)) if pos and str(pos).isdigit() else st.line
            err = one_line(e)
            log(f"ERROR:  {err}")
            log(f"        (SQLSTATE {e.pgcode or '?'}, statement {st.number}, line {at})")
            return done, {"number": st.number, "line": st.line, "error_line": at,
                          "first_line": st.first_line, "error": err, "sqlstate": e.pgcode,
                          "message": f"statement {st.number} (line {st.line}: "
                                     f"{st.first_line}) failed at line {at}: {err}"}
        _flush_notices(log, conn)
        ms = round((time.perf_counter() - t0) * 1000, 1)
        log(f"{cur.statusmessage}  ({ms} ms)")
        done.append({"number": st.number, "line": st.line, "tag": cur.statusmessage, "ms": ms})
    return done, None


def _result(stage: str, script: Script, log: _Log, **fields: Any) -> dict[str, Any]:
    res = {"stage": stage, "checksum": script.sha256, "script": script.name,
           "statements": len(script.statements), "ok": False, "outcome": "failed",
           "error": None, "failed_statement": None, "tags": [], "executed": [],
           "applied": [], "session": {}}
    res.update(fields)
    res["tags"] = [d["tag"] for d in res["executed"]]
    log(f"-- finished: {_now()}")
    log(f"-- result: {res['outcome'].upper()}")
    if res["error"]:
        log(f"-- reason: {res['error']}")
    res["log"] = log.text()
    return res


def _lock_message(dbname: str) -> str:
    return (f"another schema_init holds the schema lock (pg advisory lock {SCHEMA_LOCK_KEY}) on "
            f"database {dbname}; nothing was run — retry when it has finished")


def execute_dry_run(conn, script: Script, where: str = "") -> dict[str, Any]:
    """Stage 1 on an open connection: the script inside BEGIN ... ROLLBACK."""
    log = _Log()
    _header(log, "DRY RUN (BEGIN ... ROLLBACK: nothing is kept)", script, where)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            session = _session_line(log, cur)
            conn.rollback()  # the session queries opened a transaction: start clean
            if not _begin(log, cur):
                conn.rollback()
                log("ROLLBACK")
                return _result("dryrun", script, log, outcome="lock_held", session=session,
                               error=_lock_message(session["database"]))
            applied = _applied(cur)
            for a in applied:
                same = a["checksum"] == script.sha256
                log(f"-- applied before: {a['checksum']} ({a['script_name']}) at "
                    f"{a['applied_at']} by {a['applied_by']}"
                    + (" = this script: the apply will be a no-op" if same else
                       " != this script: the apply will be refused"))
            executed, failure = _run_statements(log, conn, cur, script)
            conn.rollback()
            log("ROLLBACK")
    except BaseException:
        conn.rollback()
        raise
    if failure:
        return _result("dryrun", script, log, executed=executed, applied=applied,
                       session=session, failed_statement=failure, error=failure["message"])
    return _result("dryrun", script, log, ok=True, outcome="passed", executed=executed,
                   applied=applied, session=session)


def execute_apply(conn, script: Script, passed_checksum: str | None, applied_by: str,
                  where: str = "") -> dict[str, Any]:
    """Stage 2 on an open connection: the script inside BEGIN ... COMMIT, recorded."""
    log = _Log()
    _header(log, "APPLY (BEGIN ... COMMIT)", script, where)
    if passed_checksum != script.sha256:
        msg = (f"refused: the script's sha256 {script.sha256[:12]}... did not pass a dry run in "
               f"this run" + (f" (the dry run passed {passed_checksum[:12]}...)"
                              if passed_checksum else ""))
        return _result("apply", script, log, outcome="refused", error=msg)
    import psycopg2

    conn.autocommit = False
    executed: list[dict] = []
    try:
        with conn.cursor() as cur:
            session = _session_line(log, cur)
            conn.rollback()
            if not _begin(log, cur):
                conn.rollback()
                log("ROLLBACK")
                return _result("apply", script, log, outcome="lock_held", session=session,
                               error=_lock_message(session["database"]))
            applied = _applied(cur)
            if any(a["checksum"] == script.sha256 for a in applied):
                a = next(a for a in applied if a["checksum"] == script.sha256)
                conn.rollback()
                log(f"-- already applied: {a['checksum']} at {a['applied_at']} by "
                    f"{a['applied_by']}: no-op, nothing executed")
                log("ROLLBACK")
                return _result("apply", script, log, ok=True, outcome="noop", applied=applied,
                               session=session)
            if applied:
                last = applied[-1]
                conn.rollback()
                msg = (f"refused: {last['script_name']} with sha256 {last['checksum'][:12]}... "
                       f"was applied at {last['applied_at']}; this script "
                       f"({script.sha256[:12]}...) differs. init.sql is production data: "
                       f"change the schema with a reviewed migration, not by re-running init.sql")
                log(f"-- {msg}")
                log("ROLLBACK")
                return _result("apply", script, log, outcome="refused", applied=applied,
                               session=session, error=msg)
            cur.execute(MIGRATIONS_DDL)
            log(f"-- bookkeeping: {MIGRATIONS_DDL.splitlines()[0]} ...")
            log(cur.statusmessage)
            executed, failure = _run_statements(log, conn, cur, script)
            if failure:
                conn.rollback()
                log("ROLLBACK")
                return _result("apply", script, log, executed=executed, session=session,
                               failed_statement=failure, error=failure["message"])
            cur.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (checksum, script_name, statements, "  # noqa: S608
                f"applied_by) VALUES (%s, %s, %s, %s) RETURNING applied_at",
                (script.sha256, script.name, len(script.statements), applied_by))
            applied_at = cur.fetchone()[0].isoformat()
            log(f"-- recorded: {script.sha256} in {MIGRATIONS_TABLE} by {applied_by}")
            log(cur.statusmessage)
            try:
                conn.commit()
            except psycopg2.Error as e:
                log(f"ERROR:  COMMIT failed: {one_line(e)}")
                return _result("apply", script, log, executed=executed, session=session,
                               error=f"COMMIT failed ({one_line(e)}): run the apply again — it "
                                     f"is a no-op if the commit went through")
            log("COMMIT")
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    return _result("apply", script, log, ok=True, outcome="applied", executed=executed,
                   applied=[{"checksum": script.sha256, "script_name": script.name,
                             "statements": len(script.statements), "applied_at": applied_at,
                             "applied_by": applied_by}], session=session,
                   applied_at=applied_at, applied_by=applied_by)


def _with_connection(secret: DbSecret, settings: Settings, database: str | None, fn, *args):
    where = describe(secret, settings, database)
    conn = connect(secret, settings, dbname=database, application_name="papyrus-ops schema_init")
    try:
        return fn(conn, *args, where=where)
    finally:
        conn.close()


@task(name="schema-dry-run", retries=2, retry_delay_seconds=[1, 4],
      retry_condition_fn=retry_on_connect_error, cache_policy=NO_CACHE, persist_result=False)
def schema_dry_run(secret: DbSecret, settings: Settings, script: Script,
                   database: str | None = None) -> dict[str, Any]:
    """Stage 1: run `script` inside BEGIN ... ROLLBACK; `outcome` passed/failed/lock_held."""
    return _with_connection(secret, settings, database, execute_dry_run, script)


@task(name="schema-apply", retries=2, retry_delay_seconds=[1, 4],
      retry_condition_fn=retry_on_connect_error, cache_policy=NO_CACHE, persist_result=False)
def schema_apply(secret: DbSecret, settings: Settings, script: Script,
                 passed_checksum: str | None, applied_by: str,
                 database: str | None = None) -> dict[str, Any]:
    """Stage 2: only for the checksum that passed the dry run; `outcome` applied/noop/refused/
    failed/lock_held."""
    if passed_checksum != script.sha256:  # the gate: refused before any connection
        return execute_apply(None, script, passed_checksum, applied_by,
                             where=describe(secret, settings, database))
    return _with_connection(secret, settings, database, execute_apply, script, passed_checksum,
                            applied_by)
