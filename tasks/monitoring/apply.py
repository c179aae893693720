"""Converging one plan item: the `apply_item` task."""

from __future__ import annotations

from typing import Any

from prefect import task

from tasks.monitoring import accesslogs, alarms, eventrules, notifications, targets
from tasks.monitoring.clients import _RETRY, Clients
from tasks.monitoring.planning import resolve

TAGS = {"Project": "papyrus", "ManagedBy": "papyrus-ops/monitoring"}


@task(name="monitoring-apply-item", task_run_name="apply {item[resource]} {item[name]}",
      **_RETRY)
def apply_item(clients: Clients, item: dict[str, Any], refs: dict[str, Any],
               region: str) -> dict[str, Any]:
    """Converge one plan item (idempotent: every call is a create-or-adopt or a whole put).

    Returns `{resource, name, action, result, refs}`; `refs` carries what later items need
    (the target group's ARN suffix for the ALB alarms)."""
    action, resource, name = item["action"], item["resource"], item["name"]
    out = {"resource": resource, "name": name, "action": action, "result": None, "refs": {}}
    if action in ("unchanged", "blocked"):
        return out
    fields = resolve(item["desired"], refs)
    changes = item.get("changes", {})
    tags = {**TAGS, **item.get("tags", {})}
    c = clients
    if resource == notifications.RESOURCE:
        result = notifications.apply(c.sns, name, fields, tags)
    elif resource == accesslogs.BUCKET:
        result = accesslogs.apply_bucket(c.s3, action, name, region, fields, changes, tags)
    elif resource == targets.RESOURCE:
        result = targets.apply(c.elbv2, action, name, fields, changes, tags)
        out["refs"] = {"target_group_arn": result["target_group_arn"],
                       "target_group_suffix": result["target_group_suffix"]}
    elif resource == accesslogs.LB_ATTRIBUTES:
        result = accesslogs.apply_lb_attributes(c.elbv2, refs["load_balancer"]["arn"], fields)
    elif resource == alarms.RESOURCE:
        result = alarms.put(c.cloudwatch, name, fields, tags)
    elif resource == eventrules.RULE:
        result = eventrules.put_rule(c.events, name, fields, tags)
    elif resource == eventrules.TARGET:
        rule, target_id = name.split("/", 1)
        result = eventrules.put_target(c.events, rule, target_id, fields)
    else:  # pragma: no cover - the plan only produces the kinds above
        raise ValueError(f"unknown resource kind {resource!r}")
    out["result"] = result
    return out
