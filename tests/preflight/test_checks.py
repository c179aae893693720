"""The preflight checks one by one: pure logic, then each drift on the sandbox via `task.fn`.

Every drift is injected through boto3 and undone after its test (the `drift` fixture); for each
one, exactly the check that owns it fails and every other check still passes.
"""

from __future__ import annotations

import json

import pytest

from tasks import state
from tasks.ecs_checks import judge_sslmode
from tasks.preflight import CHECK_NAMES, failed, overall, public, run_checks
from tasks.secrets_rds import (
    check_force_ssl,
    check_rds_endpoint_unchanged,
    check_secret_authenticates,
    check_secret_vs_rds,
)
from tasks.security_groups import analyse_rds_ingress, check_rds_sg
from tasks.service_code import check_url_map
from tests.support.canaries import DRIFT_PASSWORD

TASK_SG = "sg-task"


def rule(rid, proto="tcp", lo=5432, hi=5432, **src):
    r = {"SecurityGroupRuleId": rid, "IsEgress": False, "IpProtocol": proto, "FromPort": lo,
         "ToPort": hi}
    if "group" in src:
        r["ReferencedGroupInfo"] = {"GroupId": src["group"]}
    for k, field in (("cidr", "CidrIpv4"), ("cidr6", "CidrIpv6"), ("pl", "PrefixListId")):
        if k in src:
            r[field] = src[k]
    return r


# -- pure logic ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rules, ok, finding", [
    ([rule("a", group=TASK_SG)], True, None),
    ([rule("a", group=TASK_SG), rule("e", "-1", -1, -1, cidr="0.0.0.0/0") | {"IsEgress": True}],
     True, None),
    ([rule("a", group=TASK_SG), rule("b", cidr="0.0.0.0/0")], False, ("open", ["b"])),
    ([rule("a", group=TASK_SG), rule("b", cidr6="::/0")], False, ("open", ["b"])),
    ([rule("a", group=TASK_SG), rule("b", pl="pl-123")], False, ("open", ["b"])),
    ([rule("a", group=TASK_SG), rule("b", "-1", -1, -1, cidr="10.0.0.0/8")], False,
     ("open", ["b"])),
    ([rule("a", group=TASK_SG), rule("b", group=TASK_SG)], False, ("duplicates", ["b"])),
    ([rule("w", lo=5400, hi=5500, group=TASK_SG), rule("a", group=TASK_SG)], False,
     ("duplicates", ["w"])),
    ([rule("a", group=TASK_SG), rule("b", group="sg-legacy")], False, ("foreign", ["b"])),
    ([rule("w", "-1", -1, -1, group=TASK_SG)], False, ("wide", ["w"])),
    ([], False, ("missing", True)),
    ([rule("x", lo=22, hi=22, cidr="10.0.0.0/8"), rule("a", group=TASK_SG)], True, None),
    ([rule("u", "udp", 5432, 5432, cidr="0.0.0.0/0"), rule("a", group=TASK_SG)], True, None),
])
def test_analyse_rds_ingress(rules, ok, finding):
    a = analyse_rds_ingress(rules, TASK_SG)
    assert a["ok"] is ok, a["problems"]
    if finding:
        assert a[finding[0]] == finding[1]
    else:
        assert a["keep"] == "a"


@pytest.mark.parametrize("env, ok", [
    ({"PGSSLMODE": "require"}, True),
    ({"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ssl/rds.pem"}, True),
    ({"PGSSLMODE": "verify-full"}, False),
    ({"PGSSLMODE": "prefer"}, False),
    ({"PGSSLMODE": "disable"}, False),
    ({}, False),
])
def test_judge_sslmode(env, ok):
    assert judge_sslmode(env)[0] is ok


def test_state_round_trip_and_refuses_secrets(sandbox):
    s3, s = sandbox.client("s3"), sandbox.settings
    before = state.read_last_deploy(s3, s)
    try:
        doc = state.record_deploy(s3, s, task_definition_arn="arn:td:7",
                                  image_digest="sha256:" + "a" * 64, rds=sandbox.client("rds"))
        assert doc["rds_endpoint_address"] == sandbox.rds_endpoint  # looked up when not given
        assert state.read_last_deploy(s3, s) == doc
        key = state.state_key(s)
        assert key == f"state/{s.env}/last_deploy.json"
        assert json.loads(s3.get_object(Bucket=s.evidence_bucket, Key=key)["Body"].read()) == doc
        with pytest.raises(ValueError, match="secret-looking"):
            state.record_deploy(s3, s, rds=None, db_password="x")
    finally:
        if before is None:
            state.clear_last_deploy(s3, s)
        else:
            state.record_deploy(s3, s, rds=None, **before)
    assert state.read_last_deploy(s3, s) == before


