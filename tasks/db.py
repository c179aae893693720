"""The database secret and connections to the environment's PostgreSQL (RDS).

The API other flows use (preflight, deploy, schema_init, insert_check):

- ``read_db_secret(sm, secret_id) -> DbSecret`` (Prefect task; ``.fn`` for unit tests): reads
  ``papyrus/prd/db`` from Secrets Manager. The password goes to the log redactor before anything
  else happens with it. A missing or malformed secret is a ``DbSecretError`` whose one-line
  message names the secret and the problem, never any of its text. AWS being unreachable is a
  ``DbSecretUnavailable`` (retried).
- ``parse_db_secret(text, secret_id, default_dbname=None) -> DbSecret``: the same checks on a
  string. Key ``database`` is read as an alias of ``dbname`` (the service reads it too); with
  ``default_dbname`` (preflight and repair) a secret with neither (the shape
  Secrets Manager writes for an RDS database: username, password, engine, host, port,
  dbInstanceIdentifier) gets it (the instance's DBName, docs/runbook.md). Without it (deploy,
  schema: ``read_db_secret``) only ``dbname`` counts, because the service reads only that key.
- ``DbSecret``: host/port/username/password/dbname/engine; its repr masks the password and
  ``public()`` is what may go into evidence (``password_present`` instead of the password).
- ``connect(secret, settings, **kw)`` -> an open psycopg2 connection, always over SSL:
  ``sslmode=require``, or ``verify-full`` with ``sslrootcert`` when the environment ships a CA
  bundle. When ``settings.db_hostaddr`` is set (the sandbox, an SSM port-forward) libpq connects to
  that address while ``host`` (and TLS verification) stays the RDS endpoint name from the secret:
  the secret is never edited. A failure is a ``DbConnectError`` with a one-line reason and a
  ``transient`` flag.
- ``retry_on_connect_error``: a Prefect ``retry_condition_fn`` that retries a task only when it
  failed before anything reached the database (a ``DbConnectError``), so retries stay safe for
  tasks that write.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.log_redaction import REDACTOR  # the process-wide one, log patching armed
from ground.settings import Settings

REQUIRED_KEYS = ("host", "port", "username", "password", "dbname")
DBNAME_KEYS = ("dbname", "database")  # `database`: the alias some writers use


def dbname_key(doc: dict[str, Any]) -> str | None:
    """The key holding the database name (``dbname``, else its alias ``database``), or None."""
    return next((k for k in DBNAME_KEYS if doc.get(k) not in (None, "")), None)
POSTGRES_ENGINES = ("postgres", "postgresql", "aurora-postgresql")


class DbSecretError(ValueError):
    """The DB secret is missing or malformed (bad input). The message never holds its text."""


class DbSecretUnavailable(RuntimeError):
    """Secrets Manager could not be reached or answered with an error worth retrying."""


class DbConnectError(RuntimeError):
    """No session with the database: nothing was sent. `transient` says whether waiting may
    help (refused, timeout, server starting, too many connections); an authentication, TLS or
    missing-database failure is not retried."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


_TRANSIENT = re.compile(
    r"timeout|timed out|connection refused|could not connect|starting up|shutting down"
    r"|recovery mode|too many connections|connection slots are reserved"
    r"|server closed the connection|could not translate host name|name or service not known"
    r"|network is unreachable|no route to host|temporary failure", re.IGNORECASE)


@dataclass(frozen=True)
class DbSecret:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    dbname: str
    engine: str = "postgres"
    secret_id: str = ""
    # Where dbname came from: "dbname", "database" (the alias) or "" (the caller's default).
    dbname_key: str = "dbname"

    def __repr__(self) -> str:
        return (f"DbSecret(secret_id={self.secret_id!r}, host={self.host!r}, port={self.port}, "
                f"username={self.username!r}, password='***', dbname={self.dbname!r})")

    __str__ = __repr__

    def public(self) -> dict[str, Any]:
        """Everything but the password: safe for logs and evidence."""
        return {"secret_id": self.secret_id, "host": self.host, "port": self.port,
                "username": self.username, "dbname": self.dbname, "engine": self.engine,
                "password_present": bool(self.password)}


def parse_db_secret(text: Any, secret_id: str, default_dbname: str | None = None) -> DbSecret:
    """Validate the secret's JSON. Error messages name keys, never values (one line)."""
    where = f"secret {secret_id}"
    if not isinstance(text, str) or not text.strip():
        raise DbSecretError(f"{where}: empty or not a string (expected JSON with "
                            f"{', '.join(REQUIRED_KEYS)})")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        # It may be a bare password pasted in the wrong place: keep it out of every log.
        REDACTOR.add(text.strip())
        raise DbSecretError(f"{where}: not valid JSON (expected an object with "
                            f"{', '.join(REQUIRED_KEYS)})") from None
    if not isinstance(doc, dict):
        raise DbSecretError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    password = doc.get("password")
    if isinstance(password, str) and password:
        REDACTOR.add(password)  # before anything below could print it
    # `database` is read everywhere (the service reads it too); a secret with no database name
    # at all only with a default (preflight/repair: the instance's DBName), because the service
    # would have none — read_db_secret (deploy, schema) refuses it, naming `dbname`.
    db_key = dbname_key(doc)
    missing = [k for k in REQUIRED_KEYS if k != "dbname" and doc.get(k) in (None, "")]
    if db_key is None and not default_dbname:
        missing.append("dbname")
    if missing:
        raise DbSecretError(f"{where}: missing key(s) {', '.join(missing)}")
    dbname = doc[db_key] if db_key else default_dbname
    for key, value in (("host", doc["host"]), ("username", doc["username"]),
                       ("password", password), (db_key or "dbname", dbname)):
        if not isinstance(value, str) or not value.strip():
            raise DbSecretError(f"{where}: key {key} must be a non-empty string")
    port = doc["port"]
    if isinstance(port, str) and re.fullmatch(r"[0-9]{1,5}", port.strip()):
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise DbSecretError(f"{where}: key port must be an integer 1-65535")
    engine = doc.get("engine") or "postgres"
    if not isinstance(engine, str) or engine not in POSTGRES_ENGINES:
        raise DbSecretError(f"{where}: key engine must be one of {', '.join(POSTGRES_ENGINES)}")
    return DbSecret(host=doc["host"].strip(), port=port, username=doc["username"],
                    password=password, dbname=dbname, engine=engine, secret_id=secret_id,
                    dbname_key=db_key or "")


