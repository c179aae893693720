"""Database connection settings, read the way ECS hands them to the container.

Sources, first match wins:
1. ``DATABASE`` in the app config: libpq keywords (host, port, user, password, dbname, ...).
2. ``DB_SECRET`` in the app config (``PAPYRUS_DB_SECRET`` from the environment): the Secrets
   Manager JSON ``{"host", "port", "username", "password", "dbname"}`` (``database`` is read as
   ``dbname``), as a string or a dict.
3. The libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.

Error messages name keys and positions only: never a value, never the raw secret text,
because they end up in gunicorn's log and in ECS stopped-task reasons.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

SECRET_KEYS = ("host", "port", "username", "password", "dbname")
PG_ENV = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user",
          "PGPASSWORD": "password", "PGDATABASE": "dbname"}
# Modes that may end up in plaintext. RDS has rds.force_ssl=1, so plaintext can only fail
# later and less clearly; refuse it up front.
PLAINTEXT_MODES = {"disable", "allow", "prefer"}
SSL_MODES = {"require", "verify-ca", "verify-full"}


class ConfigError(RuntimeError):
    """Settings the database can never accept. The message is safe to log."""


def _from_secret(secret: str | Mapping) -> dict:
    if isinstance(secret, str):
        try:
            secret = json.loads(secret)
        except json.JSONDecodeError as exc:
            # `from None`: the decode error carries the raw text (exc.doc).
            raise ConfigError(
                f"database secret is not valid JSON (line {exc.lineno}, column {exc.colno})"
            ) from None
    if not isinstance(secret, Mapping):
        raise ConfigError("database secret must be a JSON object")
    if secret.get("dbname") in (None, "") and secret.get("database") not in (None, ""):
        # `database`: the key some secret writers use for the database name.
        secret = {**secret, "dbname": secret["database"]}
    missing = [k for k in SECRET_KEYS if secret.get(k) in (None, "")]
    if missing:
        raise ConfigError(f"database secret is missing keys: {', '.join(missing)}")
    for key in ("host", "username", "password", "dbname"):
        if not isinstance(secret[key], str):
            raise ConfigError(f"database secret key {key!r} must be a string")
    return {
        "host": secret["host"],
        "port": secret["port"],
        "user": secret["username"],
        "password": secret["password"],
        "dbname": secret["dbname"],
    }


def _from_pg_env(environ: Mapping[str, str]) -> dict:
    params = {key: environ[var] for var, key in PG_ENV.items() if environ.get(var)}
    # PGHOSTADDR alone is a valid target; libpq reads it itself, so it is not copied here.
    if "host" not in params and not environ.get("PGHOSTADDR"):
        raise ConfigError("no database configured: set PAPYRUS_DB_SECRET or PGHOST")
    return params


def _port(value) -> int:
    # Secrets Manager JSON has the port as a number or as a string, depending on who wrote it.
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ConfigError("database port is not an integer") from None
    if not 0 < port < 65536:
        raise ConfigError("database port is out of range")
    return port


def resolve(config: Mapping, environ: Mapping[str, str] | None = None) -> dict:
    """libpq keyword arguments for psycopg2.connect. Holds the password: never log it.

    ``hostaddr`` is never set here, so libpq's own PGHOSTADDR keeps working (an SSM
    port-forward: the certificate is checked against ``host``, the socket goes to hostaddr).
    """
    environ = os.environ if environ is None else environ
    if config.get("DATABASE"):
        params = dict(config["DATABASE"])
    elif config.get("DB_SECRET"):
        params = _from_secret(config["DB_SECRET"])
    else:
        params = _from_pg_env(environ)
    if "port" in params:
        params["port"] = _port(params["port"])

    rootcert = params.get("sslrootcert") or environ.get("PGSSLROOTCERT")
    sslmode = (params.get("sslmode") or environ.get("PGSSLMODE") or "require").strip().lower()
    if sslmode in PLAINTEXT_MODES:
        raise ConfigError(f"sslmode={sslmode} may connect without SSL; use require or verify-full")
    if sslmode not in SSL_MODES:
        raise ConfigError("sslmode must be one of require, verify-ca, verify-full")
    if rootcert:
        # A root certificate is only worth shipping if the host name is checked too.
        # "system" is libpq's own keyword for the OS trust store (libpq >= 16).
        if rootcert != "system" and not os.path.isfile(rootcert):
            raise ConfigError(f"sslrootcert file not found: {rootcert}")
        params["sslrootcert"] = rootcert
        sslmode = "verify-full"
    params["sslmode"] = sslmode
    params.setdefault("connect_timeout", int(config.get("DB_CONNECT_TIMEOUT", 3)))
    params.setdefault("application_name", "papyrus")
    # A hung query must not pin one of the few request threads forever.
    params.setdefault("options", "-c statement_timeout=5000")
    return params


def describe(params: Mapping) -> str:
    """A loggable one-liner: where we connect, never with what password."""
    keys = ("host", "port", "dbname", "user", "sslmode")
    return " ".join(f"{k}={params[k]}" for k in keys if params.get(k) not in (None, ""))
