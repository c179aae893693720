"""The real process: gunicorn with the startup check, as the Dockerfile and the sandbox run it.

A configuration the database rejects must crash the boot with exit code 3 (gunicorn's
WORKER_BOOT_ERROR), the way a drifted secret crashed the task in the seed's incident; an
unreachable database must not. No password ever appears in what gunicorn prints.
"""

import json
import socket

import pytest
from papyrus import create_app, db
from support.canaries import CANARY, TOKEN, auth

WRONG_PW = "CANARY-wrong-pw-91d2"


def env_for(secret) -> dict[str, str]:
    text = secret if isinstance(secret, str) else json.dumps(secret)
    return {"PAPYRUS_DB_SECRET": text, "PAPYRUS_DB_STARTUP_CHECK": "1"}


def assert_no_secrets(text: str) -> None:
    for secret in (CANARY, WRONG_PW, TOKEN):
        assert secret not in text


def test_rejected_configuration_exits_3(pg, gunicorn):
    # The check runs in gunicorn's master before any worker forks, so the exit code is 3
    # whatever the worker count (the Dockerfile runs 2; with 2 workers failing in the workers,
    # gunicorn 27 sometimes exited 1).
    started = [  # all boot in parallel
        ("authentication failed", 2, {**pg.secret_dict(), "password": WRONG_PW}),
        ("database does not exist", 2, {**pg.secret_dict(), "dbname": "drifted"}),
        ("database does not exist", 1, {**pg.secret_dict(), "dbname": "drifted"}),
        ("authentication failed", 4, {**pg.secret_dict(), "password": WRONG_PW}),
    ]
    procs = [(reason, gunicorn(env_for(secret) | {"PAPYRUS_WORKERS": str(workers)}))
             for reason, workers, secret in started]
    for reason, g in procs:
        assert g.wait_exit() == 3, reason
        out = g.output()
        assert f"database rejected the configuration: {reason}" in out
        assert_no_secrets(out)


# Same exception path as above, so checked in-process: a real gunicorn costs seconds.
@pytest.mark.parametrize(("config", "env", "message"), [
    ({"DB_SECRET": '{"host": "h", "password": "' + CANARY + '", '}, {}, "not valid JSON"),
    ({"DB_SECRET": {"host": "h", "password": CANARY}}, {}, "missing keys"),
    ({}, {"PGSSLMODE": "disable"}, "sslmode=disable may connect without SSL"),
    ({}, {}, "no database configured"),
], ids=["malformed", "missing-keys", "sslmode-disable", "nothing"])
def test_startup_check_refuses_bad_configuration(pg, monkeypatch, caplog, config, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app({"DB_SECRET": pg.secret_dict(), **config} if config or env else {})
    with pytest.raises(db.DatabaseRejected, match=message) as info:
        db.startup_check(app)
    assert_no_secrets(str(info.value) + caplog.text)


def test_unreachable_database_still_boots(pg, gunicorn):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: refused
        g = gunicorn(env_for({**pg.secret_dict(), "port": closed.getsockname()[1]}))
        assert g.wait_ready(), g.output()
        assert g.get("/healthz")[0] == 200
        status, body = g.json("/dbcheck", auth())
    assert status == 503
    assert body == {"error": "database unavailable", "reason": "connection refused"}
    assert g.stop() == 0
    out = g.output()
    assert "database unreachable at startup (connection refused); starting anyway" in out
    assert_no_secrets(out)
