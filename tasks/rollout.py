"""Update the ECS service and wait for a true verdict.

Where ECS answers its service deployments API (tasks.service_deployments), the verdict is our
service deployment's: SUCCESSFUL (and the tasks and digest below) is a success; STOPPED and
ROLLBACK_* are failures naming ECS's reasons. Elsewhere, the reading below.

"Stable" is not "worked": a circuit-breaker rollback also ends stable, on the old revision. A
deploy succeeded only when OUR deployment is PRIMARY and COMPLETED, running equals desired,
and every running task of it carries the pinned digest. It failed when our deployment is FAILED,
when the service is PRIMARY on another task definition (a rollback), or at the timeout; the
failure names stop codes, stopped reasons, container exit codes and the last service events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.logs import run_logger
from ground.retry import BadInput, transient_only
from ground.settings import Settings
from tasks import blue_green
from tasks import service_deployments as sdeps
from tasks.state import read_last_deploy


class RolloutInProgress(RuntimeError):
    """Someone else's rollout is still running on this service: we change nothing."""


@dataclass
class Verdict:
    ok: bool
    reason: str
    deployment_id: str
    task_definition: str
    primary_task_definition: str = ""
    rollout_state: str = ""
    stopped_tasks: list[dict] = field(default_factory=list)
    running_tasks: list[dict] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    waited_seconds: float = 0.0
    decided_at: float = 0.0
    outcome: str = ""  # success | failed | unknown (no verdict could be reached)
    poll_errors: int = 0
    # Our ECS service deployment (tasks.service_deployments) when that API answers; `source`
    # says which reading gave the verdict; `lifecycle` the status/stage changes seen.
    service_deployment: dict = field(default_factory=dict)
    lifecycle: list[str] = field(default_factory=list)
    source: str = "describe-services"
    # Behind a target group: each running task's target and its TargetHealth, per group.
    target_health: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def describe_service(ecs, s: Settings) -> dict:
    services = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"]
    if not services or services[0].get("status") != "ACTIVE":
        raise ValueError(f"service {s.service!r} not found in cluster {s.cluster!r}")
    return services[0]


def primary(service: dict) -> dict:
    return next(d for d in service["deployments"] if d["status"] == "PRIMARY")


@task(name="read-current-deployment", cache_policy=NO_CACHE, retries=3,
      retry_delay_seconds=[1, 2, 4], retry_condition_fn=transient_only)
def read_current(ecs, s: Settings) -> dict:
    """What runs now: remembered so a rollback returns to it (not "revision minus one")."""
    svc = describe_service(ecs, s)
    p = primary(svc)
    return {"task_definition": p["taskDefinition"], "deployment_id": p["id"],
            "rollout_state": p.get("rolloutState", ""), "desired": svc["desiredCount"],
            "in_progress": [d["id"] for d in svc["deployments"]
                            if d.get("rolloutState") == "IN_PROGRESS"]}


@task(name="update-service", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5],
      retry_condition_fn=transient_only)
def update_service(ecs, s: Settings, task_definition: str, previous_deployment_id: str,
                   service_params: dict) -> dict:
    """Start our deployment. `previous_deployment_id` is the PRIMARY read under the deploy lock;
    if PRIMARY has changed since and runs our task definition, a previous attempt of this task
    started it (its response was lost): that deployment is ours, no second one is started.
    `service_params` is what the environment folder's service-definition.json declares
    (deployment configuration, circuit breaker, ECS Exec, network, ...): sent as it is.
    botocore does not resend UpdateService when its outcome is unknown (ground.aws)."""
    svc = describe_service(ecs, s)
    p = primary(svc)
    if p["id"] != previous_deployment_id and p["taskDefinition"] == task_definition:
        return {"deployment_id": p["id"], "task_definition": task_definition, "reused": True}
    busy = [d["id"] for d in svc["deployments"] if d.get("rolloutState") == "IN_PROGRESS"]
    if busy:
        raise RolloutInProgress(f"service {s.service} has a rollout in progress ({busy[0]}); "
                                "refusing to start another")
    resp = ecs.update_service(cluster=s.cluster, service=s.service,
                              taskDefinition=task_definition, forceNewDeployment=True,
                              **service_params)
    return {"deployment_id": primary(resp["service"])["id"], "task_definition": task_definition,
            "reused": False}


