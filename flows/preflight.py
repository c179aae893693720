"""preflight: the drift gate on its own, as a checklist (the deploy flow's step 2).

secret vs RDS (host/port/username/dbname, password present, optionally authenticates) →
RDS endpoint unchanged since the last recorded deploy → rds.force_ssl=1 → RDS SG 5432 only
from the ECS task SG → ECS Exec on → service code registers /, /healthz, /dbcheck →
PGSSLMODE=require in the running task definition; and the RDS change report
(`<ts>_rds_change_report.md` + `.json`: parameters off their defaults, pending reboot, reboots
and parameter changes, what changed since the last deploy — tasks/rds_report.py).

Every check runs even when one fails; nothing is changed. The result is `ground.result`'s
contract, with `data`:

    {"checks": [check, ...], "failed": [check names],
     "connection_diff": [{field, stored, rds, match}, ...]}   # the secret vs RDS, masked

and the run ends Failed (reason: the failed checks) when any check fails. `data` also has
`rds_change_report`: a summary of the report (information, not a gate: an error reading it is
recorded in the bundle and here, the verdict stays the checks').

The deploy flow uses the same checks through `tasks.preflight.run_checks`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from artifacts.bundle import EvidenceBundle
from artifacts.prefect_artifacts import checks_table
from flows.common import aws_clients, open_run
from ground.result import BAD_INPUT, evidence_summary, result, to_state
from ground.retry import BadInput, naming_denied
from ground.run_names import run_name
from ground.settings import EnvName
from tasks.preflight import (
    SERVICE_DIR,
    SERVICES,
    failed,
    overall,
    public,
    run_checks,
    write_rds_change_report,
)


def connection_diff_rows(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for ch in checks:
        diff = (ch.get("evidence") or {}).get("db_connection_vs_rds")
        if diff:
            return diff.get("rows", [])
    return []


@flow(name="preflight", flow_run_name=run_name("preflight {env}"), log_prints=False)
def preflight(env: EnvName = "local", service_dir: str | None = None, check_db_auth: bool = True):
    """Check for drift before a deploy; change nothing. Verdict "success" when all pass.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        service_dir: Service source whose URL map is checked (default: this checkout's
            service/).
        check_db_auth: Also log in with the secret's password (proves it authenticates).
    """
    started = time.time()
    log = get_run_logger()
    try:
        settings = open_run(env)
    except BadInput as e:
        log.error("bad input, nothing checked: %s", e)
        return to_state(result("preflight", env, BAD_INPUT, str(e), started=started))
    source = Path(service_dir) if service_dir else SERVICE_DIR
    clients = aws_clients(settings, *SERVICES, "kms")  # kms: the manifest signature
    bundle = EvidenceBundle.open(settings, flow_name="preflight")
    bundle.set_context(environment=env, service_source=str(source),
                       db_secret_id=settings.db_secret_id, rds_instance=settings.rds_instance,
                       check_db_auth=check_db_auth)
    checks = run_checks(settings, clients, bundle=bundle, service_dir=source,
                        check_db_auth=check_db_auth)
    report = write_rds_change_report(clients["rds"], clients["s3"], settings, bundle)
    verdict = overall(checks)
    rows = [public(c) for c in checks]
    checks_table("preflight-checks", rows, f"preflight {env}: {verdict}")
    res = bundle.finish("pass" if verdict == "success" else "fail", s3=clients["s3"],
                        kms=clients["kms"])
    bad = failed(checks)
    if bad:
        reason = naming_denied(f"{len(bad)} check(s) failed: {', '.join(bad)}",
                               *(c.get("detail") for c in checks))
        log.error("preflight %s: %s", env, reason)
    else:
        reason = f"all {len(checks)} checks passed"
        log.info("preflight %s: %s", env, reason)
    return to_state(result("preflight", env, verdict, reason, started=started,
                           evidence=evidence_summary(res),
                           data={"checks": rows, "failed": bad,
                                 "connection_diff": connection_diff_rows(checks),
                                 "rds_change_report": report}))
