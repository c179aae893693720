"""The deploy flow, as the runbook does it by hand, as a checklist:

preflight gate → pin the image by digest → render, diff, register → update the service →
wait for a true verdict → (roll back) → probe /healthz, /dbcheck and the CLI insert → evidence.

Nothing changes before the gate passes and the image resolves; `plan=True` stops after the
diff. Evidence is written whatever happens. The flow ends Failed when the deploy did not work.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.states import Failed

from artifacts import EvidenceBundle
from flows.common import BadInput, aws_clients, deploy_lock, open_run
from ground.redact import REDACTOR
from tasks import ecr, probes, rollout, taskdef
from tasks.db import read_db_secret
from tasks.insert_check import insert_cli_row
from tasks.preflight import run_checks
from tasks.state import record_deploy


@flow(name="deploy", log_prints=True)
def deploy(env: str = "local", image: str = "latest", plan: bool = False,
           timeout_seconds: float | None = None, poll_seconds: float | None = None,
           rollback: bool = True, skip_preflight: bool = False):
    """Deploy `image` (tag, repo:tag, repo@sha256:…, or full ECR URI) to the environment.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        image: The image to deploy: a tag ("latest"), repo:tag, repo@sha256:…, or a full ECR
            URI. It is pinned to its digest before anything changes; an unknown tag changes
            nothing.
        plan: Plan only: show the task definition diff against the running revision and
            change nothing.
        timeout_seconds: Seconds to wait for a true verdict (None: the environment's
            deploy.timeout_seconds).
        poll_seconds: Seconds between service polls (None: the environment's
            deploy.poll_seconds).
        rollback: On failure, roll back to the task definition that was PRIMARY before.
        skip_preflight: Skip the drift gate (secret vs RDS, SSL, security groups, ECS Exec,
            routes). Only for incident drills: the gate exists to stop a broken deploy.
    """
    settings, started = open_run(env), time.time()
    c = aws_clients(settings, "ecs", "ecr", "iam", "secretsmanager", "ec2", "rds", "s3")
    bundle = EvidenceBundle.open(settings, flow_name="deploy")
    bundle.set_context(environment=env, requested_image=image, plan=plan)
    summary: dict = {"verdict": "failed", "env": env, "image": image, "plan": plan}
    try:
        with deploy_lock(settings):
            summary["lock_acquired_at"] = time.time()
            _deploy(settings, c, bundle, summary, image, plan, rollback, skip_preflight,
                    timeout_seconds or settings.deploy_timeout_seconds,
                    poll_seconds or settings.deploy_poll_seconds, started)
    except BadInput as e:
        summary.update(verdict="bad_input", error=REDACTOR.redact(str(e)))
    except Exception as e:  # noqa: BLE001 - the verdict and evidence must still be written
        summary.update(verdict="failed", error=REDACTOR.redact(f"{type(e).__name__}: {e}"))
        get_run_logger().exception("deploy failed")
    finally:
        summary["lock_released_at"] = time.time()
        summary["seconds"] = round(time.time() - started, 1)
        # A refused input changes nothing, not even the bucket: its evidence stays local.
        result = bundle.finish("pass" if summary["verdict"] == "success" else "fail",
                               s3=c["s3"], upload=summary["verdict"] != "bad_input")
        summary["evidence"] = {"folder": str(result.folder), "s3_uri": result.s3_uri,
                               "upload_pending": result.pending}
    if summary["verdict"] != "success":
        message = summary.get("error") or summary.get("reason", "deploy failed")
        return Failed(message=REDACTOR.redact(message), data=summary)
    return summary


def _deploy(settings, c, bundle: EvidenceBundle, summary: dict, image: str, plan: bool,
            rollback: bool, skip_preflight: bool, timeout: float, poll: float,
            started: float) -> None:
    log = get_run_logger()
    # 1. Gate: nothing changes before it passes.
    if not skip_preflight:
        checks = run_checks(settings, bundle=bundle)
        failed = [ch for ch in checks if ch["verdict"] == "fail"]
        summary["preflight"] = "pass" if not failed else "fail"
        if failed:
            raise RuntimeError("preflight failed: " + ", ".join(ch["check"] for ch in failed))
    # 2. Pin: everything after this uses the digest.
    try:
        pinned = ecr.pin_image(c["ecr"], image, settings.ecr_repository, settings.region)
    except ValueError as e:
        raise BadInput(str(e)) from None
    summary["image_digest"] = pinned.digest
    bundle.set_context(image_digest=pinned.digest, image_uri=pinned.uri)
    # 3. Render, diff, register.
    current = rollout.read_current(c["ecs"], settings)
    summary["previous_task_definition"] = current["task_definition"]
    variables = taskdef.template_variables(settings, pinned.uri, c["iam"], c["secretsmanager"],
                                           c["ec2"])
    desired = taskdef.render_task_definition(settings, variables)
    running_td = c["ecs"].describe_task_definition(
        taskDefinition=current["task_definition"])["taskDefinition"]
    diff = taskdef.diff_text(running_td, desired, current["task_definition"].rsplit("/", 1)[-1])
    bundle.write_text("task_definition_diff", diff)
    log.info("task definition diff against the running revision:\n%s", diff)
    if plan:
        summary.update(verdict="success", reason="plan only: nothing changed", diff=diff)
        return
    reg = taskdef.register_task_definition(
        c["ecs"], desired, [current["task_definition"],
                            taskdef.latest_revision(c["ecs"], settings.family)])
    summary["task_definition"] = reg["arn"]
    bundle.set_context(task_definition_arn=reg["arn"])
    # 4. Update the service.
    upd = rollout.update_service(c["ecs"], settings, reg["arn"], started)
    summary["deployment_id"] = upd["deployment_id"]
    bundle.set_context(deployment_id=upd["deployment_id"])
    # 5. Wait for a true verdict.
    verdict = rollout.wait_for_verdict(c["ecs"], settings, upd["deployment_id"], reg["arn"],
                                       pinned.digest, timeout, poll, since=started)
    summary["verdict_detail"] = verdict
    bundle.write_text("service_events", "\n".join(verdict["events"]))
    bundle.write_text("running_image", _running_image_log(verdict))
    if not verdict["ok"]:
        summary["reason"] = verdict["reason"]
        if rollback and current["task_definition"] != reg["arn"]:
            _roll_back(settings, c, bundle, summary, current["task_definition"], timeout, poll)
        raise RuntimeError(verdict["reason"])
    # 6. Probes: the app route, then the CLI route. A service that cannot reach its database
    # did not deploy, whatever ECS says.
    try:
        _probe(settings, c, bundle, summary, reg["arn"])
    except Exception as e:
        summary["reason"] = f"probe failed: {e}"
        if rollback and current["task_definition"] != reg["arn"]:
            _roll_back(settings, c, bundle, summary, current["task_definition"], timeout, poll)
        raise
    summary.update(verdict="success", reason=verdict["reason"])
    # Bookkeeping for the next preflight's endpoint check. The deploy already worked: a bucket
    # outage here must not turn the verdict (and the CLI's exit code) into a failure.
    try:
        record_deploy(c["s3"], settings, image_digest=pinned.digest,
                      task_definition_arn=reg["arn"], deployment_id=upd["deployment_id"])
        summary["state_recorded"] = True
    except Exception as e:  # noqa: BLE001
        summary["state_recorded"] = False
        log.warning("deploy worked, but recording it for the next preflight failed: %s", e)


def _roll_back(settings, c, bundle, summary, previous: str, timeout: float, poll: float) -> None:
    rb = rollout.roll_back(c["ecs"], settings, previous)
    back = rollout.wait_for_verdict(c["ecs"], settings, rb["deployment_id"], previous, None,
                                    timeout, poll, since=time.time())
    summary["rollback"] = {"to": previous, "deployment_id": rb["deployment_id"],
                           "started_by_us": rb["started"], "ok": back["ok"],
                           "reason": back["reason"]}
    bundle.write_json("rollback", summary["rollback"])


def _probe(settings, c, bundle, summary, task_definition: str) -> None:
    token = probes.read_probe_token(c["secretsmanager"], settings)
    base = probes.probe_targets(c["ecs"], settings, task_definition)[0]
    records = []
    try:
        records.append(probes.probe_healthz(base))
        records.append(probes.probe_dbcheck(base, token))
    except probes.ProbeFailed as e:
        records.append(e.record)
        raise
    finally:
        bundle.write_text("papyrus_psql_insert_app", "\n".join(
            f"GET {r['url']} -> {r['status']} in {r['latency_ms']} ms\n  {r['body']}"
            for r in records if r))
    secret = read_db_secret(c["secretsmanager"], settings.db_secret_id)
    cli = insert_cli_row(secret, settings)
    bundle.write_text("papyrus_psql_insert_cli", cli["log"])
    if not cli["ok"]:
        raise RuntimeError(f"CLI insert failed: {cli['error']}")
    summary["probes"] = {"healthz": records[0]["status"], "dbcheck": records[1]["body"],
                         "cli": {k: cli.get(k) for k in ("tag", "sku", "ssl")}}


def _running_image_log(verdict: dict) -> str:
    rows = verdict["running_tasks"] or []
    lines = [f"{r['task']} {r['last_status']} {r['image']} digest={r['image_digest']} "
             f"started={r['started_at']}" for r in rows]
    return "\n".join(lines) or f"(no running task of ours) {verdict['reason']}"
