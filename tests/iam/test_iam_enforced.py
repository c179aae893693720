"""Least privilege is code, and the sandbox enforces it.

For each policy file under `deployments/<env>/iam/`, one action a flow (or AWS acting for the
principal) needs is taken out of the role in the sandbox (iam put_role_policy, restored after)
and the failure must name it. The files themselves are checked against the calls the code makes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from ground import iam as iam_files
from ground.retry import is_deterministic
from ground.settings import ROOT, load_env
from sandbox import image as sandbox_image

pytestmark = pytest.mark.usefixtures("prefect_server")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "papyrus_ops.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


class without:
    """The sandbox role `key` without `action` for the duration of the block."""

    def __init__(self, sb, key: str, action: str):
        self.sb, self.key, self.action = sb, key, action

    def __enter__(self):
        policy = self.sb.principals[self.key].policy
        assert self.action in iam_files.actions(policy), (self.key, self.action)
        self.sb.put_policy(self.key, iam_files.without_action(policy, self.action))
        return self

    def __exit__(self, *exc):
        self.sb.restore_policy(self.key)


def flow_client(service: str, region: str = "us-west-2"):
    """A client as a flow makes one (ground.aws: a new session, the environment's profile); not
    boto3's default session, which another test may have created with other credentials."""
    return boto3.session.Session().client(service, region_name=region)


def calls_of(sb, operation: str, since: int) -> int:
    return sum(1 for c in sb.faults.served()[since:] if c.operation == operation)


# -- the files ---------------------------------------------------------------------------------
def test_local_and_prd_policies_are_the_same_templates():
    local, prd = ROOT / "deployments/local/iam", ROOT / "deployments/prd/iam"
    names = sorted(p.name for p in prd.iterdir())
    assert names == sorted(p.name for p in local.iterdir())
    assert len(names) == 2 * len(iam_files.PRINCIPALS) + 1  # + README.md
    for name in names:
        assert (local / name).read_text() == (prd / name).read_text(), name


def test_prd_renders_with_real_arns_and_the_oidc_trust():
    s = load_env("prd")
    ps = iam_files.principals(s, iam_files.variables(
        s, "210987654321", rds_security_group_id="sg-0abc", alb_log_bucket="papyrus-alb-logs-prd",
        github_repo="acme/papyrus-ops"))
    text = json.dumps({k: [p.trust, p.policy] for k, p in ps.items()})
    assert "${" not in text and "arn:aws:iam::210987654321:role/papyrusTaskRole" in text
    ci = ps["ci-deploy"].trust["Statement"][0]
    assert ci["Principal"]["Federated"].endswith(
        ":oidc-provider/token.actions.githubusercontent.com")
    assert ci["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == [
        "repo:acme/papyrus-ops:ref:refs/heads/main", "repo:acme/papyrus-ops:environment:production"]
    assert ps["ci-deploy"].role == "papyrus-deploy-oidc"  # what the workflow assumes
    assert "papyrus-deploy-oidc" in (ROOT / ".github/workflows/papyrus-deploy.yml").read_text()
    # No statement of any principal grants everything.
    for p in ps.values():
        for st in p.policy["Statement"]:
            assert "*" not in st["Action"] and not any(a.endswith(":*") for a in st["Action"])


def test_ci_deploy_shares_the_flow_run_statements_it_uses():
    s = load_env("local")
    ps = iam_files.principals(s, iam_files.variables(s, "1", rds_security_group_id="sg",
                                                     alb_log_bucket="b", github_repo="o/r"))
    flow_run = {st["Sid"]: st for st in ps["flow-run"].policy["Statement"]}
    for st in ps["ci-deploy"].policy["Statement"]:
        if not st["Sid"].startswith("Ecr") or st["Sid"] == "EcrResolveTheImage":
            assert flow_run[st["Sid"]] == st, st["Sid"]


# What the code calls, from its source: every `.operation(` of the services the flows use.
_CODE = ("tasks", "flows", "artifacts")
_PREFIX = {"cloudwatch": "cloudwatch", "elbv2": "elasticloadbalancing"}
# An S3 API operation and the IAM action it is authorised as (Service Authorization Reference).
_S3_AS = {"HeadBucket": "ListBucket", "HeadObject": "GetObject",
          "GetBucketEncryption": "GetEncryptionConfiguration",
          "PutBucketEncryption": "PutEncryptionConfiguration",
          "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
          "PutPublicAccessBlock": "PutBucketPublicAccessBlock", "ListObjectsV2": "ListBucket"}
_NOT_CALLS = {"ec2:DescribeImages"}  # `describe_images` is ECR's in this code
# `list_tags_for_resource` / `tag_resource` are called on SNS only (adopting an existing topic):
# the name alone would count them for every service that has an operation of that name.
_NOT_CALLS |= {f"{svc}:{op}" for svc in ("ecr", "ecs", "secretsmanager", "cloudwatch", "events",
                                          "rds", "cloudtrail", "elasticloadbalancing", "kms")
               for op in ("ListTagsForResource", "TagResource")}
_NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}  # AWS: no permission needed


