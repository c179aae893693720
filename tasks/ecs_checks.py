"""Preflight checks on the ECS service: ECS Exec on, and PGSSLMODE in the running task definition.

"Running" means the service's PRIMARY deployment's task definition (what new tasks start from),
not "the latest revision of the family".
"""

from __future__ import annotations

from typing import Any

from prefect import task

from ground.settings import Settings
from tasks.check_result import AWS_CHECK_OPTS, FAIL, PASS, result

SAFE_SSLMODES = ("require",)
VERIFYING_SSLMODES = ("verify-full",)


class ServiceNotFound(LookupError):
    pass


def describe_service(ecs, settings: Settings) -> dict[str, Any]:
    resp = ecs.describe_services(cluster=settings.cluster, services=[settings.service])
    services = [s for s in resp.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise ServiceNotFound(f"ECS service {settings.service!r} not found in cluster "
                              f"{settings.cluster!r}")
    return services[0]


def primary_task_definition(service: dict[str, Any]) -> str:
    for d in service.get("deployments", []):
        if d.get("status") == "PRIMARY":
            return d["taskDefinition"]
    return service["taskDefinition"]


@task(name="check-ecs-exec", **AWS_CHECK_OPTS)
def check_ecs_exec(ecs, settings: Settings) -> dict[str, Any]:
    svc = describe_service(ecs, settings)
    on = bool(svc.get("enableExecuteCommand"))
    detail = f"service {settings.service}: enableExecuteCommand={str(on).lower()}"
    if not on:
        detail += ": repair with `papyrus-ops repair exec`"
    return result("ecs.exec_enabled", True, on, PASS if on else FAIL, detail)


def container_env(task_def: dict[str, Any], container: str) -> dict[str, str] | None:
    for c in task_def.get("containerDefinitions", []):
        if c.get("name") == container:
            return {e["name"]: e.get("value", "") for e in c.get("environment", [])}
    return None


def judge_sslmode(env: dict[str, str]) -> tuple[bool, str]:
    """(ok, why) for a container environment: require, or verify-full with a root cert."""
    mode = env.get("PGSSLMODE")
    root = env.get("PGSSLROOTCERT")
    if mode in SAFE_SSLMODES:
        return True, f"PGSSLMODE={mode}"
    if mode in VERIFYING_SSLMODES:
        if root:
            return True, f"PGSSLMODE={mode} with PGSSLROOTCERT={root}"
        return False, f"PGSSLMODE={mode} but no PGSSLROOTCERT: libpq cannot verify the server"
    if mode is None:
        return False, "PGSSLMODE is not set"
    return False, f"PGSSLMODE={mode} is not require (or verify-full with PGSSLROOTCERT)"


@task(name="check-taskdef-pgsslmode", **AWS_CHECK_OPTS)
def check_task_definition_ssl(ecs, settings: Settings) -> dict[str, Any]:
    name = "taskdef.pgsslmode"
    expected = "require (or verify-full with PGSSLROOTCERT)"
    svc = describe_service(ecs, settings)
    arn = primary_task_definition(svc)
    td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    revision = arn.rsplit("/", 1)[-1]
    env = container_env(td, settings.container)
    if env is None:
        return result(name, expected, "no such container", FAIL,
                      f"{revision} has no container {settings.container!r}")
    ok, why = judge_sslmode(env)
    actual = env.get("PGSSLMODE", "not set")
    if env.get("PGSSLROOTCERT"):
        actual += f" (PGSSLROOTCERT={env['PGSSLROOTCERT']})"
    return result(name, expected, actual, PASS if ok else FAIL,
                  f"{revision} container {settings.container}: {why}")
