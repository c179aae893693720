"""The deploy flow, as the runbook does it by hand, as a checklist:

pin the image by digest → preflight gate (the URL map of the pinned image's code, where the
environment keeps it) → render, diff, register → update the service → wait for a true verdict →
(roll back) → probe /healthz, the new tasks' own URL map and digest (/runtime), /dbcheck and the
CLI insert → (roll back) → evidence.

The image is resolved first (read-only), so a typo is answered at once; nothing changes before
the gate passes; `plan=True` stops after the diff and records the passed plan (its checksum:
digest, base revision, rendered definitions) in the evidence bucket (tasks/approval.py). Where
the environment requires approval, a UI/API run pauses after the diff (the `deploy-approval`
artifact) and goes on only when approved and nothing moved since; the CLI binds a deploy to a
recorded plan of the same checksum instead (`approval="recorded"`). Evidence is written
whatever happens, and every verdict is a `papyrus.deploy.verdict` event (ground/events.py; the
alerts key on it). The result is `ground.result`'s contract; the run ends Failed whenever the
deploy did not work.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from artifacts import EvidenceBundle
from flows import deploy_traffic as traffic
from flows.common import DeployFailed, Outcome, aws_clients, deploy_lock, open_run
from ground import events
from ground.result import BAD_INPUT, result, to_state
from ground.retry import BadInput
from ground.run_names import run_name
from ground.settings import EnvName
from tasks import approval as approvals
from tasks import blue_green, ecr, probes, rollout, service_code, taskdef
from tasks.approval import ApprovalMode
from tasks.db import read_db_secret
from tasks.insert_check import insert_cli_row
from tasks.preflight import run_checks
from tasks.state import record_deploy


@flow(name="deploy", flow_run_name=run_name("deploy {env} {image}"), log_prints=True)
def deploy(env: EnvName = "local", *, image: str, plan: bool = False,
           timeout_seconds: float | None = None, poll_seconds: float | None = None,
           rollback: bool = True, skip_preflight: bool = False,
           approval: ApprovalMode = "ui"):
    """Deploy `image` (tag, repo:tag, repo@sha256:…, or full ECR URI) to the environment.

    Two requests for the same image are two deploys: the lock makes the second wait until the
    first has its verdict, then it rolls out again (no new task definition revision — the
    rendered one is already registered — but a new ECS deployment, new tasks, its own probes
    and evidence). A *retry* inside one run never starts a second rollout: our deployment is
    recognised by the PRIMARY deployment having changed since we read it under the lock.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        image: The image to deploy: a tag ("latest"), repo:tag, repo@sha256:…, or a full ECR
            URI. It is pinned to its digest before anything else runs; an unknown tag changes
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
        approval: How the change is bound to its plan. "ui": where the environment requires
            approval (prd), pause after the diff until someone approves or rejects it here
            (the run's Resume button); elsewhere go straight on. "recorded": only if an
            earlier `plan` run recorded this very plan. "yes": plan and deploy at once, where
            no approval is required.
    """
    started = time.time()
    try:
        settings = open_run(env)
    except BadInput as e:
        return to_state(result("deploy", env, BAD_INPUT, str(e), started=started))
    c = aws_clients(settings, "ecs", "ecr", "iam", "secretsmanager", "ec2", "rds", "s3", "kms",
                    "elbv2")
    bundle = EvidenceBundle.open(settings, flow_name="deploy")
    bundle.set_context(environment=env, requested_image=image, plan=plan)
    data: dict = {"image": image, "plan": plan}
    # Every verdict from here on (bad input included: the service is known) is an event.
    outcome = Outcome(on_result=lambda res: events.deploy_verdict(settings, res))
    lease: list = []  # the deploy lease's keeper, once taken (its summary goes in data)
    with outcome.evidence_on_interrupt("deploy", env, bundle, c["s3"], started, data, c["kms"],
                                       lambda: rollout.read_current.fn(c["ecs"], settings)):
        try:
            with outcome.judged("deploy"):
                # 1. Pin first (read-only): a typo is answered before the gate, the lock
                # or a change.
                refusal = approvals.yes_refusal(settings, approval, "plan", "deploy")
                if refusal:
                    raise BadInput(refusal)
                pinned = pin(c["ecr"], image, settings)
                data["image_digest"] = pinned.digest
                bundle.set_context(image_digest=pinned.digest, image_uri=pinned.uri)
                if pinned.is_index:  # a multi-arch image: what the digest stands for
                    data["image_index"] = pinned.index_summary()
                    bundle.set_context(image_index=data["image_index"])
                with deploy_lock(settings, c["s3"]) as held:
                    data["lock_acquired_at"] = time.time()
                    lease.append(held)
                    outcome.reason = _deploy(
                        settings, c, bundle, data, pinned, plan, rollback, skip_preflight,
                        timeout_seconds or settings.deploy_timeout_seconds,
                        poll_seconds or settings.deploy_poll_seconds, started, held.check,
                        approval, image)
        finally:
            data.setdefault("lock_acquired_at", None)
            data["lock_released_at"] = time.time()
            data["lease"] = lease[0].summary() if lease else None
    return outcome.finish("deploy", env, bundle, c["s3"], started, data, kms=c["kms"])


def pin(ecr_client, image: str, settings):
    """The image pinned to its digest; anything that does not resolve is bad input."""
    try:
        return ecr.pin_image(ecr_client, image, settings.ecr_repository, settings.region)
    except ValueError as e:
        raise BadInput(str(e)) from None


def _deploy(settings, c, bundle: EvidenceBundle, summary: dict, pinned, plan: bool,
            rollback: bool, skip_preflight: bool, timeout: float, poll: float,
            started: float, guard, approval: str = "ui", image: str = "") -> str:
    """The checklist under the lock; returns the success reason, raises DeployFailed.
    `guard(before=...)` raises once the deploy lease is lost: called before every change."""
    log = get_run_logger()
    # 2. Gate: nothing changes before it passes.
    if not skip_preflight:
        # The URL map of what is about to run: the pinned image's code where the environment
        # keeps it by digest, else the checkout (the evidence says which). The running tasks'
        # own answer, after the rollout, is `flask_url_map_after`.
        source, note = service_code.pre_rollout_source(settings, pinned.digest)
        checks = run_checks(settings, c, bundle=bundle, service_dir=source,
                            url_map_evidence="flask_url_map_before", url_map_note=note)
        failed = [ch for ch in checks if ch["verdict"] == "fail"]
        summary["preflight"] = "pass" if not failed else "fail"
        if failed:
            raise DeployFailed("preflight failed: " + ", ".join(ch["check"] for ch in failed))
    # 3. Render (the env folder is the whole truth), diff, register.
    current, running_td, running_svc, rendered, plan_id = _plan_now(settings, c, pinned)
    summary["previous_task_definition"] = current["task_definition"]
    summary["previous_deployment_id"] = current["deployment_id"]
    summary["plan_checksum"] = plan_id
    desired = rendered["task_definition"]
    summary["kept_from_running"] = rendered["kept"]
    if rendered["kept"]:
        log.warning("kept from the running revision (not in the environment folder): %s",
                    ", ".join(rendered["kept"]))
    diff = taskdef.diff_text(running_td, desired, current["task_definition"].rsplit("/", 1)[-1])
    service_diff = taskdef.service_diff_text(running_svc, rendered["service"], settings.service)
    bundle.write_text("task_definition_diff", diff)
    bundle.write_text("service_definition_diff", service_diff)
    bundle.write_json("service_update", {"sent": rendered["service"],
                                         "kept_from_running": rendered["kept"]})
    log.info("task definition diff against the running revision:\n%s", diff)
    log.info("service settings diff (what UpdateService will send):\n%s", service_diff)
    if plan:
        summary["diff"], summary["service_diff"] = diff, service_diff
        summary["record"] = _record_plan(c["s3"], settings, plan_id, pinned, current, summary)
        return "plan only: nothing changed"
    # 3b. The approval gate: the change goes ahead only as planned (tasks/approval.py).
    if approval == "recorded" and approvals.read_record(c["s3"], settings, "deploy",
                                                        plan_id) is None:
        base = current["task_definition"].rsplit("/", 1)[-1]
        raise BadInput(f"no recorded plan of this deploy (plan sha256 {plan_id[:12]}...: digest "
                       f"{pinned.digest[:19]}..., base {base}): run `papyrus-ops deploy "
                       f"--env {settings.env} --image {image} --plan` "
                       "first" + ("" if settings.approval_required else ", or add --yes"))
    if approvals.pauses(settings, approval):
        def recheck() -> str:
            return _plan_now(settings, c, pin(c["ecr"], image, settings))[-1]

        decision = approvals.decide(settings, "deploy", plan_id, _plan_markdown(
            settings, pinned, current, plan_id, diff, service_diff), "deploy-approval", recheck)
        summary["approval"] = decision
        bundle.write_json("deploy_approval", decision)
        bundle.add_check("approval (Prefect UI)", f"approved, plan {plan_id[:12]} unchanged",
                         decision["reason"], "pass" if decision["approved"] else "fail")
        if not decision["approved"]:
            raise DeployFailed(decision["reason"])
    guard(before="registering the task definition")
    reg = taskdef.register_task_definition(c["ecs"], desired, settings.family,
                                           [current["task_definition"]])
    summary["task_definition"] = reg["arn"]
    bundle.set_context(task_definition_arn=reg["arn"])
    # 4. Update the service.
    guard(before="updating the service")
    upd = rollout.update_service(c["ecs"], settings, reg["arn"], current["deployment_id"],
                                 rendered["service"])
    summary["deployment_id"] = upd["deployment_id"]
    bundle.set_context(deployment_id=upd["deployment_id"])
    # 4b. Blue/green: ECS waits with the test traffic on the new revision. Probe it there, ask
    # where approval is required, then let ECS shift production (or roll back).
    summary["strategy"] = blue_green.strategy(rendered["service"])
    if summary["strategy"] == "BLUE_GREEN":
        if "POST_TEST_TRAFFIC_SHIFT" in blue_green.pause_stages(rendered["service"]):
            traffic.test_traffic_gate(settings, c, bundle, summary, reg["arn"], pinned,
                                      current, timeout, poll, started, guard, approval,
                                      roll_back=_roll_back)
        else:
            get_run_logger().warning(
                "BLUE_GREEN without a PAUSE hook at POST_TEST_TRAFFIC_SHIFT: ECS shifts "
                "production without waiting, so nothing is probed or approved on the test "
                "listener first (docs/runbook.md, \"Blue/green deploys\")")
    # 5. Wait for a true verdict (for blue/green: after the bake time, with blue cleaned up).
    # Behind a target group, "running" is not "in service": the new task's target must be
    # healthy in every target group the service is attached to (tasks.rollout).
    verdict = rollout.wait_for_verdict(c["ecs"], settings, upd["deployment_id"], reg["arn"],
                                       pinned.digest,
                                       timeout + blue_green.bake_seconds(rendered["service"]),
                                       poll, since=started, elbv2=c["elbv2"])
    summary["verdict_detail"] = verdict
    rollout.note_service_deployment(bundle, verdict)
    bundle.write_text("service_events", "\n".join(verdict["events"]))
    if verdict["target_health"]:
        bundle.write_json("target_health", verdict["target_health"])
    bundle.write_text("running_image", rollout.running_image_log(verdict))
    if not verdict["ok"]:
        if verdict["outcome"] == "unknown":
            # We cannot see what runs: a rollback we could not watch either is no safer than
            # the deploy. Say so and leave the decision to the operator (diff, rollback).
            raise DeployFailed(f"{verdict['reason']}; no rollback started: check with "
                               f"`papyrus-ops diff --env {settings.env}`, then `rollback`")
        if rollback and current["task_definition"] != reg["arn"]:
            guard(before=f"the rollback ({verdict['reason']})")
            _roll_back(settings, c, bundle, summary, current["task_definition"], timeout, poll)
        raise DeployFailed(verdict["reason"])
    # 6. Probes: the app route, then the CLI route. A service that cannot reach its database
    # did not deploy, whatever ECS says. (A lost lease means another deploy may be on the
    # service now: what we would probe may not be ours.)
    guard(before="the probes")
    try:
        _probe(settings, c, bundle, summary, reg["arn"], pinned.digest)
    except Exception as e:
        if rollback and current["task_definition"] != reg["arn"]:
            guard(before=f"the rollback (probe failed: {e})")
            _roll_back(settings, c, bundle, summary, current["task_definition"], timeout, poll)
        raise DeployFailed(f"probe failed: {e}") from e
    # Bookkeeping for the next preflight's endpoint check. The deploy already worked: a bucket
    # outage here must not turn the verdict (and the CLI's exit code) into a failure.
    guard(before="recording the deploy")
    try:
        record_deploy(c["s3"], settings, rds=c["rds"], image_digest=pinned.digest,
                      task_definition_arn=reg["arn"], deployment_id=upd["deployment_id"],
                      previous_task_definition_arn=current["task_definition"])
        summary["state_recorded"] = True
    except Exception as e:  # noqa: BLE001
        summary["state_recorded"] = False
        log.warning("deploy worked, but recording it for the next preflight failed: %s", e)
    return verdict["reason"]


def _plan_now(settings, c, pinned):
    """What runs now and what this deploy would send, and the plan's checksum: the pinned
    digest, the revision it is diffed against and the rendered definitions."""
    current = rollout.read_current(c["ecs"], settings)
    running_td = c["ecs"].describe_task_definition(
        taskDefinition=current["task_definition"])["taskDefinition"]
    running_svc = rollout.describe_service(c["ecs"], settings)
    rendered = taskdef.keep_unowned(running_td, running_svc, taskdef.render_definitions(
        settings, pinned.uri, c["iam"], c["secretsmanager"], c["ec2"], c["elbv2"]),
        settings.container)
    plan_id = approvals.checksum_of({"image_digest": pinned.digest,
                                     "base": current["task_definition"],
                                     "task_definition": rendered["task_definition"],
                                     "service": rendered["service"]})
    return current, running_td, running_svc, rendered, plan_id


def _record_plan(s3, settings, plan_id: str, pinned, current, summary) -> dict | None:
    """A passed plan's record (once per plan checksum); None, with a warning, if not written."""
    try:
        return approvals.record_passed(s3, settings, "deploy", plan_id, _flow_run_id(), {
            "outcome": "passed", "image_digest": pinned.digest, "image_uri": pinned.uri,
            "base": current["task_definition"], "preflight": summary.get("preflight")})
    except Exception as e:  # noqa: BLE001 - the plan's own verdict stands
        get_run_logger().warning("plan passed but not recorded (%s: %s): a deploy bound to it "
                                 "will not find it", type(e).__name__, e)
        return None


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _plan_markdown(settings, pinned, current, plan_id: str, diff: str, service_diff: str) -> str:
    return (f"# deploy {settings.env}: plan passed, waiting for approval\n\n"
            f"- **image**: `{pinned.uri}`\n- **pinned digest**: `{pinned.digest}`\n"
            f"- **running now**: `{current['task_definition']}`\n"
            f"- **plan sha256**: `{plan_id}`\n\n"
            "Approve (Resume → tick *approve*, give a reason) to register and roll out exactly "
            "this; leave it unticked to reject: nothing changes. If the digest, the running "
            "revision or the rendered definitions change before the answer, the deploy "
            "refuses.\n\n"
            f"## Task definition diff\n\n```diff\n{diff}\n```\n\n"
            f"## Service settings diff\n\n```diff\n{service_diff}\n```\n")


def _roll_back(settings, c, bundle, summary, previous: str, timeout: float, poll: float) -> None:
    """Back to `previous`, judged like a deploy. Never raises: the deploy's own failure is the
    verdict's reason; how the rollback went is recorded beside it (data.rollback, evidence)."""
    try:
        since = time.time()
        rb = rollout.roll_back(c["ecs"], settings, previous)
        if rb["started"] and not rb.get("native") and rb["strategy"] == "BLUE_GREEN":
            # A blue/green service pauses this deployment too: back to a known-good
            # revision, nobody is asked.
            blue_green.continue_unattended(c["ecs"], settings, previous, since, timeout, poll)
        back = rollout.wait_for_verdict(c["ecs"], settings, rb["deployment_id"], previous, None,
                                        timeout + rb["bake_seconds"], poll, since=since,
                                        elbv2=c["elbv2"])
        summary["rollback"] = {"to": previous, "deployment_id": rb["deployment_id"],
                               "started_by_us": rb["started"], "ok": back["ok"],
                               "reason": back["reason"],
                               "stopped_service_deployment": rb.get("service_deployment")}
    except Exception as e:  # noqa: BLE001 - reported, not raised (see above)
        get_run_logger().exception("rollback to %s failed", previous)
        summary["rollback"] = {"to": previous, "ok": False,
                               "reason": f"rollback failed: {type(e).__name__}: {e}"}
    bundle.write_json("rollback", summary["rollback"])


def _probe(settings, c, bundle, summary, task_definition: str, digest: str) -> None:
    token = probes.read_probe_token(c["secretsmanager"], settings)
    targets = probes.task_targets(c["ecs"], settings, task_definition)
    base = targets[0]["url"]
    records = []
    try:
        records.append(probes.probe_healthz(base))
        # What runs, in the new tasks' own words, before anything is written through them.
        _running_url_map(bundle, summary, targets, token, digest)
        records.append(probes.probe_dbcheck(base, token))
    except probes.ProbeFailed as e:
        records.append(e.record)
        raise
    finally:
        bundle.write_text("papyrus_psql_insert_app", probes.records_log(records))
    secret = read_db_secret(c["secretsmanager"], settings.db_secret_id)
    cli = insert_cli_row(secret, settings)
    bundle.write_text("papyrus_psql_insert_cli", cli["log"])
    if not cli["ok"]:
        raise RuntimeError(f"CLI insert failed: {cli['error']}")
    summary["probes"] = {"healthz": records[0]["status"], "dbcheck": records[1]["body"],
                         "cli": {k: cli.get(k) for k in ("tag", "sku", "ssl")}}


def _running_url_map(bundle, summary, targets: list[dict], token: str, digest: str) -> None:
    """Each new task's /runtime, judged against the pinned digest and the required routes;
    `flask_url_map_after` names the tasks and digests. A failure fails the probes."""
    reports = [probes.probe_runtime(t["url"], token) | {"ecs_task_arn": t["task_arn"]}
               for t in targets]
    check = service_code.judge_running_url_map(reports, digest)
    bundle.write_text("flask_url_map_after", check["evidence"]["flask_url_map_after"])
    # The running-image record so far is ECS's view (DescribeTasks); add each task's own.
    bundle.append_text("running_image", "\n# each task's own word (GET /runtime: the ECS task "
                       "metadata endpoint v4):\n" + "".join(
                           f"{t.get('task_arn')} digest={t.get('image_digest')}\n"
                           for t in check["actual"]))
    bundle.add_check(check["check"], check["expected"], check["actual"], check["verdict"])
    summary["url_map_after"] = {"verdict": check["verdict"], "detail": check["detail"],
                                "tasks": check["actual"]}
    if check["verdict"] != "pass":
        raise RuntimeError(f"running URL map: {check['detail']}")