# -- the sandbox, clean and drifted --------------------------------------------------------
def clients(sb):
    return {n: sb.client(n) for n in ("secretsmanager", "rds", "ec2", "ecs", "s3")}


# The URL-map check (a Python subprocess, ~2 s) is left out here: it has its own test, and the
# flow/CLI tests run the full set.
NOT_URL_MAP = tuple(n for n in CHECK_NAMES if n != "service.url_map")


def only_failure(sb, name, **kw):
    checks = run_checks(sb.settings, clients=clients(sb), only=NOT_URL_MAP, **kw)
    assert [c["check"] for c in checks] == list(NOT_URL_MAP)
    assert failed(checks) == [name], [public(c) for c in checks if c["verdict"] != "pass"]
    text = json.dumps(checks)
    assert sb.db_password not in text and DRIFT_PASSWORD not in text
    return next(c for c in checks if c["check"] == name)


def test_clean_sandbox_passes_every_check(sandbox, baseline):
    checks = run_checks(sandbox.settings, clients=clients(sandbox))
    assert overall(checks) == "success", [public(c) for c in checks if c["verdict"] != "pass"]
    assert {c["verdict"] for c in checks} == {"pass"}
    pw = next(c for c in checks if c["check"] == "secret.password")
    assert pw["actual"] == "present"
    assert sandbox.db_password not in json.dumps(checks)
    sg = next(c for c in checks if c["check"] == "rds_sg.5432_only_from_task_sg")
    assert sg["evidence"]["rds_sg_inbound_after"]["SecurityGroupRules"]
    urls = next(c for c in checks if c["check"] == "service.url_map")
    assert "/dbcheck" in urls["evidence"]["flask_url_map_after"]


def test_dbname_drift(sandbox, drift):
    drift.secret(dbname="papyrus_old")
    c = only_failure(sandbox, "secret.dbname")
    assert (c["expected"], c["actual"]) == ("papyrus", "papyrus_old")


def test_port_drift(sandbox, drift):
    port = sandbox.pg.port
    drift.secret(port=str(port + 1))  # and as a string, as some writers store it
    c = only_failure(sandbox, "secret.port")
    assert (c["expected"], c["actual"]) == (port, port + 1)


def test_port_as_string_is_not_drift(sandbox, drift):
    drift.secret(port=str(sandbox.pg.port))
    out = check_secret_vs_rds.fn(drift.sm, drift.rds, sandbox.settings)
    assert {c["verdict"] for c in out} == {"pass"}


def test_host_drift_while_a_username_other_than_the_master_is_not_drift(sandbox, drift):
    drift.secret(host="papyrus-old.xxxx.us-west-2.rds.amazonaws.com", username="papyrus")
    out = {c["check"]: c for c in check_secret_vs_rds.fn(drift.sm, drift.rds, sandbox.settings)}
    assert out["secret.host"]["verdict"] == "fail"
    # Who logs in is proven by logging in (secret.password_authenticates), not by its name.
    assert out["secret.username"]["verdict"] == "pass"
    assert "not the master user" in out["secret.username"]["detail"]
    assert out["secret.dbname"]["verdict"] == out["secret.port"]["verdict"] == "pass"


def test_password_drift_is_caught_by_the_authentication_check(sandbox, drift):
    drift.secret(password=DRIFT_PASSWORD)
    c = only_failure(sandbox, "secret.password_authenticates")
    assert "password authentication failed" in c["detail"]
    off = check_secret_authenticates.fn(drift.sm, drift.rds, sandbox.settings, enabled=False)
    assert off["verdict"] == "skip"


