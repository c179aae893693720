"""The sandbox's ECS service deployments and revisions, driven by the runtime's real rollouts.

On the session sandbox, through the ECS API as a flow sees it. A rollout that cannot pull its
image trips the circuit breaker in a second or two without starting a process, so these stay
cheap; the successful rollout starts one gunicorn task.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.support.sandbox_state import service, stable_on
from tests.support.waiting import wait_until


def _copy_of_running(sb, **env) -> str:
    """A new revision of the running task definition (optionally another image)."""
    ecs = sb.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=service(sb)["taskDefinition"])[
        "taskDefinition"]
    keep = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions",
            "requiresCompatibilities", "cpu", "memory", "runtimePlatform")
    new = {k: td[k] for k in keep if k in td}
    c = new["containerDefinitions"][0]
    if "image" in env:
        c["image"] = env.pop("image")
    c["environment"] = [*c.get("environment", []),
                        *({"name": k, "value": v} for k, v in env.items())]
    return ecs.register_task_definition(**new)["taskDefinition"]["taskDefinitionArn"]


def _ours(ecs, sb, td: str) -> dict:
    s = sb.settings
    for brief in ecs.list_service_deployments(cluster=s.cluster,
                                              service=s.service)["serviceDeployments"]:
        rev = ecs.describe_service_revisions(
            serviceRevisionArns=[brief["targetServiceRevisionArn"]])["serviceRevisions"][0]
        if rev["taskDefinition"] == td:
            return ecs.describe_service_deployments(
                serviceDeploymentArns=[brief["serviceDeploymentArn"]])["serviceDeployments"][0]
    raise AssertionError(f"no service deployment targets {td}")


def _status(ecs, arn: str) -> str:
    return ecs.describe_service_deployments(
        serviceDeploymentArns=[arn])["serviceDeployments"][0]["status"]


def _update(sb, td: str) -> None:
    sb.client("ecs").update_service(cluster=sb.settings.cluster, service=sb.settings.service,
                                    taskDefinition=td, forceNewDeployment=True)


@pytest.fixture
def settled(sandbox):
    before = service(sandbox)["taskDefinition"]
    wait_until(lambda: stable_on(sandbox, before), 60, what="a settled service")
    return before


def test_a_rollout_is_pending_in_progress_then_successful_with_its_revision(sandbox, settled):
    ecs = sandbox.client("ecs")
    td = _copy_of_running(sandbox, SD_TEST="success")
    _update(sandbox, td)
    sd = _ours(ecs, sandbox, td)
    assert sd["status"] in ("PENDING", "IN_PROGRESS")
    arn = sd["serviceDeploymentArn"]
    s = sandbox.settings
    assert arn.startswith(f"arn:aws:ecs:{s.region}:123456789012:service-deployment/"
                          f"{s.cluster}/{s.service}/")
    stages = set()

    def done():
        d = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
        stages.add((d["status"], d.get("lifecycleStage")))
        return d if d["status"] == "SUCCESSFUL" else None

    sd = wait_until(done, 60, what="SUCCESSFUL")
    assert ("IN_PROGRESS", "SCALE_UP") in stages, stages
    assert sd["finishedAt"] >= sd["startedAt"] >= sd["createdAt"]
    assert sd["targetServiceRevision"]["runningTaskCount"] == 1
    # The source is what ran: the settled revision.
    source = ecs.describe_service_revisions(serviceRevisionArns=[
        sd["sourceServiceRevisions"][0]["arn"]])["serviceRevisions"][0]
    assert source["taskDefinition"] == settled
    target = ecs.describe_service_revisions(serviceRevisionArns=[
        sd["targetServiceRevision"]["arn"]])["serviceRevisions"][0]
    assert target["taskDefinition"] == td and target["launchType"] == "FARGATE"
    assert target["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
    running = ecs.describe_tasks(cluster=s.cluster, tasks=ecs.list_tasks(
        cluster=s.cluster, serviceName=s.service)["taskArns"])["tasks"]
    assert {c["imageDigest"] for c in target["containerImages"]} == {
        t["containers"][0]["imageDigest"] for t in running}
    # A finished deployment cannot be stopped: ECS answers ConflictException.
    with pytest.raises(ClientError) as e:
        ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert e.value.response["Error"]["Code"] == "ConflictException"
    missing = ecs.describe_service_deployments(serviceDeploymentArns=[arn + "x"])
    assert missing["failures"] == [{"arn": arn + "x", "reason": "MISSING"}]


def test_the_circuit_breaker_rolls_back_to_rollback_successful(sandbox, settled):
    ecs = sandbox.client("ecs")
    bad = _copy_of_running(sandbox, image=f"{sandbox.seeded.image_uri.split('@')[0]}:no-such")
    _update(sandbox, bad)
    arn = _ours(ecs, sandbox, bad)["serviceDeploymentArn"]
    seen = set()

    def rolled_back():
        d = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
        seen.add(d["status"])
        return d if d["status"] == "ROLLBACK_SUCCESSFUL" else None

    sd = wait_until(rolled_back, 60, what="ROLLBACK_SUCCESSFUL")
    # rollback_min_duration keeps the rollback visible in progress for a while.
    assert seen & {"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"}, seen
    assert "circuit breaker" in sd["statusReason"]
    assert sd["rollback"]["reason"] == sd["statusReason"] and sd["rollback"]["startedAt"]
    assert sd["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    back = ecs.describe_service_revisions(serviceRevisionArns=[
        sd["rollback"]["serviceRevisionArn"]])["serviceRevisions"][0]
    assert back["taskDefinition"] == settled
    assert service(sandbox)["taskDefinition"] == settled
    assert "imageDigest" not in back["containerImages"][0] or back["containerImages"][0][
        "imageDigest"].startswith("sha256:")
    listed = ecs.list_service_deployments(cluster=sandbox.settings.cluster,
                                          service=sandbox.settings.service,
                                          status=["ROLLBACK_SUCCESSFUL"])["serviceDeployments"]
    assert arn in [b["serviceDeploymentArn"] for b in listed]


def test_stop_service_deployment_rolls_back_a_rollout_in_progress(sandbox, settled):
    ecs = sandbox.client("ecs")
    td = _copy_of_running(sandbox, SD_TEST="stopped")
    timing = sandbox.runtime.timing
    delay, timing.start_delay = timing.start_delay, 120.0  # the new tasks never come up
    try:
        _update(sandbox, td)
        arn = _ours(ecs, sandbox, td)["serviceDeploymentArn"]
        wait_until(lambda: _status(ecs, arn) == "IN_PROGRESS", 10, what="IN_PROGRESS")
        started = time.time()
        assert ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")[
            "serviceDeploymentArn"] == arn
        assert _status(ecs, arn) in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
        # Asked again while rolling back: the rollback continues (no error).
        ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
        wait_until(lambda: _status(ecs, arn) == "ROLLBACK_SUCCESSFUL", 30,
                   what="ROLLBACK_SUCCESSFUL")
    finally:
        timing.start_delay = delay
    sd = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
    assert sd["rollback"]["startedAt"].timestamp() >= started - 1
    assert "StopServiceDeployment" in sd["rollback"]["reason"]
    assert wait_until(lambda: stable_on(sandbox, settled), 30, what="back on the source")
    with pytest.raises(ClientError) as e:
        ecs.stop_service_deployment(serviceDeploymentArn=f"{arn[:-4]}nope")
    assert e.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"


def test_the_flow_run_role_reaches_only_its_own_service_deployments(sandbox):
    import boto3

    s = sandbox.settings
    ecs = boto3.session.Session(profile_name="papyrus-flow-run").client(
        "ecs", region_name=s.region)
    mine = ecs.list_service_deployments(cluster=s.cluster, service=s.service)[
        "serviceDeployments"]
    assert mine, "the seeded service has its first service deployment"
    other = mine[0]["serviceDeploymentArn"].replace(f"/{s.service}/", "/other-service/")
    for call in (lambda: ecs.describe_service_deployments(serviceDeploymentArns=[other]),
                 lambda: ecs.stop_service_deployment(serviceDeploymentArn=other,
                                                     stopType="ROLLBACK"),
                 lambda: ecs.list_service_deployments(cluster=s.cluster,
                                                      service="other-service")):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
