"""Approval between schema_init's dry run and its apply (tasks/approval.py, tasks/schema/gate.py).

A prd-like environment is the sandbox with ``[approval] required`` on
(PAPYRUS_APPROVAL_REQUIRED=true, read by deployments/local/config.toml). The flow really pauses
on the session's Prefect server and is resumed through its API, as the UI's Resume form does
(the UI itself: tests/e2e/test_approval_ui.py). Each test runs its own copy of init.sql with a
unique first line, so its checksum has no record from any other test in the session's bucket.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from flows.schema_init import schema_init
from papyrus_ops.runner import run_flow
from tasks.approval import record_key
from tasks.schema.script import DEFAULT_SCRIPT, load_script
from tasks.schema.stages import MIGRATIONS_TABLE
from tests.support.approval import Background, artifact, paused_run, resume
from tests.support.canaries import CANARY_PASSWORD
from tests.support.cli import error_lines, invoke

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")


def tables(sandbox, db: str) -> list[str]:
    out = sandbox.pg.psql_admin("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'public' ORDER BY 1", db)
    return out.split() if out else []


def evidence(result: dict, suffix: str) -> str:
    [path] = Path(result["evidence"]["folder"]).glob(f"*_{suffix}")
    return path.read_text()


def assert_no_canary(capfd, *results: dict, extra: str = "") -> None:
    """The DB password is in no captured output, result or evidence file of these runs."""
    out, err = capfd.readouterr()
    assert CANARY_PASSWORD not in out + err + extra + json.dumps(results, default=str)
    for r in results:
        for path in Path(r["evidence"]["folder"]).iterdir():
            assert CANARY_PASSWORD not in path.read_text(errors="replace"), path


@pytest.fixture(autouse=True)
def _no_developer_sandbox(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPYRUS_SANDBOX_DIR", str(tmp_path / "no-sandbox"))
    monkeypatch.setenv("PAPYRUS_APPROVAL_POLL_SECONDS", "0.5")


@pytest.fixture
def prd_like(monkeypatch):
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")


@pytest.fixture
def fresh_db(sandbox):
    name = f"approve_t_{uuid.uuid4().hex[:10]}"
    sandbox.pg.psql_admin(f"CREATE DATABASE {name} OWNER papyrus_app")
    yield name
    sandbox.pg.psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "init.sql"
    path.write_text(f"-- approval test {uuid.uuid4().hex}\n" + DEFAULT_SCRIPT.read_text())
    return path


def _pause(db: str, sql: Path) -> tuple[Background, object]:
    bg = Background(run_flow, flow_fn=schema_init, env="local", apply=True, sql_path=str(sql),
                    database=db)
    run = paused_run(lambda p: p.get("database") == db, background=bg)
    return bg, run


def _paused_with_evidence(run, sql: Path, sandbox, db: str) -> None:
    assert run.state.type.value == "PAUSED" and run.state.name == "Paused"
    md = artifact(run.id, "schema-init-approval")
    sha = load_script(sql).sha256
    assert sha in md and "waiting for approval" in md and "dry run" in md
    assert "CREATE TABLE IF NOT EXISTS skus" in md and "CREATE TABLE" in md
    assert tables(sandbox, db) == []  # paused after the dry run: nothing applied yet


def test_prd_like_pauses_after_the_dry_run_and_approving_applies(sandbox, prd_like, fresh_db,
                                                                 script, capfd):
    bg, run = _pause(fresh_db, script)
    _paused_with_evidence(run, script, sandbox, fresh_db)
    resume(run.id, approve=True, reason="reviewed the dry run")
    res = bg.result()
    assert res["verdict"] == "success" and res["data"]["outcome"] == "applied", res
    assert res["data"]["approval"]["outcome"] == "approved"
    assert res["data"]["approval"]["answer"] == {"approve": True,
                                                 "reason": "reviewed the dry run"}
    assert tables(sandbox, fresh_db) == [MIGRATIONS_TABLE, "skus"]
    decided = json.loads(evidence(res, "schema_approval.json"))
    assert decided["checksum_shown"] == decided["checksum_now"] == load_script(script).sha256
    assert res["data"]["record"]["flow_run_id"] == str(run.id)
    assert_no_canary(capfd, res)


def test_rejecting_changes_nothing(sandbox, prd_like, fresh_db, script, capfd):
    bg, run = _pause(fresh_db, script)
    _paused_with_evidence(run, script, sandbox, fresh_db)
    resume(run.id, approve=False, reason="not during business hours")
    res = bg.result()
    assert res["verdict"] == "failed" and res["data"]["outcome"] == "rejected", res
    assert res["reason"] == "rejected: not during business hours; nothing applied"
    assert res["data"]["apply"] is None and tables(sandbox, fresh_db) == []
    assert "not during business hours" in evidence(res, "schema_approval.json")
    assert not any(n.endswith("_schema_apply_exec.log") for n in res["evidence"]["files"])
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        assert c.read_flow_run(run.id).state.type.value == "FAILED"
    assert_no_canary(capfd, res)


def test_a_script_edited_after_the_dry_run_is_refused_in_one_line(sandbox, prd_like, fresh_db,
                                                                  script, capfd):
    bg, run = _pause(fresh_db, script)
    before = load_script(script).sha256
    script.write_text(script.read_text() + "\nCREATE TABLE IF NOT EXISTS extra (x int);\n")
    resume(run.id, approve=True, reason="looked fine")
    res = bg.result()
    assert res["verdict"] == "failed" and res["data"]["outcome"] == "moved", res
    assert "\n" not in res["reason"] and res["reason"].startswith("refused: ")
    assert f"{before[:12]}... approved" in res["reason"] and "nothing applied" in res["reason"]
    assert res["data"]["apply"] is None and tables(sandbox, fresh_db) == []
    assert_no_canary(capfd, res)


def test_cli_apply_needs_a_recorded_dry_run_of_that_checksum(sandbox, fresh_db, script, capfd):
    sha = load_script(script).sha256
    args = ["schema-init", "--env", "local", "--sql", str(script), "--database", fresh_db]
    r = invoke(*args, "--apply")
    assert r.exit_code == 2, r.output
    [line] = error_lines(r.stderr)
    assert "no recorded passed dry run" in line and sha[:12] in line
    assert tables(sandbox, fresh_db) == []

    r = invoke(*args, "--json")  # the dry run: recorded
    assert r.exit_code == 0, r.output
    dry = json.loads(r.stdout)
    assert dry["data"]["record"]["new"] is True
    obj = sandbox.client("s3").get_object(Bucket=sandbox.settings.evidence_bucket,
                                          Key=record_key("schema_init", sha))
    record = json.loads(obj["Body"].read())
    assert record["checksum"] == sha and record["result"]["outcome"] == "passed"
    assert record["flow_run_id"] == dry["data"]["flow_run_id"] and record["who"] and \
        record["when"]
    again = json.loads(invoke(*args, "--json").stdout)  # once: the first record stays
    assert again["data"]["record"]["new"] is False
    assert again["data"]["record"]["flow_run_id"] == record["flow_run_id"]

    human = invoke(*args)  # the human view names the record
    assert human.exit_code == 0 and "dry run already recorded: s3://" in human.stdout
    assert record_key("schema_init", sha) in human.stdout
    r = invoke(*args, "--apply", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["data"]["outcome"] == "applied"
    assert tables(sandbox, fresh_db) == [MIGRATIONS_TABLE, "skus"]
    assert_no_canary(capfd, dry, extra=r.output)


def test_cli_yes_runs_both_stages_only_where_no_approval_is_required(
        sandbox, monkeypatch, fresh_db, script):
    args = ["schema-init", "--env", "local", "--sql", str(script), "--database", fresh_db]
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")
    r = invoke(*args, "--apply", "--yes")
    assert r.exit_code == 2, r.output
    [line] = error_lines(r.stderr)
    assert "requires approval" in line and "--yes is not allowed" in line
    assert tables(sandbox, fresh_db) == []
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "false")
    r = invoke(*args, "--apply", "--yes")
    assert r.exit_code == 0, r.output
    assert tables(sandbox, fresh_db) == [MIGRATIONS_TABLE, "skus"]