def _called_actions() -> set[str]:
    import botocore.session

    text = "\n".join(p.read_text() for d in _CODE for p in (ROOT / d).rglob("*.py"))
    called = set(re.findall(r"\.([a-z][a-z0-9_]+)\(", text)) | set(
        re.findall(r"get_paginator\(\"([a-z_]+)\"\)", text))
    session = botocore.session.get_session()
    services = ("ecs", "ecr", "iam", "secretsmanager", "rds", "ec2", "s3", "cloudtrail",
                "cloudwatch", "events", "sns", "elbv2", "sts", "kms")
    out = set()
    for svc in services:
        model = session.get_service_model(svc)
        for op in model.operation_names:
            if re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower().replace("_d_b_", "_db_") in called:
                name = _S3_AS.get(op, op) if svc == "s3" else op
                out.add(f"{_PREFIX.get(svc, svc)}:{name}")
    return out - _NOT_CALLS - _NEEDS_NO_PERMISSION


def test_the_flow_run_policy_allows_exactly_what_the_code_calls():
    s = load_env("local")
    policy = iam_files.principals(s, iam_files.variables(
        s, "1", rds_security_group_id="sg", alb_log_bucket="b", github_repo="o/r"))[
        "flow-run"].policy
    called = _called_actions()
    assert {"ecr:DescribeRepositories", "secretsmanager:PutSecretValue", "cloudtrail:LookupEvents",
            "iam:GetRole", "elasticloadbalancing:CreateTargetGroup"} <= called
    granted = iam_files.actions(policy)
    assert called - granted == set(), "called but not granted"
    # Granted without a call of its own: what AWS checks besides the API's own action.
    implied = {"iam:PassRole",  # RegisterTaskDefinition with task/execution roles
               "s3:GetObjectVersion",  # GetObject with VersionId
               "kms:GenerateDataKey", "kms:Decrypt",  # SSE-KMS objects in the evidence bucket
               "cloudwatch:TagResource", "events:TagResource", "sns:TagResource",
               "elasticloadbalancing:AddTags"}  # Tags= on create
    assert granted - called - implied == set(), "granted but never called"


# -- flow-run role -----------------------------------------------------------------------------
def test_flows_run_as_the_flow_run_role(sandbox):
    arn = flow_client("sts").get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/papyrus-ops-flow-run/")
    with pytest.raises(ClientError) as e:  # not in the policy at all
        flow_client("iam").list_users()
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert "iam:ListUsers" in e.value.response["Error"]["Message"]
    assert is_deterministic(e.value)


