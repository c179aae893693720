"""The RDS change report in every preflight bundle: a parameter changed off its default (one
static, pending a reboot) and a reboot, each made with plain boto3 as a person would, are both
reported — with the engine default beside the value, the pending reboot, the events, and the
change since the last recorded deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.preflight import preflight
from papyrus_ops.runner import run_flow
from tasks.state import read_last_deploy, record_deploy, state_key

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox", "baseline")

CHANGES = [("log_min_duration_statement", "500", "immediate"),
           ("shared_buffers", "65536", "pending-reboot")]


def report_of(res: dict) -> tuple[dict, str]:
    folder = Path(res["evidence"]["folder"])
    [js] = folder.glob("*_rds_change_report.json")
    [md] = folder.glob("*_rds_change_report.md")
    return json.loads(js.read_text()), md.read_text()


@pytest.fixture
def last_deploy(sandbox):
    """A recorded deploy (with its RDS snapshot) to compare with; the old record put back."""
    s3, s = sandbox.client("s3"), sandbox.settings
    before = read_last_deploy(s3, s)
    record_deploy(s3, s, rds=sandbox.client("rds"), task_definition_arn="td", image_digest="d")
    yield
    if before is None:
        s3.delete_object(Bucket=s.evidence_bucket, Key=state_key(s))
    else:
        s3.put_object(Bucket=s.evidence_bucket, Key=state_key(s),
                      Body=json.dumps(before).encode(), **_sse(sandbox))


def _sse(sandbox) -> dict:
    from artifacts.storage import sse_args

    return sse_args(sandbox.settings.evidence_kms_key)


@pytest.fixture
def changed_parameters(sandbox):
    rds, s = sandbox.client("rds"), sandbox.settings
    rds.modify_db_parameter_group(DBParameterGroupName=s.parameter_group, Parameters=[
        {"ParameterName": n, "ParameterValue": v, "ApplyMethod": m} for n, v, m in CHANGES])
    yield rds
    # Back to the engine defaults (a reboot clears the pending state).
    engine = rds.describe_engine_default_parameters(DBParameterGroupFamily="postgres15")
    defaults = {p["ParameterName"]: p["ParameterValue"]
                for p in engine["EngineDefaults"]["Parameters"]}
    rds.modify_db_parameter_group(DBParameterGroupName=s.parameter_group, Parameters=[
        {"ParameterName": n, "ParameterValue": defaults[n], "ApplyMethod": "immediate"}
        for n, _, _ in CHANGES])
    rds.reboot_db_instance(DBInstanceIdentifier=s.rds_instance)


def test_a_changed_parameter_and_a_reboot_are_in_the_rds_change_report(
        sandbox, last_deploy, changed_parameters):
    rds, s = changed_parameters, sandbox.settings
    res = run_flow(preflight, env="local", check_db_auth=False)
    report, md = report_of(res)
    differ = {d["parameter"]: d for d in report["parameters_differing_from_defaults"]}
    assert differ["log_min_duration_statement"]["value"] == "500"
    assert differ["log_min_duration_statement"]["engine_default"] == "-1"
    assert differ["shared_buffers"]["apply_type"] == "static"
    assert "rds.force_ssl" not in differ  # the seed sets it to its PostgreSQL 15 default
    assert report["pending_reboot"] is True
    assert report["parameter_group"]["apply_status"] == "pending-reboot"
    messages = [e["message"] for e in report["parameter_changes"]]
    assert "Updated parameter shared_buffers to 65536 with apply method pending-reboot" in messages
    changed = {c["field"]: c for c in report["changed_since_last_deploy"]}
    assert set(changed) == {"parameters"}, changed
    assert changed["parameters"]["now"]["log_min_duration_statement"] == "500"
    assert res["data"]["rds_change_report"]["pending_reboot"] is True
    assert "| `shared_buffers` | `65536` |" in md and "pending reboot: **yes**" in md

    rds.reboot_db_instance(DBInstanceIdentifier=s.rds_instance)
    res = run_flow(preflight, env="local", check_db_auth=False)
    report, md = report_of(res)
    assert report["pending_reboot"] is False
    assert [e["message"] for e in report["reboots"]][-1:] == ["DB instance restarted"]
    assert "DB instance restarted" in md and "pending reboot: **no**" in md


def test_every_preflight_bundle_holds_the_report_even_without_a_recorded_deploy(sandbox):
    res = run_flow(preflight, env="local", check_db_auth=False)
    report, md = report_of(res)
    assert report["instance"] == sandbox.settings.rds_instance
    assert report["parameter_group"]["name"] == sandbox.settings.parameter_group
    assert report["endpoint"]["port"] and report["security_groups"]
    manifest = json.loads((Path(res["evidence"]["folder"]) / "manifest.json").read_text())
    names = [f["name"] for f in manifest["files"]]
    assert any(n.endswith("_rds_change_report.json") for n in names), names
    assert any(n.endswith("_rds_change_report.md") for n in names), names
