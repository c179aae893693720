"""The blue/green pause of a deploy (docs/runbook.md, "Blue/green deploys"): ECS holds the new
revision behind the ALB's test listener while production still reaches the old one. Here the
deploy probes it there, asks a person where the environment requires approval, and tells ECS to
go on (ContinueServiceDeployment CONTINUE) or back (ROLLBACK: production never served it).
"""

from __future__ import annotations

import re

from flows.common import DeployFailed
from tasks import approval as approvals
from tasks import blue_green, probes, rollout, service_code
from tasks.lease import LeaseLost


def test_traffic_gate(settings, c, bundle, summary, task_definition: str, pinned, current,
                      timeout: float, poll: float, started: float, guard, approval: str,
                      roll_back) -> None:
    """The blue/green pause: the new revision behind the test listener, production still on
    the old one. Probes through the test listener; a failure rolls back without asking. Then,
    where approval is required and a person can answer (a UI/API run), the run pauses with
    that evidence; approved, ECS shifts production; rejected, it rolls back. Raises
    DeployFailed after a rollback; returns once ECS was told to continue (or the deployment
    ended without pausing: the verdict then says how). `roll_back(settings, c, bundle, summary,
    previous, timeout, poll)` is the deploy's own rollback, for a pause ECS no longer holds."""
    paused = blue_green.wait_for_test_traffic(c["ecs"], settings, task_definition, started,
                                              timeout, poll)
    summary["test_traffic"] = paused
    bundle.write_json("test_traffic", paused)
    if not paused["paused"]:
        return
    previous = current["task_definition"]
    try:
        guard(before="the probes through the test listener")
        url = blue_green.listener_url(c["elbv2"], settings, "test")
        _probe_test_listener(settings, c, bundle, summary, url, pinned.digest)
    except LeaseLost:
        raise
    except Exception as e:  # noqa: BLE001 - any probe failure is the verdict
        why = f"probe through the test listener failed: {e}"
        _undo_at_hook(settings, c, bundle, summary, paused, previous, task_definition, why,
                      timeout, poll, started, guard, roll_back)
        raise DeployFailed(f"{why}; rolled back without asking (production never served "
                           "it)") from e
    if approvals.pauses(settings, approval):
        decision = _ask_for_traffic(settings, c, summary, paused, pinned)
        summary["traffic_approval"] = decision
        bundle.write_json("traffic_approval", decision)
        bundle.add_check("approval of production traffic (Prefect UI)",
                         "approved while the test listener serves the new revision",
                         decision["reason"], "pass" if decision["approved"] else "fail")
        if not decision["approved"]:
            _undo_at_hook(settings, c, bundle, summary, paused, previous, task_definition,
                          decision["reason"], timeout, poll, started, guard, roll_back)
            raise DeployFailed(decision["reason"])
    guard(before="shifting production traffic")
    summary["continue"] = blue_green.continue_deployment(c["ecs"], paused["arn"],
                                                         paused["hook_id"], "CONTINUE")


