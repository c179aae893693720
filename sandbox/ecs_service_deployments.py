"""ECS service deployments and service revisions for the local ECS runtime (moto has none).

Every deployment the scheduler starts (CreateService, an UpdateService that rolls out) records a
*service revision* — what the service runs: task definition, container images with the digests
they resolve to in ECR, launch type, platform, network configuration, load balancers — and a
*service deployment* from the revisions that ran (source) to the new one (target). The status
follows the runtime's real rollout state, never a timer (`project()` is where the scheduler
publishes it):

    PENDING -> IN_PROGRESS -> SUCCESSFUL                       (the rollout COMPLETED)
    IN_PROGRESS -> ROLLBACK_REQUESTED -> ROLLBACK_IN_PROGRESS  (circuit breaker with rollback,
        -> ROLLBACK_SUCCESSFUL | ROLLBACK_FAILED                or StopServiceDeployment)
    IN_PROGRESS -> STOPPED                                     (circuit breaker without
                                                                rollback; or superseded)

`StopServiceDeployment(stopType=ROLLBACK)` on a PENDING / IN_PROGRESS deployment really rolls
the service back to the source revision (its deployment becomes PRIMARY again, as the circuit
breaker's rollback does); on a finished one it is a ConflictException. AWS: ECS Developer
Guide, "View service history using Amazon ECS service deployments", "Amazon ECS service
revisions", "Stopping Amazon ECS service deployments"; ECS API Reference,
ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
StopServiceDeployment (docs/sandbox.md has the details). A blue/green deployment's status,
lifecycle stages, hooks and rollback come from sandbox.ecs_blue_green (`Record.bg`).
"""

from __future__ import annotations

import contextlib
import copy
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs.exceptions import ECSException, InvalidParameterException, ServiceNotFoundException
from moto.ecs.responses import EC2ContainerServiceResponse

from sandbox.ecs_scheduler import ServiceScheduler
from sandbox.patches import Patches

TERMINAL = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
ROLLING_BACK = ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
CB_ROLLBACK_REASON = ("Service deployment rolled back because the circuit breaker threshold "
                      "was exceeded.")
USER_ROLLBACK_REASON = "Service deployment rolled back by StopServiceDeployment."


class ConflictException(ECSException):
    code = "ConflictException"


class ServiceDeploymentNotFoundException(ECSException):
    code = "ServiceDeploymentNotFoundException"


@dataclass
class Record:
    """One service deployment; `dep_id` is the scheduler's deployment of its target."""

    arn: str
    sched: ServiceScheduler
    dep_id: str
    target: str  # service revision ARN
    sources: list[tuple[str, str]]  # (service revision ARN, scheduler deployment id)
    created_at: datetime = field(default_factory=utcnow)
    status: str = "PENDING"
    status_reason: str = ""
    lifecycle_stage: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stopped_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)
    rollback: dict | None = None
    rollback_dep_id: str = ""
    bg: Any = None  # sandbox.ecs_blue_green.BlueGreen of a blue/green deployment
    # The service's when the deployment started (sandbox.ecs_blue_green, on its first tick).
    deployment_configuration: dict | None = None

    def set(self, status: str, reason: str | None = None) -> None:
        if status != self.status or (reason is not None and reason != self.status_reason):
            self.status = status
            if reason is not None:
                self.status_reason = reason
            self.updated_at = utcnow()
            if status in TERMINAL:
                self.finished_at = self.finished_at or self.updated_at


@dataclass
class Store:
    """One account and region: revisions by ARN, deployments in creation order."""

    revisions: dict[str, dict] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    revision_of: dict[str, str] = field(default_factory=dict)  # scheduler dep id -> revision


_STORES: dict[tuple[str, str], Store] = {}


def store_for(sched: ServiceScheduler) -> Store:
    return _STORES.setdefault((sched.rt.account_id, sched.rt.region), Store())


def _prefix(sched: ServiceScheduler, kind: str) -> str:
    rt, svc = sched.rt, sched.service
    return f"arn:aws:ecs:{rt.region}:{rt.account_id}:{kind}/{svc.cluster_name}/{svc.name}"


def _dep(sched: ServiceScheduler, dep_id: str) -> Any:
    return next((d for d in sched.deployments if d.id == dep_id), None)


