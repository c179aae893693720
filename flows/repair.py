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
from ground.result import BAD_INPUT, FAILED, SUCCESS, evidence_summary, result, to_state
from ground.retry import BadInput
from ground.run_names import run_name
from ground.settings import EnvName
from tasks.preflight import SERVICES, overall, public
from tasks.repairs import REPAIRS, SPECS, RepairError


@flow(name="repair", flow_run_name=run_name("repair {env} {what} apply={apply}"), log_prints=False)
def repair(env: EnvName = "local", what: str = "secret", apply: bool = False):
    """Plan (and with apply=True, apply) the `what` repair in `env`.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        what: Which drift to repair: "secret" (host/port/username/dbname from RDS; the password
            is kept), "sg" (RDS security group: 5432 only from the task group) or "exec"
            (ECS Exec on).
        apply: Make the changes. Without it, the plan is made and nothing changes.
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
        if not apply:
            verdict = SUCCESS
            reason = (f"plan: {len(plan['actions'])} change(s); nothing changed (re-run with "
                      "--apply)" if plan["actions"] else f"{plan['target']}: nothing to repair")
            if plan["actions"]:
                log.info("plan only: nothing changed (re-run with --apply)")
        else:
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
