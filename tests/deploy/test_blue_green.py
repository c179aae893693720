"""The deploy of a blue/green service (docs/runbook.md, "Blue/green deploys"): ECS pauses with the
new revision behind the test listener; the flow probes it there and, where approval is required,
pauses for a person; approved, production shifts and the deploy succeeds after the bake time;
rejected or failing its probes, ECS rolls back and production never served it.

The session service is made a blue/green service behind a real (sandbox) ALB for this module
(tests/support/blue_green.py); both listeners are polled during each deploy, so "production
never served it" is what production answered, not what ECS says. Approval through the API here;
the UI's own Resume form is tests/e2e/test_approval_ui.py."""

from __future__ import annotations

import pytest

from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from tests.support import alb as alb_support
from tests.support.approval import Background, artifact, paused_run, resume
from tests.support.blue_green import Recorder, blue_green_env
from tests.support.sandbox_state import push_service_copy, push_variant, service, without_dbcheck
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("prefect_server", "main_schema")


@pytest.fixture(scope="module")
def bg(sandbox, tmp_path_factory):
    with blue_green_env(sandbox, tmp_path_factory.mktemp("blue-green")) as made:
        yield made


@pytest.fixture
def bg_env(bg, monkeypatch):
    import ground.settings

    monkeypatch.setattr(ground.settings, "DEPLOYMENTS", bg.deployments)
    return bg


def _deploy_past_its_plan(tag: str):
    """A prd-like deploy of `tag` in the background, its plan approved through the API: (the
    background run, the flow run)."""
    run = Background(run_flow, flow_fn=deploy, env="local", image=tag, skip_preflight=True)
    plan = paused_run(lambda p: p.get("image") == tag, timeout=120, background=run)
    resume(plan.id, approve=True, reason="plan looks right")
    return run, plan


def _stages(result: dict) -> list[str]:
    return result["data"]["verdict_detail"]["lifecycle"]


def test_without_approval_the_test_listener_is_probed_then_production_shifts_after_bake(
        sandbox, bg_env):
    digest = push_variant(sandbox, "bg-auto")
    before = service(sandbox)["taskDefinition"]
    with Recorder(bg_env.alb.prod_port) as prod, Recorder(bg_env.alb.test_port) as test:
        result = run_flow(deploy, env="local", image="bg-auto", skip_preflight=True)
    assert result["verdict"] == "success", result
    data = result["data"]
    assert data["strategy"] == "BLUE_GREEN"
    assert data["test_traffic"]["paused"] is True
    assert data["test_traffic"]["stage"] == "POST_TEST_TRAFFIC_SHIFT"
    assert data["test_listener"]["healthz"] == 200 and data["test_listener"]["url_map"] == "pass"
    assert data["test_listener"]["url"] == f"http://127.0.0.1:{bg_env.alb.test_port}"
    assert data["continue"]["sent"] is True and "traffic_approval" not in data
    assert any("BAKE_TIME" in st for st in _stages(result)), _stages(result)
    assert result["reason"].startswith("service deployment "), result["reason"]
    # The test listener served it before production did, and production serves it now.
    first_test = next(i for i, img in enumerate(test.seen) if img and digest in img)
    assert prod.served(digest) and test.served(digest)
    assert alb_support.image_behind(bg_env.alb.prod_port).endswith(digest)
    assert service(sandbox)["taskDefinition"] == data["task_definition"] != before
    assert first_test >= 0 and data["probes"]["healthz"] == 200


def test_a_probe_failure_behind_the_test_listener_rolls_back_without_asking(
        sandbox, bg_env, tmp_path, monkeypatch):
    """An image that starts and is healthy (/healthz) but lacks /dbcheck: the ALB admits it,
    the probes through the test listener do not. Approval is required, yet nobody is asked."""
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")
    monkeypatch.setenv("PAPYRUS_APPROVAL_POLL_SECONDS", "0.5")
    digest = push_service_copy(sandbox, "bg-no-dbcheck", tmp_path, without_dbcheck)
    before = service(sandbox)["taskDefinition"]
    with Recorder(bg_env.alb.prod_port) as prod:
        run, plan = _deploy_past_its_plan("bg-no-dbcheck")
        result = run.result(timeout=240)
    assert result["verdict"] == "failed", result
    reason = result["reason"]
    assert reason.startswith("probe through the test listener failed: running URL map"), reason
    assert "/dbcheck" in reason and "rolled back without asking" in reason, reason
    data = result["data"]
    assert "traffic_approval" not in data  # never asked
    assert artifact(plan.id, "deploy-traffic-approval") == ""
    assert data["rollback"]["via"] == "ContinueServiceDeployment ROLLBACK"
    assert data["rollback"]["status"] == "ROLLBACK_SUCCESSFUL" and data["rollback"]["ok"]
    assert not prod.served(digest), "production served the revision that failed its probes"
    assert wait_until(lambda: service(sandbox)["taskDefinition"] == before, 60)