def test_missing_password(sandbox, drift):
    drift.secret(password="")
    out = {c["check"]: c for c in check_secret_vs_rds.fn(drift.sm, drift.rds, sandbox.settings)}
    assert out["secret.password"]["actual"] == "missing"
    assert out["secret.password"]["verdict"] == "fail"
    assert out["secret.dbname"]["verdict"] == "pass"  # still compared field by field


def test_endpoint_change_since_last_deploy(sandbox, drift):
    s = sandbox.settings
    drift.no_last_deploy()  # a deploy test may have recorded one earlier in the session
    ok = check_rds_endpoint_unchanged.fn(drift.rds, drift.s3, s)
    assert ok["verdict"] == "pass" and ok["detail"] == "no previous deploy recorded"
    drift.last_deploy(rds_endpoint_address=sandbox.rds_endpoint,
                      rds_endpoint_port=sandbox.pg.port, task_definition_arn="arn:td:1")
    assert check_rds_endpoint_unchanged.fn(drift.rds, drift.s3, s)["verdict"] == "pass"
    drift.last_deploy(rds_endpoint_address="papyrus-prd.old.us-west-2.rds.amazonaws.com",
                      rds_endpoint_port=5432, task_definition_arn="arn:td:1")
    c = only_failure(sandbox, "rds.endpoint_unchanged")
    assert c["expected"] == "papyrus-prd.old.us-west-2.rds.amazonaws.com:5432"
    assert "changed" in c["detail"]


def test_force_ssl_off(sandbox, drift):
    drift.force_ssl("0")
    c = only_failure(sandbox, "rds.force_ssl")
    assert c["actual"] == "0"
    drift.restore()
    assert check_force_ssl.fn(drift.rds, sandbox.settings)["verdict"] == "pass"


@pytest.mark.parametrize("source", [{"cidr": "0.0.0.0/0"}, {"cidr6": "::/0"}])
def test_5432_open_to_the_world(sandbox, drift, source):
    drift.sg_allow(**source)
    c = only_failure(sandbox, "rds_sg.5432_only_from_task_sg")
    assert "open to" in c["detail"]
    ev = c["evidence"]["rds_sg_inbound_after"]
    assert len(ev["analysis"]["open"]) == 1


@pytest.mark.parametrize("kind", ["same-group-twice", "other-group"])
def test_duplicate_rule(sandbox, drift, kind):
    if kind == "same-group-twice":
        drift.sg_allow(lo=5400, hi=5500, group=drift.task_sg)
    else:
        drift.sg_allow(group=drift.other_sg())
    c = check_rds_sg.fn(drift.ec2, drift.rds, sandbox.settings)
    assert c["verdict"] == "fail"
    assert ("duplicate" if kind == "same-group-twice" else "also from") in c["detail"]


def test_ecs_exec_off(sandbox, drift):
    drift.exec_off()
    c = only_failure(sandbox, "ecs.exec_enabled")
    assert c["actual"] is False


def test_dbcheck_missing_from_url_map(sandbox, drift):
    src = drift.service_without_dbcheck()
    c = check_url_map.fn(src)
    assert c["verdict"] == "fail"
    assert "/dbcheck" in c["detail"] and "/dbcheck" not in c["actual"]
    assert "/healthz" in c["actual"]
    assert "/dbcheck" not in c["evidence"]["flask_url_map_after"].split("\n")[1]


def test_repair_refuses_a_stale_plan(sandbox, drift):
    from tasks.repairs import RepairConflict, apply_secret, apply_sg, plan_secret, plan_sg

    drift.sg_allow(cidr="0.0.0.0/0")
    plan = plan_sg.fn(drift.ec2, drift.rds, sandbox.settings)
    drift.sg_allow(cidr="10.0.0.0/8")  # someone changes the group after the plan was shown
    rules = drift.inbound()
    with pytest.raises(RepairConflict):
        apply_sg.fn(drift.ec2, drift.rds, sandbox.settings, plan)
    assert drift.inbound() == rules  # nothing changed

    drift.secret(dbname="papyrus_old")
    splan = plan_secret.fn(drift.sm, drift.rds, sandbox.settings)
    assert json.dumps(splan).count(sandbox.db_password) == 0
    doc = drift.secret(dbname="papyrus_older")
    with pytest.raises(RepairConflict):
        apply_secret.fn(drift.sm, drift.rds, sandbox.settings, splan)
    assert drift.secret_doc() == doc