# -- revisions ----------------------------------------------------------------------------------
def _container_images(sched: ServiceScheduler, task_definition: str) -> list[dict]:
    """The images with the digest each resolves to in ECR now (the revision pins it)."""
    from sandbox.ecs_tasks import TaskStartError, resolve_image, task_platform

    try:
        td = sched.backend.describe_task_definition(task_definition)
    except Exception:  # noqa: BLE001 - a deregistered definition: no images to name
        return []
    out = []
    for c in td.container_definitions:
        item = {"containerName": c["name"], "image": c["image"]}
        # Not in ECR: the tasks will fail to pull; the revision names no digest.
        with contextlib.suppress(TaskStartError):
            item["imageDigest"] = resolve_image(
                c["image"], sched.rt.account_id, sched.rt.region,
                task_platform(getattr(td, "runtime_platform", None)))
        out.append(item)
    return out


def _new_revision(sched: ServiceScheduler, dep: Any) -> str:
    svc = sched.service
    arn = f"{_prefix(sched, 'service-revision')}/{random.randrange(10**18, 10**19)}"
    rev = {
        "serviceRevisionArn": arn, "serviceArn": svc.arn,
        "clusterArn": sched.backend._get_cluster(svc.cluster_name).arn,
        "taskDefinition": dep.task_definition, "launchType": dep.launch_type,
        "platformVersion": dep.platform_version, "platformFamily": "Linux",
        "loadBalancers": list(getattr(svc, "load_balancers", None) or []),
        "serviceRegistries": list(getattr(svc, "service_registries", None) or []),
        "containerImages": _container_images(sched, dep.task_definition),
        "guardDutyEnabled": False, "createdAt": utcnow(),
    }
    if dep.network_configuration:
        rev["networkConfiguration"] = dep.network_configuration
    store = store_for(sched)
    store.revisions[arn] = rev
    store.revision_of[dep.id] = arn
    return arn


# -- scheduler hooks ----------------------------------------------------------------------------
def _start_deployment(self: ServiceScheduler, now: float):
    before = list(self.deployments)
    dep = _PATCHES.original(ServiceScheduler, "start_deployment")(self, now)
    store = store_for(self)
    sources = [(store.revision_of[d.id], d.id) for d in before
               if d.id in store.revision_of and (d.rollout_state == "COMPLETED"
                                                 or any(t.live for t in d.tasks))]
    target = _new_revision(self, dep)
    arn = f"{_prefix(self, 'service-deployment')}/{secrets.token_urlsafe(16)[:22]}"
    for rec in store.records:
        if rec.sched is self and rec.status not in TERMINAL:
            # ECS: a new deployment stops the one in progress (it is not rolled back).
            rec.set("STOPPED", f"Superseded by service deployment {arn.rsplit('/', 1)[-1]}.")
            rec.stopped_at = rec.updated_at
    store.records.append(Record(arn, self, dep.id, target, sources))
    return dep


def _fail(self: ServiceScheduler, dep: Any, rollback: bool, now: float) -> None:
    _PATCHES.original(ServiceScheduler, "_fail")(self, dep, rollback, now)
    rec = _record_of(self, dep.id)
    if rec is None or rec.status in TERMINAL:
        return
    if self.primary is not dep:  # the circuit breaker rolled back
        _rolling_back(rec, self.primary, CB_ROLLBACK_REASON)
    else:
        rec.set("STOPPED", dep.rollout_state_reason)
        rec.stopped_at = rec.updated_at


def _rolling_back(rec: Record, to: Any, reason: str) -> None:
    rec.rollback = {"reason": reason, "startedAt": utcnow(),
                    "serviceRevisionArn": store_for(rec.sched).revision_of.get(to.id, "")}
    rec.rollback_dep_id = to.id
    rec.set("ROLLBACK_REQUESTED", reason)


def _record_of(sched: ServiceScheduler, dep_id: str) -> Record | None:
    return next((r for r in reversed(store_for(sched).records)
                 if r.sched is sched and r.dep_id == dep_id), None)


def _project(self: ServiceScheduler) -> None:
    _PATCHES.original(ServiceScheduler, "project")(self)
    for rec in store_for(self).records:
        if rec.sched is self and rec.status not in TERMINAL:
            _sync(rec)