def _tasks(ecs, s: Settings, status: str, started_by: str | None = None) -> list[dict]:
    kw = {"cluster": s.cluster, "desiredStatus": status}
    kw |= {"startedBy": started_by} if started_by else {"serviceName": s.service}
    arns = [a for page in ecs.get_paginator("list_tasks").paginate(**kw) for a in page["taskArns"]]
    out = []
    for i in range(0, len(arns), 100):
        out += ecs.describe_tasks(cluster=s.cluster, tasks=arns[i:i + 100])["tasks"]
    return out


def stopped_summary(t: dict) -> dict:
    return {
        "task": t["taskArn"].rsplit("/", 1)[-1],
        "stop_code": t.get("stopCode", ""),
        "stopped_reason": t.get("stoppedReason", ""),
        "exit_codes": {c["name"]: c.get("exitCode") for c in t.get("containers", [])},
        "container_reasons": {c["name"]: c["reason"] for c in t.get("containers", [])
                              if c.get("reason")},
    }


def running_summary(t: dict, container: str) -> dict:
    c = next((c for c in t.get("containers", []) if c["name"] == container), {})
    return {"task": t["taskArn"].rsplit("/", 1)[-1], "task_definition": t["taskDefinitionArn"],
            "last_status": t.get("lastStatus"), "image": c.get("image", ""),
            "image_digest": c.get("imageDigest", ""), "started_at": str(t.get("startedAt", ""))}


def failure_reason(head: str, stopped: list[dict]) -> str:
    if not stopped:
        return head
    codes = sorted({str(c) for t in stopped for c in t["exit_codes"].values() if c is not None})
    first = stopped[-1]
    return (f"{head}; {len(stopped)} task(s) stopped: {first['stop_code']} "
            f"'{first['stopped_reason']}', exit code(s) {', '.join(codes) or 'none'}")


