"""Realism scenarios: the account as Terraform or a person leaves it (plain boto3, the `realism`
fixture), and the gates judging what AWS really enforces (docs/sandbox.md, "Realism scenarios").

- RDS enforces the security groups *attached to the instance*: a second attached group opening
  5432, a bastion group as a source, or the configured group detached, each fails the gate; the
  `sg` repair works on attached groups only.
- The app may log in as a dedicated role (not the master user): not drift; `repair secret`
  fixes host/port/dbname and never writes username or password (proved on every version).
- Secret shapes: RDS-shaped (no dbname), `database` as an alias; a missing key is one line.
"""

from __future__ import annotations

import json

import pytest

from flows.preflight import preflight
from flows.repair import repair
from papyrus_ops.runner import run_flow
from tasks.preflight import CHECK_NAMES, failed, public, run_checks
from tasks.repairs import RepairError, apply_sg, plan_secret, plan_sg
from tasks.secrets_rds import check_secret_authenticates, check_secret_vs_rds
from tasks.security_groups import check_rds_sg
from tests.support.canaries import DRIFT_PASSWORD
from tests.support.cli import invoke

SG_CHECK = "rds_sg.5432_only_from_task_sg"
NOT_URL_MAP = tuple(n for n in CHECK_NAMES if n != "service.url_map")
# The dedicated app role's password: a canary too.
APP2_USER, APP2_PASSWORD = "papyrus_app2", "CANARY-app2-pw-5c81d0-PAPYRUS"


def canaries(sandbox) -> tuple[str, ...]:
    return (sandbox.db_password, sandbox.token, DRIFT_PASSWORD, APP2_PASSWORD)


def checks_of(sandbox) -> list[dict]:
    c = {n: sandbox.client(n) for n in ("secretsmanager", "rds", "ec2", "ecs", "s3")}
    checks = run_checks(sandbox.settings, clients=c, only=NOT_URL_MAP)
    text = json.dumps(checks)
    assert not [x for x in canaries(sandbox) if x in text]
    return checks


def only_failure(sandbox, name: str) -> dict:
    checks = checks_of(sandbox)
    assert failed(checks) == [name], [public(c) for c in checks if c["verdict"] != "pass"]
    return next(c for c in checks if c["check"] == name)


def infra_mutations(sandbox) -> list[tuple[str, str]]:
    return [(c.service, c.operation) for c in sandbox.faults.served(mutating=True)
            if (c.service, c.operation) != ("s3", "PutObject")]


# -- 1. the security groups attached to the instance ------------------------------------------
def test_modify_db_instance_security_groups_is_honoured(sandbox, realism):
    """The sandbox's RDS keeps VpcSecurityGroups as ModifyDBInstance sets them (what the
    scenarios below rely on)."""
    before = realism.instance_groups()
    assert before == [sandbox.seeded.rds_sg_id]
    extra = realism.group("papyrus-rds-extra-sg")
    realism.attach(extra)
    assert realism.instance_groups() == [sandbox.seeded.rds_sg_id, extra]
    realism.restore()
    assert realism.instance_groups() == before


@pytest.mark.parametrize("rule", [
    {"cidr": "0.0.0.0/0"},
    {"cidr": "::/0"},
    {"cidr": "10.0.0.0/8", "lo": 5000, "hi": 6000},
    {"cidr": "10.20.0.0/16", "proto": "-1"},
], ids=["ipv4-world", "ipv6-world", "range-covering-5432", "all-traffic"])
def test_second_attached_group_open_to_a_cidr_fails_naming_it(sandbox, realism, rule):
    extra = realism.group("papyrus-rds-extra-sg", realism.pg_from(**rule))
    realism.attach(extra)
    c = only_failure(sandbox, SG_CHECK)
    [sgr] = [r["SecurityGroupRuleId"] for r in realism.rules(extra)]
    assert f"papyrus-rds-extra-sg ({extra})" in c["detail"], c["detail"]
    assert f"open to {rule['cidr']} via {sgr}" in c["detail"]
    assert sandbox.settings.rds_security_group not in c["detail"].split(":")[0]
    ev = c["evidence"]["rds_sg_inbound_after"]
    assert ev["attached_group_ids"] == [sandbox.seeded.rds_sg_id, extra]
    [mine, other] = ev["attached_groups"]
    assert mine["configured"] and mine["analysis"]["ok"]
    assert other["group_id"] == extra and other["analysis"]["open"] == [sgr]


