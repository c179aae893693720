"""Fixtures: one real, SSL-only PostgreSQL per session (support/postgres.py: the machine's
PostgreSQL 15, certificates from trustme; nothing from the ops repository, so these tests run from
service/ alone); flaskr's app/client/runner; and a factory for live gunicorn processes whose
output is captured for the canary check."""

from __future__ import annotations

import os

import psycopg2
import pytest
from papyrus import create_app, db
from support.canaries import CANARY, TOKEN
from support.gunicorn import Gunicorn
from support.postgres import RDS_HOST, LocalPostgres, apply_schema


@pytest.fixture(scope="session")
def pg():
    server = LocalPostgres(app_password=CANARY, hostnames=[RDS_HOST]).start()
    apply_schema(server)
    yield server
    server.destroy()


@pytest.fixture
def sql(pg):
    """Run a query as the application role; returns all rows."""

    def run(query: str, params=None):
        with psycopg2.connect(**pg.connect_kwargs()) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows

    return run


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    # The settings read PG* and PAPYRUS_* from the environment: a developer's shell (or the
    # sandbox's PGHOSTADDR) must not leak into what a test asserts.
    for name in list(os.environ):
        if name.startswith(("PG", "PAPYRUS_")):
            monkeypatch.delenv(name)


@pytest.fixture
def app(pg):
    app = create_app({"TESTING": True, "DB_SECRET": pg.secret_dict(), "DBCHECK_TOKEN": TOKEN})
    yield app
    db.dispose_engine(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def gunicorn(tmp_path):
    """Start gunicorn with extra environment; every process is stopped after the test."""
    started: list[Gunicorn] = []

    def start(env: dict[str, str]) -> Gunicorn:
        started.append(Gunicorn(tmp_path / f"gunicorn{len(started)}", env))
        return started[-1]

    yield start
    for g in started:
        g.stop()