@task(name="wait-for-verdict", cache_policy=NO_CACHE)
def wait_for_verdict(ecs, s: Settings, deployment_id: str, task_definition: str,
                     digest: str | None, timeout: float, poll: float, since: float = 0.0,
                     clock: Callable[[], float] = time.monotonic, elbv2=None) -> dict:
    """Poll until a true verdict. `digest=None` skips the image check (used for rollbacks).
    Service events newer than `since` (epoch seconds) are logged as they come.

    An AWS error while polling (throttling past botocore's retries, 5xx, expired credentials)
    never abandons the deploy: ECS carries on whether or not we can see it, so the poll goes on
    until the timeout. When no verdict could be reached, the verdict is `unknown` (not ok),
    with the last error and what ECS last showed — the caller must not assume a rollback is
    safe then (it would need the same API that just failed).

    A service attached to target groups (`loadBalancers`) succeeds only once every running
    task of ours is `healthy` in each of them (`elbv2.describe_target_health`); a target that
    is `unhealthy`, `unused` or `draining` is a failed verdict; `initial` is waited for."""
    log = run_logger()
    start, seen, events, stopped_seen, health_seen = clock(), set(), [], {}, {}
    sd_state: dict = {"lifecycle": []}  # our service deployment, across polls
    last: Verdict | None = None
    errors: list[str] = []
    while True:
        try:
            verdict = _poll(ecs, s, deployment_id, task_definition, digest, since, seen, events,
                            stopped_seen, log, elbv2, health_seen)
            verdict = _with_service_deployment(ecs, s, verdict, task_definition, since,
                                               sd_state, log)
        except (ClientError, BotoCoreError) as e:
            errors.append(f"{type(e).__name__}: {e}")
            log.warning("could not read the service (%d error(s) so far), still waiting: %s",
                        len(errors), errors[-1])
            verdict = None
        else:
            last = verdict
        waited = clock() - start
        if verdict is not None and verdict.reason:
            verdict.waited_seconds, verdict.decided_at = round(waited, 3), time.time()
            verdict.poll_errors = len(errors)
            (log.info if verdict.ok else log.error)("verdict: %s", verdict.reason)
            return verdict.as_dict()
        if waited >= timeout:
            out = last or Verdict(False, "", deployment_id, task_definition, rollout_state="?")
            if last is None or (errors and verdict is None):
                out.outcome = "unknown"
                shown = (f"ECS last showed {out.rollout_state or 'nothing'}"
                         + (f" on {out.primary_task_definition.rsplit('/', 1)[-1]}"
                            if out.primary_task_definition else ""))
                out.reason = (f"no verdict after {timeout:.0f}s: the service could not be read "
                              f"({len(errors)} error(s), last: {errors[-1]}); {shown}")
            else:
                out.outcome = "failed"
                sd = out.service_deployment
                if sd and sd["status"] in sdeps.ROLLING_BACK:
                    # Failed for sure: ECS is rolling it back and has not finished yet.
                    out.reason = failure_reason(
                        f"service deployment {sdeps.short(sd['arn'])} {sd['status']}: "
                        f"{sd['status_reason']} (ECS still rolling back after {timeout:.0f}s)",
                        out.stopped_tasks)
                else:
                    shown = (f", service deployment {sd['status']}"
                             + (f" at {sd['lifecycle_stage']}" if sd.get("lifecycle_stage")
                                else "")
                             + (f": {sd['status_reason']}" if sd.get("status_reason") else "")
                             if sd else "")
                    out.reason = failure_reason(
                        f"timed out after {timeout:.0f}s waiting for {deployment_id} "
                        f"(rolloutState {out.rollout_state}{shown})", out.stopped_tasks)
            out.waited_seconds, out.decided_at = round(waited, 3), time.time()
            out.poll_errors = len(errors)
            log.error("verdict: %s", out.reason)
            return out.as_dict()
        time.sleep(poll)


def _with_service_deployment(ecs, s: Settings, verdict: Verdict, task_definition: str,
                             since: float, state: dict, log) -> Verdict:
    """The verdict from our ECS service deployment where that API answers; else `verdict` (the
    reading of DescribeServices' deployments) as it is. SUCCESSFUL still needs the tasks and
    the digest to hold (`verdict.ok`); STOPPED and ROLLBACK_SUCCESSFUL/FAILED are failures
    naming ECS's reasons; while ECS rolls back (ROLLBACK_REQUESTED/IN_PROGRESS) we wait for
    the rollback's end, so the failure says how it ended."""
    if state.get("off"):
        return verdict
    try:
        sd = (sdeps.describe(ecs, state["arn"]) if state.get("arn")
              else sdeps.find(ecs, s, task_definition, since))
    except sdeps.Unavailable as e:
        state["off"] = True
        log.info("ECS service deployments unavailable (%s): judging by the service's "
                 "deployments", e)
        return verdict
    if sd is None:
        return verdict  # not listed yet (or a deployment ECS made without a new revision)
    state["arn"] = sd["serviceDeploymentArn"]
    verdict.source = "service-deployment"
    verdict.service_deployment = sdeps.summary(sd)
    status, stage = sd.get("status", ""), sd.get("lifecycleStage", "")
    seen = f"{status}" + (f" ({stage})" if stage else "")
    if not state["lifecycle"] or state["lifecycle"][-1] != seen:
        state["lifecycle"].append(seen)
        log.info("service deployment %s: %s%s", sdeps.short(state["arn"]), seen,
                 f" - {sd['statusReason']}" if sd.get("statusReason") else "")
    verdict.lifecycle = list(state["lifecycle"])
    if status == "SUCCESSFUL":
        # Still only with the tasks and the digest (else today's failure, or look again).
        if verdict.ok:
            verdict.reason = f"service deployment {sdeps.short(state['arn'])} SUCCESSFUL; " \
                             + verdict.reason
    elif status in sdeps.FAILED:
        verdict.ok = False
        verdict.reason = failure_reason(sdeps.failure_head(ecs, sd), verdict.stopped_tasks)
    else:  # PENDING, IN_PROGRESS, or ECS rolling back: not decided yet
        verdict.ok, verdict.reason = False, ""
    verdict.outcome = "success" if verdict.ok else ("failed" if verdict.reason else "")
    return verdict