def test_bastion_group_as_source_on_a_second_attached_group_fails_naming_it(sandbox, realism):
    bastion = realism.group("papyrus-bastion-sg",
                            realism.pg_from(cidr="203.0.113.10/32", lo=22, hi=22))
    admin = realism.group("papyrus-rds-admin-sg", realism.pg_from(group=bastion))
    realism.attach(admin)
    c = only_failure(sandbox, SG_CHECK)
    assert f"papyrus-rds-admin-sg ({admin})" in c["detail"]
    assert f"also from {bastion} (papyrus-bastion-sg) via sgr-" in c["detail"], c["detail"]


def test_task_sg_rule_on_a_second_attached_group_is_fine(sandbox, realism):
    extra = realism.group("papyrus-rds-extra-sg", realism.pg_from(group=sandbox.seeded.task_sg_id),
                          realism.pg_from(cidr="10.0.0.0/8", lo=22, hi=22))
    realism.attach(extra)
    c = check_rds_sg.fn(realism.ec2, realism.rds, sandbox.settings)
    assert c["verdict"] == "pass", c["detail"]
    assert "2 group(s) attached" in c["detail"]


def test_configured_group_detached_fails_not_attached(sandbox, realism):
    # Terraform replaced the group (create_before_destroy): the instance uses the new one, which
    # is itself clean; the configured papyrus-rds-sg still exists but guards nothing.
    v2 = realism.group("papyrus-rds-sg-v2", realism.pg_from(group=sandbox.seeded.task_sg_id))
    realism.set_instance_groups([v2])
    c = only_failure(sandbox, SG_CHECK)
    assert "not attached" in c["detail"]
    assert f"{sandbox.settings.rds_security_group} ({sandbox.seeded.rds_sg_id}) is not " \
           f"attached to RDS instance {sandbox.settings.rds_instance}" in c["detail"]
    assert f"papyrus-rds-sg-v2 ({v2})" in c["detail"]
    assert c["evidence"]["rds_sg_inbound_after"]["attached"] is False


@pytest.mark.usefixtures("prefect_server")
def test_repair_sg_revokes_on_the_attached_second_group_and_leaves_others(sandbox, realism):
    legacy = realism.group("papyrus-legacy-db-sg", realism.pg_from(cidr="0.0.0.0/0"))  # detached
    extra = realism.group("papyrus-rds-extra-sg", realism.pg_from(cidr="0.0.0.0/0"),
                          realism.pg_from(cidr="10.0.0.0/8", lo=22, hi=22))
    realism.attach(extra)
    mine, legacy_rules = realism.rules(sandbox.seeded.rds_sg_id), realism.rules(legacy)
    sandbox.faults.reset_calls()
    plan = run_flow(repair, env="local", what="sg")
    assert plan["verdict"] == "success" and infra_mutations(sandbox) == []
    [act] = plan["data"]["actions"]
    assert (act["action"], act["group_id"], act["reason"]) == ("revoke", extra, "open")
    out = run_flow(repair, env="local", what="sg", apply=True)
    assert out["verdict"] == "success", out["reason"]
    assert [(a["group_id"], a["reason"]) for a in out["data"]["applied"]] == [(extra, "open")]
    assert [(r["FromPort"], r["CidrIpv4"]) for r in realism.rules(extra)] == [(22, "10.0.0.0/8")]
    assert realism.rules(sandbox.seeded.rds_sg_id) == mine
    assert realism.rules(legacy) == legacy_rules  # not attached: never touched
    assert {c["verdict"] for c in out["data"]["checks"]} == {"pass"}


