"""Render the environment's task and service definitions, diff them against what runs, register
the task definition once.

The diff and the "already registered?" test both compare normalised documents: the fields ECS
fills in (ARN, revision, status, registeredAt, empty lists, container cpu 0, …) are dropped, and
lists whose order carries no meaning (environment, secrets) are sorted.
"""

from __future__ import annotations

import difflib
import json

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.render import (
    render_service_definition,
    render_task_definition,
    service_update_params,
    task_definition_vars,
)
from ground.retry import transient_only
from ground.settings import Settings
from tasks import blue_green

# Keys of a described task definition that ECS adds or that register_task_definition rejects.
_ECS_FILLED = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt", "enableFaultInjection",
}
_CONTAINER_DEFAULTS = {"cpu": 0, "mountPoints": [], "volumesFrom": [], "systemControls": []}


def target_group_arn(elbv2, name: str) -> str:
    """The ARN of the target group the environment names (ValueError when there is none)."""
    try:
        groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    except ClientError as e:
        if e.response["Error"]["Code"] in ("TargetGroupNotFound", "TargetGroupNotFoundException"):
            raise ValueError(f"target group {name!r} not found") from None
        raise
    tg = groups[0]
    # What ECS would refuse at UpdateService, said before anything is registered or changed.
    if not tg.get("LoadBalancerArns"):
        raise ValueError(f"target group {name!r} is not used by any load balancer: ECS refuses "
                         "to attach it (a listener must forward to it first)")
    if tg.get("TargetType") != "ip":
        raise ValueError(f"target group {name!r} has target type {tg.get('TargetType')!r}: "
                         "Fargate (awsvpc) tasks need 'ip'")
    return tg["TargetGroupArn"]


def template_variables(settings: Settings, image_uri: str, iam, sm, ec2, elbv2=None) -> dict:
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
    tg_arn = None
    if settings.target_group:
        if elbv2 is None:
            raise ValueError(f"target group {settings.target_group!r}: no elbv2 client given")
        tg_arn = target_group_arn(elbv2, settings.target_group)
    variables = task_definition_vars(settings, image_uri, roles, db_arn, token_arn,
                                     groups[0]["GroupId"], subnets, tg_arn)
    if settings.alternate_target_group:
        variables |= blue_green_vars(settings, iam, elbv2, tg_arn)
    return variables


def blue_green_vars(settings: Settings, iam, elbv2, tg_arn: str | None) -> dict:
    """What a BLUE_GREEN service definition's `advancedConfiguration` names: the alternate
    target group, the production and test listener rules ECS moves between the two groups,
    and the infrastructure role ECS moves them with."""
    alt = target_group_arn(elbv2, settings.alternate_target_group)
    groups = {a for a in (tg_arn, alt) if a}
    return {"alternate_target_group_arn": alt,
            "production_listener_rule_arn": blue_green.listener_rule_arn(
                elbv2, settings, "production", groups),
            "test_listener_rule_arn": blue_green.listener_rule_arn(elbv2, settings, "test",
                                                                   groups),
            "infrastructure_role_arn": iam.get_role(
                RoleName=settings.infrastructure_role)["Role"]["Arn"]}


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


def render_definitions(settings: Settings, image_uri: str, iam, sm, ec2, elbv2=None) -> dict:
    """What a deploy of `image_uri` would send: the task definition and the UpdateService
    parameters, rendered from the environment folder (read-only lookups of ARNs and IDs)."""
    variables = template_variables(settings, image_uri, iam, sm, ec2, elbv2)
    return {"task_definition": render_task_definition(settings, variables),
            "service": service_update_params(render_service_definition(settings, variables))}


def running_service_params(service: dict, keys) -> dict:
    """The described service's values for `keys` (the ones the env folder declares)."""
    return {k: service[k] for k in keys if k in service}


def service_diff_text(service: dict, desired: dict, label: str) -> str:
    """What UpdateService would change: the declared keys, running vs rendered."""
    return _json_diff(running_service_params(service, desired), desired, label)


def _json_diff(current: dict | None, desired: dict, current_label: str) -> str:
    a = json.dumps(current, indent=2, sort_keys=True).splitlines() if current else []
    b = json.dumps(desired, indent=2, sort_keys=True).splitlines()
    lines = list(difflib.unified_diff(a, b, current_label, "rendered", lineterm=""))
    return "\n".join(lines) if lines else "(no change)"


