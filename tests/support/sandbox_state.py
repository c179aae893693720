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


def push_service_copy(sb, tag: str, workdir, edit) -> str:
    """An image built from a modified copy of `service/` (`edit(copy_dir)` changes it) under
    `tag`; returns its digest. The sandbox keeps the copy's code under that digest, so a task
    of this image runs the copy."""
    import shutil

    from sandbox import image as sandbox_image

    copy = workdir / "service"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(sandbox_image.SERVICE_DIR, copy, ignore=shutil.ignore_patterns(
        "tests", "__pycache__", "*.egg-info", ".pytest_cache"))
    edit(copy)
    return sandbox_image.push(sb.client("ecr"), sb.settings.ecr_repository, [tag], root=copy)


def without_dbcheck(service_copy) -> None:
    """`edit` for push_service_copy: the app no longer registers the /dbcheck blueprint."""
    init = service_copy / "papyrus" / "__init__.py"
    text = init.read_text()
    line = "    app.register_blueprint(dbcheck.bp)\n"
    assert line in text, "the service registers /dbcheck differently now: update this helper"
    init.write_text(text.replace(line, ""))


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