def test_repair_sg_refuses_when_the_configured_group_is_detached(sandbox, realism, drift):
    drift.sg_allow(cidr="0.0.0.0/0")  # the detached configured group is open: not ours to fix
    v2 = realism.group("papyrus-rds-sg-v2", realism.pg_from(group=sandbox.seeded.task_sg_id),
                       realism.pg_from(cidr="0.0.0.0/0"))
    realism.set_instance_groups([v2])
    mine, theirs = drift.inbound(), realism.rules(v2)
    sandbox.faults.reset_calls()
    with pytest.raises(RepairError, match="is not attached.*nothing changed"):
        plan_sg.fn(realism.ec2, realism.rds, sandbox.settings)
    with pytest.raises(RepairError, match="is not attached"):
        apply_sg.fn(realism.ec2, realism.rds, sandbox.settings, {"actions": []})
    assert infra_mutations(sandbox) == []
    assert drift.inbound() == mine and realism.rules(v2) == theirs


# -- 2. who the app logs in as ------------------------------------------------------------------
def app_role_secret(sandbox, realism, **changes) -> dict:
    realism.app_role(APP2_USER, APP2_PASSWORD)
    doc = realism.secret_doc() | {"username": APP2_USER, "password": APP2_PASSWORD} | changes
    realism.put_secret(doc)
    return doc


def test_dedicated_app_role_is_not_drift_and_its_login_is_proven(sandbox, realism):
    app_role_secret(sandbox, realism)
    master = realism.rds.describe_db_instances(
        DBInstanceIdentifier=sandbox.settings.rds_instance)["DBInstances"][0]["MasterUsername"]
    assert master != APP2_USER
    checks = {c["check"]: c for c in checks_of(sandbox)}
    assert {c["verdict"] for c in checks.values()} == {"pass"}, \
        [public(c) for c in checks.values() if c["verdict"] != "pass"]
    assert checks["secret.username"]["actual"] == APP2_USER
    assert f"not the master user {master}" in checks["secret.username"]["detail"]
    assert f"authenticated as {APP2_USER} " in checks["secret.password_authenticates"]["detail"]


def test_dedicated_app_role_wrong_password_still_fails_the_login(sandbox, realism):
    app_role_secret(sandbox, realism, password=DRIFT_PASSWORD)
    c = only_failure(sandbox, "secret.password_authenticates")
    assert "password authentication failed" in c["detail"]


def test_repair_secret_with_a_dedicated_role_fixes_dbname_and_never_writes_credentials(
        sandbox, realism, prefect_server, capfd):
    app_role_secret(sandbox, realism)
    realism.put_secret(realism.secret_doc() | {"dbname": "papyrus_old"})
    seen = {v["VersionId"] for v in realism.sm.list_secret_version_ids(
        SecretId=sandbox.settings.db_secret_id, IncludeDeprecated=True)["Versions"]}
    r = invoke("repair", "secret", "--env", "local", "--apply", "--yes", "--json")
    assert r.exit_code == 0, r.output[-3000:]
    out = json.loads(r.stdout)
    assert [(a["key"], a["to"]) for a in out["data"]["applied"]] == [("dbname", "papyrus")]
    assert {c["verdict"] for c in out["data"]["checks"]} == {"pass"}
    after = realism.secret_doc()
    assert (after["username"], after["password"], after["dbname"]) == \
        (APP2_USER, APP2_PASSWORD, "papyrus")
    # Every version the repair wrote: username and password exactly as the operator left them.
    versions = realism.sm.list_secret_version_ids(SecretId=sandbox.settings.db_secret_id,
                                                  IncludeDeprecated=True)["Versions"]
    new = [v["VersionId"] for v in versions if v["VersionId"] not in seen]
    assert new, "the repair wrote no version"
    for vid in new:
        doc = json.loads(realism.sm.get_secret_value(SecretId=sandbox.settings.db_secret_id,
                                                     VersionId=vid)["SecretString"])
        assert (doc["username"], doc["password"]) == (APP2_USER, APP2_PASSWORD), vid
    again = run_flow(preflight, env="local", check_db_auth=True)
    assert again["verdict"] == "success", again["data"]["failed"]
    text = r.output + "".join(capfd.readouterr()) + json.dumps(again)
    assert not [x for x in canaries(sandbox) if x in text]