def diff_text(current: dict | None, desired: dict, current_label: str) -> str:
    return _json_diff(normalise(current) if current else None, normalise(desired), current_label)


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


def keep_unowned(running_td: dict, running_service: dict, rendered: dict, container: str
                 ) -> dict:
    """What a deploy sends, given what runs: the rendered definitions plus whatever runs that
    the environment folder does not mention — set by Terraform or a person, and so not ours to
    drop. Returns {"task_definition", "service", "kept": ["runtimePlatform", "container xray",
    "app.environment FEATURE_X", "deploymentConfiguration.alarms", ...]} (the plan shows
    `kept`). Owned means named in the file: a key it declares is sent as the file says."""
    kept: list[str] = []
    have = {k: v for k, v in running_td.items() if k not in _ECS_FILLED}
    td = dict(rendered["task_definition"])
    for key, value in have.items():
        if key not in td and key != "containerDefinitions" and value not in (None, [], {}, ""):
            td[key] = value
            kept.append(key)
    ours = {c["name"]: c for c in td.get("containerDefinitions", [])}
    containers = [dict(c) for c in td.get("containerDefinitions", [])]
    for rc in have.get("containerDefinitions", []):
        name = rc.get("name")
        if name not in ours:
            containers.append(rc)  # after ours: a sidecar never becomes the first container
            kept.append(f"container {name}")
            continue
        mine = next(c for c in containers if c["name"] == name)
        for key, value in rc.items():
            if key not in mine and _CONTAINER_DEFAULTS.get(key, object()) != value \
                    and value not in (None, [], {}, ""):
                mine[key] = value
                kept.append(f"{name}.{key}")
        for key in ("environment", "secrets"):
            declared = {e["name"] for e in mine.get(key, [])}
            extra = [e for e in rc.get(key, []) if e["name"] not in declared]
            if extra and key in mine:
                mine[key] = [*mine[key], *extra]
                kept += [f"{name}.{key} {e['name']}" for e in extra]
    td["containerDefinitions"] = containers
    service = dict(rendered["service"])
    declared_conf = service.get("deploymentConfiguration")
    running_conf = running_service.get("deploymentConfiguration") or {}
    if isinstance(declared_conf, dict):
        merged = dict(declared_conf)
        for key, value in running_conf.items():
            if key not in merged and value not in (None, [], {}, ""):
                merged[key] = value
                kept.append(f"deploymentConfiguration.{key}")
        service["deploymentConfiguration"] = merged
    return {"task_definition": td, "service": service, "kept": kept}


def running_image(ecs, settings: Settings, task_definition_arn: str) -> str:
    """The image of the environment's container in a task definition (what runs now)."""
    td = ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
    for c in td.get("containerDefinitions", []):
        if c.get("name") == settings.container:
            return c["image"]
    raise ValueError(f"{task_definition_arn}: no container named {settings.container!r}")


def compare_with_running(settings: Settings, c: dict, image_uri: str | None = None) -> dict:
    """Render what a deploy would send and compare it with what runs (read-only). `c` holds
    ecs, iam, secretsmanager and ec2 clients. Without `image_uri`, the running image is kept:
    the diff is then what the environment folder alone would change."""
    svc = c["ecs"].describe_services(cluster=settings.cluster,
                                     services=[settings.service])["services"]
    if not svc or svc[0].get("status") != "ACTIVE":
        raise ValueError(f"service {settings.service!r} not found in cluster "
                         f"{settings.cluster!r}")
    svc = svc[0]
    running_arn = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")[
        "taskDefinition"]
    image_uri = image_uri or running_image(c["ecs"], settings, running_arn)
    running_td = c["ecs"].describe_task_definition(taskDefinition=running_arn)["taskDefinition"]
    sent = keep_unowned(running_td, svc, render_definitions(
        settings, image_uri, c["iam"], c["secretsmanager"], c["ec2"], c.get("elbv2")),
        settings.container)
    label = running_arn.rsplit("/", 1)[-1]
    td_diff = diff_text(running_td, sent["task_definition"], label)
    svc_diff = service_diff_text(svc, sent["service"], settings.service)
    return {"image": image_uri, "running_task_definition": running_arn, **sent,
            "task_definition_diff": td_diff, "service_diff": svc_diff,
            "changed": td_diff != "(no change)" or svc_diff != "(no change)"}
