"""The environment folder's JSON templates, rendered: what would be sent to ECS, from plain files.

`render_template` parses a template and substitutes `${name}` in its string values (a string
that is exactly `${name}` takes the value's own type, so templates stay valid JSON). The task
and service definitions are rendered here so that the deploy and the sandbox's seeding read the
same files the same way, and neither imports the other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ground.settings import VAR, ConfigError, Settings


def render_template(path: Path, variables: dict[str, Any]) -> dict:
    """Parse the JSON template at `path` and substitute `${name}` from `variables`."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            whole = VAR.fullmatch(node)
            if whole and whole.group(1) in variables:
                return variables[whole.group(1)]

            def sub(m: re.Match) -> str:
                if m.group(1) not in variables:
                    raise ConfigError(f"{path}: template variable {m.group(1)} has no value")
                return str(variables[m.group(1)])

            return VAR.sub(sub, node)
        return node

    return walk(doc)


def task_definition_vars(s: Settings, image_uri: str, roles: dict[str, str], db_arn: str,
                         token_arn: str, task_sg: str, subnets: list[str],
                         target_group_arn: str | None = None) -> dict:
    extra = {"target_group_arn": target_group_arn} if target_group_arn else {}
    return extra | {
        "family": s.family, "container": s.container, "container_port": s.container_port,
        "image": image_uri, "region": s.region, "log_group": s.log_group,
        "task_role_arn": roles[s.task_role], "execution_role_arn": roles[s.execution_role],
        "db_secret_arn": db_arn, "token_secret_arn": token_arn,
        "task_security_group_id": task_sg, "subnets": subnets,
    }


def render_task_definition(settings: Settings, variables: dict) -> dict:
    td = render_template(settings.template_path("task"), variables)
    for c in td.get("containerDefinitions", []):
        if c.get("name") == settings.container and settings.db_ssl_root_cert:
            # A CA bundle in the image: the service verifies the server certificate and its
            # name (libpq reads PGSSLMODE / PGSSLROOTCERT), as the flows do (tasks.db).
            env = [e for e in c.get("environment", [])
                   if e["name"] not in ("PGSSLROOTCERT", "PGSSLMODE")]
            c["environment"] = [*env, {"name": "PGSSLMODE", "value": "verify-full"},
                                {"name": "PGSSLROOTCERT", "value": settings.db_ssl_root_cert}]
    return td


def render_service_definition(settings: Settings, variables: dict) -> dict:
    """`service-definition.json` rendered: what the environment declares about the service."""
    return render_template(settings.template_path("service"), variables)


# What a deploy may change on an existing service (ECS API Reference, UpdateService request
# parameters). Create-only keys of the file (launchType, schedulingStrategy, tags, ...) are
# applied when the service is created and left alone afterwards.
SERVICE_UPDATE_KEYS = (
    "desiredCount", "deploymentConfiguration", "networkConfiguration", "enableExecuteCommand",
    "healthCheckGracePeriodSeconds", "loadBalancers", "serviceRegistries",
    "capacityProviderStrategy", "placementConstraints", "placementStrategy", "platformVersion",
    "propagateTags", "enableECSManagedTags", "serviceConnectConfiguration",
    "availabilityZoneRebalancing", "volumeConfigurations", "vpcLatticeConfigurations",
)


def service_update_params(service_definition: dict) -> dict:
    """The part of a rendered service definition that UpdateService sends: exactly the keys the
    file declares (a key it leaves out is left as it is on the service)."""
    return {k: service_definition[k] for k in SERVICE_UPDATE_KEYS if k in service_definition}
