"""schema_init and insert_check on the sandbox: the flows really run (real SSL PostgreSQL, moto).

Destructive cases run in a database of their own on the sandbox server; the one test on the main
database accepts it with or without the schema (no module relies on another having run first:
those that need the tables ask for tests/conftest.py's `main_schema`). Every test also checks
that the DB password (the canary) is in no captured output, no evidence file and no Prefect log
of its flow runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from pathlib import Path

import pytest

from flows.insert_check import insert_check
from flows.schema_init import schema_init
from papyrus_ops.runner import run_flow
from tasks.db import connect, read_db_secret
from tasks.insert_check import insert_cli_row
from tasks.schema.script import DEFAULT_SCRIPT, load_script
from tasks.schema.stages import MIGRATIONS_TABLE, SCHEMA_LOCK_KEY
from tests.support.canaries import CANARY_PASSWORD
from tests.support.cli import error_lines, invoke

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")

INIT_SHA = load_script().sha256
assert MIGRATIONS_TABLE == "papyrus_schema_migrations"


@pytest.fixture(autouse=True)
def _canary(sandbox):
    assert sandbox.db_password == CANARY_PASSWORD  # the session sandbox's DB password


@pytest.fixture(autouse=True)
def _no_developer_sandbox(monkeypatch, tmp_path):
    # `prepare()` loads <PAPYRUS_SANDBOX_DIR>/env: never a developer's running sandbox here.
    monkeypatch.setenv("PAPYRUS_SANDBOX_DIR", str(tmp_path / "no-sandbox"))


@pytest.fixture
def fresh_db(sandbox):
    name = f"schema_t_{uuid.uuid4().hex[:10]}"
    sandbox.pg.psql_admin(f"CREATE DATABASE {name} OWNER papyrus_app")
    yield name
    sandbox.pg.psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def tables(sandbox, db: str) -> list[str]:
    out = sandbox.pg.psql_admin("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'public' ORDER BY 1", db)
    return out.split() if out else []


def db_state(sandbox) -> tuple:
    names = tables(sandbox, "papyrus")
    rows = {t: sandbox.pg.psql_admin(f"SELECT count(*) FROM {t}", "papyrus")  # noqa: S608
            for t in names}
    return names, rows


def evidence(result: dict, suffix: str) -> str:
    folder = Path(result["evidence"]["folder"])
    [path] = folder.glob(f"*_{suffix}")
    return path.read_text()


def prefect_logs(flow_run_ids: list[str]) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[uuid.UUID(i) for i in flow_run_ids])))
    return "\n".join(f"{lg.flow_run_id} {lg.message}" for lg in logs)


def assert_no_canary(capfd, *results: dict, extra: str = "") -> None:
    """The password is nowhere: captured output, evidence files, Prefect logs of these runs."""
    canary = CANARY_PASSWORD
    out, err = capfd.readouterr()
    assert canary not in out + err + extra
    run_ids = [r["data"]["flow_run_id"] for r in results if r["data"].get("flow_run_id")]
    for r in results:
        folder = (r.get("evidence") or {}).get("folder")
        if folder:
            for p in Path(folder).rglob("*"):
                if p.is_file():
                    assert canary.encode() not in p.read_bytes(), p
    if run_ids:
        logs = prefect_logs(run_ids)
        assert logs, "expected Prefect logs for these flow runs"
        assert canary not in logs


# -----------------------------------------------------------------------------------------------
def test_dry_run_then_apply_then_noop(sandbox, fresh_db, capfd):
    dry = run_flow(schema_init, env="local", database=fresh_db)
    assert dry["verdict"] == "success", dry
    assert dry["data"]["mode"] == "dryrun" and dry["data"]["apply"] is None
    assert dry["data"]["dryrun"]["tags"] == ["CREATE TABLE", "CREATE INDEX", "COMMENT"]
    assert dry["data"]["checksum"] == INIT_SHA and dry["data"]["database"] == fresh_db
    log = evidence(dry, "schema_dryrun_exec.log")
    assert "[1/3] line 7: CREATE TABLE IF NOT EXISTS skus (" in log
    assert "\nCREATE TABLE  (" in log and "\nROLLBACK\n" in log and "COMMIT" not in log
    assert "ssl=true" in log and INIT_SHA in log
    assert tables(sandbox, fresh_db) == []  # the dry run left nothing behind

    applied = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    assert applied["verdict"] == "success", applied
    assert applied["data"]["outcome"] == "applied"
    assert applied["data"]["apply"]["tags"] == ["CREATE TABLE", "CREATE INDEX", "COMMENT"]
    assert tables(sandbox, fresh_db) == [MIGRATIONS_TABLE, "skus"]
    row = sandbox.pg.psql_admin(
        "SELECT checksum, script_name FROM papyrus_schema_migrations", fresh_db)
    assert row == f"{INIT_SHA}|service/papyrus/sql/init.sql"
    apply_log = evidence(applied, "schema_apply_exec.log")
    assert "\nCOMMIT\n" in apply_log and f"-- recorded: {INIT_SHA}" in apply_log
    names = applied["evidence"]["files"]
    assert any(n.endswith("_schema_dryrun_exec.log") for n in names)
    assert any(n.endswith("_schema_apply_exec.log") for n in names)
    assert applied["evidence"]["s3_uri"] and not applied["evidence"]["upload_pending"]

    again = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    assert again["verdict"] == "success" and again["data"]["outcome"] == "noop", again
    assert again["data"]["apply"]["tags"] == []
    assert "no-op, nothing executed" in evidence(again, "schema_apply_exec.log")
    count = "SELECT count(*) FROM papyrus_schema_migrations"
    assert sandbox.pg.psql_admin(count, fresh_db) == "1"
    assert_no_canary(capfd, dry, applied, again)


def test_broken_script_fails_the_dry_run_and_leaves_nothing(sandbox, fresh_db, tmp_path, capfd):
    broken = tmp_path / "init.sql"
    text = DEFAULT_SCRIPT.read_text()
    assert "COMMENT ON TABLE skus" in text
    broken.write_text(text.replace("COMMENT ON TABLE skus", "COMMENT ON TABEL skus"))
    r = invoke("schema-init", "--env", "local", "--apply", "--yes", "--sql", str(broken),
               "--database", fresh_db, "--json")
    assert r.exit_code == 1, r.output
    result = json.loads(r.stdout)
    assert result["verdict"] == "failed" and result["data"]["outcome"] == "failed"
    assert result["reason"] == result["error"]  # the Prefect state message too
    failed = result["data"]["dryrun"]["failed_statement"]
    assert (failed["number"], failed["line"]) == (3, 18)
    assert "statement 3 (line 18: COMMENT ON TABEL skus" in result["error"]
    assert "syntax error" in result["error"]
    assert result["data"]["apply"] is None  # the apply never started
    log = evidence(result, "schema_dryrun_exec.log")
    assert "[3/3] line 18: COMMENT ON TABEL" in log and "ERROR:  syntax error" in log
    assert log.rstrip().splitlines()[-2:][0] == "-- result: FAILED"
    assert log.rstrip().splitlines()[-1].startswith("-- reason: statement 3 (line 18")
    assert not any(n.endswith("_schema_apply_exec.log") for n in result["evidence"]["files"])
    assert tables(sandbox, fresh_db) == []  # statements 1 and 2 were rolled back too

    # Without --json: the same verdict, the error named on stderr.
    r = invoke("schema-init", "--env", "local", "--sql", str(broken), "--database", fresh_db)
    assert r.exit_code == 1
    assert "statement 3 (line 18" in r.stderr and "verdict: failed" in r.stdout
    assert_no_canary(capfd, result, extra=r.output)


def test_different_script_over_an_applied_one_is_refused(sandbox, fresh_db, tmp_path, capfd):
    first = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    assert first["data"]["outcome"] == "applied", first
    other = tmp_path / "init.sql"
    other.write_text(DEFAULT_SCRIPT.read_text() + "\nCREATE TABLE IF NOT EXISTS extra (x int);\n")
    r = run_flow(schema_init, env="local", apply=True, sql_path=str(other),
                       database=fresh_db)
    assert r["verdict"] == "failed" and r["data"]["outcome"] == "refused", r
    assert r["data"]["dryrun"]["outcome"] == "passed"  # it runs; it is not the applied one
    assert "production data" in r["error"] and INIT_SHA[:12] in r["error"]
    assert "the apply will be refused" in evidence(r, "schema_dryrun_exec.log")
    assert "ROLLBACK" in evidence(r, "schema_apply_exec.log")
    assert tables(sandbox, fresh_db) == [MIGRATIONS_TABLE, "skus"]  # no "extra"
    rows = sandbox.pg.psql_admin("SELECT checksum FROM papyrus_schema_migrations", fresh_db)
    assert rows == INIT_SHA
    assert_no_canary(capfd, first, r)


def test_a_held_schema_lock_is_a_clear_error_not_a_hang(sandbox, fresh_db, capfd):
    secret = read_db_secret.fn(sandbox.client("secretsmanager"), sandbox.settings.db_secret_id)
    holder = connect(secret, sandbox.settings, dbname=fresh_db)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        t0 = time.monotonic()
        r = run_flow(schema_init, env="local", apply=True, database=fresh_db)
        elapsed = time.monotonic() - t0
    finally:
        holder.close()
    assert elapsed < 20
    assert r["verdict"] == "failed" and r["data"]["outcome"] == "lock_held", r
    assert "holds the schema lock" in r["error"] and str(SCHEMA_LOCK_KEY) in r["error"]
    assert r["data"]["apply"] is None
    assert tables(sandbox, fresh_db) == []
    assert_no_canary(capfd, r)


def test_apply_on_the_main_db_then_cli_insert_check(sandbox, capfd):
    r = invoke("schema-init", "--env", "local", "--apply", "--yes", "--json")
    assert r.exit_code == 0, r.output
    applied = json.loads(r.stdout)
    assert applied["data"]["outcome"] in ("applied", "noop")
    assert applied["data"]["database"] == "papyrus"
    assert "skus" in tables(sandbox, "papyrus")  # stays applied for the other test modules

    r = invoke("insert-check", "--env", "local", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    data = res["data"]
    assert res["verdict"] == "success" and data["tag"] == "INSERT 0 1" and data["ssl"] is True
    assert re.fullmatch(r"SKU-CLI-\d{8}T\d{6}Z-[0-9a-f]{8}", data["sku"])
    query = f"SELECT source FROM skus WHERE sku = '{data['sku']}'"  # noqa: S608 - checked above
    row = sandbox.pg.psql_admin(query, "papyrus")
    assert row == "cli"
    log = evidence(res, "papyrus_psql_insert_cli.log")
    assert "\nINSERT 0 1\n" in log and "\nCOMMIT\n" in log
    assert "-- ssl: true (TLSv1." in log and "\n t   | TLSv1." in log
    assert f"-- sku: {data['sku']} (source cli)" in log and "-- verdict: success" in log
    assert "hostaddr=127.0.0.1" in log and "sslmode=require" in log

    r = invoke("insert-check", "--env", "local")  # human output
    assert r.exit_code == 0 and "INSERT 0 1, ssl=true" in r.stdout
    assert_no_canary(capfd, applied, res, extra=r.output)


def test_insert_check_fails_without_the_schema(fresh_db, capfd):
    r = run_flow(insert_check, env="local", database=fresh_db)
    assert r["verdict"] == "failed" and r["data"]["tag"] is None and not r["data"]["committed"]
    assert "skus" in r["error"] and "schema-init --apply" in r["error"]
    assert r["data"]["ssl"] is True  # the session's TLS is still reported
    assert "-- verdict: failed" in evidence(r, "papyrus_psql_insert_cli.log")
    assert_no_canary(capfd, r)


def test_verify_full_against_the_rds_name_through_hostaddr(sandbox, main_schema):
    # The server certificate names the RDS endpoint; libpq dials hostaddr but verifies `host`.
    secret = read_db_secret.fn(sandbox.client("secretsmanager"), sandbox.settings.db_secret_id)
    strict = dataclasses.replace(sandbox.settings, db_ssl_root_cert=str(sandbox.pg.ca_cert))
    rec = insert_cli_row.fn(secret, strict)
    assert rec["ok"] and rec["tag"] == "INSERT 0 1" and rec["ssl"] is True, rec
    assert "sslmode=verify-full" in rec["connection"] and "sslmode=verify-full" in rec["log"]
    assert secret.host in rec["connection"] and "hostaddr=127.0.0.1" in rec["connection"]
    assert sandbox.db_password not in rec["log"]


def test_unreachable_database_is_a_failed_verdict_with_evidence(capfd):
    t0 = time.monotonic()
    r = run_flow(schema_init, env="local", apply=True, database="no_such_database")
    assert time.monotonic() - t0 < 20  # not retried: waiting cannot create a database
    assert r["verdict"] == "failed" and r["data"]["apply"] is None
    assert "cannot connect" in r["error"] and "no_such_database" in r["error"]
    assert "-- not run: " in evidence(r, "schema_dryrun_exec.log")
    assert_no_canary(capfd, r)


@pytest.mark.parametrize("broken", ["not-json", "missing-password"])
def test_broken_secret_is_bad_input(sandbox, broken, capfd):
    sm = sandbox.client("secretsmanager")
    sid = sandbox.settings.db_secret_id
    original = sm.get_secret_value(SecretId=sid)["SecretString"]
    if broken == "not-json":
        broken = f"this is not json {CANARY_PASSWORD}"
    elif broken == "missing-password":
        broken = json.dumps({k: v for k, v in json.loads(original).items() if k != "password"})
    root = Path(sandbox.settings.evidence_root)
    before = sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    state_before = db_state(sandbox)
    sm.put_secret_value(SecretId=sid, SecretString=broken)
    try:
        outputs = []
        for args in (["schema-init", "--env", "local", "--apply"],
                     ["insert-check", "--env", "local", "--json"]):
            r = invoke(*args)
            assert r.exit_code == 2, r.output
            if "--json" in args:  # the bad-input result, and only it, on stdout
                out = json.loads(r.stdout)
                assert out["verdict"] == "bad_input" and out["flow"] == "insert_check"
                assert out["reason"] == error_lines(r.stderr)[0].removeprefix(
                    "papyrus-ops: error: ")
            else:
                assert r.stdout == ""
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("papyrus-ops: error: secret "), lines
            assert CANARY_PASSWORD not in r.stderr and "not json" not in r.stderr
            outputs.append(r.stderr)
        # The flow itself says the same (for the UI and other callers), without evidence.
        direct = run_flow(insert_check, env="local")
        assert direct["verdict"] == "bad_input" and direct["evidence"] is None
        assert direct["error"].startswith(f"secret {sid}: ") and direct["reason"] == \
            direct["error"]
    finally:
        sm.put_secret_value(SecretId=sid, SecretString=original)
    after = sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    assert after == before  # no evidence: nothing was attempted
    assert db_state(sandbox) == state_before
    assert_no_canary(capfd, direct, extra="".join(outputs) + direct["error"])


def test_bad_input_exit_2(tmp_path, capfd):
    r = invoke("schema-init", "--env", "local", "--sql", str(tmp_path / "missing.sql"))
    assert r.exit_code == 2 and "not found" in r.stderr and len(r.stderr.splitlines()) == 1
    r = invoke("schema-init", "--env", "nosuchenv")
    assert r.exit_code == 2 and "unknown environment" in r.stderr
    r = invoke("insert-check", "--env", "nosuchenv")
    assert r.exit_code == 2 and "unknown environment" in r.stderr
    assert_no_canary(capfd)


# -- the result contract, as Prefect records it ---------------------------------------------------
def flow_run_of(state):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_a_failing_dry_run_ends_the_flow_run_failed_with_the_redacted_reason(
        sandbox, fresh_db, tmp_path, capfd):
    from ground.redact import REDACTOR
    from ground.result import KEYS

    secret = f"CANARY-{uuid.uuid4().hex}-PAPYRUS"
    REDACTOR.add(secret)  # a value the redactor knows, in the failing statement's first line
    broken = tmp_path / "init.sql"
    broken.write_text(DEFAULT_SCRIPT.read_text().replace(
        "COMMENT ON TABLE skus IS '", f"COMMENT ON TABEL skus IS '{secret} "))
    state = schema_init(env="local", sql_path=str(broken), database=fresh_db,
                        return_state=True)
    res = state.result(raise_on_failure=False)
    assert tuple(res) == KEYS and res["verdict"] == "failed", res
    assert "statement 3 (line 18: COMMENT ON TABEL skus IS '*** " in res["reason"], res["reason"]
    run = flow_run_of(state)
    assert run.state.type.value == "FAILED"
    assert run.state.message == res["reason"]
    assert secret not in run.state.message and secret not in json.dumps(res)
    assert tables(sandbox, fresh_db) == []
    assert_no_canary(capfd, res)
