"""The `ip` target group for Papyrus (container `app`, port 5000, health check `/healthz`), and
the load balancer it will sit behind (read only: we never create the ALB).

Protocol, port, VPC and target type cannot be changed on an existing target group: a difference
there is reported as blocked (replacing a target group a listener uses is a human decision), the
health-check settings are updated in place with `modify_target_group`.

moto 5.2.5: `create_target_group` with an existing name fails with `DuplicateTargetGroupName`
(AWS returns the existing group when the settings are the same), so a create that finds the
group already there adopts it; the defaults moto gives an unset health check are AWS's (healthy
5, unhealthy 2, interval 30, timeout 5).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

RESOURCE = "target_group"
IMMUTABLE = ("Protocol", "Port", "VpcId", "TargetType")
MUTABLE = (
    "HealthCheckEnabled",
    "HealthCheckProtocol",
    "HealthCheckPort",
    "HealthCheckPath",
    "HealthCheckIntervalSeconds",
    "HealthCheckTimeoutSeconds",
    "HealthyThresholdCount",
    "UnhealthyThresholdCount",
    "Matcher",
)
FIELDS = IMMUTABLE + MUTABLE


def arn_suffix(arn: str) -> str:
    """The CloudWatch dimension value: `targetgroup/<name>/<id>` or `app/<name>/<id>`."""
    resource = arn.split(":", 5)[5]
    return resource.split("/", 1)[1] if resource.startswith("loadbalancer/") else resource


def desired_fields(*, vpc_id: str, port: int, health_check_path: str, matcher: str,
                   interval: int, timeout: int, healthy: int, unhealthy: int) -> dict[str, Any]:
    return {
        "Protocol": "HTTP",
        "Port": port,
        "VpcId": vpc_id,
        "TargetType": "ip",
        "HealthCheckEnabled": True,
        "HealthCheckProtocol": "HTTP",
        "HealthCheckPort": "traffic-port",
        "HealthCheckPath": health_check_path,
        "HealthCheckIntervalSeconds": interval,
        "HealthCheckTimeoutSeconds": timeout,
        "HealthyThresholdCount": healthy,
        "UnhealthyThresholdCount": unhealthy,
        "Matcher": {"HttpCode": matcher},
    }


def _normalize(tg: dict[str, Any]) -> dict[str, Any]:
    out = {f: tg.get(f) for f in FIELDS}
    out["Matcher"] = {"HttpCode": (tg.get("Matcher") or {}).get("HttpCode")}
    return out


def read(elbv2, name: str) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """(comparable fields, ARN, load balancer ARNs) of the target group, or (None, None, [])."""
    try:
        groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    except ClientError as e:
        if e.response["Error"]["Code"] in ("TargetGroupNotFound", "TargetGroupNotFoundException"):
            return None, None, []
        raise
    tg = groups[0]
    return _normalize(tg), tg["TargetGroupArn"], list(tg.get("LoadBalancerArns") or [])


def read_load_balancer(elbv2, name: str) -> dict[str, Any] | None:
    try:
        lbs = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    except ClientError as e:
        if e.response["Error"]["Code"] in ("LoadBalancerNotFound",
                                           "LoadBalancerNotFoundException"):
            return None
        raise
    lb = lbs[0]
    return {"arn": lb["LoadBalancerArn"], "arn_suffix": arn_suffix(lb["LoadBalancerArn"]),
            "type": lb.get("Type"), "vpc_id": lb.get("VpcId")}


def apply(elbv2, action: str, name: str, fields: dict[str, Any],
          changes: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    if action == "create":
        try:
            tg = elbv2.create_target_group(
                Name=name, **fields,
                Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
            )["TargetGroups"][0]
            arn = tg["TargetGroupArn"]
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("DuplicateTargetGroupName",
                                                   "DuplicateTargetGroupNameException"):
                raise
            # A retry after a create that succeeded: adopt it, then converge the health check.
            current, arn, _ = read(elbv2, name)
            changes = {k: (current.get(k), v) for k, v in fields.items() if current.get(k) != v}
            action = "update"
    else:
        _, arn, _ = read(elbv2, name)
        if arn is None:
            raise RuntimeError(f"target group {name} disappeared between plan and apply")
    if action == "update":
        immutable = sorted(set(changes) & set(IMMUTABLE))
        if immutable:
            raise RuntimeError(f"target group {name}: {', '.join(immutable)} cannot be changed "
                               "in place")
        elbv2.modify_target_group(TargetGroupArn=arn, **{k: fields[k] for k in MUTABLE})
    return {"target_group_arn": arn, "target_group_suffix": arn_suffix(arn)}
