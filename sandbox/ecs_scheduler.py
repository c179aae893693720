"""The service scheduler of the local ECS runtime: deployments, rollouts, circuit breaker.

One `ServiceScheduler` per ECS service. Every method runs under the runtime's lock except the
health probes, which the runtime makes between `advance` and `apply_probes`. State reaches moto
through `project()`, which always assigns fresh lists and dicts (copy-on-write), so a request
thread serializing a service never sees one change half-way.

It follows the ECS rolling-update scheduler (minimumHealthyPercent 100, maximumPercent 200):
start the PRIMARY deployment's tasks; once all are RUNNING and healthy, stop the tasks of every
other deployment, drop those deployments, mark the PRIMARY COMPLETED, then report a steady
state. A task that fails during a rollout counts towards the circuit breaker; at the threshold
the deployment goes FAILED and stops launching, and with rollback the last COMPLETED deployment
becomes PRIMARY again (IN_PROGRESS until it is alone and complete), as ECS does.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moto.core.utils import utcnow

from . import ecs_elb
from .ecs_tasks import (
    LocalTask,
    TaskStartError,
    check_execution_role,
    resolve_image,
    resolve_secret,
    task_platform,
)

if TYPE_CHECKING:
    from .ecs_runtime import EcsRuntime

DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}
CB_FAILED_REASON = "ECS deployment circuit breaker: tasks failed to start."
HEALTH_REASON = "Task failed container health checks"
ELB_REASON = "Task failed ELB health checks in (target-group {arn})"
MAX_EVENTS = 100


def new_deployment_id() -> str:
    return f"ecs-svc/{random.randrange(10**18, 10**19)}"


@dataclass
class Deployment:
    id: str
    task_definition: str
    desired_count: int
    launch_type: str
    platform_version: str
    network_configuration: dict | None
    load_balancers: list = field(default_factory=list)  # the service's, when it started
    status: str = "PRIMARY"
    rollout_state: str = "IN_PROGRESS"
    rollout_state_reason: str = ""
    failed_tasks: int = 0
    created_at: Any = field(default_factory=utcnow)
    updated_at: Any = field(default_factory=utcnow)
    tasks: list[LocalTask] = field(default_factory=list)
    cb_failures: int = 0  # reset when a task turns healthy (ECS resetOnHealthyTask)
    relaunch_failures: int = 0  # consecutive, for the relaunch backoff
    next_launch: float = 0.0
    not_before: float = 0.0  # no completion before this (a rollback is never instantaneous)
    _last: tuple = ()

    def __post_init__(self) -> None:
        if not self.rollout_state_reason:
            self.rollout_state_reason = f"ECS deployment {self.id} in progress."

    def counts(self) -> tuple[int, int]:
        running = sum(1 for t in self.tasks if t.last_status == "RUNNING")
        pending = sum(1 for t in self.tasks if t.last_status in ("PROVISIONING", "PENDING"))
        return running, pending

    def as_dict(self) -> dict:
        running, pending = self.counts()
        now_state = (self.status, self.rollout_state, running, pending, self.failed_tasks,
                     self.desired_count)
        if self._last and now_state != self._last:
            self.updated_at = utcnow()
        self._last = now_state
        d = {
            "id": self.id, "status": self.status, "taskDefinition": self.task_definition,
            "desiredCount": self.desired_count, "pendingCount": pending, "runningCount": running,
            "failedTasks": self.failed_tasks, "createdAt": self.created_at,
            "updatedAt": self.updated_at, "launchType": self.launch_type,
            "platformVersion": self.platform_version, "platformFamily": "Linux",
            "rolloutState": self.rollout_state, "rolloutStateReason": self.rollout_state_reason,
        }
        if self.network_configuration:
            d["networkConfiguration"] = self.network_configuration
        return d


class ServiceScheduler:
    def __init__(self, runtime: EcsRuntime, backend: Any, service: Any, now: float):
        self.rt = runtime
        self.backend = backend
        self.service = service
        self.deployments: list[Deployment] = []
        self.steady_due: float | None = None
        self.retired = False
        self.start_deployment(now)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.service.name

    @property
    def primary(self) -> Deployment:
        return self.deployments[0]

    def all_tasks(self) -> list[LocalTask]:
        return [t for d in self.deployments for t in d.tasks]

    def event(self, message: str) -> None:
        ev = {"id": str(uuid.uuid4()), "createdAt": utcnow(), "message": message}
        self.service.events = [ev, *list(getattr(self.service, "events", None) or [])][:MAX_EVENTS]

    def circuit_breaker(self) -> tuple[bool, bool]:
        conf = getattr(self.service, "deployment_configuration", None) or {}
        cb = conf.get("deploymentCircuitBreaker") or {}
        return bool(cb.get("enable")), bool(cb.get("rollback"))

    def threshold(self, desired: int) -> int:
        return max(self.rt.timing.failure_threshold, min(200, math.ceil(0.5 * desired)))

    # -- deployments --------------------------------------------------------------------------
    def start_deployment(self, now: float) -> Deployment:
        svc = self.service
        for d in self.deployments:
            d.status = "ACTIVE"
        dep = Deployment(
            id=new_deployment_id(),
            task_definition=svc.task_definition,
            desired_count=svc.desired_count or 0,
            launch_type=svc.launch_type or "FARGATE",
            platform_version=svc.platform_version or "1.4.0",
            network_configuration=getattr(svc, "network_configuration", None) or None,
            load_balancers=list(getattr(svc, "load_balancers", None) or []),
        )
        self.deployments.insert(0, dep)
        self.steady_due = None
        return dep

    def _fail(self, dep: Deployment, rollback: bool, now: float) -> None:
        dep.rollout_state, dep.rollout_state_reason = "FAILED", CB_FAILED_REASON
        self.event(f"(service {self.name}) (deployment {dep.id}) deployment failed: "
                   "tasks failed to start.")
        target = next((d for d in self.deployments[1:] if d.rollout_state == "COMPLETED"), None)
        if not rollback or target is None:
            return
        self.deployments.remove(target)
        self.deployments.insert(0, target)
        dep.status, target.status = "ACTIVE", "PRIMARY"
        target.rollout_state = "IN_PROGRESS"
        target.rollout_state_reason = (
            f"ECS deployment circuit breaker: rolling back to deploymentId {target.id}.")
        target.desired_count = self.service.desired_count or 0
        target.cb_failures = target.relaunch_failures = 0
        target.next_launch = now
        target.not_before = now + self.rt.timing.rollback_min_duration
        self.service.task_definition = target.task_definition
        # A rollback returns to that deployment's configuration, its load balancers included.
        self.service.load_balancers = list(target.load_balancers)
        self.event(f"(service {self.name}) rolling back to deployment {target.id}.")

    # -- tasks --------------------------------------------------------------------------------
    def _launch(self, dep: Deployment, count: int, now: float) -> None:
        cluster = self.backend._get_cluster(self.service.cluster_name)
        task_def = self.backend.describe_task_definition(dep.task_definition)
        started = []
        for _ in range(count):
            task = LocalTask(
                backend=self.backend, cluster=cluster, task_definition=task_def,
                deployment_id=dep.id, group=f"service:{self.name}",
                exec_enabled=bool(getattr(self.service, "enable_execute_command", False)),
                network=dep.network_configuration, platform_version=dep.platform_version,
            )
            task._start_at = now + max(0.0, self.rt.timing.start_delay)
            self.backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
            dep.tasks.append(task)
            started.append(task)
        tasks = " ".join(f"(task {t.id})" for t in started)
        self.event(f"(service {self.name}) has started {count} tasks: {tasks}.")

    def _spawn(self, dep: Deployment, task: LocalTask, now: float) -> None:
        rt = self.rt
        try:
            task_def = self.backend.describe_task_definition(task.task_definition_arn)
            if rt.execution_role_allows is not None:
                check_execution_role(rt.execution_role_allows, task_def,
                                     task.container_def, task.id, rt.account_id, rt.region)
            env = rt.base_env()
            for item in task.container_def.get("environment") or []:
                env[item["name"]] = str(item.get("value", ""))
            for item in task.container_def.get("secrets") or []:
                env[item["name"]] = resolve_secret(item["valueFrom"], rt.account_id, rt.region)
            digest = resolve_image(task.container["image"], rt.account_id, rt.region,
                                   task_platform(getattr(task_def, "runtime_platform", None)))
            # The image's code, not the checkout's: what was pushed under this digest.
            code = rt.code_for(digest)
            if code is not None:
                env["PYTHONPATH"] = str(code)
            env["ECS_CONTAINER_METADATA_URI_V4"] = rt.metadata.uri_for(task)
        except TaskStartError as err:
            task.fail_to_start(err)
            self._failed(dep, now)
            return
        try:
            task.start(env, rt.command, rt.task_cwd, rt.log_dir, rt.bind_env, rt.hostaddr,
                       digest, rt.timing.health_timeout, now)
        except OSError as exc:  # the command itself cannot run
            msg = f"CannotStartContainerError: {exc.strerror or type(exc).__name__}"
            task.fail_to_start(TaskStartError(msg, msg))
            self._failed(dep, now)
            return
        rt.register_spawn(task)
        task._next_probe = now

    def _stop(self, tasks: list[LocalTask], code: str, reason: str, now: float,
              announce: bool = True) -> None:
        tasks = [t for t in tasks if t.live]
        if not tasks:
            return
        for t in tasks:
            t.request_stop(code, reason, self.rt.timing.stop_timeout, now)
        if announce:
            ids = " ".join(f"(task {t.id})" for t in tasks)
            self.event(f"(service {self.name}) has stopped {len(tasks)} running tasks: {ids}.")

    # -- the target group (sandbox.ecs_elb) ---------------------------------------------------
    def _register_targets(self, task: LocalTask, now: float) -> None:
        """ECS registers a task in the service's target groups once it runs."""
        dep = next((d for d in self.deployments if task in d.tasks), None)
        pairs = ecs_elb.targets_of(task, dep.load_balancers if dep else [])
        if pairs:
            ecs_elb.register(self.rt.account_id, self.rt.region, pairs)
            task._targets, task._targets_since = pairs, now
            for arn, _ in pairs:  # as ECS reports it in the service's events
                self.event(f"(service {self.name}) registered 1 targets in (target-group {arn})")

    def _deregister_targets(self, task: LocalTask) -> None:
        """…and deregisters it (the target drains) when it stops."""
        if task._targets:
            ecs_elb.deregister(self.rt.account_id, self.rt.region, task._targets)
            for arn, _ in task._targets:
                self.event(f"(service {self.name}) deregistered 1 targets in "
                           f"(target-group {arn})")
            task._targets = []

    def _in_service(self, task: LocalTask) -> bool:
        """A task behind a target group counts as healthy only when its target is."""
        return not task._targets or task._target_healthy

    def _judge_targets(self, dep: Deployment, task: LocalTask, now: float) -> None:
        state, arn, why = ecs_elb.health(self.rt.account_id, self.rt.region, task._targets)
        if state == "healthy":
            if not task._target_healthy:
                task._target_healthy = True
                dep.cb_failures = dep.relaunch_failures = 0
            return
        grace = float(getattr(self.service, "health_check_grace_period_seconds", None) or 0)
        if state != "unhealthy" or now < task._targets_since + grace:
            task._unhealthy_since = None
            return
        # ECS notices an unhealthy target on its next look, not in the same instant.
        if task._unhealthy_since is None:
            task._unhealthy_since = now
        if now < task._unhealthy_since + self.rt.timing.elb_reaction_delay:
            return
        port = task._targets[0][1]["Port"]
        self.event(f"(service {self.name}) (port {port}) is unhealthy in (target-group {arn}) "
                   f"due to (reason {why}).")
        task._target_healthy = False
        task.request_stop("ServiceSchedulerInitiated", ELB_REASON.format(arn=arn),
                          self.rt.timing.stop_timeout, now)
        self._failed(dep, now)

    def _failed(self, dep: Deployment, now: float) -> None:
        """A task of `dep` stopped without being asked to."""
        if dep is self.primary and dep.rollout_state == "IN_PROGRESS":
            dep.failed_tasks += 1
            dep.cb_failures += 1
        if dep is self.primary:
            dep.relaunch_failures += 1
            t = self.rt.timing
            extra = max(0, dep.relaunch_failures - t.failure_threshold)
            delay = min(t.relaunch_delay * (2 ** min(extra, 10)), t.max_relaunch_delay)
            dep.next_launch = max(dep.next_launch, now + delay)

    # -- the three phases of a tick -----------------------------------------------------------
    def advance(self, now: float) -> list[LocalTask]:
        """Spawn due tasks, reap exits, enforce deadlines; return the tasks to probe."""
        to_probe = []
        for dep in list(self.deployments):
            for task in list(dep.tasks):
                if task.last_status == "PROVISIONING" and not task._stop_requested:
                    if now >= task._start_at:
                        self._spawn(dep, task, now)
                    continue
                stop_was_requested = task._stop_requested
                if task.reap(now) is not None and not stop_was_requested:
                    self._failed(dep, now)
                    self._deregister_targets(task)
                    continue
                if not task.live:
                    self._deregister_targets(task)
                    continue
                if task.last_status == "RUNNING" and task._targets:
                    self._judge_targets(dep, task, now)
                    if not task.live:
                        self._deregister_targets(task)
                        continue
                if task.last_status == "PENDING" and now >= task._health_deadline:
                    self.event(f"(service {self.name}) (task {task.id}) failed container "
                               "health checks.")
                    task.request_stop("ServiceSchedulerInitiated", HEALTH_REASON,
                                      self.rt.timing.stop_timeout, now)
                    self._failed(dep, now)
                elif now >= task._next_probe:
                    to_probe.append(task)
        return to_probe

    def apply_probes(self, results: list[tuple[LocalTask, bool]], now: float) -> None:
        t = self.rt.timing
        mine = {id(task) for task in self.all_tasks()}
        for task, ok in results:
            if id(task) not in mine or not task.live:
                continue
            dep = next(d for d in self.deployments if task in d.tasks)
            if task.last_status == "PENDING":
                task._next_probe = now + t.poll_interval
                if ok:
                    task.mark_running()
                    task._next_probe = now + t.running_health_interval
                    self._register_targets(task, now)
                    if not task._targets:  # behind a target group: once its target is healthy
                        dep.cb_failures = dep.relaunch_failures = 0
                continue
            task._next_probe = now + t.running_health_interval
            task._bad_probes = 0 if ok else task._bad_probes + 1
            if task._bad_probes >= t.unhealthy_threshold:
                task.health_status = task.container["healthStatus"] = "UNHEALTHY"
                self.event(f"(service {self.name}) (task {task.id}) failed container "
                           "health checks.")
                task.request_stop("ServiceSchedulerInitiated", HEALTH_REASON, t.stop_timeout, now)
                self._failed(dep, now)

    def schedule(self, now: float) -> None:
        svc = self.service
        if self.retired or svc.status != "ACTIVE":
            self._stop(self.all_tasks(), "ServiceSchedulerInitiated",
                       "Service is being deleted", now, announce=False)
            return
        primary = self.primary
        primary.desired_count = desired = svc.desired_count or 0
        cb_enabled, rollback = self.circuit_breaker()
        if (primary.rollout_state == "IN_PROGRESS" and cb_enabled
                and primary.cb_failures >= self.threshold(desired)):
            self._fail(primary, rollback, now)
            primary = self.primary
        scaling = f"Scaling activity initiated by (deployment {primary.id})"
        live = [t for t in primary.tasks if t.live]
        may_launch = not (primary.rollout_state == "FAILED" and cb_enabled)
        if len(live) < desired and may_launch and now >= primary.next_launch:
            self._launch(primary, desired - len(live), now)
        elif len(live) > desired:
            order = sorted(live, key=lambda t: (t.last_status == "RUNNING", t.created_at))
            self._stop(order[: len(live) - desired], "ServiceSchedulerInitiated", scaling, now)
        if primary.rollout_state == "IN_PROGRESS":
            live = [t for t in primary.tasks if t.live]
            running = [t for t in live if t.last_status == "RUNNING" and self._in_service(t)]
            if len(running) >= desired and len(running) == len(live) and now >= primary.not_before:
                others = self.deployments[1:]
                self._stop([t for d in others for t in d.tasks], "ServiceSchedulerInitiated",
                           scaling, now)
                if all(t.last_status == "STOPPED" for d in others for t in d.tasks):
                    self.deployments = [primary]
                    primary.rollout_state = "COMPLETED"
                    primary.rollout_state_reason = f"ECS deployment {primary.id} completed."
                    self.event(f"(service {self.name}) (deployment {primary.id}) "
                               "deployment completed.")
                    self.steady_due = now + self.rt.timing.steady_state_delay
        if self.steady_due is not None and now >= self.steady_due:
            running, pending = primary.counts()
            if (len(self.deployments) == 1 and primary.rollout_state == "COMPLETED"
                    and running == desired and pending == 0):
                self.event(f"(service {self.name}) has reached a steady state.")
                self.steady_due = None
        self._prune()

    def _prune(self) -> None:
        """Forget the oldest STOPPED tasks of this service beyond the retention (moto's too)."""
        keep = self.rt.timing.stopped_task_retention
        tasks = self.backend.tasks.get(self.service.cluster_name, {})
        group = f"service:{self.name}"
        stopped = sorted((t for t in tasks.values() if isinstance(t, LocalTask)
                          and t.group == group and t.last_status == "STOPPED"),
                         key=lambda t: t.created_at)
        for task in stopped[: max(0, len(stopped) - keep)]:
            for d in self.deployments:
                if task in d.tasks:
                    d.tasks.remove(task)
            tasks.pop(task.task_arn, None)

    def project(self) -> None:
        """Write the scheduler's state into moto's Service (fresh objects only)."""
        svc = self.service
        if svc.status != "ACTIVE":
            return
        deps = [d.as_dict() for d in self.deployments]
        svc.deployments = deps
        svc.running_count = sum(d["runningCount"] for d in deps)
        svc.pending_count = sum(d["pendingCount"] for d in deps)
        svc.task_definition = self.primary.task_definition
