"""The app factory, the DB-free routes, CI's URL-map checks and the schema file."""

import subprocess
import sys
from pathlib import Path

import pytest
from papyrus import create_app, schema

SERVICE = Path(__file__).resolve().parents[1]
ROUTES = {"/", "/healthz", "/dbcheck", "/runtime"}
# A closed port: any attempt to reach the database would fail loudly.
NO_DB = {"DATABASE": {"host": "127.0.0.1", "port": 1, "user": "u", "password": "p",
                      "dbname": "d"}}


def test_create_app_without_config_or_env_lists_the_routes():
    rules = {r.rule for r in create_app().url_map.iter_rules()}
    assert rules == ROUTES


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent)}  # no DB settings at all, like CI
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=30, cwd="/")


def test_ci_one_liner_and_flask_routes_list_the_routes():
    one_liner = ("from papyrus import create_app; a=create_app(); "
                 "print([r.rule for r in a.url_map.iter_rules()])")
    r = _run(sys.executable, "-c", one_liner)
    assert r.returncode == 0, r.stderr
    assert all(f"'{rule}'" in r.stdout for rule in ROUTES)
    r = _run(str(Path(sys.executable).with_name("flask")), "--app", "papyrus", "routes")
    assert r.returncode == 0, r.stderr
    assert {line.split()[-1] for line in r.stdout.splitlines()[2:]} == ROUTES


def test_index():
    r = create_app(NO_DB).test_client().get("/")
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "Welcome to Papyrus"


def test_healthz_reports_version_and_image_from_env(monkeypatch):
    monkeypatch.setenv("PAPYRUS_VERSION", "1.2.3")
    monkeypatch.setenv("PAPYRUS_IMAGE", "repo/papyrus@sha256:" + "a" * 64)
    r = create_app(NO_DB).test_client().get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "version": "1.2.3",
                            "image": "repo/papyrus@sha256:" + "a" * 64}


@pytest.mark.parametrize("config", [NO_DB, {"DB_SECRET": "{not json"}, {}])
def test_healthz_never_touches_the_database(config):
    app = create_app(config)
    r = app.test_client().get("/healthz")
    assert r.status_code == 200 and r.get_json()["status"] == "ok"
    assert app.extensions["papyrus.db"]["engine"] is None  # no engine, so no connection


def test_errors_are_json_without_details():
    client = create_app(NO_DB).test_client()
    r = client.get("/nope")
    assert r.status_code == 404 and r.get_json() == {"error": "Not Found"}
    r = client.delete("/dbcheck")
    assert r.status_code == 405 and r.get_json() == {"error": "Method Not Allowed"}
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


def test_packaged_init_sql_is_the_canonical_file():
    canonical = (SERVICE / "papyrus" / "sql" / "init.sql").read_bytes()
    assert not (SERVICE / "sql").exists()  # one schema file: the packaged one
    assert schema.init_sql().encode() == canonical


def test_init_sql_fits_the_schema_init_flow():
    sql = schema.init_sql()
    statements = schema.split_statements(sql)
    assert statements and statements[0].count("CREATE TABLE IF NOT EXISTS skus") == 1
    words = sql.upper().split()
    # The flow wraps the file in BEGIN...ROLLBACK / BEGIN...COMMIT itself.
    assert "BEGIN;" not in words and "COMMIT;" not in words and "$$" not in sql
    assert all(";" not in s for s in statements)


def test_init_db_dry_run_changes_nothing_then_applies(pg, runner, app):
    # A fresh database owned by the app role, so the dry run has something to not create.
    pg.psql_admin("DROP DATABASE IF EXISTS scratch")
    pg.psql_admin(f"CREATE DATABASE scratch OWNER {pg.app_user}")
    app.config["DATABASE"] = pg.connect_kwargs(dbname="scratch")
    exists = "SELECT to_regclass('public.skus') IS NOT NULL"

    r = runner.invoke(args=["init-db", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "CREATE TABLE" in r.output and "rolled back (dry run)" in r.output
    assert pg.psql_admin(exists, "scratch") == "f"

    r = runner.invoke(args=["init-db"])
    assert r.exit_code == 0 and "committed" in r.output
    assert pg.psql_admin(exists, "scratch") == "t"
    assert runner.invoke(args=["init-db"]).exit_code == 0  # idempotent
