"""The preflight and repair flows really run (one Prefect API for the session, the sandbox), through
the real CLI (a subprocess) and typer's CliRunner: exit codes, JSON for CI, evidence, the call
recorder proving that a plan changes nothing, and the password canaries nowhere.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from flows.preflight import preflight
from flows.repair import repair
from papyrus_ops.runner import run_flow
from tasks.preflight import CHECK_NAMES
from tests.support.canaries import DRIFT_PASSWORD
from tests.support.cli import invoke, run_cli

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox", "baseline")

RDS_SG_CHECK = "rds_sg.5432_only_from_task_sg"


def by_name(result: dict) -> dict[str, dict]:
    return {c["check"]: c for c in result["data"]["checks"]}


def evidence_files(result: dict) -> dict[str, Path]:
    folder = Path(result["evidence"]["folder"])
    return {p.name.split("_", 1)[1]: p for p in folder.iterdir()
            if p.is_file() and p.name[:1].isdigit()}


def mutating(sandbox) -> list[tuple[str, str]]:
    return [(c.service, c.operation) for c in sandbox.faults.served(mutating=True)]


def infra_mutations(sandbox) -> list[tuple[str, str]]:
    """Mutating calls other than the evidence upload (S3 PutObject to the evidence bucket)."""
    return [c for c in mutating(sandbox) if c != ("s3", "PutObject")]


def prefect_logs(flow_run_ids: list[str]) -> str:
    """Prefect's log lines and artifacts of these flow runs (what the UI shows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    ids = [uuid.UUID(i) for i in flow_run_ids]
    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    assert logs and artifacts, "expected Prefect logs and artifacts for these flow runs"
    return "\n".join([lg.message for lg in logs]
                     + [f"{a.description} {a.data}" for a in artifacts])


def flow_run_ids(*folders: Path) -> list[str]:
    ids = []
    for f in folders:
        manifest = json.loads((Path(f) / "manifest.json").read_text())
        ids.append(manifest["flow_run_id"])
    return ids


def secrets_of(sandbox) -> tuple[str, ...]:
    return (sandbox.db_password, DRIFT_PASSWORD, sandbox.token)


def assert_nowhere(sandbox, *texts: str, folders: tuple[Path, ...] = ()) -> None:
    for secret in secrets_of(sandbox):
        for t in texts:
            assert secret not in t
        for f in folders:
            for p in Path(f).rglob("*"):
                if p.is_file():
                    assert secret.encode() not in p.read_bytes(), p


