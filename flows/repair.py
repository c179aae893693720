"""repair: fix one drift preflight reports — plan first, change things only with apply=True.

    repair(env="prd", what="sg")               # plan: reads only, shows what would change
    repair(env="prd", what="sg", apply=True)   # apply, then re-run the matching check

what: ``secret`` (host/port/username/dbname from the RDS truth; the password is kept),
``sg`` (RDS SG: 5432 only from the task SG, no CIDR, no duplicates), ``exec`` (ECS Exec on,
no forced deployment). Evidence: ``<stem>_before``, the plan, ``<stem>_after`` (after an apply)
— e.g. ``rds_sg_inbound_before.json`` / ``rds_sg_inbound_after.json`` — all redacted.

Returns:

    {"verdict": "success" | "failed" | "bad_input", "env", "what", "mode": "plan" | "apply",
     "noop": bool, "actions": [...], "applied": [...], "checks": [check, ...] (after apply),
     "error": "..." (on failure), "evidence": {"folder", "s3_uri", "manifest", "upload_pending"}}

Plan mode's verdict is "success" when the plan could be made (``noop`` tells whether anything
would change); apply's is "success" when the matching preflight check passes afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from artifacts.bundle import EvidenceBundle
from artifacts.prefect_artifacts import checks_table
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR
from ground.settings import ConfigError, load_env
from tasks.preflight import aws_clients, overall, public
from tasks.repairs import REPAIRS, SPECS, RepairError


def _bad(env: str, what: str, error: str) -> dict[str, Any]:
    return {"verdict": "bad_input", "env": env, "what": what, "error": error, "actions": [],
            "applied": [], "checks": []}


@flow(name="repair", log_prints=False)
def repair(env: str = "local", what: str = "secret", apply: bool = False) -> dict[str, Any]:
    """Plan (and with apply=True, apply) the `what` repair in `env`."""
    install_log_redaction()
    started = time.time()
    log = get_run_logger()
    if what not in REPAIRS:
        return _bad(env, what, f"unknown repair {what!r}: expected one of {', '.join(REPAIRS)}")
    try:
        settings = load_env(env)
    except ConfigError as e:
        return _bad(env, what, str(e))
    spec = SPECS[what]
    clients = aws_clients(settings)
    args = [clients[name] for name in spec["clients"]]
    stem = spec["evidence"]
    bundle = EvidenceBundle.open(settings, flow_name="repair")
    bundle.set_context(environment=env, repair=what, mode="apply" if apply else "plan")
    out: dict[str, Any] = {"verdict": "failed", "env": env, "what": what,
                           "mode": "apply" if apply else "plan", "noop": None, "actions": [],
                           "applied": [], "checks": []}
    try:
        plan = spec["plan"](*args, settings)
        out.update(noop=plan["noop"], actions=plan["actions"], target=plan["target"])
        if plan.get("note"):
            out["note"] = plan["note"]
        bundle.write_json(f"{stem}_before", plan["before"])
        bundle.write_json(f"{what}_repair_plan", {k: v for k, v in plan.items() if k != "before"})
        for a in plan["actions"]:
            log.info("%s %s", "apply:" if apply else "plan:", a["summary"])
        if not plan["actions"]:
            log.info("%s: nothing to repair", plan["target"])
        if not apply:
            out["verdict"] = "success"
            if plan["actions"]:
                log.info("plan only: nothing changed (re-run with --apply)")
        else:
            done = spec["apply"](*args, settings, plan)
            out["applied"] = done["applied"]
            bundle.write_json(f"{stem}_after", done["after"])
            # The proof: the matching preflight check(s), run again now.
            found = spec["check"](*args, settings)
            checks = found if isinstance(found, list) else [found]
            out["checks"] = [public(c) for c in checks]
            for c in checks:
                bundle.add_check(c["check"], c["expected"], c["actual"], c["verdict"])
            checks_table("repair-checks", out["checks"], f"repair {what} {env}: after")
            out["verdict"] = overall(checks)
    except RepairError as e:
        out["error"] = str(e)
        log.error("%s", e)
    except Exception as e:  # noqa: BLE001 - the verdict and the evidence must still be written
        out["error"] = f"{type(e).__name__}: {e}"
        log.error("repair %s failed: %s", what, out["error"])
    finally:
        bundle.write_json(f"{what}_repair_result", {k: v for k, v in out.items()})
        res = bundle.finish("pass" if out["verdict"] == "success" else "fail", s3=clients["s3"])
        out["evidence"] = {"folder": str(res.folder), "s3_uri": res.s3_uri,
                           "manifest": str(res.manifest), "upload_pending": res.pending}
        out["seconds"] = round(time.time() - started, 2)
    return REDACTOR.redact_obj(out)
