"""The monitoring flow, as a checklist:

settings → desired state (monitoring.toml) → read actual → plan → (apply → re-plan) → evidence.

Without `apply` it makes no mutating AWS call (the evidence upload to the evidence bucket aside).
With `apply` it converges each create/update item in order, then reads and plans again: the
verdict is success only if that second plan is all unchanged. A blocked item (a difference that
cannot be applied in place, a missing VPC or load balancer) makes the verdict failed, plan or not.

Returns the summary dict (`verdict` "success"/"failed", `exit_code` 0/1, plan counts, items,
notes, problems, evidence); on failure the flow run ends Failed carrying the same dict as its
data, so `flow(..., return_state=True).result(raise_on_failure=False)` always gives it.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.states import Failed

from artifacts import EvidenceBundle
from artifacts.prefect_artifacts import checks_table
from flows.common import open_run
from ground.monitoring_settings import load_monitoring
from ground.settings import ConfigError
from tasks.monitoring.actual import read_actual
from tasks.monitoring.apply import apply_item
from tasks.monitoring.clients import Clients
from tasks.monitoring.desired import desired_state
from tasks.monitoring.planning import converged, counts, plan
from tasks.monitoring.render import for_evidence, plan_rows, render_plan


@flow(name="monitoring", log_prints=True)
def monitoring(env: str = "local", apply: bool = False):
    """Plan (and with `apply=True` converge) the Papyrus alarms, task-failure rule, target group
    and ALB access-log bucket described in `deployments/<env>/monitoring.toml`."""
    log, started = get_run_logger(), time.time()
    summary: dict = {"env": env, "apply": apply, "verdict": "failed", "exit_code": 1}
    try:  # bad input: one line, no AWS call, nothing changed
        settings = open_run(env)
        cfg = load_monitoring(settings)
    except ConfigError as e:
        summary.update(verdict="bad_input", exit_code=2, error=str(e))
        return Failed(message=str(e), data=summary)
    clients = Clients.for_region(settings.region)
    bundle = EvidenceBundle.open(settings, flow_name="monitoring")
    bundle.set_context(environment=env, apply=apply, config=str(cfg.path))
    try:
        # 1. What is there, what should be there, the difference.
        actual = read_actual(clients, settings, cfg)
        desired = desired_state(settings, cfg, actual["context"])
        items = plan(desired, actual)
        _show(items, "monitoring plan")
        summary.update(plan=counts(items), items=plan_rows(items), notes=desired["notes"],
                       problems=actual["problems"])
        bundle.write_json("monitoring_plan", {"context": actual["context"],
                                              "items": for_evidence(items),
                                              "notes": desired["notes"],
                                              "problems": actual["problems"]})
        ok = not actual["problems"] and not summary["plan"]["blocked"]
        # 2. Apply each item in order, then judge by a fresh plan.
        if apply:
            refs, applied = dict(actual["context"]), []
            for item in items:
                if item["action"] in ("create", "update"):
                    done = apply_item(clients, item, refs, settings.region)
                    refs.update(done["refs"])
                    applied.append(done)
            again = read_actual(clients, settings, cfg)
            after = plan(desired_state(settings, cfg, again["context"]), again)
            _show(after, "monitoring plan after apply")
            ok = ok and converged(after) and not again["problems"]
            summary.update(applied=[{k: a[k] for k in ("resource", "name", "action")}
                                    for a in applied],
                           after=counts(after), items_after=plan_rows(after))
            bundle.write_json("monitoring_apply", {"applied": applied,
                                                   "plan_after": for_evidence(after),
                                                   "problems": again["problems"]})
        for i in items:
            bundle.add_check(f"{i['resource']} {i['name']}", "unchanged", i["action"],
                             "pass" if i["action"] == "unchanged" else
                             "fail" if i["action"] == "blocked" else "warn")
        summary.update(verdict="success" if ok else "failed", exit_code=0 if ok else 1)
    except Exception as e:  # noqa: BLE001 - the verdict and the evidence must still be written
        summary.update(error=f"{type(e).__name__}: {e}")
        log.exception("monitoring failed")
    finally:
        summary["seconds"] = round(time.time() - started, 1)
        result = bundle.finish("pass" if summary["verdict"] == "success" else "fail",
                               s3=clients.s3)
        summary["evidence"] = {"folder": str(result.folder), "s3_uri": result.s3_uri,
                               "uploaded": len(result.uploaded),
                               "upload_pending": result.pending}
    if summary["verdict"] != "success":
        reason = (summary.get("error") or "; ".join(summary.get("problems") or [])
                  or ("monitoring did not converge" if apply else "the plan has blocked items"))
        return Failed(message=reason, data=summary)
    return summary


def _show(items: list[dict], title: str) -> None:
    """The plan on the console and in the run log, and as a Prefect table artifact."""
    text = render_plan(items, title)
    print(text)  # log_prints: the console and the run log
    checks_table(title.replace(" ", "-"), plan_rows(items), f"{title}: {counts(items)}")
