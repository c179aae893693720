"""ECS blue/green deployments in the sandbox, through the ECS and ELBv2 APIs over HTTP as a
flow sees them, with traffic through the sandbox's real listeners on 127.0.0.1.

The module has its own service (`papyrus-bg`, in the seeded cluster, its own task definition
family) behind its own ALB (tests/support/alb.create_blue_green), deleted at the end. Revisions
are told apart by what `/healthz` reports as `image` (the task definition's PAPYRUS_IMAGE).
PAPYRUS_SANDBOX_SECONDS_PER_MINUTE makes the sandbox's minutes one second long here.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from sandbox.ecs_blue_green import SECONDS_PER_MINUTE_ENV
from tests.support import alb as alb_support
from tests.support.blue_green import Recorder, settled
from tests.support.waiting import wait_until

SERVICE = "papyrus-bg"
FAMILY = "papyrus-bg"
FIRST = "bg-first"
BG_CONF = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1,
           "deploymentCircuitBreaker": {"enable": True, "rollback": True},
           "maximumPercent": 200, "minimumHealthyPercent": 100}


def _pause(stage: str = "POST_TEST_TRAFFIC_SHIFT", minutes: int = 60,
           action: str = "ROLLBACK") -> list[dict]:
    return [{"targetType": "PAUSE", "lifecycleStages": [stage],
             "timeoutConfiguration": {"timeoutInMinutes": minutes, "action": action}}]


def _register(sb, image_label: str, image: str | None = None) -> str:
    """A task definition of FAMILY: the seeded one, PAPYRUS_IMAGE set to `image_label`
    (optionally another `image`)."""
    ecs = sb.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=sb.seeded.task_definition_arn)[
        "taskDefinition"]
    keep = ("taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions",
            "requiresCompatibilities", "cpu", "memory", "runtimePlatform")
    new = {k: td[k] for k in keep if k in td}
    c = new["containerDefinitions"][0]
    if image:
        c["image"] = image
    c["environment"] = [e for e in c.get("environment", []) if e["name"] != "PAPYRUS_IMAGE"]
    c["environment"].append({"name": "PAPYRUS_IMAGE", "value": image_label})
    return ecs.register_task_definition(family=FAMILY, **new)["taskDefinition"][
        "taskDefinitionArn"]


def _svc(sb) -> dict:
    return sb.client("ecs").describe_services(cluster=sb.settings.cluster,
                                              services=[SERVICE])["services"][0]


def _settled(sb) -> dict | None:
    return settled(sb, SERVICE)


@pytest.fixture(scope="module")
def bg(sandbox):
    """The ALB and a BLUE_GREEN service on FIRST, serving production."""
    import os

    saved = os.environ.get(SECONDS_PER_MINUTE_ENV)
    os.environ[SECONDS_PER_MINUTE_ENV] = "1"
    made = alb_support.create_blue_green(sandbox, "papyrus-bg")
    ecs = sandbox.client("ecs")
    seeded = ecs.describe_services(cluster=sandbox.settings.cluster,
                                   services=[sandbox.settings.service])["services"][0]
    tds = [_register(sandbox, FIRST)]
    ecs.create_service(cluster=sandbox.settings.cluster, serviceName=SERVICE,
                       taskDefinition=tds[0], desiredCount=1, launchType="FARGATE",
                       networkConfiguration=seeded["networkConfiguration"],
                       loadBalancers=made.load_balancers(), healthCheckGracePeriodSeconds=0,
                       deploymentConfiguration=BG_CONF)
    try:
        wait_until(lambda: _settled(sandbox), 90, what="the blue/green service's first tasks")
        wait_until(lambda: alb_support.image_behind(made.prod_port) == FIRST, 60,
                   what="production serving the first revision")
        yield made, tds
    finally:
        with contextlib.suppress(ClientError):
            ecs.delete_service(cluster=sandbox.settings.cluster, service=SERVICE, force=True)
        wait_until(lambda: not ecs.list_tasks(cluster=sandbox.settings.cluster,
                                              serviceName=SERVICE)["taskArns"], 60,
                   what="the blue/green service's tasks stopped")
        alb_support.delete_blue_green(sandbox, made)
        for td in tds:
            with contextlib.suppress(ClientError):
                ecs.deregister_task_definition(taskDefinition=td)
        if saved is None:
            os.environ.pop(SECONDS_PER_MINUTE_ENV, None)
        else:
            os.environ[SECONDS_PER_MINUTE_ENV] = saved


def _deploy(sb, bg, label: str, image: str | None = None, **conf) -> tuple[str, str]:
    """UpdateService to a new revision labelled `label`; (its task definition, the service
    deployment's ARN)."""
    made, tds = bg
    wait_until(lambda: _settled(sb), 60, what="the blue/green service settled")
    td = _register(sb, label, image)
    tds.append(td)
    ecs = sb.client("ecs")
    ecs.update_service(cluster=sb.settings.cluster, service=SERVICE, taskDefinition=td,
                       deploymentConfiguration={**BG_CONF, **conf})
    briefs = ecs.list_service_deployments(cluster=sb.settings.cluster, service=SERVICE)[
        "serviceDeployments"]
    for brief in briefs:
        rev = ecs.describe_service_revisions(serviceRevisionArns=[
            brief["targetServiceRevisionArn"]])["serviceRevisions"][0]
        if rev["taskDefinition"] == td:
            return td, brief["serviceDeploymentArn"]
    raise AssertionError(f"no service deployment targets {td}")


def _sd(sb, arn: str) -> dict:
    return sb.client("ecs").describe_service_deployments(serviceDeploymentArns=[arn])[
        "serviceDeployments"][0]


def _watch(sb, arn: str, stages: set, until) -> dict:
    def check():
        d = _sd(sb, arn)
        stages.add((d["status"], d.get("lifecycleStage")))
        return d if until(d) else None
    return check


def _awaiting(sb, arn: str, stages: set, timeout: float = 90) -> tuple[dict, dict]:
    d = wait_until(_watch(sb, arn, stages, lambda d: any(
        h["status"] == "AWAITING_ACTION" for h in d.get("lifecycleHookDetails", []))),
        timeout, what="the deployment paused at its hook")
    return d, next(h for h in d["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION")


def _running_images(sb) -> set[str]:
    ecs = sb.client("ecs")
    arns = ecs.list_tasks(cluster=sb.settings.cluster, serviceName=SERVICE)["taskArns"]
    if not arns:
        return set()
    tasks = ecs.describe_tasks(cluster=sb.settings.cluster, tasks=arns)["tasks"]
    return {t["taskDefinitionArn"] for t in tasks if t["lastStatus"] != "STOPPED"}


def _current_label(sb, bg) -> str:
    svc = wait_until(lambda: _settled(sb), 60, what="the blue/green service settled")
    td = sb.client("ecs").describe_task_definition(taskDefinition=svc["taskDefinition"])[
        "taskDefinition"]
    env = td["containerDefinitions"][0]["environment"]
    return next(e["value"] for e in env if e["name"] == "PAPYRUS_IMAGE")


def test_the_pause_serves_green_on_test_blue_on_production_then_continue_succeeds(
        sandbox, bg):
    made, _ = bg
    ecs = sandbox.client("ecs")
    blue = _current_label(sandbox, bg)
    green = f"bg-green-{uuid.uuid4().hex[:6]}"
    stages: set = set()
    with Recorder(made.prod_port) as prod:
        td, arn = _deploy(sandbox, bg, green, bakeTimeInMinutes=2,
                          lifecycleHooks=_pause("POST_TEST_TRAFFIC_SHIFT"))
        sd, hook = _awaiting(sandbox, arn, stages)
        assert sd["status"] == "IN_PROGRESS"
        assert sd["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
        assert hook["targetType"] == "PAUSE" and hook["timeoutAction"] == "ROLLBACK"
        assert sd["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
        assert sd["deploymentConfiguration"]["lifecycleHooks"][0]["lifecycleStages"] == [
            "POST_TEST_TRAFFIC_SHIFT"]
        # The test listener reaches green, production still blue (every time: round-robin).
        assert {alb_support.image_behind(made.test_port) for _ in range(5)} == {green}
        assert {alb_support.image_behind(made.prod_port) for _ in range(5)} == {blue}
        svc = _svc(sandbox)
        by_status = {d["status"]: d for d in svc["deployments"]}
        assert set(by_status) == {"PRIMARY", "ACTIVE"}
        assert by_status["PRIMARY"]["taskDefinition"] == td
        assert by_status["PRIMARY"]["rolloutState"] == "IN_PROGRESS"
        assert svc["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
        assert svc["deploymentConfiguration"]["bakeTimeInMinutes"] == 2
        assert svc["deploymentConfiguration"]["lifecycleHooks"][0]["targetType"] == "PAUSE"
        assert hook["hookId"].startswith("ecs-pause-")
        # A hook id this deployment does not have: ECS's InvalidParameterException.
        with pytest.raises(ClientError) as e:
            ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId="no-such-hook",
                                            action="CONTINUE")
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
        ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"],
                                        action="CONTINUE")
        done = wait_until(_watch(sandbox, arn, stages, lambda d: d["status"] == "SUCCESSFUL"),
                          90, what="SUCCESSFUL")
    assert done["lifecycleHookDetails"][0]["status"] == "SUCCEEDED"
    # Once answered, the hook cannot be answered again.
    with pytest.raises(ClientError) as e:
        ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"],
                                        action="CONTINUE")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert ("IN_PROGRESS", "BAKE_TIME") in stages, stages
    assert {alb_support.image_behind(made.prod_port) for _ in range(5)} == {green}
    assert _running_images(sandbox) == {td}  # blue is gone after the bake
    assert prod.seen[0] == blue and prod.seen[-1] == green
    assert None not in prod.seen, "production had a moment without a healthy target"
    assert _settled(sandbox)["deployments"][0]["rolloutState"] == "COMPLETED"


def test_rollback_at_the_pause_never_lets_production_see_green(sandbox, bg):
    made, _ = bg
    ecs = sandbox.client("ecs")
    blue = _current_label(sandbox, bg)
    green = f"bg-green-{uuid.uuid4().hex[:6]}"
    elbv2 = sandbox.client("elbv2")
    stages: set = set()
    with Recorder(made.prod_port) as prod:
        _, arn = _deploy(sandbox, bg, green, lifecycleHooks=_pause("POST_TEST_TRAFFIC_SHIFT"))
        _, hook = _awaiting(sandbox, arn, stages)
        # Green went to the group production does not forward to (roles swap each time).
        rule = elbv2.describe_rules(RuleArns=[made.prod_rule])["Rules"][0]
        weights = {g["TargetGroupArn"]: g["Weight"]
                   for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}
        serving = max(weights, key=weights.get)
        idle = next(a for a in (made.blue_tg, made.green_tg) if a != serving)
        assert "healthy" in [h["TargetHealth"]["State"]
                             for h in alb_support.health(sandbox, idle)]
        assert alb_support.image_behind(made.test_port) == green
        ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"],
                                        action="ROLLBACK")
        done = wait_until(_watch(sandbox, arn, stages,
                                 lambda d: d["status"] == "ROLLBACK_SUCCESSFUL"),
                          90, what="ROLLBACK_SUCCESSFUL")
    assert green not in prod.seen and blue in prod.seen, set(prod.seen)
    assert done["rollback"]["reason"] and done["rollback"]["startedAt"]
    src = done["sourceServiceRevisions"][0]["arn"]
    assert done["rollback"]["serviceRevisionArn"] == src
    assert done["lifecycleHookDetails"][0]["status"] == "FAILED"
    assert any(s == "ROLLBACK_IN_PROGRESS" for s, _ in stages), stages
    assert alb_support.image_behind(made.test_port) == blue
    assert _current_label(sandbox, bg) == blue


def test_stop_service_deployment_during_bake_time_shifts_production_back(sandbox, bg):
    made, _ = bg
    ecs = sandbox.client("ecs")
    blue = _current_label(sandbox, bg)
    green = f"bg-green-{uuid.uuid4().hex[:6]}"
    stages: set = set()
    _, arn = _deploy(sandbox, bg, green, bakeTimeInMinutes=600)
    wait_until(_watch(sandbox, arn, stages, lambda d: d.get("lifecycleStage") == "BAKE_TIME"),
               90, what="BAKE_TIME")
    assert {alb_support.image_behind(made.prod_port) for _ in range(3)} == {green}
    assert len(_running_images(sandbox)) == 2  # blue still runs while green bakes
    ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    # Production is back on blue at once, before green's tasks are even gone.
    assert {alb_support.image_behind(made.prod_port) for _ in range(3)} == {blue}
    done = wait_until(_watch(sandbox, arn, stages,
                             lambda d: d["status"] == "ROLLBACK_SUCCESSFUL"),
                      90, what="ROLLBACK_SUCCESSFUL")
    assert "StopServiceDeployment" in done["rollback"]["reason"]
    assert _current_label(sandbox, bg) == blue


def test_a_hook_that_times_out_takes_its_action(sandbox, bg):
    made, _ = bg
    blue = _current_label(sandbox, bg)
    stages: set = set()
    _, arn = _deploy(sandbox, bg, f"bg-green-{uuid.uuid4().hex[:6]}",
                     lifecycleHooks=_pause("POST_SCALE_UP", minutes=2))
    _, hook = _awaiting(sandbox, arn, stages)
    done = wait_until(_watch(sandbox, arn, stages,
                             lambda d: d["status"] == "ROLLBACK_SUCCESSFUL"),
                      60, what="ROLLBACK_SUCCESSFUL after the hook's timeout")
    assert done["lifecycleHookDetails"][0]["status"] == "TIMED_OUT"
    assert "timed out" in done["rollback"]["reason"]
    assert alb_support.image_behind(made.prod_port) == blue


def test_green_tasks_that_fail_trip_the_circuit_breaker_and_roll_back(sandbox, bg):
    made, _ = bg
    blue = _current_label(sandbox, bg)
    missing = f"{sandbox.seeded.image_uri.split('@')[0]}:no-such"
    stages: set = set()
    with Recorder(made.prod_port) as prod:
        _, arn = _deploy(sandbox, bg, "bg-broken", image=missing)
        done = wait_until(_watch(sandbox, arn, stages,
                                 lambda d: d["status"] == "ROLLBACK_SUCCESSFUL"),
                          60, what="ROLLBACK_SUCCESSFUL after the circuit breaker")
    assert done["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert "circuit breaker" in done["rollback"]["reason"]
    assert ("IN_PROGRESS", "SCALE_UP") in stages, stages
    assert set(prod.seen) == {blue}  # production never left blue, never went without it
    assert alb_support.image_behind(made.test_port) == blue


def test_blue_green_configurations_ecs_refuses(sandbox, bg):
    made, tds = bg
    ecs = sandbox.client("ecs")
    s = sandbox.settings
    seeded = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
    base = {"cluster": s.cluster, "serviceName": "papyrus-bg-refused", "taskDefinition": tds[0],
            "desiredCount": 1, "launchType": "FARGATE",
            "networkConfiguration": seeded["networkConfiguration"]}
    plain = [{k: v for k, v in made.load_balancers()[0].items()
              if k != "advancedConfiguration"}]
    no_rule = made.load_balancers()
    no_rule[0]["advancedConfiguration"]["productionListenerRule"] = made.prod_rule + "0"
    lambda_hook = [{"targetType": "AWS_LAMBDA", "lifecycleStages": ["POST_SCALE_UP"],
                    "hookTargetArn": "arn:aws:lambda:eu-west-1:123456789012:function:f",
                    "roleArn": "arn:aws:iam::123456789012:role/r"}]
    cases = [
        (plain, BG_CONF, "InvalidParameterException"),
        (no_rule, BG_CONF, "InvalidParameterException"),
        (made.load_balancers(), {k: v for k, v in BG_CONF.items() if k != "bakeTimeInMinutes"},
         "InvalidParameterException"),
        (made.load_balancers(), {**BG_CONF, "lifecycleHooks": lambda_hook},
         "UnsupportedFeatureException"),
    ]
    for lbs, conf, code in cases:
        with pytest.raises(ClientError) as e:
            ecs.create_service(**base, loadBalancers=lbs, deploymentConfiguration=conf)
        assert e.value.response["Error"]["Code"] == code, (lbs, conf)
    assert not ecs.describe_services(cluster=s.cluster, services=["papyrus-bg-refused"])[
        "services"]


class _Echo(BaseHTTPRequestHandler):
    """A target that answers /healthz and echoes what reached it."""

    def do_GET(self):  # noqa: N802 - stdlib's name
        body = json.dumps({"path": self.path, "host": self.headers.get("Host"),
                           "xff": self.headers.get("X-Forwarded-For")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        return


def test_listeners_route_by_rule_and_weight_and_answer_as_the_alb(sandbox):
    elbv2 = sandbox.client("elbv2")
    made = alb_support.create_blue_green(sandbox, "papyrus-lsn")
    target = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        # Both listeners forward to blue, which has no target yet: the ALB's 503.
        status, body, _ = alb_support.get(made.prod_port)
        assert status == 503 and "503 Service Temporarily Unavailable" in body
        port = target.server_address[1]
        elbv2.register_targets(TargetGroupArn=made.green_tg,
                               Targets=[{"Id": "127.0.0.1", "Port": port}])
        wait_until(lambda: alb_support.health(sandbox, made.green_tg)[0]["TargetHealth"][
            "State"] == "healthy", 30, what="the echo target healthy")
        # Green has weight 0: still nothing for it.
        assert alb_support.get(made.prod_port)[0] == 503
        # A rule by path, in priority order, over the default.
        elbv2.create_rule(ListenerArn=made.prod_listener, Priority=10,
                          Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                          Actions=[{"Type": "forward", "TargetGroupArn": made.green_tg}])
        elbv2.create_rule(ListenerArn=made.prod_listener, Priority=5,
                          Conditions=[{"Field": "path-pattern", "Values": ["/api/fixed"]}],
                          Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                              "StatusCode": "418", "ContentType": "text/plain",
                              "MessageBody": "teapot"}}])
        status, body, _ = alb_support.get(made.prod_port, "/api/x?q=1",
                                          headers={"Host": "papyrus.example"})
        seen = json.loads(body)
        assert status == 200 and seen["path"] == "/api/x?q=1"
        assert seen["host"] == "papyrus.example" and seen["xff"] == "127.0.0.1"
        assert alb_support.get(made.prod_port, "/api/fixed")[:2] == (418, "teapot")
        assert alb_support.get(made.prod_port, "/other")[0] == 503
        # ModifyRule takes effect for the next request: /api/* now goes to empty blue.
        api_rule = next(r["RuleArn"] for r in elbv2.describe_rules(
            ListenerArn=made.prod_listener)["Rules"] if r["Priority"] == "10")
        elbv2.modify_rule(RuleArn=api_rule, Actions=[
            {"Type": "forward", "TargetGroupArn": made.blue_tg}])
        assert alb_support.get(made.prod_port, "/api/x")[0] == 503
        # ModifyListener takes effect for the next request.
        elbv2.modify_listener(ListenerArn=made.prod_listener, DefaultActions=[
            {"Type": "forward", "TargetGroupArn": made.green_tg}])
        assert alb_support.get(made.prod_port, "/other")[0] == 200
        # A port the balancer already listens on: DuplicateListener, as AWS answers.
        with pytest.raises(ClientError) as e:
            elbv2.create_listener(LoadBalancerArn=made.lb_arn, Protocol="HTTP",
                                  Port=made.test_port, DefaultActions=[
                                      {"Type": "forward", "TargetGroupArn": made.blue_tg}])
        assert e.value.response["Error"]["Code"] == "DuplicateListener"
        # A target that refuses the connection: 502.
        target.shutdown()
        target.server_close()
        assert alb_support.get(made.prod_port, "/other")[0] == 502
        # DeleteListener: nothing listens on the port any more.
        elbv2.delete_listener(ListenerArn=made.test_listener)
        with pytest.raises(OSError):
            alb_support.get(made.test_port, timeout=2)
    finally:
        with contextlib.suppress(OSError):
            target.server_close()
        for rule in elbv2.describe_rules(ListenerArn=made.prod_listener)["Rules"]:
            if not rule["IsDefault"]:
                elbv2.delete_rule(RuleArn=rule["RuleArn"])
        alb_support.delete_blue_green(sandbox, made)
