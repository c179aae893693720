"""ECS blue/green deployments (`deploymentConfiguration.strategy = BLUE_GREEN`) in the local
ECS runtime, traffic shifted on the sandbox's real listeners (sandbox.elb_listeners).

A service's first deployment has nothing to shift from: it runs like a rolling one, its tasks
registered in the target group the production listener rule forwards to. Every later
deployment (a new task definition, forceNewDeployment, ...) with blue tasks running goes
through the lifecycle stages of the ECS Developer Guide ("Deployment lifecycle stages"):

    PRE_SCALE_UP -> SCALE_UP -> POST_SCALE_UP -> TEST_TRAFFIC_SHIFT -> POST_TEST_TRAFFIC_SHIFT
    -> (PRE_PRODUCTION_TRAFFIC_SHIFT) -> PRODUCTION_TRAFFIC_SHIFT
    -> POST_PRODUCTION_TRAFFIC_SHIFT -> BAKE_TIME -> CLEAN_UP -> SUCCESSFUL

- green = the new deployment's tasks, registered in the target group the production rule does
  NOT forward to when the deployment starts (the alternate one the first time; the roles swap
  with every successful deployment). SCALE_UP ends when all are RUNNING and healthy there.
- TEST_TRAFFIC_SHIFT / PRODUCTION_TRAFFIC_SHIFT rewrite the test / production listener rule to
  forward to green (`ForwardConfig`, green weight 100, blue weight 0), as ECS does.
- BAKE_TIME keeps blue running for `bakeTimeInMinutes`; CLEAN_UP stops (and so deregisters)
  blue; then the service deployment is SUCCESSFUL and the green deployment COMPLETED.
- PAUSE lifecycle hooks stop the deployment at their stages (after the stage's own work):
  `lifecycleHookDetails` shows the hook AWAITING_ACTION until ContinueServiceDeployment
  (CONTINUE: SUCCEEDED, go on; ROLLBACK: FAILED, roll back) or its timeout
  (`timeoutConfiguration`: TIMED_OUT, then its action).
- Rollback (a hook, StopServiceDeployment(ROLLBACK) before SUCCESSFUL, or the circuit breaker
  with rollback when green tasks keep failing): both rules forward to blue again at once, the
  green tasks are stopped; ROLLBACK_REQUESTED -> ROLLBACK_IN_PROGRESS -> ROLLBACK_SUCCESSFUL.

Minutes are minutes times `PAPYRUS_SANDBOX_SECONDS_PER_MINUTE` seconds (default 60), read when
the service deployment starts: the sandbox's one deviation, so tests need not wait real
minutes. AWS: ECS Developer Guide, "Amazon ECS blue/green deployments", "Deployment lifecycle
stages", "Lifecycle hooks for Amazon ECS service deployments", "Continuing Amazon ECS service
deployments"; ECS API Reference, DeploymentConfiguration, DeploymentLifecycleHook,
AdvancedConfiguration, ContinueServiceDeployment (docs/sandbox.md).
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs.exceptions import ECSException, InvalidParameterException
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.elbv2.models import FakeAction, elbv2_backends

from sandbox import ecs_service_deployments as sd
from sandbox.ecs_scheduler import ServiceScheduler
from sandbox.elb_listeners import forward_groups
from sandbox.patches import Patches

SECONDS_PER_MINUTE_ENV = "PAPYRUS_SANDBOX_SECONDS_PER_MINUTE"
STAGES = ("PRE_SCALE_UP", "SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT",
          "POST_TEST_TRAFFIC_SHIFT", "PRE_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT",
          "POST_PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP")
# Hooks may name these (DeploymentLifecycleHookStage); RECONCILE_SERVICE is not modelled.
HOOK_STAGES = ("RECONCILE_SERVICE", "PRE_SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT",
               "POST_TEST_TRAFFIC_SHIFT", "PRE_PRODUCTION_TRAFFIC_SHIFT",
               "PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT")
# PRE_PRODUCTION_TRAFFIC_SHIFT is a hook stage, not a ServiceDeploymentLifecycleStage: the
# deployment reports the stage it is still in (production has not moved yet).
REPORTED = {"PRE_PRODUCTION_TRAFFIC_SHIFT": "POST_TEST_TRAFFIC_SHIFT"}
ACTIVE = ("IN_PROGRESS", *sd.ROLLING_BACK)
HOOK_ROLLBACK_REASON = "Service deployment rolled back by ContinueServiceDeployment."
HOOK_TIMEOUT_REASON = "Service deployment rolled back because lifecycle hook {id} timed out."


class UnsupportedFeatureException(ECSException):
    code = "UnsupportedFeatureException"


def seconds_per_minute() -> float:
    raw = os.environ.get(SECONDS_PER_MINUTE_ENV, "")
    try:
        value = float(raw) if raw.strip() else 60.0
    except ValueError:
        value = 60.0
    return value if value >= 0 else 60.0


def strategy(conf: dict | None) -> str:
    return (conf or {}).get("strategy") or "ROLLING"


def _advanced(load_balancers: list[dict] | None) -> dict | None:
    return next((lb for lb in load_balancers or [] if lb.get("advancedConfiguration")), None)


# -- the listener rules ---------------------------------------------------------------------
def _elb(account_id: str, region: str) -> Any:
    return elbv2_backends[account_id][region]


def _rule(backend: Any, arn: str) -> Any:
    for lb in list(backend.load_balancers.values()):
        for listener in list(lb.listeners.values()):
            for rule in listener.rules.values():
                if rule.arn == arn:
                    return rule
    return None


def forwarded_to(backend: Any, rule_arn: str) -> str | None:
    """The target group a rule sends its traffic to (the heaviest positive weight)."""
    rule = _rule(backend, rule_arn)
    if rule is None:
        return None
    for action in rule.actions:
        if action.data.get("Type") == "forward":
            groups = sorted(((w, g) for g, w in forward_groups(action.data) if w > 0),
                            reverse=True)
            return groups[0][1] if groups else None
    return None


def set_forward(backend: Any, rule_arn: str, to: str, other: str) -> None:
    """The rule forwards everything to `to` (weight 100), nothing to `other` (weight 0)."""
    rule = _rule(backend, rule_arn)
    if rule is None:
        raise InvalidParameterException(f"The listener rule {rule_arn} does not exist.")
    action = {"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": to, "Weight": 100}, {"TargetGroupArn": other, "Weight": 0}]}}
    listener = backend.describe_listeners(None, [rule.listener_arn])[0]
    if rule.is_default:  # the listener's default actions are its default rule's
        listener.default_actions = [FakeAction(action)]
        listener._default_rule[0].actions = listener.default_actions
    else:
        rule.actions = [FakeAction(action)]
    for arn in (to, other):  # a group a rule forwards to is in use by the balancer
        tg = backend.target_groups.get(arn)
        if tg is not None and listener.load_balancer_arn not in tg.load_balancer_arns:
            tg.load_balancer_arns.append(listener.load_balancer_arn)


# -- validation (CreateService / UpdateService) ---------------------------------------------
def validate(account_id: str, region: str, conf: dict | None,
             load_balancers: list[dict] | None) -> None:
    """Refuse a BLUE_GREEN configuration as ECS does (InvalidParameterException)."""
    if strategy(conf) != "BLUE_GREEN":
        return
    if conf.get("bakeTimeInMinutes") is None:
        raise InvalidParameterException(
            "bakeTimeInMinutes must be provided when the deployment strategy is BLUE_GREEN.")
    for hook in conf.get("lifecycleHooks") or []:
        if hook.get("targetType") != "PAUSE":
            # Not modelled: the sandbox runs no Lambda functions.
            raise UnsupportedFeatureException(
                f"The sandbox does not model lifecycle hooks of targetType "
                f"{hook.get('targetType')}; only PAUSE hooks are supported.")
        bad = [s for s in hook.get("lifecycleStages") or [] if s not in HOOK_STAGES]
        if bad or not hook.get("lifecycleStages"):
            raise InvalidParameterException(
                f"Invalid lifecycleStages {bad or '[]'} for a lifecycle hook.")
        timeout = hook.get("timeoutConfiguration") or {}
        minutes = timeout.get("timeoutInMinutes")
        if minutes is not None and not 1 <= int(minutes) <= 20160:
            raise InvalidParameterException(
                "timeoutInMinutes must be between 1 and 20160.")
        if timeout.get("action") not in (None, "CONTINUE", "ROLLBACK"):
            raise InvalidParameterException(
                "timeoutConfiguration.action must be CONTINUE or ROLLBACK.")
    lbs = [lb for lb in load_balancers or [] if lb.get("targetGroupArn")]
    if not lbs:
        raise InvalidParameterException(
            "A service with the BLUE_GREEN deployment strategy needs loadBalancers with "
            "advancedConfiguration (the sandbox models blue/green behind an ALB only).")
    backend = _elb(account_id, region)
    for lb in lbs:
        adv = lb.get("advancedConfiguration")
        if not adv:
            raise InvalidParameterException(
                "advancedConfiguration is required for each load balancer when the deployment "
                "strategy is BLUE_GREEN.")
        for key in ("alternateTargetGroupArn", "productionListenerRule", "roleArn"):
            if not adv.get(key):
                raise InvalidParameterException(f"advancedConfiguration.{key} is required.")
        alt = adv["alternateTargetGroupArn"]
        if alt not in backend.target_groups:
            raise InvalidParameterException(
                f"The alternate target group {alt} does not exist.")
        if alt == lb["targetGroupArn"]:
            raise InvalidParameterException(
                "alternateTargetGroupArn must differ from targetGroupArn.")
        pair = (lb["targetGroupArn"], alt)
        for key in ("productionListenerRule", "testListenerRule"):
            arn = adv.get(key)
            if not arn:
                continue
            if _rule(backend, arn) is None:
                raise InvalidParameterException(f"The listener rule {arn} does not exist.")
            if forwarded_to(backend, arn) not in pair:
                raise InvalidParameterException(
                    f"The listener rule {arn} must forward to the target group {pair[0]} or "
                    f"{pair[1]}.")


# -- one blue/green service deployment ------------------------------------------------------
@dataclass
class Hook:
    hook_id: str
    stage: str
    timeout_action: str
    deadline: float  # monotonic
    expires_at: dt.datetime
    status: str = "AWAITING_ACTION"

    def detail(self) -> dict:
        return {"hookId": self.hook_id, "targetType": "PAUSE", "status": self.status,
                "expiresAt": self.expires_at, "timeoutAction": self.timeout_action}


@dataclass
class BlueGreen:
    sched: ServiceScheduler
    green: Any  # ecs_scheduler.Deployment
    blue: Any
    green_tg: str
    blue_tg: str
    prod_rule: str
    test_rule: str | None
    hooks_conf: list[dict]
    bake_seconds: float
    spm: float
    stage: str = "PRE_SCALE_UP"
    status: str = "IN_PROGRESS"
    reason: str = ""
    rollback: dict | None = None
    hooks: list[Hook] = field(default_factory=list)
    pending: list[Hook] = field(default_factory=list)
    hooked: set = field(default_factory=set)  # stages whose hooks were started
    bake_until: float | None = None
    not_before: float = 0.0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def backend(self) -> Any:
        return _elb(self.sched.rt.account_id, self.sched.rt.region)

    def sync(self, rec: Any) -> None:
        """The service deployment record from this state (under the runtime's lock)."""
        if rec.started_at is None:
            rec.started_at = utcnow()
        rec.set(self.status, self.reason)
        rec.lifecycle_stage = REPORTED.get(self.stage, self.stage)
        rec.rollback = self.rollback

    def hook_details(self) -> list[dict]:
        return [h.detail() for h in self.hooks]

    # -- the scheduler's tick ---------------------------------------------------------------
    def step(self, now: float) -> None:
        if self.status in sd.ROLLING_BACK:
            self._rolling_back(now)
            return
        if self.status != "IN_PROGRESS":
            return
        sched, green = self.sched, self.green
        enabled, rollback = sched.circuit_breaker()
        if enabled and green.cb_failures >= sched.threshold(green.desired_count):
            if rollback:
                self.start_rollback(sd.CB_ROLLBACK_REASON, now)
            else:
                green.rollout_state, green.rollout_state_reason = "FAILED", sd.CB_ROLLBACK_REASON
                self.status, self.reason = "STOPPED", green.rollout_state_reason
                sched.event(f"(service {sched.name}) (deployment {green.id}) deployment "
                            "failed: tasks failed to start.")
            return
        self._keep_scaled(green, now)
        if self.pending:
            hook = self.pending[0]
            if now < hook.deadline:
                return
            hook.status = "TIMED_OUT"
            self.pending.pop(0)
            if hook.timeout_action == "ROLLBACK":
                self.start_rollback(HOOK_TIMEOUT_REASON.format(id=hook.hook_id), now)
                return
            if self.pending:
                return
        if not self._work(now):
            return
        if self.stage in HOOK_STAGES and self.stage not in self.hooked:
            self.hooked.add(self.stage)
            for conf in self.hooks_conf:
                if self.stage in (conf.get("lifecycleStages") or []):
                    self._pause(conf, now)
            if self.pending:
                return
        if self.stage == "CLEAN_UP":
            self._finish(now)
            return
        self.stage = STAGES[STAGES.index(self.stage) + 1]
        sched.event(f"(service {sched.name}) (deployment {green.id}) blue/green lifecycle "
                    f"stage {REPORTED.get(self.stage, self.stage)}.")
        sched.rt.wake()

    def _pause(self, conf: dict, now: float) -> None:
        timeout = conf.get("timeoutConfiguration") or {}
        # DeploymentLifecycleHookTimeoutConfiguration defaults: 1440 minutes, then ROLLBACK.
        minutes = float(timeout.get("timeoutInMinutes") or 1440)
        seconds = minutes * self.spm
        # AWS's ids are "ecs-pause-" and a mixed-case token with "_" (Developer Guide, "Pause
        # hooks for Amazon ECS service deployments"); the sandbox's stay lowercase, dashes and
        # digits until the deploy flow's Prefect pause key accepts AWS's form (docs/sandbox.md).
        hook = Hook(hook_id=f"ecs-pause-{uuid.uuid4()}", stage=self.stage,
                    timeout_action=timeout.get("action") or "ROLLBACK",
                    deadline=now + seconds,
                    expires_at=utcnow() + dt.timedelta(seconds=seconds))
        self.hooks.append(hook)
        self.pending.append(hook)
        self.sched.event(f"(service {self.sched.name}) (deployment {self.green.id}) paused "
                         f"at lifecycle stage {REPORTED.get(self.stage, self.stage)} "
                         f"(hook {hook.hook_id}).")

    def _work(self, now: float) -> bool:
        """The current stage's own work; True once it is done."""
        sched, green = self.sched, self.green
        if self.stage == "SCALE_UP":
            live = [t for t in green.tasks if t.live]
            ready = [t for t in live if t.last_status == "RUNNING" and sched._in_service(t)]
            return len(ready) >= green.desired_count and len(ready) == len(live)
        if self.stage == "TEST_TRAFFIC_SHIFT":
            if self.test_rule:
                set_forward(self.backend, self.test_rule, self.green_tg, self.blue_tg)
            return True
        if self.stage == "PRODUCTION_TRAFFIC_SHIFT":
            set_forward(self.backend, self.prod_rule, self.green_tg, self.blue_tg)
            return True
        if self.stage == "BAKE_TIME":
            if self.bake_until is None:
                self.bake_until = now + self.bake_seconds
            return now >= self.bake_until
        if self.stage == "CLEAN_UP":
            others = [t for d in sched.deployments if d is not green for t in d.tasks]
            sched._stop(others, "ServiceSchedulerInitiated",
                        f"Scaling activity initiated by (deployment {green.id})", now)
            return all(t.last_status == "STOPPED" for t in others)
        return True

    def _keep_scaled(self, dep: Any, now: float) -> None:
        sched = self.sched
        dep.desired_count = desired = sched.service.desired_count or 0
        live = [t for t in dep.tasks if t.live]
        if len(live) < desired and now >= dep.next_launch:
            sched._launch(dep, desired - len(live), now)
        elif len(live) > desired:
            order = sorted(live, key=lambda t: (t.last_status == "RUNNING", t.created_at))
            sched._stop(order[: len(live) - desired], "ServiceSchedulerInitiated",
                        f"Scaling activity initiated by (deployment {dep.id})", now)

    def _finish(self, now: float) -> None:
        sched, green = self.sched, self.green
        sched.deployments = [green]
        green.status, green.rollout_state = "PRIMARY", "COMPLETED"
        green.rollout_state_reason = f"ECS deployment {green.id} completed."
        self.status = "SUCCESSFUL"
        self.reason = f"Service deployment {green.id} completed."
        sched.event(f"(service {sched.name}) (deployment {green.id}) deployment completed.")
        sched.steady_due = now + sched.rt.timing.steady_state_delay

    # -- rollback ---------------------------------------------------------------------------
    def start_rollback(self, reason: str, now: float) -> None:
        """Production (and test) traffic back to blue now; green goes away next."""
        sched, green, blue = self.sched, self.green, self.blue
        for hook in self.pending:
            if hook.status == "AWAITING_ACTION":
                hook.status = "FAILED"
        self.pending = []
        set_forward(self.backend, self.prod_rule, self.blue_tg, self.green_tg)
        if self.test_rule:
            set_forward(self.backend, self.test_rule, self.blue_tg, self.green_tg)
        green.rollout_state, green.rollout_state_reason = "FAILED", reason
        if blue in sched.deployments:
            sched.deployments.remove(blue)
        sched.deployments.insert(0, blue)
        green.status, blue.status = "ACTIVE", "PRIMARY"
        blue.rollout_state = "IN_PROGRESS"
        blue.rollout_state_reason = (
            f"ECS deployment rollback: rolling back to deploymentId {blue.id}.")
        blue.next_launch = now
        sched.service.task_definition = blue.task_definition
        self.rollback = {"reason": reason, "startedAt": utcnow(),
                         "serviceRevisionArn": sd.store_for(sched).revision_of.get(blue.id, "")}
        self.status, self.reason = "ROLLBACK_REQUESTED", reason
        self.not_before = now + sched.rt.timing.rollback_min_duration
        sched.event(f"(service {sched.name}) (deployment {green.id}) rolling back to "
                    f"deployment {blue.id}: {reason}")
        sched.rt.wake()

    def _rolling_back(self, now: float) -> None:
        sched, green, blue = self.sched, self.green, self.blue
        self.status = "ROLLBACK_IN_PROGRESS"
        self.stage = "CLEAN_UP"
        sched._stop(green.tasks, "ServiceSchedulerInitiated",
                    f"Scaling activity initiated by (deployment {blue.id})", now)
        self._keep_scaled(blue, now)
        live = [t for t in blue.tasks if t.live]
        ready = [t for t in live if t.last_status == "RUNNING" and sched._in_service(t)]
        if (all(t.last_status == "STOPPED" for t in green.tasks) and now >= self.not_before
                and len(ready) >= blue.desired_count and len(ready) == len(live)):
            sched.deployments = [blue]
            blue.rollout_state = "COMPLETED"
            blue.rollout_state_reason = f"ECS deployment {blue.id} completed."
            self.status = "ROLLBACK_SUCCESSFUL"
            sched.event(f"(service {sched.name}) (deployment {blue.id}) deployment completed.")
            sched.steady_due = now + sched.rt.timing.steady_state_delay

    def continue_(self, hook_id: str, action: str, now: float) -> None:
        hook = next((h for h in self.hooks if h.hook_id == hook_id), None)
        if hook is None:
            raise InvalidParameterException(
                f"The lifecycle hook {hook_id} does not exist for this service deployment.")
        # Developer Guide, "Continuing service deployments": the hook must be AWAITING_ACTION
        # and the deployment IN_PROGRESS.
        if hook.status != "AWAITING_ACTION" or self.status != "IN_PROGRESS":
            raise InvalidParameterException(
                f"The lifecycle hook {hook_id} is {hook.status}, not AWAITING_ACTION, or the "
                f"service deployment is {self.status}, not IN_PROGRESS.")
        self.pending.remove(hook)
        if action == "ROLLBACK":
            hook.status = "FAILED"
            self.start_rollback(HOOK_ROLLBACK_REASON, now)
        else:
            hook.status = "SUCCEEDED"
        self.sched.rt.wake()


# -- the scheduler patch --------------------------------------------------------------------
def _begin(sched: ServiceScheduler, dep: Any, now: float) -> BlueGreen | None:
    """Decide, once per deployment, whether it is a blue/green one."""
    dep._bg_checked = True
    dep._bg = None
    svc = sched.service
    conf = copy.deepcopy(dict(getattr(svc, "deployment_configuration", None) or {}))
    rec = sd._record_of(sched, dep.id)
    if rec is not None and rec.deployment_configuration is None:
        # DescribeServiceDeployments shows the configuration the deployment started with.
        rec.deployment_configuration = conf
    lb = _advanced(dep.load_balancers)
    if strategy(conf) != "BLUE_GREEN" or lb is None:
        return None
    adv = lb["advancedConfiguration"]
    backend = _elb(sched.rt.account_id, sched.rt.region)
    pair = (lb["targetGroupArn"], adv["alternateTargetGroupArn"])
    serving = forwarded_to(backend, adv["productionListenerRule"])
    blue_tg = serving if serving in pair else pair[0]
    green_tg = pair[1] if blue_tg == pair[0] else pair[0]
    blue = next((d for d in sched.deployments[1:] if d.rollout_state == "COMPLETED"), None) \
        or next((d for d in sched.deployments[1:] if any(t.live for t in d.tasks)), None)
    if blue is None:  # the first deployment: no blue to shift from; it serves production
        dep.load_balancers = [dict(lb, targetGroupArn=blue_tg),
                              *(x for x in dep.load_balancers if x is not lb)]
        return None
    dep.load_balancers = [dict(lb, targetGroupArn=green_tg),
                          *(x for x in dep.load_balancers if x is not lb)]
    spm = seconds_per_minute()
    bg = BlueGreen(sched=sched, green=dep, blue=blue, green_tg=green_tg, blue_tg=blue_tg,
                   prod_rule=adv["productionListenerRule"], test_rule=adv.get("testListenerRule"),
                   hooks_conf=[h for h in conf.get("lifecycleHooks") or []
                               if h.get("targetType") == "PAUSE"],
                   bake_seconds=float(conf.get("bakeTimeInMinutes") or 0) * spm, spm=spm)
    dep._bg = bg
    if rec is not None:
        rec.bg = bg
    sched.event(f"(service {sched.name}) (deployment {dep.id}) blue/green deployment started: "
                f"green in (target-group {green_tg}), blue in (target-group {blue_tg}).")
    return bg


def _schedule(self: ServiceScheduler, now: float) -> None:
    original = _PATCHES.original(ServiceScheduler, "schedule")
    if self.retired or self.service.status != "ACTIVE":
        return original(self, now)
    primary = self.primary
    if not getattr(primary, "_bg_checked", False):
        _begin(self, primary, now)
    for d in self.deployments:
        bg = getattr(d, "_bg", None)
        if bg is not None and bg.active and d is not primary and bg.status == "IN_PROGRESS":
            # Superseded by a newer deployment (the record says so already).
            bg.status, bg.reason, bg.pending = "STOPPED", "Superseded.", []
    bg = next((b for d in self.deployments if (b := getattr(d, "_bg", None)) is not None
               and b.active), None)
    if bg is None:
        return original(self, now)
    bg.step(now)
    self._prune()
    return None


def find_bg(rec: Any) -> BlueGreen | None:
    return getattr(rec, "bg", None)


# -- ContinueServiceDeployment --------------------------------------------------------------
def _continue_service_deployment(self) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn") or ""
    hook_id = self._get_param("hookId") or ""
    # API Reference, ContinueServiceDeployment: "If no value is specified, the default action
    # is CONTINUE."
    action = self._get_param("action") or "CONTINUE"
    if action not in ("CONTINUE", "ROLLBACK"):
        raise InvalidParameterException(
            f"action {action} is not valid: use CONTINUE or ROLLBACK.")
    rt = sd._runtime(self)
    with rt.lock if rt else sd._NoLock():
        rec = sd._find(self, arn)
        if rec is None:
            raise sd.ServiceDeploymentNotFoundException(
                f"The service deployment {arn} does not exist.")
        bg = find_bg(rec)
        if bg is None:
            raise InvalidParameterException(
                f"The lifecycle hook {hook_id} does not exist for this service deployment.")
        bg.continue_(hook_id, action, time.monotonic())
        rec.sched.project()
    return ActionResult({"serviceDeploymentArn": arn})


_PATCHES = Patches(
    (ServiceScheduler, "schedule", _schedule),
    (EC2ContainerServiceResponse, "continue_service_deployment", _continue_service_deployment),
)


def install() -> None:
    _PATCHES.install()


def uninstall() -> None:
    _PATCHES.uninstall()
