"""repair: fix one drift preflight reports — plan first, change things only with apply=True.

    repair(env="prd", what="sg")               # plan: reads only, shows what would change
    repair(env="prd", what="sg", apply=True)   # apply, then re-run the matching check

what: ``secret`` (host/port/username/dbname from the RDS truth; the password is kept),
``sg`` (RDS SG: 5432 only from the task SG, no CIDR, no duplicates), ``exec`` (ECS Exec on,
no forced deployment). Evidence: ``<stem>_before``, the plan, ``<stem>_after`` (after an apply)
— e.g. ``rds_sg_inbound_before.json`` / ``rds_sg_inbound_after.json`` — all redacted.

The result is `ground.result`'s contract, with `data`:

    {"what", "mode": "plan" | "apply", "noop": bool, "target", "actions": [...],
     "applied": [...], "checks": [check, ...] (after apply), "note"}

and the run ends Failed when the plan could not be made or the repair did not work.

Approval (tasks/approval.py): a plan with changes is recorded once by its checksum (the target
and the planned actions); where the environment requires approval, an apply started from the
UI/API pauses after its plan (the `repair-approval` artifact) and changes things only when
approved and the plan is still the same; ``approval="recorded"`` (the CLI's ``--apply``) needs
a recorded plan of the same checksum, ``"yes"`` (``--apply --yes``) plans and applies at once
where no approval is required.

Plan mode's verdict is "success" when the plan could be made (``noop`` tells whether anything
would change); apply's is "success" when the matching preflight check passes afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from artifacts.bundle import EvidenceBundle
from artifacts.prefect_artifacts import checks_table
from flows.common import aws_clients, open_run
from ground.redact import REDACTOR
from ground.result import BAD_INPUT, FAILED, SUCCESS, evidence_summary, result, to_state
from ground.retry import BadInput
from ground.run_names import run_name
from ground.settings import EnvName
from tasks import approval as approvals
from tasks.approval import ApprovalMode
from tasks.preflight import SERVICES, overall, public
from tasks.repairs import REPAIRS, SPECS, RepairError


@flow(name="repair", flow_run_name=run_name("repair {env} {what} apply={apply}"), log_prints=False)
def repair(env: EnvName = "local", what: str = "secret", apply: bool = False,
           approval: ApprovalMode = "ui"):
    """Plan (and with apply=True, apply) the `what` repair in `env`.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        what: Which drift to repair: "secret" (host/port/username/dbname from RDS; the password
            is kept), "sg" (RDS security group: 5432 only from the task group) or "exec"
            (ECS Exec on).
        apply: Make the changes. Without it, the plan is made and nothing changes.
        approval: How the changes are bound to their plan. "ui": where the environment
            requires approval (prd), pause after the plan until someone approves or rejects it
            here (the run's Resume button); elsewhere go straight on. "recorded": only if an
            earlier plan run recorded this very plan. "yes": plan and apply at once, where no
            approval is required.
    """
    started = time.time()
    log = get_run_logger()
    mode = "apply" if apply else "plan"
    data: dict[str, Any] = {"what": what, "mode": mode, "noop": None, "actions": [],
                            "applied": [], "checks": []}
    if what not in REPAIRS:
        return to_state(result("repair", env, BAD_INPUT, f"unknown repair {what!r}: expected "
                               f"one of {', '.join(REPAIRS)}", started=started, data=data))
    try:
        settings = open_run(env)
    except BadInput as e:
        return to_state(result("repair", env, BAD_INPUT, str(e), started=started, data=data))
    refusal = approvals.yes_refusal(settings, approval, "plan", "apply") if apply else None
    if refusal:
        return to_state(result("repair", env, BAD_INPUT, refusal, started=started, data=data))
    spec = SPECS[what]
    clients = aws_clients(settings, *SERVICES, "kms")  # kms: the manifest signature
    args = [clients[name] for name in spec["clients"]]
    stem = spec["evidence"]
    bundle = EvidenceBundle.open(settings, flow_name="repair")
    bundle.set_context(environment=env, repair=what, mode=mode)
    verdict, reason, error = FAILED, "", None
    try:
        plan = spec["plan"](*args, settings)
        data.update(noop=plan["noop"], actions=plan["actions"], target=plan["target"])
        if plan.get("note"):
            data["note"] = plan["note"]
        bundle.write_json(f"{stem}_before", plan["before"])
        bundle.write_json(f"{what}_repair_plan", {k: v for k, v in plan.items() if k != "before"})
        for a in plan["actions"]:
            log.info("%s %s", "apply:" if apply else "plan:", a["summary"])
        if not plan["actions"]:
            log.info("%s: nothing to repair", plan["target"])
        plan_id = _plan_checksum(what, plan)
        data["plan_checksum"] = plan_id
        if not apply:
            if plan["actions"]:
                data["record"] = _record_plan(clients["s3"], settings, what, plan_id, plan)
            verdict = SUCCESS
            reason = (f"plan: {len(plan['actions'])} change(s); nothing changed (re-run with "
                      "--apply)" if plan["actions"] else f"{plan['target']}: nothing to repair")
            if plan["actions"]:
                log.info("plan only: nothing changed (re-run with --apply)")
        else:
            if plan["actions"]:  # a no-op apply changes nothing: no gate
                _gate(settings, clients["s3"], bundle, data, what, plan_id, plan, approval,
                      lambda: _plan_checksum(what, spec["plan"](*args, settings)))
            done = spec["apply"](*args, settings, plan)
            data["applied"] = done["applied"]
            bundle.write_json(f"{stem}_after", done["after"])
            # The proof: the matching preflight check(s), run again now.
            found = spec["check"](*args, settings)
            checks = found if isinstance(found, list) else [found]
            data["checks"] = [public(c) for c in checks]
            for c in checks:
                bundle.add_check(c["check"], c["expected"], c["actual"], c["verdict"])
            checks_table("repair-checks", data["checks"], f"repair {what} {env}: after")
            verdict = overall(checks)
            bad = [c["check"] for c in checks if c["verdict"] == "fail"]
            reason = (f"applied {len(done['applied'])} change(s); "
                      + (f"still failing: {', '.join(bad)}" if bad else "the check passes"))
    except BadInput as e:
        verdict, reason = BAD_INPUT, str(e)
        log.error("bad input, nothing changed: %s", e)
    except RepairError as e:
        reason = str(e)
        log.error("%s", e)
    except Exception as e:  # noqa: BLE001 - the verdict and the evidence must still be written
        error = f"{type(e).__name__}: {e}"
        reason = f"repair {what} failed: {error}"
        log.error("%s", reason)
    res = result("repair", env, verdict, reason, error=error, started=started, data=data)
    bundle.write_json(f"{what}_repair_result", res)
    done_bundle = bundle.finish("pass" if verdict == SUCCESS else "fail", s3=clients["s3"],
                                kms=clients["kms"])
    res["evidence"] = evidence_summary(done_bundle)
    return to_state(res)


def _kind(what: str) -> str:
    return f"repair_{what}"


def _plan_checksum(what: str, plan: dict[str, Any]) -> str:
    """The planned changes, as the checksum an approval and a record are bound to (redacted:
    a secret's fields never feed it)."""
    return approvals.checksum_of(REDACTOR.redact_obj(
        {"what": what, "target": plan["target"], "actions": plan["actions"]}))


def _record_plan(s3, settings, what: str, plan_id: str, plan: dict[str, Any]) -> dict | None:
    try:
        return approvals.record_passed(s3, settings, _kind(what), plan_id, _flow_run_id(), {
            "outcome": "passed", "target": plan["target"],
            "actions": [a["summary"] for a in plan["actions"]]})
    except Exception as e:  # noqa: BLE001 - the plan's own verdict stands
        get_run_logger().warning("plan made but not recorded (%s): an --apply will not find it",
                                 REDACTOR.redact(f"{type(e).__name__}: {e}"))
        return None


def _gate(settings, s3, bundle, data: dict, what: str, plan_id: str, plan: dict, approval: str,
          recheck) -> None:
    """Raise BadInput (no recorded plan) or RepairError (rejected, moved, no answer) unless
    these changes may be made now."""
    if approval == "recorded" and approvals.read_record(s3, settings, _kind(what),
                                                        plan_id) is None:
        raise BadInput(f"no recorded plan of this repair (plan sha256 {plan_id[:12]}...): run "
                       f"`papyrus-ops repair {what} --env {settings.env}` (the plan) first"
                       + ("" if settings.approval_required else ", or add --yes"))
    if not approvals.pauses(settings, approval):
        return
    md = (f"# repair {what} {settings.env}: plan made, waiting for approval\n\n"
          f"- **target**: `{plan['target']}`\n- **plan sha256**: `{plan_id}`\n\n"
          "Approve (Resume → tick *approve*, give a reason) to make exactly these changes; "
          "leave it unticked to reject: nothing changes. If the drift changes before the "
          "answer, the repair refuses.\n\n## Planned changes\n\n"
          + "".join(f"- {a['summary']}\n" for a in plan["actions"]))
    decision = approvals.decide(settings, f"repair {what}", plan_id, md, "repair-approval",
                                recheck)
    data["approval"] = decision
    bundle.write_json(f"{what}_repair_approval", decision)
    bundle.add_check("approval (Prefect UI)", f"approved, plan {plan_id[:12]} unchanged",
                     decision["reason"], "pass" if decision["approved"] else "fail")
    if not decision["approved"]:
        raise RepairError(decision["reason"])


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None
