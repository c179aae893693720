"""What the session sandbox holds now: task definition revisions, the ECS service, SKU rows,
versions of the last-deploy record; and another build of the same image."""

from __future__ import annotations

import uuid


def revisions(sb) -> list[str]:
    ecs = sb.client("ecs")
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=sb.settings.family)
    return [a for page in pages for a in page["taskDefinitionArns"]]


def service(sb) -> dict:
    return sb.client("ecs").describe_services(cluster=sb.settings.cluster,
                                              services=[sb.settings.service])["services"][0]


def push_variant(sb, tag: str) -> str:
    """Another build of the same code (so it runs) under `tag`, with a digest no earlier push
    of that tag had."""
    from sandbox import image as sandbox_image

    return sandbox_image.push_build(sb.client("ecr"), sb.settings.ecr_repository, tag,
                                    build=f"{tag}-{uuid.uuid4().hex[:8]}")


def sku_rows(sb, source: str, db: str = "papyrus") -> int:
    assert source in ("app", "cli")
    out = sb.pg.psql_admin(f"SELECT count(*) FROM skus WHERE source = '{source}'", db)  # noqa: S608
    return int(out)


def stable_on(sb, task_definition: str) -> bool:
    """What `aws ecs wait services-stable` accepts, on a given revision."""
    svc = service(sb)
    deps = svc["deployments"]
    return (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
            and svc["runningCount"] == svc["desiredCount"]
            and svc["taskDefinition"] == task_definition)


def state_versions(sb) -> int:
    """Object versions of the last-deploy record (state/<env>/last_deploy.json)."""
    key = f"state/{sb.settings.env}/last_deploy.json"
    resp = sb.client("s3").list_object_versions(Bucket=sb.settings.evidence_bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) if v["Key"] == key])