_NOT_RETRYABLE = {
    "ResourceNotFoundException": "not found",
    "AccessDeniedException": "access denied",
    "DecryptionFailure": "cannot be decrypted",
    "InvalidRequestException": "not readable (deleted or scheduled for deletion?)",
    "InvalidParameterException": "invalid secret id",
}


def _failure(state) -> BaseException | None:
    try:
        state.result()
    except BaseException as e:  # noqa: BLE001 - we only look at its type
        return e
    return None


def _retry_unless_bad_secret(task, task_run, state) -> bool:
    return isinstance(_failure(state), DbSecretUnavailable)


@task(name="read-db-secret", retries=2, retry_delay_seconds=[1, 3],
      retry_condition_fn=_retry_unless_bad_secret, cache_policy=NO_CACHE, persist_result=False)
def read_db_secret(sm, secret_id: str) -> DbSecret:
    """The DB secret from Secrets Manager, validated; the password registered for redaction."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        resp = sm.get_secret_value(SecretId=secret_id)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in _NOT_RETRYABLE:
            raise DbSecretError(f"secret {secret_id}: {_NOT_RETRYABLE[code]}") from None
        raise DbSecretUnavailable(f"secret {secret_id}: Secrets Manager error {code}") from None
    except BotoCoreError as e:
        raise DbSecretUnavailable(
            f"secret {secret_id}: Secrets Manager unreachable ({type(e).__name__})") from None
    if "SecretString" not in resp:
        raise DbSecretError(f"secret {secret_id}: has no SecretString (binary secret?)")
    return parse_db_secret(resp["SecretString"], secret_id)


def sslmode(settings: Settings) -> str:
    return "verify-full" if settings.db_ssl_root_cert else "require"


def connect_params(secret: DbSecret, settings: Settings, *, dbname: str | None = None,
                   application_name: str = "papyrus-ops", connect_timeout: int = 5,
                   **extra: Any) -> dict[str, Any]:
    """libpq keywords for `secret` in `settings`' environment (includes the password)."""
    params: dict[str, Any] = {
        "host": secret.host,
        "port": secret.port,
        "user": secret.username,
        "password": secret.password,
        "dbname": dbname or secret.dbname,
        "sslmode": sslmode(settings),
        "connect_timeout": connect_timeout,
        "application_name": application_name,
    }
    if settings.db_ssl_root_cert:
        params["sslrootcert"] = settings.db_ssl_root_cert
    if settings.db_hostaddr:
        params["hostaddr"] = settings.db_hostaddr
    params.update(extra)
    # Always over TLS: no keyword may talk a connection down to plaintext or weaker checks.
    if params.get("sslmode") not in ("require", "verify-ca", "verify-full"):
        raise ValueError(f"sslmode {params.get('sslmode')!r} refused: connections use TLS")
    if settings.db_ssl_root_cert and params["sslmode"] != "verify-full":
        params["sslmode"] = "verify-full"
    return params


def describe(secret: DbSecret, settings: Settings, dbname: str | None = None) -> str:
    """One line for logs: where we connect and how, without the password."""
    via = f" hostaddr={settings.db_hostaddr}" if settings.db_hostaddr else ""
    root = f" sslrootcert={settings.db_ssl_root_cert}" if settings.db_ssl_root_cert else ""
    return (f"host={secret.host}{via} port={secret.port} dbname={dbname or secret.dbname} "
            f"user={secret.username} sslmode={sslmode(settings)}{root}")


def one_line(exc: BaseException) -> str:
    """A driver error as one redacted line (the server's primary message when there is one):
    safe for a log line or a verdict."""
    diag = getattr(exc, "diag", None)
    text = (getattr(diag, "message_primary", None) or str(exc) or "").strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    return REDACTOR.redact(first)


def connect(secret: DbSecret, settings: Settings, **kw: Any):
    """An open psycopg2 connection over SSL (see `connect_params` for the keywords)."""
    import psycopg2

    try:
        return psycopg2.connect(**connect_params(secret, settings, **kw))
    except psycopg2.Error as e:
        reason = one_line(e)
        raise DbConnectError(
            f"cannot connect to {describe(secret, settings, kw.get('dbname'))}: {reason}",
            transient=bool(_TRANSIENT.search(str(e))),
        ) from None


def retry_on_connect_error(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry only failures that happened before any statement was
    sent (a DbConnectError), and only those that waiting may fix."""
    exc = _failure(state)
    return isinstance(exc, DbConnectError) and exc.transient


def ssl_status(cur) -> dict[str, Any]:
    """The server's view of this session's TLS (what psql's `\\conninfo` would tell)."""
    cur.execute("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    row = cur.fetchone() or (None, None, None)
    return {"ssl": row[0] is True, "ssl_version": row[1], "cipher": row[2]}
