"""schema_init with the database going away during the apply stage, and two applies at once.
Each case runs in a database of its own on the sandbox server (the main one keeps its schema)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

import flows.schema_init
from flows.schema_init import schema_init
from papyrus_ops.runner import run_flow
from tasks.schema.stages import MIGRATIONS_TABLE
from tests.support.evidence import assert_evidence_complete
from tests.support.faults import Before


@pytest.fixture
def fresh_db(sb):
    name = f"rel_schema_{uuid.uuid4().hex[:10]}"
    sb.pg.psql_admin(f"CREATE DATABASE {name} OWNER papyrus_app")
    yield name
    if not sb.pg.is_running():
        sb.pg.start()
    sb.pg.psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def tables(sb, db: str) -> list[str]:
    out = sb.pg.psql_admin("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = 'public' ORDER BY 1", db)
    return out.split() if out else []


def migrations(sb, db: str) -> int:
    if MIGRATIONS_TABLE not in tables(sb, db):
        return 0
    return int(sb.pg.psql_admin(f"SELECT count(*) FROM {MIGRATIONS_TABLE}", db))  # noqa: S608


def stage_log(result: dict, suffix: str) -> str:
    [path] = Path(result["evidence"]["folder"]).glob(f"*_{suffix}")
    return path.read_text()


def test_database_down_for_the_whole_apply_fails_cleanly_then_applies_once(
        sb, fresh_db, monkeypatch):
    # The dry run passes; the database is gone before the apply connects (and stays gone
    # through the task's retries).
    hook = Before(flows.schema_init.schema_apply, sb.pg.stop)
    monkeypatch.setattr(flows.schema_init, "schema_apply", hook)
    try:
        r = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    finally:
        sb.pg.start()
    assert hook.fired
    assert r["verdict"] == "failed", r
    dry, ap = r["data"]["dryrun"], r["data"]["apply"]
    assert dry["outcome"] == "passed"
    assert ap["outcome"] == "failed" and "cannot connect" in ap["error"]
    assert "connection refused" in ap["error"].lower() or "could not connect" in \
        ap["error"].lower()
    assert "-- not run: " in stage_log(r, "schema_apply_exec.log")
    assert tables(sb, fresh_db) == []  # nothing half-applied
    assert_evidence_complete(sb, r["evidence"]["folder"])

    monkeypatch.setattr(flows.schema_init, "schema_apply", hook.fn)
    again = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    assert again["data"]["outcome"] == "applied", again
    once_more = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    assert once_more["data"]["outcome"] == "noop", once_more
    assert migrations(sb, fresh_db) == 1
    for res in (again, once_more):
        assert_evidence_complete(sb, res["evidence"]["folder"])


def test_database_blip_during_the_apply_is_carried_by_retries(sb, fresh_db, monkeypatch):
    timer: list[threading.Timer] = []

    def blip() -> None:
        sb.pg.stop()
        timer.append(threading.Timer(1.0, sb.pg.start))
        timer[0].start()

    monkeypatch.setattr(flows.schema_init, "schema_apply",
                        Before(flows.schema_init.schema_apply, blip))
    r = run_flow(schema_init, env="local", apply=True, database=fresh_db)
    timer[0].join(timeout=60)
    assert r["verdict"] == "success" and r["data"]["outcome"] == "applied", r
    assert migrations(sb, fresh_db) == 1
    assert "\nCOMMIT\n" in stage_log(r, "schema_apply_exec.log")
    assert_evidence_complete(sb, r["evidence"]["folder"])


def test_two_schema_applies_at_once_apply_once(sb, fresh_db):
    results: list[dict] = []
    lock = threading.Lock()

    def run() -> None:
        res = run_flow(schema_init, env="local", apply=True, database=fresh_db)
        with lock:
            results.append(res)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2
    outcomes = sorted(r["data"]["outcome"] for r in results)
    assert outcomes.count("applied") == 1, outcomes
    [other] = [r for r in results if r["data"]["outcome"] != "applied"]
    # Either it came second (a no-op) or it met the advisory lock: a clear failure, nothing run.
    if other["data"]["outcome"] == "noop":
        assert other["verdict"] == "success"
    else:
        assert other["data"]["outcome"] == "lock_held" and other["verdict"] == "failed", other
        assert "holds the schema lock" in other["error"]
    assert tables(sb, fresh_db) == [MIGRATIONS_TABLE, "skus"]
    assert migrations(sb, fresh_db) == 1
    for r in results:
        assert_evidence_complete(sb, r["evidence"]["folder"])
