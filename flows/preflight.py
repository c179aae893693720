"""preflight: the drift gate on its own, as a checklist (DESIGN.md "deploy flow" step 1).

secret vs RDS (host/port/username/dbname, password present, optionally authenticates) →
RDS endpoint unchanged since the last recorded deploy → rds.force_ssl=1 → RDS SG 5432 only
from the ECS task SG → ECS Exec on → service code registers /, /healthz, /dbcheck →
PGSSLMODE=require in the running task definition.

Every check runs even when one fails; nothing is changed. The flow returns a dict:

    {"verdict": "success" | "failed" | "bad_input", "env": ..., "checks": [check, ...],
     "failed": [check names],
     "connection_diff": [{field, stored, rds, match}, ...],   # the secret vs RDS, masked
     "evidence": {"folder", "s3_uri", "manifest", "upload_pending"}, "seconds": ...}

The deploy flow uses the same checks through `tasks.preflight.run_checks`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from artifacts.bundle import EvidenceBundle
from artifacts.prefect_artifacts import checks_table
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR
from ground.settings import ConfigError, load_env
from tasks.preflight import SERVICE_DIR, aws_clients, failed, overall, public, run_checks


def connection_diff_rows(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for ch in checks:
        diff = (ch.get("evidence") or {}).get("db_connection_vs_rds")
        if diff:
            return diff.get("rows", [])
    return []


@flow(name="preflight", log_prints=False)
def preflight(env: str = "local", service_dir: str | None = None,
              check_db_auth: bool = True) -> dict[str, Any]:
    """Check for drift before a deploy; change nothing. Verdict "success" when all pass."""
    install_log_redaction()
    started = time.time()
    log = get_run_logger()
    try:
        settings = load_env(env)
    except ConfigError as e:
        log.error("bad input, nothing checked: %s", e)
        return {"verdict": "bad_input", "env": env, "error": str(e), "checks": []}
    source = Path(service_dir) if service_dir else SERVICE_DIR
    clients = aws_clients(settings)
    bundle = EvidenceBundle.open(settings, flow_name="preflight")
    bundle.set_context(environment=env, service_source=str(source),
                       db_secret_id=settings.db_secret_id, rds_instance=settings.rds_instance,
                       check_db_auth=check_db_auth)
    checks = run_checks(settings, clients=clients, bundle=bundle, service_dir=source,
                        check_db_auth=check_db_auth)
    verdict = overall(checks)
    rows = [public(c) for c in checks]
    checks_table("preflight-checks", rows, f"preflight {env}: {verdict}")
    res = bundle.finish("pass" if verdict == "success" else "fail", s3=clients["s3"])
    bad = failed(checks)
    if bad:
        log.error("preflight %s: %d check(s) failed: %s", env, len(bad), ", ".join(bad))
    else:
        log.info("preflight %s: all %d checks passed", env, len(checks))
    return REDACTOR.redact_obj({
        "verdict": verdict,
        "env": env,
        "checks": rows,
        "failed": bad,
        "connection_diff": connection_diff_rows(checks),
        "evidence": {"folder": str(res.folder), "s3_uri": res.s3_uri,
                     "manifest": str(res.manifest), "upload_pending": res.pending},
        "seconds": round(time.time() - started, 2),
    })