def task_target(t: dict, container: str, port: int) -> dict:
    """The target ECS registers for a task: its ENI address and the port its container port is
    reached on (awsvpc: the container port itself; the sandbox's runtime reports its own)."""
    ip = next((d["value"] for a in t.get("attachments", []) for d in a.get("details", [])
               if d["name"] == "privateIPv4Address"), None)
    c = next((c for c in t.get("containers", []) if c["name"] == container), {})
    ip = ip or next((n["privateIpv4Address"] for n in c.get("networkInterfaces", [])), "")
    host_port = next((b["hostPort"] for b in c.get("networkBindings", [])
                      if b.get("containerPort") == port and b.get("hostPort")), port)
    return {"Id": ip, "Port": host_port}


def target_health(elbv2, load_balancers: list[dict], tasks: list[dict]) -> list[dict]:
    """Each task's target in each target group of the service, with its TargetHealth. A
    blue/green attachment (`advancedConfiguration`) has two groups and a task is registered in
    one of them (the one that did not serve production when its deployment began): there the
    rows are of the group it is registered in, none while it is registered in neither yet."""
    rows = []
    for lb in load_balancers:
        arn = lb.get("targetGroupArn")
        if not arn:
            continue
        alt = (lb.get("advancedConfiguration") or {}).get("alternateTargetGroupArn")
        for t in tasks:
            target = task_target(t, lb["containerName"], int(lb["containerPort"]))
            for group in (arn, alt) if alt else (arn,):
                desc = elbv2.describe_target_health(TargetGroupArn=group, Targets=[target])[
                    "TargetHealthDescriptions"][0]
                th = desc.get("TargetHealth", {})
                if alt and th.get("Reason") == "Target.NotRegistered":
                    continue
                rows.append({"target_group": group, "task": t["taskArn"].rsplit("/", 1)[-1],
                             "target": f"{target['Id']}:{target['Port']}",
                             "state": th.get("State", ""), "reason": th.get("Reason", ""),
                             "description": th.get("Description", "")})
    return rows