# -- preflight ----------------------------------------------------------------------------------
def test_clean_sandbox_cli_json_exit_0(sandbox, capfd):
    """The real CLI in a subprocess, as CI runs it; the sandbox env vars reach it."""
    sandbox.faults.reset_calls()
    r = run_cli("preflight", "--env", "local", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["verdict"] == "success" and out["data"]["failed"] == []
    assert [c["check"] for c in out["data"]["checks"]] == list(CHECK_NAMES)
    assert {c["verdict"] for c in out["data"]["checks"]} == {"pass"}
    assert all(set(c) == {"check", "expected", "actual", "verdict", "detail"}
               for c in out["data"]["checks"])
    assert {r["field"] for r in out["data"]["connection_diff"]} == \
        {"host", "port", "username", "dbname", "password"}
    ev = out["evidence"]
    assert ev["s3_uri"].startswith(f"s3://{sandbox.settings.evidence_bucket}/preflight/")
    files = evidence_files(out)
    assert {"rds_sg_inbound_after.json", "flask_url_map_after.log",
            "db_connection_vs_rds.json", "preflight_checks.json"} <= set(files)
    rules = json.loads(files["rds_sg_inbound_after.json"].read_text())["SecurityGroupRules"]
    assert any(r.get("FromPort") == 5432 for r in rules)
    assert "'/dbcheck'" in files["flask_url_map_after.log"].read_text()
    # Preflight changes nothing (the evidence upload aside).
    assert infra_mutations(sandbox) == []
    assert_nowhere(sandbox, r.stdout, r.stderr, prefect_logs(flow_run_ids(ev["folder"])),
                   folders=(Path(ev["folder"]),))


def test_dbname_and_password_drift_cli_exit_1(sandbox, drift, capfd):
    """The 2025-10-08 incident: dbname and password in the secret drifted from RDS."""
    drift.secret(dbname="papyrus_old", password=DRIFT_PASSWORD)
    r = invoke("preflight", "--env", "local", "--json")
    assert r.exit_code == 1, r.output[-3000:]
    out = json.loads(r.stdout)
    assert out["verdict"] == "failed"
    assert out["data"]["failed"] == ["secret.dbname", "secret.password_authenticates"]
    row = next(x for x in out["data"]["connection_diff"] if x["field"] == "dbname")
    assert (row["stored"], row["rds"], row["match"]) == ("papyrus_old", "papyrus", False)
    pw = next(x for x in out["data"]["connection_diff"] if x["field"] == "password")
    assert pw["stored"] == "present"
    assert_nowhere(sandbox, r.output, *capfd.readouterr(),
                   prefect_logs(flow_run_ids(out["evidence"]["folder"])),
                   folders=(Path(out["evidence"]["folder"]),))


def test_console_table_and_url_map_drift(sandbox, drift, capfd):
    """CliRunner (in-process): the rich table, and --service-dir on a copy without /dbcheck."""
    src = drift.service_without_dbcheck()
    r = invoke("preflight", "--env", "local", "--service-dir", str(src))
    assert r.exit_code == 1, r.output
    assert "service.url_map" in r.output and "fail" in r.output
    assert "missing from the URL map: /dbcheck" in r.output
    assert "secret vs RDS (password masked)" in r.output
    assert "evidence: s3://" in r.output
    folder = Path(r.output.split("\nlocal: ")[1].splitlines()[0].strip())
    [log] = folder.glob("*_flask_url_map_after.log")
    assert "/dbcheck" not in log.read_text().splitlines()[1]
    assert_nowhere(sandbox, r.output, *capfd.readouterr())


def test_flow_runs_every_check_even_when_several_fail(sandbox, drift):
    drift.secret(port=1)
    drift.force_ssl("0")
    drift.sg_allow(cidr="0.0.0.0/0")
    drift.exec_off()
    drift.last_deploy(rds_endpoint_address="old.example", rds_endpoint_port=5432)
    sandbox.faults.reset_calls()
    out = run_flow(preflight, env="local")
    assert out["verdict"] == "failed"
    assert out["data"]["failed"] == ["secret.port", "rds.endpoint_unchanged", "rds.force_ssl",
                             RDS_SG_CHECK, "ecs.exec_enabled"]
    assert len(out["data"]["checks"]) == len(CHECK_NAMES)
    assert infra_mutations(sandbox) == []
    manifest = json.loads((Path(out["evidence"]["folder"]) / "manifest.json").read_text())
    assert manifest["verdict"] == "fail"
    # The checks as a Prefect table artifact of this flow run.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(manifest["flow_run_id"])])))
    table = next(a for a in arts if a.key == "preflight-checks")
    assert table.type == "table" and "rds.force_ssl" in str(table.data)
    failed_in_manifest = {c["check"] for c in manifest["checks"] if c["verdict"] == "fail"}
    assert failed_in_manifest == set(out["data"]["failed"])


def test_bad_input_exit_2(sandbox):
    r = invoke("preflight", "--env", "nope")
    assert r.exit_code == 2 and "unknown environment" in r.output
    r = invoke("repair", "everything", "--env", "local")
    assert r.exit_code == 2 and "unknown repair" in r.output
    r = invoke("preflight", "--service-dir", "/nonexistent")
    assert r.exit_code == 2 and "no papyrus package" in r.output
    assert run_flow(repair, env="local", what="bogus")["verdict"] == "bad_input"


# -- repairs ------------------------------------------------------------------------------------
def test_repair_secret_plan_then_apply(sandbox, drift, capfd):
    before = drift.secret(dbname="papyrus_old", port=str(sandbox.pg.port + 7), extra="kept")
    sandbox.faults.reset_calls()
    plan = run_flow(repair, env="local", what="secret")
    assert plan["verdict"] == "success" and plan["data"]["mode"] == "plan"
    assert not plan["data"]["noop"]
    assert {a["key"] for a in plan["data"]["actions"]} == {"dbname", "port"}
    assert infra_mutations(sandbox) == [], "a plan must not change anything"
    assert drift.secret_doc() == before

    r = invoke("repair", "secret", "--env", "local", "--apply", "--json")
    assert r.exit_code == 0, r.output[-3000:]
    out = json.loads(r.stdout)
    assert out["verdict"] == "success" and out["data"]["mode"] == "apply"
    assert {c["verdict"] for c in out["data"]["checks"]} == {"pass"}
    after = drift.secret_doc()
    assert after["dbname"] == "papyrus" and after["port"] == sandbox.pg.port
    assert after["password"] == sandbox.db_password  # kept, and still authenticates:
    assert after["extra"] == "kept" and after["engine"] == "postgres"
    files = evidence_files(out)
    assert {"db_secret_before.json", "db_secret_after.json", "secret_repair_plan.json"} <= \
        set(files)
    shown = json.loads(files["db_secret_before.json"].read_text())
    assert shown["dbname"] == "papyrus_old" and shown["password_present"] is True
    again = run_flow(preflight, env="local")
    assert again["verdict"] == "success", again["data"]["failed"]
    assert_nowhere(sandbox, r.output, *capfd.readouterr(),
                   prefect_logs(flow_run_ids(out["evidence"]["folder"],
                                             plan["evidence"]["folder"])),
                   folders=(Path(out["evidence"]["folder"]), Path(plan["evidence"]["folder"])))


def test_repair_sg_plan_then_apply(sandbox, drift):
    drift.sg_allow(cidr="0.0.0.0/0")
    drift.sg_allow(cidr6="::/0")
    drift.sg_allow(lo=5400, hi=5500, group=drift.task_sg)
    drift.sg_allow(group=drift.other_sg())
    rules_before = drift.inbound()
    sandbox.faults.reset_calls()
    r = invoke("repair", "sg", "--env", "local")
    assert r.exit_code == 0, r.output
    assert "plan only: nothing changed" in r.output and r.output.count("would: revoke") == 4
    assert infra_mutations(sandbox) == []
    assert drift.inbound() == rules_before

    out = run_flow(repair, env="local", what="sg", apply=True)
    assert out["verdict"] == "success", out
    assert [a["action"] for a in out["data"]["applied"]] == ["revoke"] * 4
    [only] = drift.inbound()
    assert only["ReferencedGroupInfo"]["GroupId"] == drift.task_sg
    assert (only["FromPort"], only["ToPort"]) == (5432, 5432)
    files = evidence_files(out)
    assert len(json.loads(files["rds_sg_inbound_before.json"].read_text())
               ["SecurityGroupRules"]) >= 5
    assert {"rds_sg_inbound_after.json", "sg_repair_plan.json"} <= set(files)


def test_repair_sg_restores_a_missing_task_rule(sandbox, drift):
    drift.sg_revoke_task_rule()
    drift.sg_allow(lo=5400, hi=5500, group=drift.task_sg)  # too wide: replaced by the exact one
    out = run_flow(repair, env="local", what="sg", apply=True)
    assert out["verdict"] == "success", out
    assert [a["action"] for a in out["data"]["applied"]] == ["authorize", "revoke"]
    [only] = drift.inbound()
    assert (only["FromPort"], only["ToPort"]) == (5432, 5432)


def test_repair_exec_plan_then_apply(sandbox, drift):
    drift.exec_off()
    td = drift.service()["taskDefinition"]
    deployments = [d["id"] for d in drift.service()["deployments"]]
    sandbox.faults.reset_calls()
    plan = run_flow(repair, env="local", what="exec")
    assert plan["verdict"] == "success" and len(plan["data"]["actions"]) == 1
    assert infra_mutations(sandbox) == []
    assert not drift.exec_enabled()

    r = invoke("repair", "exec", "--env", "local", "--apply")
    assert r.exit_code == 0, r.output
    assert "applied: update_service" in r.output
    assert drift.exec_enabled()
    svc = drift.service()
    assert svc["taskDefinition"] == td
    assert [d["id"] for d in svc["deployments"]] == deployments  # no forced deployment
    assert ("ecs", "UpdateService") in mutating(sandbox)
    # Applying again is a no-op.
    noop = run_flow(repair, env="local", what="exec", apply=True)
    assert noop["verdict"] == "success" and noop["data"]["noop"] and noop["data"]["applied"] == []


def test_sandbox_left_clean(sandbox):
    out = run_flow(preflight, env="local", check_db_auth=True)
    assert out["verdict"] == "success", out["data"]["failed"]


def flow_run_state(result: dict):
    """The flow run's final state as the Prefect API (and so the UI) shows it."""
    from prefect.client.orchestration import get_client

    manifest = json.loads((Path(result["evidence"]["folder"]) / "manifest.json").read_text())
    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(manifest["flow_run_id"])).state


def test_a_drifted_secret_and_a_refused_repair_end_failed_in_the_prefect_api(sandbox, drift):
    """What the operator or the schedule sees in the UI matches the CLI's exit code."""
    drift.secret(dbname="papyrus_old")
    out = run_flow(preflight, env="local", check_db_auth=False)
    assert out["verdict"] == "failed", out
    state = flow_run_state(out)
    assert state.type.value == "FAILED" and state.message == out["reason"], state
    assert "secret.dbname" in state.message
    # A secret that is not JSON: the repair refuses to rewrite it, and its run is Failed too.
    sm = sandbox.client("secretsmanager")
    drift.secret()  # remembers the good secret for the undo
    sm.put_secret_value(SecretId=sandbox.settings.db_secret_id, SecretString="not json")
    refused = run_flow(repair, env="local", what="secret", apply=True)
    assert refused["verdict"] == "failed" and "refusing to rewrite" in refused["reason"]
    state = flow_run_state(refused)
    assert state.type.value == "FAILED" and state.message == refused["reason"], state
    # And a clean one is Completed.
    drift.restore()
    ok = run_flow(preflight, env="local", check_db_auth=False)
    assert ok["verdict"] == "success" and flow_run_state(ok).type.value == "COMPLETED"