def _ask_for_traffic(settings, c, summary, paused: dict, pinned) -> dict:
    """Pause for the operator's answer; approved only if the deployment still waits at the
    same hook when the answer comes (ECS may have timed it out meanwhile)."""
    def state_now() -> str:
        return approvals.checksum_of({"arn": paused["arn"], "hook": paused["hook_id"],
                                      "status": blue_green.hook_state(
                                          c["ecs"], paused["arn"], paused["hook_id"])})

    shown = approvals.checksum_of({"arn": paused["arn"], "hook": paused["hook_id"],
                                   "status": blue_green.PAUSED})
    probed = summary.get("test_listener") or {}
    markdown = (f"# deploy {settings.env}: the new revision is on the test listener\n\n"
                f"- **test listener**: `{probed.get('url')}` (production still on the old "
                f"revision)\n- **pinned digest**: `{pinned.digest}`\n"
                f"- **/healthz**: {probed.get('healthz')}\n- **/dbcheck**: {probed.get('dbcheck')}"
                f"\n- **running URL map**: {probed.get('url_map')}"
                f" — {probed.get('url_map_detail')}\n"
                f"- **service deployment**: `{paused['arn']}`, paused at {paused['stage']} "
                f"(hook `{paused['hook_id']}`, ECS acts on its own at {paused['expires_at']}: "
                f"{paused.get('timeout_action') or 'its timeout action'})\n\n"
                "Approve (Resume → tick *approve*, give a reason) to shift production traffic "
                "to it; leave it unticked to roll back: production never serves it.\n")
    return approvals.decide(
        settings, "production traffic", shown, markdown, "deploy-traffic-approval", state_now,
        key=_pause_key(paused["hook_id"]),
        nothing="rolled back, production never served it",
        moved_text=lambda _now: "the deployment no longer waits at its hook (ECS acted on its "
                                "timeout, or someone else answered)",
        title=f"deploy {settings.env}: test traffic on {pinned.digest[:19]}..., waiting for "
              "approval")


def _pause_key(hook_id: str) -> str:
    """Prefect's pause keys take lowercase letters, digits and dashes; AWS's hook ids are
    mixed-case tokens with underscores (`ecs-pause-e7tK9G_WRJ...`)."""
    return "deploy-traffic-" + re.sub(r"[^a-z0-9-]+", "-", hook_id.lower())[-40:]


def _undo_at_hook(settings, c, bundle, summary, paused: dict, previous: str,
                  task_definition: str, why: str, timeout: float, poll: float, started: float,
                  guard, roll_back) -> None:
    """Roll back a paused blue/green deployment: ContinueServiceDeployment ROLLBACK while it
    still waits at its hook (both listeners back on the old revision), else as any deploy."""
    guard(before=f"the rollback ({why})")
    sent = blue_green.continue_deployment(c["ecs"], paused["arn"], paused["hook_id"], "ROLLBACK")
    if not sent["sent"]:  # no longer paused: ECS went on (or back) without us
        roll_back(settings, c, bundle, summary, previous, timeout, poll)
        return
    back = rollout.wait_for_verdict(c["ecs"], settings, summary["deployment_id"],
                                    task_definition, None, timeout, poll, since=started,
                                    elbv2=c["elbv2"])
    sd = back.get("service_deployment") or {}
    summary["rollback"] = {"to": previous, "via": "ContinueServiceDeployment ROLLBACK",
                           "service_deployment": paused["arn"], "status": sd.get("status"),
                           "ok": sd.get("status") == "ROLLBACK_SUCCESSFUL",
                           "reason": back["reason"]}
    bundle.write_json("rollback", summary["rollback"])


def _probe_test_listener(settings, c, bundle, summary, url: str, digest: str) -> None:
    """/healthz, /runtime (the pinned digest and the required routes, in the answering task's
    own words) and /dbcheck through the test listener: what production would get."""
    token = probes.read_probe_token(c["secretsmanager"], settings)
    records: list = []
    check: dict = {}
    try:
        records.append(probes.probe_healthz(url))
        check = service_code.judge_running_url_map([probes.probe_runtime(url, token)], digest)
        bundle.write_text("flask_url_map_test_listener",
                          check["evidence"]["flask_url_map_after"])
        bundle.add_check(f"{check['check']} (test listener)", check["expected"], check["actual"],
                         check["verdict"])
        if check["verdict"] != "pass":
            raise RuntimeError(f"running URL map: {check['detail']}")
        records.append(probes.probe_dbcheck(url, token))
    except probes.ProbeFailed as e:
        records.append(e.record)
        raise
    finally:
        bundle.write_text("test_listener_probes", probes.records_log(records))
        summary["test_listener"] = {
            "url": url, "healthz": records[0]["status"] if records else None,
            "dbcheck": records[1]["body"] if len(records) > 1 else None,
            "url_map": check.get("verdict"), "url_map_detail": check.get("detail"),
            "tasks": check.get("actual")}
