"""PostgreSQL stops under a running gunicorn and comes back: no restart of the app needed.

It has its own PostgreSQL, so stopping it cannot disturb the other tests.
"""

import json

import pytest
from papyrus_testkit import CANARY, TOKEN, apply_schema, auth

from sandbox.postgres import LocalPostgres

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/papyrus@sha256:" + "b" * 64


@pytest.fixture
def own_pg():
    server = LocalPostgres(app_password=CANARY).start()
    apply_schema(server)
    yield server
    server.destroy()


def test_database_outage_and_recovery_under_live_gunicorn(own_pg, gunicorn):
    g = gunicorn({"PAPYRUS_DB_SECRET": json.dumps(own_pg.secret_dict()),
                  "PAPYRUS_DB_STARTUP_CHECK": "1", "PAPYRUS_WORKERS": "2",
                  "PAPYRUS_VERSION": "9.9.9", "PAPYRUS_IMAGE": IMAGE})
    assert g.wait_ready(), g.output()
    assert g.json("/healthz") == (200, {"status": "ok", "version": "9.9.9", "image": IMAGE})
    assert g.request("/dbcheck", "POST", auth("nope"))[0] == 401
    # Several requests, so both workers and several pooled connections are in play.
    for _ in range(6):
        status, body = g.json("/dbcheck", auth())
        assert status == 200 and body["result"] == "INSERT 0 1"

    own_pg.stop()
    for _ in range(4):
        assert g.json("/healthz")[0] == 200
        status, body = g.json("/dbcheck", auth())
        assert status == 503
        assert body == {"error": "database unavailable", "reason": "connection refused"}

    own_pg.start()  # same port and data
    for _ in range(6):
        status, body = g.json("/dbcheck", auth())
        assert status == 200 and body["ssl"] is True, body
    assert g.proc.poll() is None  # the same gunicorn all along

    assert g.stop() == 0
    out = g.output()
    for secret in (CANARY, TOKEN):
        assert secret not in out
    assert "database check ok: host=127.0.0.1" in out  # the startup check connected
    assert "database unavailable (connection refused)" in out
    assert '"GET /dbcheck HTTP/1.1" 200' in out and '"GET /dbcheck HTTP/1.1" 503' in out
