"""tasks.db without a database: secret parsing, masking, connection keywords."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from ground.redact import REDACTOR
from tasks.db import DbSecretError, connect_params, describe, parse_db_secret

PW = "unit-CANARY-pw-0b7e"
GOOD = {"host": "papyrus-prd.abc.us-west-2.rds.amazonaws.com", "port": 5432,
        "username": "papyrus_app", "password": PW, "dbname": "papyrus", "engine": "postgres"}


def test_good_secret_masks_password_and_registers_it():
    s = parse_db_secret(json.dumps(GOOD), "papyrus/prd/db")
    assert (s.host, s.port, s.username, s.dbname) == (GOOD["host"], 5432, "papyrus_app", "papyrus")
    assert PW not in repr(s) and PW not in str(s) and PW not in json.dumps(s.public())
    assert s.public()["password_present"] is True
    assert REDACTOR.redact(f"x {PW} y") == "x *** y"


def test_port_as_digits_is_accepted():
    assert parse_db_secret(json.dumps({**GOOD, "port": "6543"}), "s").port == 6543


@pytest.mark.parametrize("text, message", [
    (f"not json {PW}", "not valid JSON"),
    ("", "empty"),
    (json.dumps([1, 2]), "expected a JSON object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "password"}), "missing key(s) password"),
    (json.dumps({**GOOD, "port": f"x{PW}"}), "port must be an integer"),
    (json.dumps({**GOOD, "port": 70000}), "port must be an integer"),
    (json.dumps({**GOOD, "port": True}), "port must be an integer"),
    (json.dumps({**GOOD, "host": 5}), "host must be a non-empty string"),
    (json.dumps({**GOOD, "engine": "mysql"}), "engine must be one of"),
])
def test_broken_secret_is_one_line_without_secret_text(text, message):
    with pytest.raises(DbSecretError) as e:
        parse_db_secret(text, "papyrus/prd/db")
    msg = str(e.value)
    assert message in msg and msg.startswith("secret papyrus/prd/db: ")
    assert "\n" not in msg and PW not in msg and "not json" not in msg


def test_connect_params_keep_the_rds_name_and_use_hostaddr():
    s = parse_db_secret(json.dumps(GOOD), "papyrus/prd/db")
    local = SimpleNamespace(db_hostaddr="127.0.0.1", db_ssl_root_cert="")
    p = connect_params(s, local)
    assert p["host"] == GOOD["host"] and p["hostaddr"] == "127.0.0.1"
    assert p["sslmode"] == "require" and "sslrootcert" not in p
    prd = SimpleNamespace(db_hostaddr="", db_ssl_root_cert="/etc/ssl/rds/global-bundle.pem")
    p = connect_params(replace(s), prd, dbname="other")
    assert "hostaddr" not in p and p["sslmode"] == "verify-full" and p["dbname"] == "other"
    assert p["sslrootcert"] == "/etc/ssl/rds/global-bundle.pem"
    assert PW not in describe(s, prd)
