"""The verdict from ECS's service deployment, today's reading where that API is unavailable, and
ECS's own rollback (StopServiceDeployment) for deploy and `papyrus-ops rollback`."""

from __future__ import annotations

import json
import time

import pytest

from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from tasks.rollout import wait_for_verdict
from tests.support.sandbox_state import push_variant, service, stable_on
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def schema(sandbox):
    from flows.schema_init import schema_init

    result = run_flow(schema_init, env="local", apply=True)
    assert result["verdict"] == "success", result


@pytest.fixture
def settled(sandbox):
    """A settled service before the test, and the same revision again after it: the tests
    roll out copies (SD_TEST=…) that later tests must not find running."""
    before = service(sandbox)["taskDefinition"]
    wait_until(lambda: stable_on(sandbox, before), 60, what="a settled service")
    yield before
    if service(sandbox)["taskDefinition"] != before:
        sandbox.client("ecs").update_service(cluster=sandbox.settings.cluster,
                                             service=sandbox.settings.service,
                                             taskDefinition=before)
    wait_until(lambda: stable_on(sandbox, before), 120, what="the service back on its revision")


def _copy_of_running(sb, image: str | None = None, **env) -> str:
    ecs = sb.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=service(sb)["taskDefinition"])[
        "taskDefinition"]
    keep = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions",
            "requiresCompatibilities", "cpu", "memory", "runtimePlatform")
    new = {k: td[k] for k in keep if k in td}
    c = new["containerDefinitions"][0]
    c["image"] = image or c["image"]
    c["environment"] = [*c.get("environment", []),
                        *({"name": k, "value": v} for k, v in env.items())]
    return ecs.register_task_definition(**new)["taskDefinition"]["taskDefinitionArn"]


def _start_rollout(sb, td: str) -> str:
    resp = sb.client("ecs").update_service(cluster=sb.settings.cluster,
                                           service=sb.settings.service, taskDefinition=td,
                                           forceNewDeployment=True)
    return next(d["id"] for d in resp["service"]["deployments"] if d["status"] == "PRIMARY")


def _unpullable(sb) -> str:
    return _copy_of_running(sb, image=f"{sb.seeded.image_uri.split('@')[0]}:no-such-tag")


def test_circuit_breaker_verdict_names_rollback_successful_and_its_reason(sandbox, settled):
    bad = _unpullable(sandbox)
    since = time.time()
    dep = _start_rollout(sandbox, bad)
    v = wait_for_verdict.fn(sandbox.client("ecs"), sandbox.settings, dep, bad, None,
                            timeout=60, poll=0.2, since=since)
    assert v["ok"] is False and v["outcome"] == "failed"
    assert v["source"] == "service-deployment"
    assert v["service_deployment"]["status"] == "ROLLBACK_SUCCESSFUL"
    assert "ROLLBACK_SUCCESSFUL" in v["reason"] and "circuit breaker" in v["reason"]
    # The rollback's revision, by its task definition; the stopped tasks as today.
    assert settled.rsplit("/", 1)[-1] in v["reason"]
    assert "CannotPullContainerError" in json.dumps(v["stopped_tasks"])
    assert any(step.startswith("ROLLBACK_") for step in v["lifecycle"]), v["lifecycle"]


def test_without_the_api_todays_reading_still_fails_the_rollout(sandbox, settled):
    bad = _unpullable(sandbox)
    since = time.time()
    sandbox.faults.error("ecs", "ListServiceDeployments", "UnknownOperationException")
    try:
        dep = _start_rollout(sandbox, bad)
        v = wait_for_verdict.fn(sandbox.client("ecs"), sandbox.settings, dep, bad, None,
                                timeout=60, poll=0.2, since=since)
    finally:
        sandbox.faults.clear()
    assert v["ok"] is False and v["outcome"] == "failed"
    assert v["source"] == "describe-services" and v["service_deployment"] == {}
    assert "FAILED" in v["reason"] or "rolled back" in v["reason"], v["reason"]
    wait_until(lambda: stable_on(sandbox, settled), 60, what="the rollback to finish")


def test_without_the_api_a_good_rollout_still_succeeds(sandbox, settled):
    td = _copy_of_running(sandbox, SD_TEST="fallback-ok")
    since = time.time()
    sandbox.faults.error("ecs", "DescribeServiceRevisions", "AccessDeniedException")
    try:
        dep = _start_rollout(sandbox, td)
        v = wait_for_verdict.fn(sandbox.client("ecs"), sandbox.settings, dep, td, None,
                                timeout=60, poll=0.2, since=since)
    finally:
        sandbox.faults.clear()
    assert v["ok"] is True and v["source"] == "describe-services", v
    assert "COMPLETED" in v["reason"]


