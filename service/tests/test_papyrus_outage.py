"""PostgreSQL stops under a running gunicorn and comes back: no restart of the app needed.

It has its own PostgreSQL, so stopping it cannot disturb the other tests.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.canaries import CANARY, TOKEN, auth
from support.postgres import LocalPostgres, apply_schema

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
    reasons = []
    for _ in range(4):
        assert g.json("/healthz")[0] == 200
        status, body = g.json("/dbcheck", auth())
        assert status == 503
        assert body.keys() == {"error", "reason"} and body["error"] == "database unavailable"
        reasons.append(body["reason"])
    # A pooled connection in use when the server went down reports the loss (at most one per
    # worker); the pool is then dropped and every later attempt is a refused reconnect.
    assert set(reasons) <= {"connection lost", "connection refused"}, reasons
    assert reasons[-1] == "connection refused" and reasons.count("connection lost") <= 2

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


@pytest.mark.parametrize("ping_after", [0.2, 3600.0], ids=["idle-ping", "socket-check"])
def test_restart_while_idle_costs_no_request(own_pg, monkeypatch, ping_after):
    # No per-request pre-ping any more: a connection idle past PING_AFTER_IDLE_S is pinged on
    # checkout, and one whose socket the server wrote to (its shutdown notice) is dropped
    # before use, so a database that restarted while nobody asked fails no request.
    from papyrus import create_app, db

    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", ping_after)
    app = create_app({"TESTING": True, "DB_SECRET": own_pg.secret_dict(),
                      "DBCHECK_TOKEN": TOKEN})
    client = app.test_client()
    try:
        assert client.get("/dbcheck", headers=auth()).status_code == 200
        own_pg.stop()
        own_pg.start()
        time.sleep(0.3)
        response = client.get("/dbcheck", headers=auth())
        assert response.status_code == 200, response.json
    finally:
        db.dispose_engine(app)


def test_concurrent_requests_reuse_one_connection_per_thread(own_pg, monkeypatch):
    # The pool holds PAPYRUS_THREADS connections: gthread's request threads never open a
    # connection per request (the benchmark's reconnect churn, docs/benchmarks.md §3).
    from papyrus import create_app, db
    from sqlalchemy import event

    monkeypatch.setenv("PAPYRUS_THREADS", "4")
    app = create_app({"TESTING": True, "DB_SECRET": own_pg.secret_dict(),
                      "DBCHECK_TOKEN": TOKEN})
    connects = []
    with app.app_context():
        event.listen(db.get_engine(app), "connect", lambda *a: connects.append(1))

    def burst(_):
        client = app.test_client()
        return [client.get("/dbcheck", headers=auth()).status_code for _ in range(25)]

    try:
        with ThreadPoolExecutor(4) as pool:
            codes = [c for batch in pool.map(burst, range(4)) for c in batch]
        assert codes == [200] * 100
        assert 1 <= len(connects) <= 4, len(connects)
    finally:
        db.dispose_engine(app)