def test_a_process_assumes_the_flow_run_role_once_for_all_its_clients(sandbox, monkeypatch):
    """Every ground.aws client has a session of its own; the assumed role's credentials are
    shared (as awscli's cache shares them), so four clients cost one AssumeRole, and a profile
    with other source credentials (another account's config file) does not get them."""
    from ground import aws

    aws._cached.cache_clear()
    aws._ASSUMED.clear()
    n = len(sandbox.faults.served())
    try:
        aws.client("ec2", "us-west-2").describe_security_groups()
        bucket = sandbox.settings.evidence_bucket
        aws.client("s3", "us-west-2").list_objects_v2(Bucket=bucket, MaxKeys=1)
        aws.client("cloudtrail", "us-west-2").lookup_events(MaxResults=1)
        aws.client("cloudtrail", "us-east-1").lookup_events(MaxResults=1)
        assert calls_of(sandbox, "AssumeRole", n) == 1
        # The same profile name from another config file: its own AssumeRole.
        import os
        import shutil

        other = Path(os.environ["AWS_CONFIG_FILE"]).with_name("config-other")
        shutil.copy(os.environ["AWS_CONFIG_FILE"], other)
        other.write_text(other.read_text() + "\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(other))
        aws._cached.cache_clear()
        aws.client("s3", "us-west-2").list_objects_v2(Bucket=bucket, MaxKeys=1)
        assert calls_of(sandbox, "AssumeRole", n) == 2
    finally:
        aws._cached.cache_clear()


def test_the_flow_run_role_reads_global_service_events_in_us_east_1(sandbox):
    """The archive calls LookupEvents in the region and in us-east-1 (IAM's events are only
    there): the policy's LookupEvents statement (no resource type, no region) covers both,
    and the sandbox's history has the Papyrus roles' IAM events in us-east-1 only."""
    def iam_events(region: str) -> list[dict]:
        pages = flow_client("cloudtrail", region).get_paginator("lookup_events").paginate(
            LookupAttributes=[{"AttributeKey": "EventSource",
                               "AttributeValue": "iam.amazonaws.com"}])
        return [e for page in pages for e in page["Events"]]

    east = iam_events("us-east-1")
    roles = {sandbox.settings.task_role, sandbox.settings.execution_role}
    assert any(roles & {r.get("ResourceName") for r in e["Resources"]} for e in east)
    assert iam_events(sandbox.settings.region) == []


def test_a_secret_outside_the_policy_is_denied_by_resource(sandbox):
    sandbox.client("secretsmanager").create_secret(Name="someone-else/secret", SecretString="x")
    with pytest.raises(ClientError) as e:
        flow_client("secretsmanager", sandbox.settings.region).get_secret_value(
            SecretId="someone-else/secret")
    err = e.value.response["Error"]
    assert err["Code"] == "AccessDeniedException" and "secretsmanager:GetSecretValue" in err[
        "Message"] and "someone-else/secret" in err["Message"]


def test_deploy_without_ecr_describe_repositories_fails_naming_it(sandbox):
    n = len(sandbox.faults.served())
    with without(sandbox, "flow-run", "ecr:DescribeRepositories"):
        t0 = time.monotonic()
        out = cli("deploy", "--env", "local", "--image", "latest", "--yes", "--json")
        took = time.monotonic() - t0
    assert out.returncode == 1, out.stderr  # failed, not bad input: the image is fine
    res = json.loads(out.stdout)
    assert res["verdict"] == "failed"
    assert "ecr:DescribeRepositories" in res["reason"], res
    assert "AccessDenied" in (res["error"] or res["reason"])
    assert calls_of(sandbox, "DescribeRepositories", n) == 1  # denied once: never retried
    assert took < 60
    # Nothing changed (but the test's own put_role_policy).
    assert [c for c in sandbox.faults.served()[n:] if c.mutating and c.service != "iam"] == []


def test_preflight_without_rds_describe_db_parameters_fails_naming_it(sandbox):
    from flows.preflight import preflight
    from papyrus_ops.runner import run_flow

    with without(sandbox, "flow-run", "rds:DescribeDBParameters"):
        res = run_flow(preflight, env="local")
    assert res["verdict"] == "failed"
    assert "rds:DescribeDBParameters" in res["reason"], res


# -- CI deploy role ----------------------------------------------------------------------------
def test_ci_role_runs_preflight_and_fails_naming_a_missing_action(sandbox):
    from sandbox.server import CI_DEPLOY_PROFILE

    env = {"AWS_PROFILE": CI_DEPLOY_PROFILE}
    ok = cli("preflight", "--env", "local", "--json", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with without(sandbox, "ci-deploy", "ec2:DescribeSecurityGroupRules"):
        out = cli("preflight", "--env", "local", "--json", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    res = json.loads(out.stdout)
    assert "ec2:DescribeSecurityGroupRules" in res["reason"], res
    assert "papyrus-deploy-oidc" in json.dumps(res)


# -- the Prefect ECS worker's role -------------------------------------------------------------
def _worker_calls() -> set[str]:
    """The AWS operations prefect-aws's ECS worker (and its crash observer) make."""
    import prefect_aws

    base = Path(prefect_aws.__file__).parent
    text = (base / "workers/ecs_worker.py").read_text() + (base / "observers/ecs.py").read_text()
    names = set(re.findall(r"client\.([a-z_]+)\(", text))
    table = {"register_task_definition": "ecs:RegisterTaskDefinition",
             "describe_task_definition": "ecs:DescribeTaskDefinition",
             "deregister_task_definition": "ecs:DeregisterTaskDefinition",
             "run_task": "ecs:RunTask", "describe_tasks": "ecs:DescribeTasks",
             "stop_task": "ecs:StopTask", "describe_vpcs": "ec2:DescribeVpcs",
             "describe_subnets": "ec2:DescribeSubnets", "get_log_events": "logs:GetLogEvents",
             "get_queue_url": "sqs:GetQueueUrl", "receive_message": "sqs:ReceiveMessage",
             "delete_message": "sqs:DeleteMessage",
             "change_message_visibility": "sqs:ChangeMessageVisibility"}
    not_aws = {"read_flow_run", "emit", "__aexit__"}
    assert names - set(table) - not_aws == set(), "prefect-aws calls something new"
    return {table[n] for n in names if n in table}


def test_worker_policy_allows_what_the_prefect_aws_worker_calls(sandbox):
    from sandbox.iam import role_allows

    s, acct = sandbox.settings, "123456789012"
    arn = sandbox.role_arn("worker")
    resources = {
        "ecs:RunTask": f"arn:aws:ecs:{s.region}:{acct}:task-definition/papyrus-ops:3",
        "ecs:DescribeTasks": f"arn:aws:ecs:{s.region}:{acct}:task/{s.cluster}/abc",
        "ecs:StopTask": f"arn:aws:ecs:{s.region}:{acct}:task/{s.cluster}/abc",
        "logs:GetLogEvents": f"arn:aws:logs:{s.region}:{acct}:log-group:/ecs/papyrus-ops:"
                             "log-stream:prefect/abc",
    }
    sqs = f"arn:aws:sqs:{s.region}:{acct}:prefect-ecs-tasks-events"
    calls = _worker_calls()
    assert {"ecs:RunTask", "ecs:RegisterTaskDefinition", "ecs:StopTask"} <= calls
    for action in calls:
        res = resources.get(action, sqs if action.startswith("sqs:") else "*")
        assert role_allows(acct, arn, action, res), action
    for passed in ("papyrus-ops-flow-run", "papyrus-ops-execution"):  # and nothing else
        assert role_allows(acct, arn, "iam:PassRole", f"arn:aws:iam::{acct}:role/{passed}")
    assert not role_allows(acct, arn, "iam:PassRole", sandbox.role_arn("ci-deploy"))
    assert not role_allows(acct, arn, "ecs:StopTask",
                           f"arn:aws:ecs:{s.region}:{acct}:task/other-cluster/abc")
    with without(sandbox, "worker", "ecs:RunTask"):
        assert not role_allows(acct, arn, "ecs:RunTask", resources["ecs:RunTask"])


def test_worker_role_in_the_sandbox_is_denied_a_removed_action(sandbox):
    ecs = boto3.session.Session(profile_name="papyrus-worker").client(
        "ecs", region_name=sandbox.settings.region)
    td = sandbox.seeded.task_definition_arn
    ecs.describe_task_definition(taskDefinition=td)
    with without(sandbox, "worker", "ecs:DescribeTaskDefinition"), \
            pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition=td)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ecs:DescribeTaskDefinition" in e.value.response["Error"]["Message"]


# -- the service's execution and task roles ----------------------------------------------------
def _service(sb) -> dict:
    return sb.client("ecs").describe_services(cluster=sb.settings.cluster,
                                              services=[sb.settings.service])["services"][0]


def test_execution_role_without_get_secret_value_fails_the_deploy_naming_it(sandbox):
    from flows.deploy import deploy
    from papyrus_ops.runner import run_flow

    digest = sandbox_image.push_build(sandbox.client("ecr"), sandbox.settings.ecr_repository,
                                      "iam-exec-test")
    image = f"{sandbox.seeded.image_uri.split('@')[0]}@{digest}"
    before = _service(sandbox)["taskDefinition"]
    with without(sandbox, "execution", "secretsmanager:GetSecretValue"):
        res = run_flow(deploy, env="local", image=image, skip_preflight=True)
    assert res["verdict"] == "failed", res
    text = json.dumps(res)
    assert "secretsmanager:GetSecretValue" in text, res["reason"]
    assert "papyrusTaskExecutionRole" in text
    deadline = time.monotonic() + 60  # rolled back to what ran before, and stable
    while time.monotonic() < deadline:
        svc = _service(sandbox)
        if (svc["taskDefinition"] == before and len(svc["deployments"]) == 1
                and svc["runningCount"] == 1):
            break
        time.sleep(0.5)
    assert svc["taskDefinition"] == before


def test_task_role_is_ecs_exec_only(sandbox):
    policy = sandbox.principals["task"].policy
    # AWS: "ECS Exec ... the task IAM role needs" these four (ecs-exec.html, IAM permissions).
    assert iam_files.actions(policy) == {
        "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"}
    stored = sandbox.client("iam").get_role_policy(RoleName=sandbox.settings.task_role,
                                                   PolicyName="task-policy")["PolicyDocument"]
    assert stored == policy
    svc = _service(sandbox)
    assert svc["enableExecuteCommand"] is True
    td = sandbox.client("ecs").describe_task_definition(taskDefinition=svc["taskDefinition"])
    assert td["taskDefinition"]["taskRoleArn"] == sandbox.role_arn("task")
    with without(sandbox, "task", "ssmmessages:OpenDataChannel"):
        from sandbox.iam import role_allows

        assert not role_allows("123456789012", sandbox.role_arn("task"),
                               "ssmmessages:OpenDataChannel", "*")
