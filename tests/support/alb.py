"""An ALB in front of the sandbox's service, as Terraform would leave it: an `ip` target group
with a /healthz check on the container port, an internal ALB and an HTTP listener forwarding
to it (ECS refuses a target group no load balancer uses). Short, AWS-valid intervals (5 s is
the minimum) so a target turns healthy within a few seconds."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from botocore.exceptions import ClientError

HEALTH_CHECK = {"HealthCheckPath": "/healthz", "HealthCheckIntervalSeconds": 5,
                "HealthCheckTimeoutSeconds": 2, "HealthyThresholdCount": 2,
                "UnhealthyThresholdCount": 2, "Matcher": {"HttpCode": "200"}}


@dataclass
class Alb:
    tg_arn: str
    lb_arn: str
    listener_arn: str | None


def create(sb, name: str, port: int = 5000, target_type: str = "ip",
           listener: bool = True) -> Alb:
    elbv2 = sb.client("elbv2")
    tg = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=port,
                                   VpcId=sb.seeded.vpc_id, TargetType=target_type,
                                   **HEALTH_CHECK)["TargetGroups"][0]["TargetGroupArn"]
    # Draining takes as long as the group says; Terraform users shorten the 300 s default too.
    elbv2.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
    lb = elbv2.create_load_balancer(Name=f"{name}-lb", Subnets=sb.seeded.subnets,
                                    Scheme="internal", Type="application")[
        "LoadBalancers"][0]["LoadBalancerArn"]
    arn = None
    if listener:
        arn = elbv2.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])[
            "Listeners"][0]["ListenerArn"]
    return Alb(tg, lb, arn)


def delete(sb, alb: Alb) -> None:
    elbv2 = sb.client("elbv2")
    with contextlib.suppress(ClientError):
        if alb.listener_arn:
            elbv2.delete_listener(ListenerArn=alb.listener_arn)
    with contextlib.suppress(ClientError):
        elbv2.delete_load_balancer(LoadBalancerArn=alb.lb_arn)
    with contextlib.suppress(ClientError):
        elbv2.delete_target_group(TargetGroupArn=alb.tg_arn)


def health(sb, tg_arn: str, target: dict | None = None) -> list[dict]:
    kw = {"Targets": [target]} if target else {}
    return sb.client("elbv2").describe_target_health(TargetGroupArn=tg_arn, **kw)[
        "TargetHealthDescriptions"]
