"""Render the environment's task definition, diff it against what runs, register it once.

The diff and the "already registered?" test both compare normalised documents: the fields ECS
fills in (ARN, revision, status, registeredAt, empty lists, container cpu 0, …) are dropped, and
lists whose order carries no meaning (environment, secrets) are sorted.
"""

from __future__ import annotations

import difflib
import json

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.render import task_definition_vars
from ground.retry import transient_only
from ground.settings import Settings

# Keys of a described task definition that ECS adds or that register_task_definition rejects.
_ECS_FILLED = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt", "enableFaultInjection",
}
_CONTAINER_DEFAULTS = {"cpu": 0, "mountPoints": [], "volumesFrom": [], "systemControls": []}


def template_variables(settings: Settings, image_uri: str, iam, sm, ec2) -> dict:
    """Everything the templates reference, looked up by name (nothing hard-coded per env)."""
    roles = {n: iam.get_role(RoleName=n)["Role"]["Arn"]
             for n in (settings.task_role, settings.execution_role)}
    db_arn = sm.describe_secret(SecretId=settings.db_secret_id)["ARN"]
    token_arn = sm.describe_secret(SecretId=settings.token_secret_id)["ARN"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [settings.vpc_name]}])["Vpcs"]
    if not vpc:
        raise ValueError(f"VPC {settings.vpc_name!r} not found")
    vpc_id = vpc[0]["VpcId"]
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "group-name", "Values": [settings.task_security_group]}])["SecurityGroups"]
    if not groups:
        raise ValueError(f"security group {settings.task_security_group!r} not found")
    subnets = list(settings.subnets) or sorted(
        s["SubnetId"] for s in ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"])
    return task_definition_vars(settings, image_uri, roles, db_arn, token_arn,
                                groups[0]["GroupId"], subnets)


def normalise(td: dict) -> dict:
    """The meaningful part of a task definition (described or rendered)."""

    def clean(node):
        if isinstance(node, dict):
            out = {k: clean(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v not in (None, [], {}, "")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    doc = {k: v for k, v in td.items() if k not in _ECS_FILLED}
    containers = []
    for c in doc.get("containerDefinitions", []):
        c = {k: v for k, v in c.items() if _CONTAINER_DEFAULTS.get(k, object()) != v}
        for key in ("environment", "secrets"):
            if key in c:
                c[key] = sorted(c[key], key=lambda e: e["name"])
        for pm in c.get("portMappings", []):
            if pm.get("hostPort") == pm.get("containerPort"):
                pm.pop("hostPort", None)  # awsvpc: ECS echoes the container port
        containers.append(c)
    doc["containerDefinitions"] = sorted(containers, key=lambda c: c["name"])
    return clean(doc)


def diff_text(current: dict | None, desired: dict, current_label: str) -> str:
    a = json.dumps(normalise(current), indent=2, sort_keys=True).splitlines() if current else []
    b = json.dumps(normalise(desired), indent=2, sort_keys=True).splitlines()
    lines = list(difflib.unified_diff(a, b, current_label, "rendered", lineterm=""))
    return "\n".join(lines) if lines else "(no change)"


@task(name="register-task-definition", cache_policy=NO_CACHE, retries=3,
      retry_delay_seconds=[1, 2, 4], retry_condition_fn=transient_only)
def register_task_definition(ecs, desired: dict, family: str, candidates: list[str]) -> dict:
    """Register `desired` unless an existing revision among `candidates` (the PRIMARY's) or the
    family's latest — read on every attempt — already equals it: a re-run, or a retry after a
    lost response, never adds a duplicate. botocore does not resend it (ground.aws)."""
    for arn in dict.fromkeys([*candidates, latest_revision(ecs, family)]):
        if not arn:
            continue
        existing = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        if normalise(existing) == normalise(desired):
            return {"arn": existing["taskDefinitionArn"], "registered": False}
    arn = ecs.register_task_definition(**desired)["taskDefinition"]["taskDefinitionArn"]
    return {"arn": arn, "registered": True}


def latest_revision(ecs, family: str) -> str | None:
    arns = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC",
                                     maxResults=1)["taskDefinitionArns"]
    return arns[0] if arns else None
