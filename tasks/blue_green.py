"""Blue/green deployments: ECS moves the traffic, we look through the test listener and decide.

A service whose service-definition.json declares `deploymentConfiguration.strategy` BLUE_GREEN
and a `PAUSE` lifecycle hook (ECS Developer Guide, "Amazon ECS blue/green deployments",
"Lifecycle hooks for Amazon ECS service deployments") goes, on each deployment, through
SCALE_UP (the new — green — tasks start in the target group that does not serve production),
TEST_TRAFFIC_SHIFT (the test listener's rule now forwards to green), and waits at
POST_TEST_TRAFFIC_SHIFT: the service deployment's `lifecycleHookDetails` show the hook
`AWAITING_ACTION` with its `hookId` and `expiresAt`. Production still reaches the old (blue)
tasks. `ContinueServiceDeployment(hookId, action=CONTINUE)` goes on (production traffic shift,
bake time with blue still running, clean-up); `action=ROLLBACK` puts both listeners back on
blue and stops green: production never served it.

Here: the load balancer and its listeners are found by name and port from the environment folder
(`[alb]`), the listener *rules* ECS moves are the ones forwarding to either target group of the
service (`[ecs] target_group` and `alternate_target_group`), and `wait_for_test_traffic` finds
our service deployment (by the revision it targets, tasks.service_deployments) at its pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.logs import run_logger
from ground.retry import transient_only
from ground.settings import Settings
from tasks import service_deployments as sdeps

PAUSED = "AWAITING_ACTION"


def strategy(service_params: dict) -> str:
    """The deployment strategy a rendered service definition (or a described service)
    declares: ROLLING by default."""
    return (service_params.get("deploymentConfiguration") or {}).get("strategy") or "ROLLING"


def bake_seconds(service_params: dict) -> float:
    return 60.0 * float((service_params.get("deploymentConfiguration") or {})
                        .get("bakeTimeInMinutes") or 0)


def pause_stages(service_params: dict) -> list[str]:
    hooks = (service_params.get("deploymentConfiguration") or {}).get("lifecycleHooks") or []
    return [st for h in hooks if h.get("targetType") == "PAUSE"
            for st in h.get("lifecycleStages") or []]


# -- the load balancer, by name and port ---------------------------------------------------------
def load_balancer(elbv2, s: Settings) -> dict:
    try:
        lbs = elbv2.describe_load_balancers(Names=[s.alb_name])["LoadBalancers"]
    except ClientError as e:
        if "NotFound" in e.response["Error"]["Code"]:
            raise ValueError(f"load balancer {s.alb_name!r} not found") from None
        raise
    return lbs[0]


def _listener(elbv2, lb: dict, port: int, name: str) -> dict:
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    found = next((li for li in listeners if li.get("Port") == port), None)
    if found is None:
        raise ValueError(f"load balancer {lb['LoadBalancerName']!r} has no {name} listener on "
                         f"port {port} (listeners on {sorted(li.get('Port') for li in listeners)})")
    return found


def _forwards_to(rule: dict) -> set[str]:
    arns = set()
    for a in rule.get("Actions") or []:
        if a.get("Type") != "forward":
            continue
        if a.get("TargetGroupArn"):
            arns.add(a["TargetGroupArn"])
        for tg in (a.get("ForwardConfig") or {}).get("TargetGroups") or []:
            arns.add(tg["TargetGroupArn"])
    return arns


def listener_rule_arn(elbv2, s: Settings, which: str, target_groups: set[str]) -> str:
    """The rule of the production or test listener that forwards to one of `target_groups`:
    the non-default one of the lowest priority, else the listener's default rule (what ECS's
    advancedConfiguration names; ECS refuses a rule forwarding to neither group)."""
    lb = load_balancer(elbv2, s)
    port = s.alb_production_port if which == "production" else s.alb_test_port
    li = _listener(elbv2, lb, port, which)
    rules = elbv2.describe_rules(ListenerArn=li["ListenerArn"])["Rules"]
    ours = [r for r in rules if _forwards_to(r) & target_groups]
    if not ours:
        raise ValueError(f"the {which} listener (port {port}) of {s.alb_name!r} forwards to "
                         "neither target group of the service")
    ours.sort(key=lambda r: (r.get("IsDefault", False),
                             int(r["Priority"]) if str(r.get("Priority", "")).isdigit() else 0))
    return ours[0]["RuleArn"]


def listener_url(elbv2, s: Settings, which: str) -> str:
    """Where the production or test listener is reached from here: the load balancer's DNS name
    (or `[alb] hostaddr`, as `[db] hostaddr` stands in for the RDS endpoint) and its port."""
    lb = load_balancer(elbv2, s)
    port = s.alb_production_port if which == "production" else s.alb_test_port
    _listener(elbv2, lb, port, which)
    return f"{s.alb_scheme}://{s.alb_hostaddr or lb['DNSName']}:{port}"


# -- the pause -----------------------------------------------------------------------------------
def awaiting_hook(sd: dict) -> dict | None:
    return next((h for h in sd.get("lifecycleHookDetails") or [] if h.get("status") == PAUSED),
                None)


@task(name="wait-for-test-traffic", cache_policy=NO_CACHE)
def wait_for_test_traffic(ecs, s: Settings, task_definition: str, since: float, timeout: float,
                          poll: float, clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll our service deployment until it waits at a PAUSE hook with the test traffic on the
    new revision, or ends without one. Returns {"paused": True, "arn", "hook_id", "stage",
    "expires_at", "lifecycle"}; or {"paused": False, "status", "reason", "lifecycle"} when it
    ended first (a failure is then judged by the verdict), could not be found, or timed out.
    A read error is logged and polled through, as the verdict does."""
    log = run_logger()
    start, arn, lifecycle, errors = clock(), None, [], 0
    while True:
        try:
            sd = sdeps.describe(ecs, arn) if arn else sdeps.find(ecs, s, task_definition, since)
        except sdeps.Unavailable as e:
            return {"paused": False, "status": "unavailable", "lifecycle": lifecycle,
                    "reason": f"ECS service deployments unavailable ({e}): a blue/green "
                              "deployment cannot be watched without them"}
        except (ClientError, BotoCoreError) as e:
            errors += 1
            log.warning("could not read the service deployment (%d so far): %s", errors, e)
            sd = None
        if sd:
            arn = sd["serviceDeploymentArn"]
            seen = f"{sd.get('status')} ({sd.get('lifecycleStage', '')})"
            if not lifecycle or lifecycle[-1] != seen:
                lifecycle.append(seen)
                log.info("service deployment %s: %s", sdeps.short(arn), seen)
            hook = awaiting_hook(sd)
            if hook:
                log.info("paused at %s (hook %s, expires %s): the test listener serves the new "
                         "revision", sd.get("lifecycleStage"), hook["hookId"],
                         hook.get("expiresAt"))
                return {"paused": True, "arn": arn, "hook_id": hook["hookId"],
                        "stage": sd.get("lifecycleStage", ""),
                        "expires_at": str(hook.get("expiresAt", "")),
                        "timeout_action": hook.get("timeoutAction", ""),
                        "lifecycle": lifecycle}
            if sd.get("status") not in sdeps.IN_FLIGHT:
                return {"paused": False, "arn": arn, "status": sd.get("status"),
                        "reason": sd.get("statusReason", ""), "lifecycle": lifecycle}
        if clock() - start >= timeout:
            return {"paused": False, "arn": arn, "status": "timeout", "lifecycle": lifecycle,
                    "reason": f"not paused for test traffic after {timeout:.0f}s"
                              + (f" (last: {lifecycle[-1]})" if lifecycle else "")}
        time.sleep(poll)


