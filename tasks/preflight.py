"""The preflight gate: every check, run together, as plain data (the deploy flow's step 2).

    from tasks.preflight import run_checks, overall
    checks = run_checks(settings, clients, bundle=bundle)   # in a flow: the checks are task runs
    if overall(checks) != "success": ...               # or: any(c["verdict"] == "fail" ...)

`run_checks` runs all checks even when some fail (each one is isolated: an exception becomes a
``fail`` with the error in its detail), in runbook order. With a `bundle` it also records each
check (`add_check`) and writes the checks' evidence files (``rds_sg_inbound_after.json``,
``flask_url_map_after.log``, ``db_connection_vs_rds.json``, ``preflight_checks.json``).

Check result shape: see `tasks.check_result`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasks.check_result import (
    CHECK_NAMES,
    FAIL,
    OK_VERDICTS,
    PASS,
    SECRET_FIELDS,
    SKIP,
    error_result,
    failed,
    overall,
    public,
    result,
)
from tasks.ecs_checks import check_ecs_exec, check_task_definition_ssl
from tasks.rds_report import build_report, to_markdown
from tasks.secrets_rds import (
    check_force_ssl,
    check_rds_endpoint_unchanged,
    check_secret_authenticates,
    check_secret_vs_rds,
)
from tasks.security_groups import check_rds_sg
from tasks.service_code import SERVICE_DIR, check_url_map

__all__ = [
    "CHECK_NAMES", "FAIL", "OK_VERDICTS", "PASS", "SERVICES", "SKIP", "SERVICE_DIR",
    "error_result", "failed", "overall", "public", "record_in_bundle", "result", "run_checks",
    "write_rds_change_report",
]

SERVICES = ("secretsmanager", "rds", "ec2", "ecs", "s3")
# bundle.add_check knows pass/fail/warn: a check skipped on purpose is recorded as "warn".
_BUNDLE_VERDICT = {PASS: "pass", FAIL: "fail", SKIP: "warn"}


def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:
        return logging.getLogger("papyrus.preflight")


def _in_flow() -> bool:
    try:
        from prefect.context import FlowRunContext

        return FlowRunContext.get() is not None
    except Exception:
        return False


def _plan(settings, c: dict[str, Any], service_dir: Path, check_db_auth: bool,
          python: str | None, url_map: dict[str, str]
          ) -> list[tuple[Any, tuple, dict, tuple[str, ...], Any]]:
    """(task, args, kwargs, check names it produces, expected-on-error) in runbook order."""
    return [
        (check_secret_vs_rds, (c["secretsmanager"], c["rds"], settings), {},
         (*(f"secret.{f}" for f in SECRET_FIELDS), "secret.password"), "matches RDS"),
        (check_secret_authenticates, (c["secretsmanager"], c["rds"], settings),
         {"enabled": check_db_auth}, ("secret.password_authenticates",),
         "authenticates over SSL"),
        (check_rds_endpoint_unchanged, (c["rds"], c["s3"], settings), {},
         ("rds.endpoint_unchanged",), "same endpoint as the last deploy"),
        (check_force_ssl, (c["rds"], settings), {}, ("rds.force_ssl",), "1"),
        (check_rds_sg, (c["ec2"], c["rds"], settings), {}, ("rds_sg.5432_only_from_task_sg",),
         "tcp 5432 from the task SG only"),
        (check_ecs_exec, (c["ecs"], settings), {}, ("ecs.exec_enabled",), True),
        (check_url_map, (service_dir,), {"python": python, **url_map}, ("service.url_map",),
         ["/", "/healthz", "/dbcheck"]),
        (check_task_definition_ssl, (c["ecs"], settings), {}, ("taskdef.pgsslmode",),
         "require (or verify-full with PGSSLROOTCERT)"),
    ]


def _as_list(value: Any) -> list[dict[str, Any]]:
    return list(value) if isinstance(value, list) else [value]


def run_checks(settings, clients: dict[str, Any], *, bundle=None,
               service_dir: Path | str | None = None, check_db_auth: bool = True,
               python: str | None = None,
               only: tuple[str, ...] | list[str] | None = None,
               url_map_evidence: str = "flask_url_map_after",
               url_map_note: str = "") -> list[dict[str, Any]]:
    """Run every preflight check; return the list of check dicts (runbook order).

    clients: the {"secretsmanager", "rds", "ec2", "ecs", "s3"} boto3 clients (SERVICES).
    bundle: optional EvidenceBundle to record checks and evidence files in.
    service_dir: the service source to run the URL-map check on (default: service/).
    url_map_evidence, url_map_note: that check's evidence file name, and its first line (what
    the source is: a deploy checks the pinned image's code before the rollout, and names the
    running task's answer `flask_url_map_after`).
    check_db_auth: also open a DB session with the secret's credentials (SSL).
    only: run only the checks producing these names (default: all of them).
    Inside a flow run the checks are submitted as concurrent task runs; outside one they run
    concurrently as plain functions (`task.fn`, no Prefect API needed).
    """
    missing = [s for s in SERVICES if s not in clients]
    if missing:
        raise ValueError(f"run_checks needs clients for {', '.join(missing)}")
    plan = _plan(settings, clients, Path(service_dir or SERVICE_DIR), check_db_auth, python,
                 {"evidence_name": url_map_evidence, "note": url_map_note})
    if only is not None:
        unknown = set(only) - set(CHECK_NAMES)
        if unknown:
            raise ValueError(f"unknown check(s): {', '.join(sorted(unknown))}")
        plan = [p for p in plan if set(p[3]) & set(only)]
    checks: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="preflight") as pool:
        if _in_flow():
            futures = [t.submit(*a, **kw) for t, a, kw, _, _ in plan]
        else:
            futures = [pool.submit(t.fn, *a, **kw) for t, a, kw, _, _ in plan]
        for (_, _, _, names, expected), fut in zip(plan, futures, strict=True):
            try:
                checks.extend(_as_list(fut.result()))
            except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
                checks.extend(error_result(n, expected, exc) for n in names)
    log = _logger()
    for ch in checks:
        log.info("preflight %-32s %s  %s", ch["check"], ch["verdict"].upper(), ch["detail"])
    if bundle is not None:
        record_in_bundle(bundle, checks)
    return checks


def record_in_bundle(bundle, checks: list[dict[str, Any]]) -> None:
    """add_check for each check; each check's evidence as a file; the list as JSON."""
    for ch in checks:
        bundle.add_check(ch["check"], ch["expected"], ch["actual"],
                         _BUNDLE_VERDICT.get(ch["verdict"], "fail"))
        for name, payload in (ch.get("evidence") or {}).items():
            if isinstance(payload, str):
                bundle.write_text(name, payload, ext="log")
            else:
                bundle.write_json(name, payload)
    bundle.write_json("preflight_checks", {"verdict": overall(checks),
                                           "checks": [public(ch) for ch in checks]})


def write_rds_change_report(rds, s3, settings, bundle) -> dict[str, Any]:
    """The RDS change report (tasks/rds_report.py) into the bundle as `rds_change_report.md`
    and `.json`; returns its summary. Information, not a gate: an error reading it is written
    into the bundle instead (`rds_change_report_error.log`) and returned."""
    from tasks.state import read_last_deploy

    try:
        report = build_report(rds, settings, read_last_deploy(s3, settings))
    except Exception as exc:  # noqa: BLE001 - the checks' verdict stands; the gap is on record
        line = f"{type(exc).__name__}: {exc}"
        _logger().warning("preflight: RDS change report not written: %s", line)
        bundle.write_text("rds_change_report_error", line + "\n")
        return {"error": line}
    bundle.write_json("rds_change_report", report)
    bundle.write_text("rds_change_report", to_markdown(report), ext="md")
    return {"pending_reboot": report["pending_reboot"],
            "parameters_differing_from_defaults": len(
                report["parameters_differing_from_defaults"]),
            "reboots": len(report["reboots"]), "parameter_changes": len(
                report["parameter_changes"]),
            "changed_since_last_deploy": report["changed_since_last_deploy"]}
