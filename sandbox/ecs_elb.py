"""ECS services behind a target group, as ECS does it: the `loadBalancers` a service declares are
validated on CreateService/UpdateService, each task is registered in the target group once it
runs and deregistered when it stops, and a task counts as healthy only when its target is.

- Validation, in ECS's words (InvalidParameterException): a target group that does not exist
  ("Unable to assume role and validate the specified targetGroupArn…"), one that no load
  balancer uses ("…does not have an associated load balancer."), one whose target type is not
  `ip` with awsvpc ("…has target type instance, which is incompatible with the awsvpc network
  mode specified in the task definition."), a container the task definition does not have, or
  a port its container does not map ("The container app did not have a container port 80
  defined.").
- The target is the task's ENI address and the port its container port is reachable on: on
  Fargate that is `privateIPv4Address:containerPort`; here every task is 127.0.0.1 and its
  container port is the task's own loopback port (`networkBindings[].hostPort`), so targets
  of two tasks never collide.

AWS: ECS Developer Guide, "Use load balancing to distribute Amazon ECS service traffic" (ECS
registers and deregisters tasks; `healthCheckGracePeriodSeconds`), ECS API Reference,
LoadBalancer and CreateService/UpdateService.
"""

from __future__ import annotations

import contextlib
from typing import Any

from moto.ecs.exceptions import InvalidParameterException
from moto.elbv2.models import elbv2_backends


def _tg_backend(account_id: str, region: str) -> Any:
    return elbv2_backends[account_id][region]


def validate(account_id: str, region: str, load_balancers: list[dict] | None,
             task_def: Any) -> None:
    """Refuse `loadBalancers` as ECS does (InvalidParameterException)."""
    for lb in load_balancers or []:
        arn = lb.get("targetGroupArn")
        if not arn:
            continue  # a Classic Load Balancer by name: not modelled
        tg = _tg_backend(account_id, region).target_groups.get(arn)
        if tg is None:
            raise InvalidParameterException(
                "Unable to assume role and validate the specified targetGroupArn. Please verify "
                "that the ECS service role being passed has the proper permissions.")
        if not tg.load_balancer_arns:
            raise InvalidParameterException(
                f"The target group with targetGroupArn {arn} does not have an associated load "
                "balancer.")
        mode = getattr(task_def, "network_mode", None) if task_def is not None else None
        if mode == "awsvpc" and tg.target_type != "ip":
            raise InvalidParameterException(
                f"The provided target group {arn} has target type {tg.target_type}, which is "
                "incompatible with the awsvpc network mode specified in the task definition.")
        if task_def is None:
            continue
        name, port = lb.get("containerName"), lb.get("containerPort")
        container = next((c for c in task_def.container_definitions if c.get("name") == name),
                         None)
        if container is None:
            raise InvalidParameterException(
                f"The container {name} does not exist in the task definition.")
        ports = {int(p.get("containerPort", 0)) for p in container.get("portMappings") or []}
        if port is None or int(port) not in ports:
            raise InvalidParameterException(
                f"The container {name} did not have a container port {port} defined.")


def targets_of(task: Any, load_balancers: list[dict] | None) -> list[tuple[str, dict]]:
    """(target group ARN, target) pairs for a running task of a service with `load_balancers`."""
    out = []
    for lb in load_balancers or []:
        if not lb.get("targetGroupArn") or lb.get("containerName") != task.container.get("name"):
            continue
        if int(lb.get("containerPort") or 0) != task.container_port or not task.port:
            continue
        out.append((lb["targetGroupArn"], {"Id": "127.0.0.1", "Port": task.port}))
    return out


def register(account_id: str, region: str, pairs: list[tuple[str, dict]]) -> None:
    backend = _tg_backend(account_id, region)
    for arn, target in pairs:
        if arn in backend.target_groups:
            backend.register_targets(arn, [target])


def deregister(account_id: str, region: str, pairs: list[tuple[str, dict]]) -> None:
    backend = _tg_backend(account_id, region)
    for arn, target in pairs:
        if arn in backend.target_groups:
            # Already gone: nothing to drain.
            with contextlib.suppress(Exception):
                backend.deregister_targets(arn, [target])


def health(account_id: str, region: str,
           pairs: list[tuple[str, dict]]) -> tuple[str, str, str]:
    """The worst state of a task's targets: (state, target group ARN, description)."""
    backend = _tg_backend(account_id, region)
    order = {"unhealthy": 0, "unused": 1, "draining": 2, "initial": 3, "healthy": 4}
    worst = ("healthy", "", "")
    for arn, target in pairs:
        if arn not in backend.target_groups:
            return "unused", arn, "Target group not found"
        status = backend.describe_target_health(arn, [target])[0]
        if order.get(status.status, 0) < order[worst[0]]:
            worst = (status.status, arn, status.description or status.reason or "")
    return worst