def test_a_good_rollout_succeeds_from_its_service_deployment(sandbox, settled):
    td = _copy_of_running(sandbox, SD_TEST="sd-ok")
    since = time.time()
    dep = _start_rollout(sandbox, td)
    v = wait_for_verdict.fn(sandbox.client("ecs"), sandbox.settings, dep, td, None,
                            timeout=60, poll=0.2, since=since)
    assert v["ok"] is True and v["source"] == "service-deployment", v
    assert v["reason"].startswith("service deployment ") and "SUCCESSFUL" in v["reason"]
    assert v["lifecycle"][-1].startswith("SUCCESSFUL") and len(v["running_tasks"]) == 1


def test_crashing_deploy_fails_with_rollback_successful_and_exit_codes(sandbox, schema, settled):
    sm, s = sandbox.client("secretsmanager"), sandbox.settings
    good = sm.get_secret_value(SecretId=s.db_secret_id)["SecretString"]
    push_variant(sandbox, "sd-crash")
    sm.put_secret_value(SecretId=s.db_secret_id,
                        SecretString=json.dumps(json.loads(good) | {"dbname": "papyrus_drift"}))
    try:
        result = run_flow(deploy, env="local", image="sd-crash", skip_preflight=True,
                          timeout_seconds=90)
    finally:
        sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good)
    assert result["verdict"] == "failed"
    reason = result["reason"]
    assert "ROLLBACK_SUCCESSFUL" in reason and "circuit breaker" in reason, reason
    assert "exit code(s) 3" in reason, reason
    detail = result["data"]["verdict_detail"]
    assert detail["source"] == "service-deployment"
    assert detail["service_deployment"]["rollback"]["reason"]
    # ECS rolled back by itself: no second rollback, no StopServiceDeployment.
    assert result["data"]["rollback"]["started_by_us"] is False
    assert result["data"]["rollback"]["ok"] is True
    assert service(sandbox)["taskDefinition"] == settled
    # The service deployment and its stages are evidence (and in the summary artifact's context).
    from pathlib import Path

    files = {p.name.split("_", 1)[1]: p for p in Path(result["evidence"]["folder"]).iterdir()
             if "_" in p.name}
    recorded = json.loads(files["service_deployment.json"].read_text())
    assert recorded["status"] == "ROLLBACK_SUCCESSFUL" and recorded["lifecycle"]
    manifest = json.loads((Path(result["evidence"]["folder"]) / "manifest.json").read_text())
    assert manifest["context"]["service_deployment_status"] == "ROLLBACK_SUCCESSFUL"
    assert "ROLLBACK_IN_PROGRESS" in manifest["context"]["service_deployment_lifecycle"]


def test_deploy_that_times_out_in_progress_is_rolled_back_by_ecs_itself(sandbox, schema,
                                                                        settled):
    push_variant(sandbox, "sd-slow")
    timing = sandbox.runtime.timing
    delay, timing.start_delay = timing.start_delay, 120.0  # the new tasks never come up
    sandbox.faults.reset_calls()
    try:
        result = run_flow(deploy, env="local", image="sd-slow", skip_preflight=True,
                          timeout_seconds=4, poll_seconds=0.5)
    finally:
        timing.start_delay = delay
    assert result["verdict"] == "failed"
    assert "timed out" in result["reason"] and "service deployment IN_PROGRESS" in \
        result["reason"], result["reason"]
    rb = result["data"]["rollback"]
    assert rb["ok"] is True and rb["started_by_us"] is True and rb["stopped_service_deployment"]
    ops = [c.operation for c in sandbox.faults.served("ecs")]
    assert ops.count("UpdateService") == 1 and "StopServiceDeployment" in ops, ops
    assert service(sandbox)["taskDefinition"] == settled


def test_rollback_command_stops_the_deployment_in_progress(sandbox, schema, settled):
    from tests.support.cli import run_cli

    td = _copy_of_running(sandbox, SD_TEST="to-be-stopped")
    timing = sandbox.runtime.timing
    delay, timing.start_delay = timing.start_delay, 120.0  # the rollout never completes
    try:
        _start_rollout(sandbox, td)
        sandbox.faults.reset_calls()
        r = run_cli("rollback", "--env", "local", "--to", settled, "--json")
    finally:
        timing.start_delay = delay
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["verdict"] == "success", (r.stdout, r.stderr)
    ops = [c.operation for c in sandbox.faults.served("ecs")]
    assert "StopServiceDeployment" in ops and "UpdateService" not in ops, ops
    assert out["data"]["stopped_service_deployment"]
    assert out["data"]["started_by_us"] is True
    assert service(sandbox)["taskDefinition"] == settled
    ecs = sandbox.client("ecs")
    sd = ecs.describe_service_deployments(serviceDeploymentArns=[
        out["data"]["stopped_service_deployment"]])["serviceDeployments"][0]
    assert wait_until(lambda: ecs.describe_service_deployments(serviceDeploymentArns=[
        sd["serviceDeploymentArn"]])["serviceDeployments"][0]["status"]
        == "ROLLBACK_SUCCESSFUL", 30, what="ROLLBACK_SUCCESSFUL")
