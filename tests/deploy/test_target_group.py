"""The deploy behind the ALB target group: the env folder declares it (`[ecs] target_group`,
`loadBalancers` in service-definition.json), the deploy resolves it to its ARN, applies it with
UpdateService and succeeds only once the new task's target is healthy (ECS registers it; the
sandbox's ALB really checks /healthz). A target that fails its checks fails the verdict and
the deploy rolls back. The target group and its ALB are made as Terraform would, in a copy of
the env folder, and taken off the service again afterwards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from tasks.rollout import _tasks, task_target
from tests.support import alb as alb_support
from tests.support.sandbox_state import push_variant, revisions, service
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("prefect_server", "main_schema")
TG = "papyrus-tg-deploy"


def _stable(sb) -> bool:
    svc = service(sb)
    deps = svc["deployments"]
    return (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
            and svc["runningCount"] == svc["desiredCount"])


@pytest.fixture(scope="module")
def alb(sandbox):
    made = alb_support.create(sandbox, TG)
    yield made
    # Off the service again (UpdateService with no load balancers), then Terraform destroys.
    sandbox.client("ecs").update_service(cluster=sandbox.settings.cluster,
                                         service=sandbox.settings.service, loadBalancers=[])
    wait_until(lambda: _stable(sandbox), 60, what="the service stable without the ALB")
    alb_support.delete(sandbox, made)


def _env_copy(sandbox, tmp_path, monkeypatch, tg_name: str):
    """A copy of the local env folder that declares `tg_name` as production declares papyrus-tg."""
    import ground.settings

    copy = tmp_path / "deployments"
    shutil.copytree(sandbox.settings.folder.parent, copy)
    config = copy / "local" / "config.toml"
    text = config.read_text()
    assert 'target_group = ""\n' in text
    config.write_text(text.replace('target_group = ""\n', f'target_group = "{tg_name}"\n', 1))
    path = copy / "local" / "service-definition.json"
    doc = json.loads(path.read_text())
    prd = json.loads((sandbox.settings.folder.parent / "prd" / "service-definition.json")
                     .read_text())
    doc["loadBalancers"] = prd["loadBalancers"]  # the same declaration as production's
    doc["healthCheckGracePeriodSeconds"] = 0
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(ground.settings, "DEPLOYMENTS", copy)
    return copy


@pytest.fixture
def env_with_alb(sandbox, alb, tmp_path, monkeypatch):
    return _env_copy(sandbox, tmp_path, monkeypatch, TG)


def test_deploy_succeeds_only_once_the_new_task_is_healthy_in_the_target_group(
        sandbox, alb, env_with_alb):
    result = run_flow(deploy, env="local", image="latest", skip_preflight=True)
    assert result["verdict"] == "success", result
    s = sandbox.settings
    svc = service(sandbox)
    assert svc["loadBalancers"] == [{"targetGroupArn": alb.tg_arn, "containerName": "app",
                                     "containerPort": 5000}]
    task = next(t for t in _tasks(sandbox.client("ecs"), s, "RUNNING")
                if t["taskDefinitionArn"] == result["data"]["task_definition"])
    target = task_target(task, s.container, s.container_port)
    th = alb_support.health(sandbox, alb.tg_arn, target)[0]["TargetHealth"]
    assert th["State"] == "healthy", th
    recorded = result["data"]["verdict_detail"]["target_health"]
    assert [(h["target"], h["state"]) for h in recorded] == [
        (f"{target['Id']}:{target['Port']}", "healthy")]
    assert "1 target(s) healthy" in result["reason"]
    assert f"registered 1 targets in (target-group {alb.tg_arn})" in "\n".join(
        result["data"]["verdict_detail"]["events"])
    folder = Path(result["evidence"]["folder"])
    [evidence] = [p for p in folder.iterdir() if p.name.endswith("_target_health.json")]
    assert json.loads(evidence.read_text())[0]["state"] == "healthy"
    # The old task was deregistered when ECS stopped it: only the new target is in service.
    healthy = [d["Target"] for d in alb_support.health(sandbox, alb.tg_arn)
               if d["TargetHealth"]["State"] == "healthy"]
    assert healthy == [target]


def test_a_target_that_fails_its_checks_fails_the_verdict_and_rolls_back(
        sandbox, alb, env_with_alb):
    if not service(sandbox).get("loadBalancers"):  # run on its own: behind the ALB first
        assert run_flow(deploy, env="local", image="latest",
                        skip_preflight=True)["verdict"] == "success"
    previous = service(sandbox)["taskDefinition"]
    push_variant(sandbox, "alb-unreachable")
    # The new tasks' targets cannot be reached by the ALB (a task security group that does not
    # admit it): their checks time out, ECS stops them, the circuit breaker trips.
    sandbox.elb.unreachable_from_now()
    try:
        result = run_flow(deploy, env="local", image="alb-unreachable", skip_preflight=True,
                          timeout_seconds=90)
    finally:
        sandbox.elb.clear_faults()
    assert result["verdict"] == "failed", result
    assert "Task failed ELB health checks" in result["reason"], result["reason"]
    assert result["data"]["rollback"]["ok"] is True, result["data"]["rollback"]
    assert service(sandbox)["taskDefinition"] == previous
    seen = result["data"]["verdict_detail"]["target_health"]
    # Never healthy. A new target may already be draining when the verdict looks: ECS stopped
    # its task and deregistered it (the ALB drains a deregistered target, as AWS does); on a
    # busy machine that happens before the verdict's last look.
    assert seen and {h["state"] for h in seen} <= {"initial", "unhealthy", "draining"}, seen
    assert {h["state"] for h in seen} & {"initial", "unhealthy"}, seen
    assert any(h["reason"] == "Target.Timeout" for h in seen), seen
    # What runs again is the previous revision, and its target is still the healthy one.
    assert [d["TargetHealth"]["State"] for d in alb_support.health(sandbox, alb.tg_arn)
            if d["TargetHealth"]["State"] != "draining"] == ["healthy"]


@pytest.mark.parametrize(("change", "message"), [
    ({"containerName": "web"}, "The container web does not exist in the task definition."),
    ({"containerPort": 80}, "The container app did not have a container port 80 defined."),
    ({"targetGroupArn": "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/"
                        "papyrus-nope/0123456789abcdef"},
     "Unable to assume role and validate the specified targetGroupArn"),
])
def test_ecs_refuses_a_load_balancer_the_task_definition_or_account_does_not_have(
        sandbox, alb, change, message):
    s = sandbox.settings
    lb = {"targetGroupArn": alb.tg_arn, "containerName": "app", "containerPort": 5000} | change
    before = service(sandbox)["deployments"]
    with pytest.raises(ClientError) as err:
        sandbox.client("ecs").update_service(cluster=s.cluster, service=s.service,
                                             loadBalancers=[lb])
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert message in err.value.response["Error"]["Message"]
    assert [d["id"] for d in service(sandbox)["deployments"]] == [d["id"] for d in before]


def test_ecs_refuses_an_instance_target_group_and_one_without_a_load_balancer(sandbox):
    s = sandbox.settings
    for name, kw, message in (
            ("papyrus-tg-inst", {"target_type": "instance"},
             "has target type instance, which is incompatible with the awsvpc network mode"),
            ("papyrus-tg-nolb", {"listener": False}, "does not have an associated load "
                                                     "balancer")):
        made = alb_support.create(sandbox, name, **kw)
        try:
            with pytest.raises(ClientError) as err:
                sandbox.client("ecs").update_service(
                    cluster=s.cluster, service=s.service, loadBalancers=[
                        {"targetGroupArn": made.tg_arn, "containerName": "app",
                         "containerPort": 5000}])
            assert message in err.value.response["Error"]["Message"]
        finally:
            alb_support.delete(sandbox, made)


def test_a_target_group_no_load_balancer_uses_is_refused_before_anything_changes(
        sandbox, tmp_path, monkeypatch):
    made = alb_support.create(sandbox, "papyrus-tg-lonely", listener=False)
    try:
        _env_copy(sandbox, tmp_path, monkeypatch, "papyrus-tg-lonely")
        before = revisions(sandbox), service(sandbox)["deployments"][0]["id"]
        result = run_flow(deploy, env="local", image="latest", skip_preflight=True)
        assert result["verdict"] == "failed", result
        assert "'papyrus-tg-lonely' is not used by any load balancer" in result["reason"]
        assert (revisions(sandbox), service(sandbox)["deployments"][0]["id"]) == before
    finally:
        alb_support.delete(sandbox, made)