def _sync(rec: Record) -> None:
    """The record's status from the scheduler's rollout state (under the runtime's lock)."""
    sched = rec.sched
    if rec.bg is not None:  # a blue/green deployment keeps its own stages
        rec.bg.sync(rec)
        return
    if rec.status in ROLLING_BACK:
        back = _dep(sched, rec.rollback_dep_id)
        if back is None or back.rollout_state == "FAILED":
            rec.set("ROLLBACK_FAILED", "The rollback to the source service revision failed.")
        elif back.rollout_state == "COMPLETED" and back is sched.primary:
            rec.set("ROLLBACK_SUCCESSFUL")
            rec.lifecycle_stage = "CLEAN_UP"
        else:
            rec.set("ROLLBACK_IN_PROGRESS")
            running, _ = back.counts()
            rec.lifecycle_stage = "SCALE_UP" if running < back.desired_count else "CLEAN_UP"
        return
    dep = _dep(sched, rec.dep_id)
    if dep is None:
        return
    if not dep.tasks and dep.rollout_state == "IN_PROGRESS":
        return  # PENDING until the scheduler launches the target's first task
    if rec.started_at is None:
        rec.started_at = utcnow()
    if dep.rollout_state == "COMPLETED":
        rec.set("SUCCESSFUL", f"Service deployment {rec.arn.rsplit('/', 1)[-1]} completed.")
        rec.lifecycle_stage = "CLEAN_UP"
        return
    running, _ = dep.counts()
    # A rolling update: the target scales up, then the source revisions' tasks are stopped.
    rec.lifecycle_stage = "SCALE_UP" if running < dep.desired_count else "CLEAN_UP"
    rec.set("IN_PROGRESS", "")


def stop(rec: Record, stop_type: str) -> None:
    """StopServiceDeployment: ROLLBACK to the source revision, under the runtime's lock."""
    if stop_type != "ROLLBACK":
        raise InvalidParameterException(
            f"stopType {stop_type} is not supported for a deployment with the ECS deployment "
            "controller. The valid value is ROLLBACK.")
    if rec.status in TERMINAL:
        raise ConflictException(
            f"The service deployment is {rec.status} and can't be stopped: only a PENDING, "
            "IN_PROGRESS, STOP_REQUESTED or ROLLBACK deployment can be.")
    if rec.status in (*ROLLING_BACK, "STOP_REQUESTED"):
        return  # ECS: the stop (or rollback) already requested continues
    sched, now = rec.sched, time.monotonic()
    if rec.bg is not None:  # blue/green: traffic back to blue, green stopped
        rec.bg.start_rollback(USER_ROLLBACK_REASON, now)
        sched.project()
        return
    dep = _dep(sched, rec.dep_id)
    to = next((d for _, dep_id in rec.sources if (d := _dep(sched, dep_id)) is not None), None)
    if dep is None or to is None or dep is not sched.primary:
        raise ConflictException("The service deployment has no source service revision to roll "
                                "back to.")
    # What the circuit breaker's rollback does (ServiceScheduler._fail), asked for by a user.
    dep.rollout_state = "FAILED"
    dep.rollout_state_reason = USER_ROLLBACK_REASON
    sched.deployments.remove(to)
    sched.deployments.insert(0, to)
    dep.status, to.status = "ACTIVE", "PRIMARY"
    to.rollout_state = "IN_PROGRESS"
    to.rollout_state_reason = f"ECS deployment rollback: rolling back to deploymentId {to.id}."
    to.desired_count = sched.service.desired_count or 0
    to.cb_failures = to.relaunch_failures = 0
    to.next_launch = now
    to.not_before = now + sched.rt.timing.rollback_min_duration
    sched.service.task_definition = to.task_definition
    sched.event(f"(service {sched.name}) (deployment {dep.id}) stopped by user: rolling back "
                f"to deployment {to.id}.")
    _rolling_back(rec, to, USER_ROLLBACK_REASON)
    sched.project()
    sched.rt.wake()


# -- the API ------------------------------------------------------------------------------------
def _runtime(resp: Any):
    from sandbox.ecs_runtime import _RUNTIMES

    return _RUNTIMES.get((resp.current_account, resp.region))


def _store(resp: Any) -> Store:
    return _STORES.get((resp.current_account, resp.region)) or Store()


def _summary(rec: Record, revision: str, dep_id: str) -> dict:
    dep = _dep(rec.sched, dep_id)
    running, pending = dep.counts() if dep is not None else (0, 0)
    requested = dep.desired_count if dep is not None and dep is rec.sched.primary else 0
    return {"arn": revision, "requestedTaskCount": requested, "runningTaskCount": running,
            "pendingTaskCount": pending}


