"""A multi-arch image in ECR, as `docker buildx --platform linux/amd64,linux/arm64 --push` leaves
it: an OCI image index under the tag, its platform manifests (and buildx's provenance
attestations) untagged beside it. The pin names the index; ECS picks the platform manifest for
the task definition's runtimePlatform and reports the index digest (aws/amazon-ecs-agent#3576;
docs/sandbox.md), which is what the verdict requires; an index without that platform fails to
pull, and the deploy rolls back."""

from __future__ import annotations

import uuid

import boto3
import pytest

from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from sandbox import image as sandbox_image
from tasks.image_ref import resolve_image
from tests.support.sandbox_state import service

pytestmark = pytest.mark.usefixtures("prefect_server")

INDEX = "application/vnd.oci.image.index.v1+json"


def push_index(sb, tag: str, platforms=("linux/amd64", "linux/arm64")) -> dict:
    """A fresh multi-arch build of the same code under `tag` (new digests every time)."""
    return sandbox_image.push_index(sb.client("ecr"), sb.settings.ecr_repository, tag,
                                    platforms=platforms, build=f"{tag}-{uuid.uuid4().hex[:8]}")


def test_a_multi_arch_index_is_pinned_by_its_index_digest(sandbox):
    pushed = push_index(sandbox, "multi-arch-pin")
    s = sandbox.settings
    # As the flows do: the flow-run role's credentials (the sandbox enforces its policy).
    ecr = boto3.Session().client("ecr", region_name=s.region)
    pinned = resolve_image(ecr, "multi-arch-pin", s.ecr_repository, s.region)
    assert pinned.digest == pushed["digest"]
    assert pinned.digest not in pushed["manifests"].values()
    assert pinned.uri.endswith(f"/{s.ecr_repository}@{pushed['digest']}")
    assert pinned.index_summary() == {"media_type": INDEX,
                                      "platforms": ["linux/amd64", "linux/arm64"]}
    # A platform manifest can still be pinned by its own digest: a single image then.
    child = pushed["manifests"]["linux/arm64"]
    direct = resolve_image(ecr, f"{s.ecr_repository}@{child}", s.ecr_repository, s.region)
    assert direct.digest == child and direct.index_summary() is None


def test_a_deploy_of_an_index_pinned_image_is_judged_success(sandbox, main_schema):
    from tasks.rollout import wait_for_verdict

    pushed = push_index(sandbox, "multi-arch")
    result = run_flow(deploy, env="local", image="multi-arch", skip_preflight=True)
    assert result["verdict"] == "success", result
    data = result["data"]
    assert data["image_digest"] == pushed["digest"]
    assert data["image_index"] == {"media_type": INDEX,
                                   "platforms": ["linux/amd64", "linux/arm64"]}
    running = data["verdict_detail"]["running_tasks"]
    assert running and all(t["image_digest"] == pushed["digest"] for t in running), running
    td = sandbox.client("ecs").describe_task_definition(
        taskDefinition=data["task_definition"])["taskDefinition"]
    assert td["containerDefinitions"][0]["image"].endswith("@" + pushed["digest"])
    # The verdict still wants exactly the pinned digest: the same tasks judged against the
    # amd64 manifest they run, or against another image, are not a success.
    svc = service(sandbox)
    for other in (pushed["manifests"]["linux/amd64"], sandbox.seeded.image_uri.split("@")[1]):
        verdict = wait_for_verdict.fn(sandbox.client("ecs"), sandbox.settings,
                                      svc["deployments"][0]["id"], data["task_definition"],
                                      other, timeout=10, poll=0.2)
        assert verdict["ok"] is False, verdict
        assert verdict["reason"] == f"running tasks carry another image: {pushed['digest']}"


def test_an_index_without_the_task_definitions_platform_fails_to_pull_and_rolls_back(
        sandbox, main_schema):
    """Built for arm64 only (a laptop's `buildx --platform linux/arm64`), deployed to the
    task definition's default X86_64: no task can pull it, the circuit breaker stops the
    deployment, and the deploy rolls back to what ran before."""
    previous = service(sandbox)["taskDefinition"]
    push_index(sandbox, "arm64-only", platforms=("linux/arm64",))
    result = run_flow(deploy, env="local", image="arm64-only", skip_preflight=True,
                      timeout_seconds=90)
    assert result["verdict"] == "failed", result
    assert result["data"]["image_index"]["platforms"] == ["linux/arm64"]
    assert ("CannotPullContainerError: pull image manifest has been retried 1 time(s): image "
            "Manifest does not contain descriptor matching platform 'linux/amd64'"
            in result["reason"]), result["reason"]
    stopped = result["data"]["verdict_detail"]["stopped_tasks"]
    assert stopped and all(t["stop_code"] == "TaskFailedToStart" for t in stopped), stopped
    assert result["data"]["rollback"]["ok"] is True, result["data"]["rollback"]
    assert service(sandbox)["taskDefinition"] == previous
