"""What should exist: the `desired_state` task (pure: settings + monitoring.toml + context)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.monitoring_settings import MonitoringConfig
from ground.settings import Settings
from tasks.monitoring import accesslogs, alarms, eventrules, notifications, targets


def _ref(ctx: dict[str, Any], key: str) -> Any:
    return ctx[key] if ctx.get(key) else {"$ref": key}


@task(name="monitoring-desired-state", cache_policy=NO_CACHE)
def desired_state(settings: Settings, cfg: MonitoringConfig,
                  context: dict[str, Any]) -> dict[str, Any]:
    """The desired resources, in apply order, and notes on what is deliberately left out."""
    ctx, items, notes = context, [], []

    def add(resource: str, name: str, fields: dict[str, Any], **extra: Any) -> None:
        items.append({"resource": resource, "name": name, "desired": fields, **extra})

    add(notifications.RESOURCE, cfg.topic,
        notifications.desired_fields(ctx["topic_arn"], ctx["account"], ctx["rule_arn"]))
    add(accesslogs.BUCKET, cfg.log_bucket,
        accesslogs.desired_bucket(cfg.log_bucket, cfg.log_prefix, ctx["account"],
                                  settings.region))
    add(targets.RESOURCE, cfg.target_group, targets.desired_fields(
        vpc_id=ctx.get("vpc_id") or "", port=settings.container_port,
        health_check_path=cfg.health_check_path, matcher=cfg.matcher,
        interval=cfg.hc_interval, timeout=cfg.hc_timeout, healthy=cfg.healthy_threshold,
        unhealthy=cfg.unhealthy_threshold),
        tags={"papyrus:container": settings.container,
              "papyrus:containerPort": str(settings.container_port)})
    lb = ctx.get("load_balancer")
    if lb:
        add(accesslogs.LB_ATTRIBUTES, cfg.load_balancer,
            accesslogs.desired_lb_attributes(cfg.log_bucket, cfg.log_prefix))
    for a in cfg.alarms:
        if a.needs_load_balancer and not lb:
            notes.append(f"{a.name}: skipped, no load balancer configured "
                         f"({cfg.path.name} [load_balancer] name)" if not cfg.load_balancer else
                         f"{a.name}: skipped, load balancer {cfg.load_balancer!r} not found")
            continue
        dims = ({"ClusterName": settings.cluster, "ServiceName": settings.service}
                if a.namespace == "AWS/ECS" else
                {"LoadBalancer": lb["arn_suffix"],
                 "TargetGroup": _ref(ctx, "target_group_suffix")})
        add(alarms.RESOURCE, a.name, alarms.desired_fields(
            name=a.name, description=a.description, namespace=a.namespace, metric=a.metric,
            dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
            statistic=a.statistic, period=a.period, evaluation_periods=a.evaluation_periods,
            datapoints_to_alarm=a.datapoints_to_alarm, threshold=a.threshold,
            comparison=a.comparison, treat_missing_data=a.treat_missing_data, unit=a.unit,
            topic_arn=ctx["topic_arn"], notify_ok=cfg.notify_ok))
    pattern = eventrules.task_failure_pattern(ctx["cluster_arn"], settings.service,
                                              list(cfg.start_failure_reasons))
    add(eventrules.RULE, cfg.rule, eventrules.desired_rule(
        pattern, f"Papyrus: {settings.service} tasks in {settings.cluster} that stop with a "
                 "non-zero exit code or fail to start"))
    add(eventrules.TARGET, f"{cfg.rule}/{eventrules.TARGET_ID}",
        eventrules.desired_target(ctx["topic_arn"]))
    if lb and ctx.get("target_group_load_balancers") == []:
        notes.append(f"{cfg.target_group}: not yet attached to {cfg.load_balancer!r} (needs a "
                     "listener rule) nor registered by the ECS service (service definition "
                     f"loadBalancers: containerName={settings.container}, "
                     f"containerPort={settings.container_port})")
    return {"items": items, "notes": notes}