def describe(rec: Record) -> dict:
    sched, svc = rec.sched, rec.sched.service
    enabled, _ = sched.circuit_breaker()
    dep = _dep(sched, rec.dep_id)
    out = {
        "serviceDeploymentArn": rec.arn, "serviceArn": svc.arn,
        "clusterArn": sched.backend._get_cluster(svc.cluster_name).arn,
        "createdAt": rec.created_at, "updatedAt": rec.updated_at,
        "sourceServiceRevisions": [_summary(rec, r, d) for r, d in rec.sources],
        "targetServiceRevision": _summary(rec, rec.target, rec.dep_id),
        "status": rec.status, "deploymentConfiguration": copy.deepcopy(
            rec.deployment_configuration if rec.deployment_configuration is not None
            else dict(getattr(svc, "deployment_configuration", None) or {})),
        "deploymentCircuitBreaker": {
            "status": ("DISABLED" if not enabled else
                       "TRIGGERED" if rec.rollback and rec.rollback["reason"]
                       == CB_ROLLBACK_REASON else "MONITORING"),
            "failureCount": dep.failed_tasks if dep is not None else 0,
            "threshold": sched.threshold(svc.desired_count or 0)},
    }
    if rec.bg is not None and rec.bg.hooks:
        out["lifecycleHookDetails"] = rec.bg.hook_details()
    for key, value in (("statusReason", rec.status_reason), ("startedAt", rec.started_at),
                       ("finishedAt", rec.finished_at), ("stoppedAt", rec.stopped_at),
                       ("lifecycleStage", rec.lifecycle_stage), ("rollback", rec.rollback)):
        if value:
            out[key] = value
    return out


def _when(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _list_service_deployments(self) -> ActionResult:
    backend = self.ecs_backend
    cluster = backend._get_cluster(self._get_param("cluster", "default"))
    name = str(self._get_param("service") or "").rsplit("/", 1)[-1]
    if f"{cluster.name}:{name}" not in backend.services:
        raise ServiceNotFoundException()
    statuses = set(self._get_param("status") or [])
    created = self._get_param("createdAt") or {}
    after, before = _when(created.get("after")), _when(created.get("before"))
    rt = _runtime(self)
    with rt.lock if rt else _NoLock():
        recs = [r for r in reversed(_store(self).records)
                if r.sched.service.cluster_name == cluster.name and r.sched.service.name == name
                and (not statuses or r.status in statuses)
                and (after is None or _aware(r.created_at) >= after)
                and (before is None or _aware(r.created_at) <= before)]
        briefs = [{k: v for k, v in {
            "serviceDeploymentArn": r.arn, "serviceArn": r.sched.service.arn,
            "clusterArn": cluster.arn, "startedAt": r.started_at, "createdAt": r.created_at,
            "finishedAt": r.finished_at, "targetServiceRevisionArn": r.target,
            "status": r.status, "statusReason": r.status_reason}.items() if v}
            for r in recs]
    start = int(self._get_param("nextToken") or 0)
    size = min(int(self._get_param("maxResults") or 20), 100)
    page = {"serviceDeployments": briefs[start:start + size]}
    if start + size < len(briefs):
        page["nextToken"] = str(start + size)
    return ActionResult(page)


def _find(self, arn: str) -> Record | None:
    return next((r for r in _store(self).records if r.arn == arn), None)


def _describe_service_deployments(self) -> ActionResult:
    arns = self._get_param("serviceDeploymentArns") or []
    if not arns:
        raise InvalidParameterException("serviceDeploymentArns can not be empty.")
    rt = _runtime(self)
    found, failures = [], []
    with rt.lock if rt else _NoLock():
        for arn in arns:
            rec = _find(self, arn)
            if rec is None:
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                found.append(describe(rec))
    return ActionResult({"serviceDeployments": found, "failures": failures})


def _describe_service_revisions(self) -> ActionResult:
    arns = self._get_param("serviceRevisionArns") or []
    if not arns:
        raise InvalidParameterException("serviceRevisionArns can not be empty.")
    revisions = _store(self).revisions
    found = [dict(revisions[a]) for a in arns if a in revisions]
    failures = [{"arn": a, "reason": "MISSING"} for a in arns if a not in revisions]
    return ActionResult({"serviceRevisions": found, "failures": failures})


def _stop_service_deployment(self) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn") or ""
    rt = _runtime(self)
    with rt.lock if rt else _NoLock():
        rec = _find(self, arn)
        if rec is None:
            raise ServiceDeploymentNotFoundException(
                f"The service deployment {arn} does not exist.")
        stop(rec, self._get_param("stopType") or "ROLLBACK")
    return ActionResult({"serviceDeploymentArn": arn})


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_PATCHES = Patches(
    (ServiceScheduler, "start_deployment", _start_deployment),
    (ServiceScheduler, "_fail", _fail),
    (ServiceScheduler, "project", _project),
    (EC2ContainerServiceResponse, "list_service_deployments", _list_service_deployments),
    (EC2ContainerServiceResponse, "describe_service_deployments", _describe_service_deployments),
    (EC2ContainerServiceResponse, "describe_service_revisions", _describe_service_revisions),
    (EC2ContainerServiceResponse, "stop_service_deployment", _stop_service_deployment),
)


def install() -> None:
    _PATCHES.install()


def uninstall() -> None:
    _PATCHES.uninstall()
    _STORES.clear()
