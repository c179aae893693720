"""The ECS work pool's base job template: `deployments/<env>/ecs-pool.json`, rendered.

The file is prefect-aws's own ECS base job template (`ECSWorker.get_default_base_job_template()`,
job configuration unchanged) with Papyrus's defaults in its variables: the cluster, Fargate,
the flow-run image, the flow-run task role (`deployments/<env>/iam/flow-run.*.json`), the
flow-run execution role, the VPC's private subnets and the ECS task security group (RDS admits
5432 from it), CloudWatch logs in the flow-run log group. The account's values are `${...}`
placeholders, filled here from the names in `config.toml` looked up in AWS — so the pool is
created once per account (`papyrus-ops prefect pool --env prd --image …`) and the deployments in
prefect.yaml carry no account ids at all.
"""

from __future__ import annotations

import re
from typing import Any

from ground.iam import FLOW_RUN_EXECUTION_ROLE, FLOW_RUN_LOG_GROUP, FLOW_RUN_ROLE
from ground.render import render_template
from ground.settings import ConfigError, Settings
from tasks.security_groups import resolve_groups

POOL_TEMPLATE = "ecs-pool.json"


def pool_template_path(settings: Settings):
    return settings.folder / POOL_TEMPLATE


def check_ops_image(ops_image: str) -> str:
    """The flow-run image must be pinned: a tag can move under a running pool, and every flow
    run would then start other code than the pool was set up with."""
    if not re.fullmatch(r"[^\s@]+@sha256:[0-9a-f]{64}", ops_image or ""):
        raise ConfigError(f"flow-run image {ops_image!r} is not pinned by digest "
                          "(give <registry>/<repo>@sha256:<64 hex>)")
    return ops_image


def pool_variables(settings: Settings, *, account_id: str, ec2, ops_image: str) -> dict[str, Any]:
    """What the template substitutes: looked up by name, nothing hard-coded per account."""
    check_ops_image(ops_image)
    groups = resolve_groups(ec2, settings)
    subnets = list(settings.subnets) or sorted(
        s["SubnetId"] for s in ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [groups["vpc_id"]]}])["Subnets"])
    if not subnets:
        raise ConfigError(f"no subnets in {groups['vpc_id']} ({settings.vpc_name})")
    return {
        "account_id": account_id, "region": settings.region, "cluster": settings.cluster,
        "ops_image": ops_image, "flow_run_role": FLOW_RUN_ROLE,
        "flow_run_execution_role": FLOW_RUN_EXECUTION_ROLE,
        "flow_run_log_group": FLOW_RUN_LOG_GROUP, "vpc_id": groups["vpc_id"],
        "subnet_ids": subnets, "task_security_group_id": groups["task_sg_id"],
    }


def render_pool_template(settings: Settings, variables: dict[str, Any]) -> dict[str, Any]:
    path = pool_template_path(settings)
    if not path.is_file():
        raise ConfigError(f"{path}: no ECS pool template for env {settings.env!r}")
    return render_template(path, variables)