# -- 3. secret shapes ---------------------------------------------------------------------------
def rds_shaped(sandbox, realism) -> dict:
    """What the Secrets Manager console writes for "Credentials for Amazon RDS database"."""
    doc = realism.secret_doc()
    return {"username": doc["username"], "password": doc["password"], "engine": "postgres",
            "host": doc["host"], "port": doc["port"],
            "dbInstanceIdentifier": sandbox.settings.rds_instance}


def test_rds_shaped_secret_without_dbname_is_read(sandbox, realism):
    realism.put_secret(rds_shaped(sandbox, realism))
    checks = {c["check"]: c for c in checks_of(sandbox)}
    assert {c["verdict"] for c in checks.values()} == {"pass"}, \
        [public(c) for c in checks.values() if c["verdict"] != "pass"]
    assert checks["secret.dbname"]["expected"] == "papyrus"
    assert "no dbname" in checks["secret.dbname"]["detail"]
    assert checks["secret.password_authenticates"]["detail"].split(" (")[0].endswith("/papyrus")
    plan = plan_secret.fn(realism.sm, realism.rds, sandbox.settings)
    assert plan["noop"], plan["actions"]  # nothing to add: the dbname is the instance's


@pytest.mark.parametrize("value, ok", [("papyrus", True), ("papyrus_old", False)])
def test_database_is_an_alias_of_dbname(sandbox, realism, value, ok):
    doc = rds_shaped(sandbox, realism) | {"database": value}
    realism.put_secret(doc)
    out = {c["check"]: c for c in check_secret_vs_rds.fn(realism.sm, realism.rds,
                                                          sandbox.settings)}
    assert out["secret.dbname"]["verdict"] == ("pass" if ok else "fail")
    assert out["secret.dbname"]["actual"] == value
    plan = plan_secret.fn(realism.sm, realism.rds, sandbox.settings)
    assert [a["key"] for a in plan["actions"]] == ([] if ok else ["database"])


def test_secret_missing_host_is_one_line_naming_host(sandbox, realism):
    doc = realism.secret_doc()
    del doc["host"]
    realism.put_secret(doc)
    out = {c["check"]: c for c in check_secret_vs_rds.fn(realism.sm, realism.rds,
                                                          sandbox.settings)}
    bad = {k: c for k, c in out.items() if c["verdict"] != "pass"}
    assert list(bad) == ["secret.host"]
    line = f"secret {sandbox.settings.db_secret_id}: missing key(s) host"
    assert bad["secret.host"]["detail"] == line
    auth = check_secret_authenticates.fn(realism.sm, realism.rds, sandbox.settings)
    assert auth["verdict"] == "fail" and auth["detail"] == line


def test_deploy_reader_refuses_a_secret_with_no_database_name_and_reads_the_alias(
        sandbox, realism):
    """read_db_secret (deploy, schema) has no RDS DBName to fall back on, and neither has the
    service: a secret without any database name is one line there, before any task starts.
    The `database` alias is read by both (service/papyrus/settings.py reads it too)."""
    from papyrus.settings import resolve

    from tasks.db import DbSecretError, parse_db_secret

    doc = rds_shaped(sandbox, realism)
    with pytest.raises(DbSecretError) as e:
        parse_db_secret(json.dumps(doc), sandbox.settings.db_secret_id)
    assert str(e.value) == f"secret {sandbox.settings.db_secret_id}: missing key(s) dbname"
    assert parse_db_secret(json.dumps(doc), "s", default_dbname="papyrus").dbname == "papyrus"
    alias = {**doc, "database": "papyrus"}
    assert parse_db_secret(json.dumps(alias), "s").dbname == "papyrus"
    assert resolve({"DB_SECRET": json.dumps(alias)}, {})["dbname"] == "papyrus"
