"""Reading the DB settings from what ECS injects; errors that never carry a secret."""

import json

import pytest
from papyrus import create_app, db, settings
from support.canaries import CANARY

SECRET = {"host": "db.example.com", "port": 5432, "username": "app", "password": CANARY,
          "dbname": "papyrus"}


def resolve(config=None, **env):
    return settings.resolve(config or {}, env)


@pytest.mark.parametrize("secret", [SECRET, json.dumps(SECRET),
                                    json.dumps({**SECRET, "port": "5432"})])
def test_secret_as_dict_or_json_with_int_or_string_port(secret):
    params = resolve({"DB_SECRET": secret})
    assert params["host"] == "db.example.com" and params["port"] == 5432
    assert params["user"] == "app" and params["password"] == CANARY
    assert params["dbname"] == "papyrus"
    assert params["sslmode"] == "require" and params["connect_timeout"] == 3


def test_pg_variables_when_there_is_no_secret():
    params = resolve(PGHOST="h", PGPORT="6543", PGUSER="u", PGPASSWORD=CANARY, PGDATABASE="d")
    assert (params["host"], params["port"], params["user"], params["dbname"]) == (
        "h", 6543, "u", "d")


def test_pghostaddr_is_left_to_libpq():
    # The sandbox sets PGHOSTADDR=127.0.0.1 with an RDS host name: overriding hostaddr (or
    # resolving host ourselves) would break that, and verify-full would check the wrong name.
    params = resolve({"DB_SECRET": SECRET}, PGHOSTADDR="127.0.0.1")
    assert "hostaddr" not in params and params["host"] == "db.example.com"
    assert "hostaddr" not in resolve(PGHOSTADDR="127.0.0.1")


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "DISABLE", "bogus"])
def test_plaintext_or_unknown_sslmode_is_refused(mode):
    with pytest.raises(settings.ConfigError, match="sslmode"):
        resolve({"DB_SECRET": SECRET}, PGSSLMODE=mode)


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_ssl_modes_that_keep_tls(mode):
    assert resolve({"DB_SECRET": SECRET}, PGSSLMODE=mode)["sslmode"] == mode


def test_rootcert_turns_on_verify_full(tmp_path):
    ca = tmp_path / "rds-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    params = resolve({"DB_SECRET": SECRET}, PGSSLROOTCERT=str(ca))
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == str(ca)
    with pytest.raises(settings.ConfigError, match="sslrootcert file not found"):
        resolve({"DB_SECRET": SECRET}, PGSSLROOTCERT=str(tmp_path / "missing.pem"))


BAD_SECRETS = [
    ('{"host": "h", "password": "' + CANARY + '"', "not valid JSON"),
    ('"' + CANARY + '"', "must be a JSON object"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"host": "h", "password": CANARY}), "missing keys: port, username, dbname"),
    (json.dumps({**SECRET, "port": "54x" + CANARY}), "port is not an integer"),
    (json.dumps({**SECRET, "port": 70000}), "port is out of range"),
    (json.dumps({**SECRET, "password": 12345}), "'password' must be a string"),
]


# Explicit ids: the default ones would print the canary in pytest's own report.
@pytest.mark.parametrize(("secret", "message"), BAD_SECRETS, ids=[m for _, m in BAD_SECRETS])
def test_bad_secret_gives_a_clear_error_without_the_secret(secret, message):
    with pytest.raises(settings.ConfigError) as info:
        resolve({"DB_SECRET": secret})
    assert message in str(info.value)
    assert CANARY not in str(info.value) and "12345" not in str(info.value)
    # `from None`: no chained JSONDecodeError carrying the raw text either.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_nothing_configured_is_a_config_error():
    with pytest.raises(settings.ConfigError, match="no database configured"):
        resolve()


def test_describe_never_shows_the_password():
    text = settings.describe(resolve({"DB_SECRET": SECRET}))
    assert "host=db.example.com" in text and CANARY not in text


def test_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("PAPYRUS_DB_SECRET", json.dumps(SECRET))
    app = create_app()
    assert settings.resolve(app.config)["host"] == "db.example.com"


@pytest.mark.parametrize(("message", "reason", "fatal"), [
    ('failed: FATAL:  password authentication failed for user "u"', "authentication failed",
     True),
    ('failed: FATAL:  database "nope" does not exist', "database does not exist", True),
    ("failed: Connection refused\n\tIs the server running", "connection refused", False),
    ("failed: timeout expired", "timeout", False),
    ('could not translate host name "x" to address', "host not found", False),
    ("FATAL:  the database system is shutting down", "database starting or stopping", False),
    ("server closed the connection unexpectedly", "connection lost", False),
    ('server certificate for "a" does not match host name "b"', "ssl verification failed",
     True),
    ('FATAL:  pg_hba.conf rejects connection for host "h"', "rejected by server", True),
    ("something new", "database error", False),
])
def test_classify_libpq_messages(message, reason, fatal):
    import psycopg2

    assert db.classify(psycopg2.OperationalError(message)) == (reason, fatal)
