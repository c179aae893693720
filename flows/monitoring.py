"""The monitoring flow, as a checklist:

settings → desired state (monitoring.toml) → read actual → plan → (apply → re-plan) → evidence.

Without `apply` it makes no mutating AWS call (the evidence upload to the evidence bucket aside).
With `apply` it converges each create/update item in order, then reads and plans again: the
verdict is success only if that second plan is all unchanged. A blocked item (a difference that
cannot be applied in place, a missing VPC or load balancer) makes the verdict failed, plan or not.

Returns `ground.result`'s contract (verdict success/failed/bad_input; `data`: apply, plan, items,
notes, problems, uploaded and, with `apply`, applied, after, items_after); on anything but
success the flow run ends Failed carrying the same dict as its data, so
`papyrus_ops.runner.run_flow(monitoring, ...)` always gives it.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from artifacts import EvidenceBundle
from artifacts.prefect_artifacts import checks_table
from flows.common import open_run
from ground import aws
from ground.monitoring_settings import load_monitoring
from ground.result import BAD_INPUT, FAILED, SUCCESS, evidence_summary, result, to_state
from ground.retry import BadInput
from ground.run_names import run_name
from ground.settings import ConfigError, EnvName
from tasks.monitoring.actual import read_actual
from tasks.monitoring.apply import apply_item
from tasks.monitoring.clients import Clients
from tasks.monitoring.desired import desired_state
from tasks.monitoring.planning import converged, counts, plan
from tasks.monitoring.render import for_evidence, plan_rows, render_plan


@flow(name="monitoring", flow_run_name=run_name("monitoring {env} apply={apply}"), log_prints=True)
def monitoring(env: EnvName = "local", apply: bool = False):
    """Plan (and with `apply=True` converge) the Papyrus alarms, task-failure rule, target group
    and ALB access-log bucket described in `deployments/<env>/monitoring.toml`.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        apply: Converge what the plan shows (create or update; resources Terraform made are
            adopted, their tags kept). False: the plan only, nothing changes.
    """
    log, started = get_run_logger(), time.time()
    summary: dict = {"apply": apply}  # the result's `data`
    try:  # bad input: one line, no AWS call, nothing changed
        settings = open_run(env)
        cfg = load_monitoring(settings)
    except (ConfigError, BadInput) as e:  # open_run answers BadInput
        return to_state(result("monitoring", env, BAD_INPUT, str(e), error=str(e),
                               started=started, data=summary))
    ok, error = False, None
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
    except Exception as e:  # noqa: BLE001 - the verdict and the evidence must still be written
        ok, error = False, f"{type(e).__name__}: {e}"
        log.exception("monitoring failed")
    finally:
        written = bundle.finish("pass" if ok else "fail", s3=clients.s3,
                                kms=aws.client("kms", settings.region))
        summary["uploaded"] = len(written.uploaded)
    if ok:
        reason = (f"converged: {_counts_line(summary['after'])}" if apply
                  else f"plan: {_counts_line(summary['plan'])}")
    else:
        reason = (error or "; ".join(summary.get("problems") or [])
                  or ("monitoring did not converge" if apply else "the plan has blocked items"))
    return to_state(result("monitoring", env, SUCCESS if ok else FAILED, reason, error=error,
                           evidence=evidence_summary(written), started=started, data=summary))


def _counts_line(c: dict) -> str:
    return ", ".join(f"{n} {action}" for action, n in c.items())


def _show(items: list[dict], title: str) -> None:
    """The plan on the console and in the run log, and as a Prefect table artifact."""
    text = render_plan(items, title)
    print(text)  # log_prints: the console and the run log
    checks_table(title.replace(" ", "-"), plan_rows(items), f"{title}: {counts(items)}")
