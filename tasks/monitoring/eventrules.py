"""The EventBridge rule for Papyrus tasks that stop abnormally, and its SNS target.

The pattern catches, for this cluster and this service only, tasks that reached STOPPED and
- have a container that exited with a non-zero code (`exitCode` anything-but 0; a container that
  never ran has no `exitCode` and does not match this branch), or
- failed to start: `stopCode` `TaskFailedToStart`, or a `stoppedReason` containing one of the
  configured start-failure reasons (`CannotPullContainerError`, `ResourceInitializationError`).

`put_rule` and `put_targets` (by target id) are idempotent, so both are safe to retry. Targets on
the rule that we do not manage (another id) are left alone.

moto 5.2.5: `describe_rule` returns the pattern re-serialised (so it is compared parsed), and
its EventBridge does not match inside arrays — the pattern is tested with
`tasks.monitoring.event_pattern` instead.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from tasks.monitoring.event_pattern import validate

RULE = "event_rule"
TARGET = "event_target"
TARGET_ID = "papyrus-alerts-sns"


def rule_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:events:{region}:{account}:rule/{name}"


def cluster_arn(region: str, account: str, cluster: str) -> str:
    return f"arn:aws:ecs:{region}:{account}:cluster/{cluster}"


def task_failure_pattern(cluster: str, service: str, start_failure_reasons: list[str]) -> dict:
    """The rule's pattern; `cluster` is the cluster ARN (events carry `clusterArn`)."""
    start_failure: list[dict[str, Any]] = [{"stopCode": ["TaskFailedToStart"]}]
    if start_failure_reasons:
        start_failure.append({"stoppedReason": [{"wildcard": f"*{r}*"}
                                                for r in start_failure_reasons]})
    return validate({
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [cluster],
            "group": [f"service:{service}"],
            "lastStatus": ["STOPPED"],
            "$or": [{"containers": {"exitCode": [{"anything-but": 0}]}}, *start_failure],
        },
    })


def desired_rule(pattern: dict, description: str) -> dict[str, Any]:
    return {"EventPattern": pattern, "State": "ENABLED", "Description": description}


def read_rule(events, name: str) -> dict[str, Any] | None:
    try:
        rule = events.describe_rule(Name=name)
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    pattern = rule.get("EventPattern")
    return {
        "EventPattern": json.loads(pattern) if pattern else None,
        "State": rule.get("State"),
        "Description": rule.get("Description"),
    }


def read_target(events, rule: str, target_id: str) -> dict[str, Any] | None:
    """Our target on the rule (by id); `None` if the rule or the target does not exist."""
    token = None
    while True:
        kwargs: dict[str, Any] = {"Rule": rule}
        if token:
            kwargs["NextToken"] = token
        try:
            page = events.list_targets_by_rule(**kwargs)
        except ClientError as e:
            if e.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        for t in page.get("Targets", []):
            if t["Id"] == target_id:
                return {"Arn": t["Arn"], "Input": t.get("Input"),
                        "InputPath": t.get("InputPath"),
                        "InputTransformer": t.get("InputTransformer")}
        token = page.get("NextToken")
        if not token:
            return None


def desired_target(topic: str) -> dict[str, Any]:
    # The whole event goes to SNS: stop code, reason and every container's exit code.
    return {"Arn": topic, "Input": None, "InputPath": None, "InputTransformer": None}


def put_rule(events, name: str, fields: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    arn = events.put_rule(Name=name, EventPattern=json.dumps(fields["EventPattern"]),
                          State=fields["State"], Description=fields["Description"],
                          Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                          )["RuleArn"]
    return {"rule_arn": arn}


def put_target(events, rule: str, target_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    target = {"Id": target_id, **{k: v for k, v in fields.items() if v is not None}}
    resp = events.put_targets(Rule=rule, Targets=[target])
    if resp.get("FailedEntryCount"):
        entry = resp["FailedEntries"][0]
        raise RuntimeError(f"put_targets {rule}/{target_id}: {entry.get('ErrorCode')} "
                           f"{entry.get('ErrorMessage')}")
    return {"target": f"{rule}/{target_id}"}