def _poll(ecs, s: Settings, deployment_id: str, task_definition: str, digest: str | None,
          since: float, seen: set, events: list, stopped_seen: dict, log,
          elbv2=None, health_seen: dict | None = None) -> Verdict:
    """One look at the service: a Verdict with a reason when one is reached, else without."""
    svc = describe_service(ecs, s)
    for ev in reversed(svc.get("events", [])):
        if ev["id"] not in seen:
            seen.add(ev["id"])
            if ev["createdAt"].timestamp() >= since - 1:
                events.append(ev["message"])
                log.info("ECS event: %s", ev["message"])
    for t in _tasks(ecs, s, "STOPPED", started_by=deployment_id):
        if t["taskArn"] not in stopped_seen:
            stopped_seen[t["taskArn"]] = stopped_summary(t)
            log.warning("task stopped: %s", stopped_seen[t["taskArn"]])
    stopped = list(stopped_seen.values())
    ours = next((d for d in svc["deployments"] if d["id"] == deployment_id), None)
    prim = primary(svc)
    verdict = Verdict(False, "", deployment_id, task_definition, prim["taskDefinition"],
                      (ours or {}).get("rolloutState", "GONE"), stopped, [], events[-10:])
    lbs = [lb for lb in svc.get("loadBalancers") or [] if lb.get("targetGroupArn")]
    if lbs and elbv2 is None:
        verdict.reason = "the service is behind a target group, but no elbv2 client was given"
        verdict.outcome = "failed"
        return verdict
    health: list[dict] = []
    if lbs:
        # Our deployment's live tasks as the ALB sees them. Each target's last answer is kept
        # for the evidence, also once ECS has stopped the task (one that failed its checks).
        live = [t for t in _tasks(ecs, s, "RUNNING", started_by=deployment_id)
                if t.get("lastStatus") == "RUNNING"]
        health = target_health(elbv2, lbs, live)
        if health_seen is not None:
            health_seen.update({(h["target_group"], h["task"]): h for h in health})
    verdict.target_health = list((health_seen or {}).values()) or health
    if ours and ours.get("rolloutState") == "FAILED":
        verdict.reason = failure_reason(
            f"deployment {deployment_id} FAILED: {ours.get('rolloutStateReason', '')}", stopped)
    elif prim["taskDefinition"] != task_definition:
        verdict.reason = failure_reason(
            f"service is on {prim['taskDefinition'].rsplit('/', 1)[-1]}, not "
            f"{task_definition.rsplit('/', 1)[-1]}: rolled back", stopped)
    elif (ours is prim and ours.get("rolloutState") == "COMPLETED"
          and ours["runningCount"] == ours["desiredCount"] == svc["desiredCount"]):
        ours_running = [t for t in _tasks(ecs, s, "RUNNING")
                        if t["taskDefinitionArn"] == task_definition
                        and t.get("lastStatus") == "RUNNING"]
        running = [running_summary(t, s.container) for t in ours_running]
        # Exactly the pinned digest, for a multi-arch image too: ECS reports the digest the task
        # definition's image resolved to in ECR, for an image index the index's own (not the
        # platform manifest's; aws/amazon-ecs-agent#3576, docs/sandbox.md). A platform
        # manifest's digest here would be an image we did not pin.
        wrong = [r for r in running if digest and r["image_digest"] != digest]
        verdict.running_tasks = running
        mine = {r["task"] for r in running}
        health = [h for h in health if h["task"] in mine]
        missing = lbs and {h["task"] for h in health} != mine
        bad = [h for h in health if h["state"] in ("unhealthy", "unused", "draining")]
        waiting = [h for h in health if h["state"] not in ("healthy", "unhealthy", "unused",
                                                          "draining")]
        if bad:
            h = bad[0]
            verdict.reason = (f"target {h['target']} of task {h['task']} is {h['state']} in "
                              f"{h['target_group'].rsplit(':', 1)[-1]}: {h['reason']} "
                              f"{h['description']}".rstrip())
        elif waiting or missing:
            pass  # initial (or not registered yet): the ALB has not judged the new task
        elif len(running) == svc["desiredCount"] and not wrong:
            verdict.ok, verdict.reason = True, (
                f"deployment {deployment_id} COMPLETED: {len(running)}/{svc['desiredCount']}"
                f" running {task_definition.rsplit('/', 1)[-1]}"
                + (f" on {digest}" if digest else "")
                + (f", {len(health)} target(s) healthy" if health else ""))
        elif wrong:
            verdict.reason = f"running tasks carry another image: {wrong[0]['image_digest']}"
    verdict.outcome = "success" if verdict.ok else ("failed" if verdict.reason else "")
    return verdict


@task(name="roll-back", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=transient_only)
def roll_back(ecs, s: Settings, previous_task_definition: str) -> dict:
    """Back to what was PRIMARY before this deploy. If ECS's circuit breaker already did it,
    only wait for that rollback; if a service deployment from it is still in progress, ECS's
    own rollback (StopServiceDeployment ROLLBACK: back to the source revision as it was);
    otherwise a new UpdateService in which only the task definition changes: the service's
    other settings stay as they are."""
    svc = describe_service(ecs, s)
    p = primary(svc)
    # A blue/green service's rollback deployment pauses and bakes like any (the caller's).
    how = {"strategy": blue_green.strategy(svc), "bake_seconds": blue_green.bake_seconds(svc)}
    if p["taskDefinition"] == previous_task_definition:
        return {"deployment_id": p["id"], "started": False} | how
    native = _stop_service_deployment(ecs, s, previous_task_definition)
    if native:
        return native | how
    resp = ecs.update_service(cluster=s.cluster, service=s.service,
                              taskDefinition=previous_task_definition, forceNewDeployment=True)
    return {"deployment_id": primary(resp["service"])["id"], "started": True} | how


