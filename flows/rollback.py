"""rollback: put the service back on a known-good task definition, with a true verdict.

    rollback(env="prd")                 # to what was PRIMARY before the last recorded deploy
    rollback(env="prd", to="41")        # to papyrus-task:41 (or "family:41", or a full ARN)

As a checklist: the deploy lock and lease (a rollback is a deploy) → resolve the target
(read-only; an unknown revision is bad input) → roll back: ECS's own rollback
(StopServiceDeployment ROLLBACK) when a deployment from the target is in progress, else update
the service to the target (only the task definition changes) → wait for a true verdict → probe
/healthz on the new tasks → record it for the next preflight → evidence. The result is
`ground.result`'s contract; the run ends Failed otherwise.
"""

from __future__ import annotations

import time

from prefect import flow

from artifacts import EvidenceBundle
from flows.common import DeployFailed, Outcome, aws_clients, deploy_lock, open_run
from ground.result import BAD_INPUT, result, to_state
from ground.retry import BadInput
from ground.run_names import run_name
from ground.settings import EnvName
from tasks import blue_green, probes, rollout
from tasks.state import record_deploy


@flow(name="rollback", flow_run_name=run_name("rollback {env}"), log_prints=True)
def rollback(env: EnvName = "local", to: str | None = None, timeout_seconds: float | None = None,
             poll_seconds: float | None = None):
    """Roll the environment's service back to a known-good task definition.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        to: The revision to return to: a number ("41"), "family:41", or a task definition ARN.
            Empty: the task definition that was PRIMARY before the last recorded deploy.
        timeout_seconds: Seconds to wait for a true verdict (None: deploy.timeout_seconds).
        poll_seconds: Seconds between service polls (None: deploy.poll_seconds).
    """
    started = time.time()
    try:
        settings = open_run(env)
    except BadInput as e:
        return to_state(result("rollback", env, BAD_INPUT, str(e), started=started))
    c = aws_clients(settings, "ecs", "s3", "rds", "kms", "elbv2")
    bundle = EvidenceBundle.open(settings, flow_name="rollback")
    bundle.set_context(environment=env, requested=to)
    data: dict = {"to": to}
    outcome = Outcome()
    lease: list = []  # the deploy lease's keeper, once taken (its summary goes in data)
    with outcome.judged("rollback"), deploy_lock(settings, c["s3"]) as held:
        current = rollout.read_current(c["ecs"], settings)
        data["from_task_definition"] = current["task_definition"]
        target = rollout.resolve_target(c["ecs"], c["s3"], settings, to,
                                        current["task_definition"])
        data["task_definition"] = target
        bundle.set_context(from_task_definition=current["task_definition"],
                           task_definition_arn=target)
        lease.append(held)
        outcome.reason = _roll_back(settings, c, bundle, data, target, current,
                                    timeout_seconds or settings.deploy_timeout_seconds,
                                    poll_seconds or settings.deploy_poll_seconds, held.check)
    data["lease"] = lease[0].summary() if lease else None
    return outcome.finish("rollback", env, bundle, c["s3"], started, data, kms=c["kms"])


def _roll_back(settings, c, bundle, data: dict, target: str, current: dict, timeout: float,
               poll: float, guard) -> str:
    guard(before="updating the service")
    since = time.time()
    rb = rollout.roll_back(c["ecs"], settings, target)
    data["deployment_id"], data["started_by_us"] = rb["deployment_id"], rb["started"]
    data["stopped_service_deployment"] = rb.get("service_deployment")
    if rb["started"] and not rb.get("native") and rb["strategy"] == "BLUE_GREEN":
        # Back to a known-good revision: its blue/green pause asks nobody.
        data["test_traffic"] = blue_green.continue_unattended(c["ecs"], settings, target, since,
                                                              timeout, poll)
    verdict = rollout.wait_for_verdict(c["ecs"], settings, rb["deployment_id"], target, None,
                                       timeout + rb["bake_seconds"], poll, since=since,
                                       elbv2=c["elbv2"])
    data["verdict_detail"] = verdict
    rollout.note_service_deployment(bundle, verdict)
    bundle.write_text("service_events", "\n".join(verdict["events"]))
    bundle.write_text("running_image", rollout.running_image_log(verdict))
    if not verdict["ok"]:
        raise DeployFailed(verdict["reason"])
    base = probes.probe_targets(c["ecs"], settings, target)[0]
    try:
        rec = probes.probe_healthz(base)
    except probes.ProbeFailed as e:
        bundle.write_json("rollback_probe", e.record or {})
        raise DeployFailed(f"rolled back, but /healthz failed: {e}") from e
    bundle.write_json("rollback_probe", rec)
    data["healthz"] = rec["status"]
    guard(before="recording the rollback")
    try:
        record_deploy(c["s3"], settings, rds=c["rds"], task_definition_arn=target,
                      deployment_id=rb["deployment_id"],
                      previous_task_definition_arn=current["task_definition"])
        data["state_recorded"] = True
    except Exception:  # noqa: BLE001 - the rollback worked; the record is bookkeeping
        data["state_recorded"] = False
    return f"rolled back to {target.rsplit('/', 1)[-1]}: {verdict['reason']}"