def test_rejected_at_the_pause_rolls_back_and_production_never_served_it(
        sandbox, bg_env, monkeypatch):
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")
    monkeypatch.setenv("PAPYRUS_APPROVAL_POLL_SECONDS", "0.5")
    digest = push_variant(sandbox, "bg-reject")
    before = service(sandbox)["taskDefinition"]
    with Recorder(bg_env.alb.prod_port) as prod:
        run, plan = _deploy_past_its_plan("bg-reject")
        # The second pause: the new revision behind the test listener, the old in production.
        shown = wait_until(lambda: artifact(plan.id, "deploy-traffic-approval"), 120,
                           what="the traffic approval artifact")
        paused_run(lambda p: p.get("image") == "bg-reject", timeout=60, background=run)
        assert digest in shown and f":{bg_env.alb.test_port}" in shown
        assert alb_support.image_behind(bg_env.alb.test_port).endswith(digest)
        assert not alb_support.image_behind(bg_env.alb.prod_port).endswith(digest)
        resume(plan.id, approve=False, reason="not on a Friday")
        result = run.result(timeout=240)
    assert result["verdict"] == "failed", result
    assert result["reason"] == ("rejected: not on a Friday; rolled back, production never "
                                "served it"), result["reason"]
    data = result["data"]
    assert data["traffic_approval"]["outcome"] == "rejected"
    assert data["rollback"]["status"] == "ROLLBACK_SUCCESSFUL", data["rollback"]
    assert not prod.served(digest), "production served a rejected revision"
    assert wait_until(lambda: service(sandbox)["taskDefinition"] == before, 60)
    assert not alb_support.image_behind(bg_env.alb.test_port).endswith(digest)


def test_a_probe_failure_after_the_shift_rolls_back_through_an_unattended_blue_green_deploy(
        sandbox, bg_env, monkeypatch):
    """Production already shifted when the task probes fail (injected: the probes of the new
    tasks, not the test listener's): the rollback is a new deployment of the old revision, and
    its own pause is continued without asking anyone."""
    import flows.deploy

    def broken(*_a, **_k):
        raise RuntimeError("injected probe failure")

    digest = push_variant(sandbox, "bg-late-fail")
    before = service(sandbox)["taskDefinition"]
    monkeypatch.setattr(flows.deploy, "_probe", broken)
    result = run_flow(deploy, env="local", image="bg-late-fail", skip_preflight=True)
    assert result["verdict"] == "failed", result
    assert result["reason"] == "probe failed: injected probe failure", result["reason"]
    rb = result["data"]["rollback"]
    assert rb["ok"] is True and rb["started_by_us"] is True, rb
    assert service(sandbox)["taskDefinition"] == before
    assert not alb_support.image_behind(bg_env.alb.prod_port).endswith(digest)


def test_the_rollback_command_on_a_blue_green_service_continues_its_pause(sandbox, bg_env):
    from flows.rollback import rollback

    push_variant(sandbox, "bg-then-back")
    before = service(sandbox)["taskDefinition"]
    shipped = run_flow(deploy, env="local", image="bg-then-back", skip_preflight=True)
    assert shipped["verdict"] == "success", shipped
    result = run_flow(rollback, env="local")
    assert result["verdict"] == "success", result
    assert result["data"]["test_traffic"]["paused"] is True  # continued, nobody asked
    assert service(sandbox)["taskDefinition"] == before
    old = sandbox.client("ecs").describe_task_definition(taskDefinition=before)[
        "taskDefinition"]["containerDefinitions"][0]["image"]
    assert alb_support.image_behind(bg_env.alb.prod_port) == old