def hook_state(ecs, arn: str, hook_id: str) -> str:
    """The hook's status now (AWAITING_ACTION, SUCCEEDED, FAILED, TIMED_OUT), or the service
    deployment's status when the hook is gone from it."""
    sd = sdeps.describe(ecs, arn) or {}
    hook = next((h for h in sd.get("lifecycleHookDetails") or [] if h.get("hookId") == hook_id),
                None)
    return (hook or {}).get("status") or sd.get("status", "GONE")


@task(name="continue-service-deployment", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[1, 3], retry_condition_fn=transient_only)
def continue_deployment(ecs, arn: str, hook_id: str, action: str) -> dict:
    """ContinueServiceDeployment CONTINUE or ROLLBACK at the paused hook. Sent once per attempt
    (ground.aws: not resent by botocore when its outcome is unknown); a retry first looks at
    the hook: no longer awaiting means the earlier attempt was applied (or ECS acted on its
    timeout), and nothing is sent again."""
    state = hook_state(ecs, arn, hook_id)
    if state != PAUSED:
        return {"action": action, "sent": False, "hook_status": state}
    ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook_id, action=action)
    log = run_logger()
    (log.warning if action == "ROLLBACK" else log.info)(
        "service deployment %s: %s at hook %s", sdeps.short(arn), action, hook_id)
    return {"action": action, "sent": True, "hook_status": PAUSED}


def continue_unattended(ecs, s: Settings, task_definition: str, since: float, timeout: float,
                        poll: float) -> dict:
    """A deployment nobody needs to look at (a rollback to a known-good revision) on a blue/green
    service: wait for its pause and continue it. Returns what `wait_for_test_traffic` saw."""
    paused = wait_for_test_traffic(ecs, s, task_definition, since, timeout, poll)
    if paused["paused"]:
        continue_deployment(ecs, paused["arn"], paused["hook_id"], "CONTINUE")
    return paused
