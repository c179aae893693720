"""ECS service deployments: our deployment's own status, and ECS's own rollback.

ECS keeps a first-class record of each deployment (ListServiceDeployments /
DescribeServiceDeployments / DescribeServiceRevisions): its `status` (PENDING, IN_PROGRESS,
SUCCESSFUL, STOPPED, STOP_REQUESTED, ROLLBACK_REQUESTED, ROLLBACK_IN_PROGRESS,
ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED), `statusReason`, `lifecycleStage`, `rollback`, and source and
target service revisions. Ours is the newest one whose *target revision* runs our task
definition, created since our UpdateService — found by the revision, not guessed from the
service's deployments. `StopServiceDeployment(stopType=ROLLBACK)` returns the service to the
source revision.

Where the API does not answer (an older ECS endpoint, a policy without the actions, a stand-in
that does not implement it), `Unavailable` is raised and the caller keeps its older reading.
"""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.exceptions import ClientError

IN_FLIGHT = ("PENDING", "IN_PROGRESS")
ROLLING_BACK = ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "STOP_REQUESTED")
FAILED = ("STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
# What an endpoint without the API (or a role without the actions) answers.
_UNAVAILABLE_CODES = {"UnknownOperationException", "UnknownOperation", "InvalidAction",
                      "AccessDeniedException", "AccessDenied", "UnsupportedFeatureException",
                      "NotImplemented"}


class Unavailable(RuntimeError):
    """The service deployments API does not answer here: use the older reading."""


def _call(request) -> dict:
    """`request()` (one ECS call), with "this API does not answer here" as `Unavailable`."""
    try:
        return request()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _UNAVAILABLE_CODES or status in (404, 501):
            raise Unavailable(f"{e.operation_name}: {code or status}") from None
        raise


def short(arn: str) -> str:
    return (arn or "").rsplit("/", 1)[-1]


def find(ecs, s, task_definition: str, since: float, statuses: list[str] | None = None
         ) -> dict | None:
    """The newest service deployment created since `since` (epoch seconds, 1 s of clock slack)
    whose target revision runs `task_definition`, described; None when there is none yet."""
    kw = {"cluster": s.cluster, "service": s.service,
          "createdAt": {"after": datetime.fromtimestamp(since - 1, tz=UTC)}}
    if statuses:
        kw["status"] = statuses
    briefs = _call(lambda: ecs.list_service_deployments(**kw))["serviceDeployments"]
    briefs = sorted(briefs, key=lambda b: b.get("createdAt") or 0, reverse=True)
    for brief in briefs:
        rev = revision(ecs, brief["targetServiceRevisionArn"])
        if rev and rev.get("taskDefinition") == task_definition:
            return describe(ecs, brief["serviceDeploymentArn"])
    return None


def describe(ecs, arn: str) -> dict | None:
    found = _call(lambda: ecs.describe_service_deployments(
        serviceDeploymentArns=[arn]))["serviceDeployments"]
    return found[0] if found else None


def revision(ecs, arn: str) -> dict | None:
    found = _call(lambda: ecs.describe_service_revisions(
        serviceRevisionArns=[arn]))["serviceRevisions"]
    return found[0] if found else None


def summary(sd: dict) -> dict:
    """What the verdict keeps of a service deployment (JSON-safe)."""
    rb = sd.get("rollback") or {}
    return {"arn": sd["serviceDeploymentArn"], "status": sd.get("status", ""),
            "status_reason": sd.get("statusReason", ""),
            "lifecycle_stage": sd.get("lifecycleStage", ""),
            "target_revision": (sd.get("targetServiceRevision") or {}).get("arn", ""),
            "source_revisions": [r.get("arn", "") for r in sd.get("sourceServiceRevisions") or []],
            "rollback": {"reason": rb.get("reason", ""),
                         "started_at": str(rb.get("startedAt", "")),
                         "revision": rb.get("serviceRevisionArn", "")} if rb else {}}


def failure_head(ecs, sd: dict) -> str:
    """'service deployment <id> ROLLBACK_SUCCESSFUL: <statusReason>; rolled back (<reason>) to
    revision <id> (<task definition>)'."""
    head = f"service deployment {short(sd['serviceDeploymentArn'])} {sd.get('status')}"
    if sd.get("statusReason"):
        head += f": {sd['statusReason']}"
    rb = sd.get("rollback") or {}
    if rb:
        to = rb.get("serviceRevisionArn", "")
        try:
            td = (revision(ecs, to) or {}).get("taskDefinition", "") if to else ""
        except (Unavailable, ClientError):
            td = ""
        head += (f"; rollback ({rb.get('reason', '')}) to service revision {short(to)}"
                 + (f" ({short(td)})" if td else ""))
    return head


def stop_for_rollback(ecs, s, previous_task_definition: str) -> str | None:
    """ECS's own rollback: stop (ROLLBACK) the in-progress service deployment whose source
    revision runs `previous_task_definition`. Returns its ARN, or None when there is none (or
    it finished meanwhile: ECS answers ConflictException then). Unavailable as above."""
    briefs = _call(lambda: ecs.list_service_deployments(
        cluster=s.cluster, service=s.service, status=list(IN_FLIGHT)))["serviceDeployments"]
    for brief in briefs:
        sd = describe(ecs, brief["serviceDeploymentArn"])
        if not sd or sd.get("status") not in IN_FLIGHT:
            continue
        sources = [revision(ecs, r["arn"]) for r in sd.get("sourceServiceRevisions") or []]
        if not any(r and r.get("taskDefinition") == previous_task_definition for r in sources):
            continue
        try:
            arn = sd["serviceDeploymentArn"]
            _call(lambda arn=arn: ecs.stop_service_deployment(serviceDeploymentArn=arn,
                                                              stopType="ROLLBACK"))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConflictException":
                return None  # it finished between our read and the stop
            raise
        return sd["serviceDeploymentArn"]
    return None
