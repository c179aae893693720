"""What exists now: the `read_actual` task (Describe/List/Get/Head calls only)."""

from __future__ import annotations

from typing import Any

from prefect import task

from ground.monitoring_settings import MonitoringConfig
from ground.settings import Settings
from tasks.monitoring import accesslogs, alarms, eventrules, notifications, targets
from tasks.monitoring.clients import _RETRY, Clients


def _vpc_id(ec2, vpc_name: str) -> str | None:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [vpc_name]}])["Vpcs"]
    return vpcs[0]["VpcId"] if len(vpcs) == 1 else None


@task(name="monitoring-read-actual", **_RETRY)
def read_actual(clients: Clients, settings: Settings, cfg: MonitoringConfig) -> dict[str, Any]:
    """What exists now: `{context, resources: {"<resource>/<name>": fields | None}, problems}`.

    Only Describe/List/Get/Head calls (and STS GetCallerIdentity)."""
    c = clients
    account = c.sts.get_caller_identity()["Account"]
    problems: list[str] = []
    ctx: dict[str, Any] = {"account": account, "region": settings.region}
    ctx["topic_arn"] = notifications.topic_arn(settings.region, account, cfg.topic)
    ctx["rule_arn"] = eventrules.rule_arn(settings.region, account, cfg.rule)
    ctx["cluster_arn"] = eventrules.cluster_arn(settings.region, account, settings.cluster)
    ctx["vpc_id"] = _vpc_id(c.ec2, settings.vpc_name)
    if ctx["vpc_id"] is None:
        problems.append(f"VPC {settings.vpc_name!r} (settings vpc_name) not found, or not unique")

    res: dict[str, Any] = {}
    res[f"{notifications.RESOURCE}/{cfg.topic}"] = notifications.read(c.sns, ctx["topic_arn"])
    try:
        res[f"{accesslogs.BUCKET}/{cfg.log_bucket}"] = accesslogs.read_bucket(c.s3, cfg.log_bucket)
    except PermissionError as e:
        problems.append(str(e))
        res[f"{accesslogs.BUCKET}/{cfg.log_bucket}"] = {"blocked": str(e)}
    tg_fields, tg_arn, tg_lbs = targets.read(c.elbv2, cfg.target_group)
    res[f"{targets.RESOURCE}/{cfg.target_group}"] = tg_fields
    ctx["target_group_arn"] = tg_arn
    ctx["target_group_suffix"] = targets.arn_suffix(tg_arn) if tg_arn else None
    ctx["target_group_load_balancers"] = tg_lbs

    ctx["load_balancer"] = None
    if cfg.load_balancer:
        lb = targets.read_load_balancer(c.elbv2, cfg.load_balancer)
        if lb is None:
            problems.append(f"load balancer {cfg.load_balancer!r} ({cfg.path} [load_balancer] "
                            "name) not found")
        else:
            ctx["load_balancer"] = lb
            res[f"{accesslogs.LB_ATTRIBUTES}/{cfg.load_balancer}"] = \
                accesslogs.read_lb_attributes(c.elbv2, lb["arn"])

    res.update({f"{alarms.RESOURCE}/{name}": fields for name, fields in
                alarms.read(c.cloudwatch, [a.name for a in cfg.alarms]).items()})
    res[f"{eventrules.RULE}/{cfg.rule}"] = eventrules.read_rule(c.events, cfg.rule)
    res[f"{eventrules.TARGET}/{cfg.rule}/{eventrules.TARGET_ID}"] = \
        eventrules.read_target(c.events, cfg.rule, eventrules.TARGET_ID)
    return {"context": ctx, "resources": res, "problems": problems}
