"""An ALB in front of the sandbox's service, as Terraform would leave it: an `ip` target group
with a /healthz check on the container port, an internal ALB and an HTTP listener forwarding
to it (ECS refuses a target group no load balancer uses). Short, AWS-valid intervals (5 s is
the minimum) so a target turns healthy within a few seconds.

The sandbox serves every listener on 127.0.0.1:<its Port> (sandbox.elb_listeners), so a
listener's port must be free on this machine: `free_listener_port()` picks one.
`create_blue_green` / `delete_blue_green` make the two target groups, the ALB and the
production and test listeners an ECS blue/green service needs; `get(port, path)` is one
request through a listener."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
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
    listener_port: int | None = None  # served on 127.0.0.1 (sandbox.elb_listeners)


def free_listener_port() -> int:
    """A port free on 127.0.0.1 now (the sandbox binds a listener's Port there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _target_group(elbv2, sb, name: str, port: int, target_type: str = "ip") -> str:
    tg = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=port,
                                   VpcId=sb.seeded.vpc_id, TargetType=target_type,
                                   **HEALTH_CHECK)["TargetGroups"][0]["TargetGroupArn"]
    # Draining takes as long as the group says; Terraform users shorten the 300 s default too.
    elbv2.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
    return tg


def create(sb, name: str, port: int = 5000, target_type: str = "ip",
           listener: bool = True) -> Alb:
    elbv2 = sb.client("elbv2")
    tg = _target_group(elbv2, sb, name, port, target_type)
    lb = elbv2.create_load_balancer(Name=f"{name}-lb", Subnets=sb.seeded.subnets,
                                    Scheme="internal", Type="application")[
        "LoadBalancers"][0]["LoadBalancerArn"]
    arn = listener_port = None
    if listener:
        listener_port = free_listener_port()
        arn = elbv2.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=listener_port,
                                    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])[
            "Listeners"][0]["ListenerArn"]
    return Alb(tg, lb, arn, listener_port)


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


@dataclass
class BlueGreenAlb:
    """What Terraform leaves for an ECS blue/green service: ARNs, the rules ECS rewrites (the
    listeners' default rules) and the 127.0.0.1 ports the sandbox serves them on."""

    blue_tg: str
    green_tg: str
    lb_arn: str
    prod_listener: str
    test_listener: str
    prod_rule: str
    test_rule: str
    prod_port: int
    test_port: int

    def load_balancers(self, container: str = "app", port: int = 5000,
                       role_arn: str = "arn:aws:iam::123456789012:role/ecs-infrastructure"
                       ) -> list[dict]:
        """The service's `loadBalancers` with the blue/green `advancedConfiguration`."""
        return [{"targetGroupArn": self.blue_tg, "containerName": container,
                 "containerPort": port, "advancedConfiguration": {
                     "alternateTargetGroupArn": self.green_tg,
                     "productionListenerRule": self.prod_rule,
                     "testListenerRule": self.test_rule, "roleArn": role_arn}}]


def _default_rule(elbv2, listener_arn: str) -> str:
    return next(r["RuleArn"] for r in elbv2.describe_rules(ListenerArn=listener_arn)["Rules"]
                if r["IsDefault"])


def create_blue_green(sb, name: str, port: int = 5000) -> BlueGreenAlb:
    """Two `ip` target groups (`<name>-b`, `<name>-g`), an internal ALB, a production and a
    test listener on free ports, both forwarding to blue (green weight 0, so the ALB uses it)."""
    elbv2 = sb.client("elbv2")
    blue = _target_group(elbv2, sb, f"{name}-b", port)
    green = _target_group(elbv2, sb, f"{name}-g", port)
    lb = elbv2.create_load_balancer(Name=f"{name}-lb", Subnets=sb.seeded.subnets,
                                    Scheme="internal", Type="application")[
        "LoadBalancers"][0]["LoadBalancerArn"]
    to_blue = [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]}}]
    listeners, ports = [], []
    for _ in range(2):
        p = free_listener_port()
        listeners.append(elbv2.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=p,
                                               DefaultActions=to_blue)[
            "Listeners"][0]["ListenerArn"])
        ports.append(p)
    return BlueGreenAlb(blue, green, lb, listeners[0], listeners[1],
                        _default_rule(elbv2, listeners[0]), _default_rule(elbv2, listeners[1]),
                        ports[0], ports[1])


def delete_blue_green(sb, made: BlueGreenAlb) -> None:
    elbv2 = sb.client("elbv2")
    for arn in (made.prod_listener, made.test_listener):
        with contextlib.suppress(ClientError):
            elbv2.delete_listener(ListenerArn=arn)
    with contextlib.suppress(ClientError):
        elbv2.delete_load_balancer(LoadBalancerArn=made.lb_arn)
    for arn in (made.blue_tg, made.green_tg):
        with contextlib.suppress(ClientError):
            elbv2.delete_target_group(TargetGroupArn=arn)


def get(port: int, path: str = "/healthz", timeout: float = 5.0,
        headers: dict | None = None) -> tuple[int, str, dict]:
    """One request through the listener on 127.0.0.1:port: (status, body, headers)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http://127.0.0.1
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def image_behind(port: int) -> str | None:
    """The `image` a /healthz through the listener reports (the task's PAPYRUS_IMAGE), or
    None when the ALB itself answered (502/503)."""
    status, body, _ = get(port)
    if status != 200:
        return None
    return json.loads(body).get("image")