def _stop_service_deployment(ecs, s: Settings, previous: str, wait: float = 30.0,
                             poll: float = 0.5) -> dict | None:
    """ECS's own rollback of the deployment in progress from `previous` (StopServiceDeployment
    ROLLBACK), once ECS has put `previous` back as PRIMARY; None when there is no such
    deployment or the API is unavailable (then a new UpdateService rolls back, as before)."""
    log = run_logger()
    try:
        arn = sdeps.stop_for_rollback(ecs, s, previous)
    except sdeps.Unavailable as e:
        log.info("StopServiceDeployment unavailable (%s): rolling back with UpdateService", e)
        return None
    if arn is None:
        return None
    log.warning("stopped service deployment %s (ROLLBACK): ECS returns to %s",
                sdeps.short(arn), previous.rsplit("/", 1)[-1])
    deadline = time.monotonic() + wait
    while True:
        p = primary(describe_service(ecs, s))
        if p["taskDefinition"] == previous or time.monotonic() >= deadline:
            return {"deployment_id": p["id"], "started": True, "service_deployment": arn,
                    "native": True}
        time.sleep(poll)


def note_service_deployment(bundle, verdict: dict) -> None:
    """Our service deployment's status and lifecycle stages into the evidence context (the
    Prefect summary artifact shows it) and its own evidence file."""
    sd = verdict.get("service_deployment") or {}
    if not sd:
        return
    bundle.set_context(service_deployment=sd["arn"], service_deployment_status=sd["status"],
                       service_deployment_lifecycle=" -> ".join(verdict.get("lifecycle") or []))
    bundle.write_json("service_deployment", sd | {"lifecycle": verdict.get("lifecycle") or [],
                                                  "verdict_source": verdict.get("source")})


def running_image_log(verdict: dict) -> str:
    """The `running_image` evidence: what runs, task by task, with its digest."""
    rows = verdict["running_tasks"] or []
    lines = [f"{r['task']} {r['last_status']} {r['image']} digest={r['image_digest']} "
             f"started={r['started_at']}" for r in rows]
    return "\n".join(lines) or f"(no running task of ours) {verdict['reason']}"


def resolve_target(ecs, s3, settings, to: str | None, running: str) -> str:
    """The task definition ARN to roll back to; BadInput when there is none or it is unknown."""
    if to is None:
        last = read_last_deploy(s3, settings) or {}
        if last.get("task_definition_arn") != running or not last.get(
                "previous_task_definition_arn"):
            raise BadInput(f"no previous PRIMARY recorded for the running {running.rsplit('/')[-1]}"
                           " (it was not deployed by papyrus-ops): name a revision with --to")
        to = last["previous_task_definition_arn"]
    ref = f"{settings.family}:{to}" if to.isdigit() else to
    if not ref.startswith("arn:") and ref.split(":", 1)[0] != settings.family:
        raise BadInput(f"--to {to!r}: not a revision of this environment's family "
                       f"{settings.family!r}")
    try:
        td = ecs.describe_task_definition(taskDefinition=ref)["taskDefinition"]
    except ClientError as e:
        why = e.response["Error"].get("Message", "")
        raise BadInput(f"--to {to!r}: no such task definition ({why})") from None
    if td["family"] != settings.family:
        raise BadInput(f"--to {to!r}: family {td['family']!r} is not {settings.family!r}")
    return td["taskDefinitionArn"]
