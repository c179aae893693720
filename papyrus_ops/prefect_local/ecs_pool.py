"""Create or update an ECS work pool from a rendered base job template (idempotent)."""

from __future__ import annotations

from typing import Any

ECS_POOL = "papyrus-ecs"


def work_pool_exists(api_url: str, name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        try:
            c.read_work_pool(name)
        except ObjectNotFound:
            return False
        return True


def apply_ecs_pool(api_url: str, template: dict[str, Any], name: str = ECS_POOL) -> str:
    """`created`, `updated` (the stored template differed) or `unchanged`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        try:
            pool = c.read_work_pool(name)
        except ObjectNotFound:
            c.create_work_pool(WorkPoolCreate(
                name=name, type="ecs", base_job_template=template,
                description="Papyrus Ops flow runs as ECS/Fargate tasks (prefect-aws worker)."))
            return "created"
        if pool.type != "ecs":
            raise ValueError(f"work pool {name!r} exists with type {pool.type!r}, not ecs")
        if pool.base_job_template == template:
            return "unchanged"
        c.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        return "updated"
