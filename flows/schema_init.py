"""schema_init: init.sql in two explicit stages (runbook 2025-10-21).

1. Dry run (always): the script inside BEGIN ... ROLLBACK; each statement's command tag into
   ``<ts>_schema_dryrun_exec.log``.
2. Apply (only with ``apply=True``, and only for the checksum that just passed the dry run):
   BEGIN ... COMMIT into ``<ts>_schema_apply_exec.log``; the checksum recorded in
   ``papyrus_schema_migrations``. The same checksum again is a no-op; a different script over an
   applied one is refused ("init.sql is production data").

The result is a plain dict; ``verdict`` is "success" or "failed", ``bad_input`` is True when
nothing was attempted because the environment, the SQL file or the DB secret is unusable. Like
the deploy flow, a failed verdict ends the flow run Failed (so the UI tells the truth) with the
dict as the state's data: ``run_for_result(schema_init, ...)`` (or ``return_state=True`` and
``state.result(raise_on_failure=False)``) gives the dict in both cases.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed

from artifacts.bundle import EvidenceBundle
from flows.common import BadInput
from ground.aws import client
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR
from ground.settings import ConfigError, Settings, load_env
from tasks.db import DbSecret, DbSecretError, DbSecretUnavailable, describe, read_db_secret
from tasks.schema.script import Script, ScriptError, load_script
from tasks.schema.stages import schema_apply, schema_dry_run


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def bad_input_result(message: str, **fields: Any) -> dict[str, Any]:
    return {"verdict": "failed", "bad_input": True, "error": REDACTOR.redact(message),
            "flow_run_id": _flow_run_id(), **fields}


def verdict_state(result: dict[str, Any]):
    """What a flow returns: the dict on success, a Failed state carrying it otherwise."""
    if result.get("verdict") == "success":
        return result
    return Failed(message=result.get("error") or "failed", data=result)


def run_for_result(flow_fn, **params: Any) -> dict[str, Any]:
    """Run a flow and return its result dict whether the run Completed or Failed."""
    state = flow_fn(**params, return_state=True)
    try:
        result = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - a crashed run still gets a one-line verdict
        result = {"verdict": "failed", "error": REDACTOR.redact(f"{type(e).__name__}: {e}")}
    if not isinstance(result, dict):
        message = state.message or f"{type(result).__name__}: {result}"
        result = {"verdict": "failed", "error": REDACTOR.redact(message)}
    return result


def load_settings_and_secret(env: str) -> tuple[Settings, DbSecret]:
    """The environment and its DB secret; BadInput for an unknown env or a broken secret.
    DbSecretUnavailable (Secrets Manager unreachable, after retries) passes through."""
    try:
        settings = load_env(env)
    except ConfigError as e:
        raise BadInput(str(e)) from None
    try:
        secret = read_db_secret(client("secretsmanager", settings.region), settings.db_secret_id)
    except DbSecretError as e:
        raise BadInput(str(e)) from None
    return settings, secret


def evidence_fields(res: Any) -> dict[str, Any]:
    return {"folder": str(res.folder), "manifest": str(res.manifest),
            "files": [f["name"] for f in res.files], "s3_uri": res.s3_uri,
            "upload_pending": res.pending, "pending_reason": res.pending_reason}


def _stage_summary(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    if stage is None:
        return None
    keep = ("outcome", "ok", "tags", "error", "failed_statement", "applied", "applied_at",
            "applied_by")
    return {k: stage[k] for k in keep if k in stage}


def _reason(stage: dict[str, Any]) -> str:
    """"refused: ..." rather than "refused: refused: ..." in log lines."""
    error, outcome = stage.get("error") or "", stage["outcome"]
    return error if error.startswith(f"{outcome}:") else f"{outcome}: {error}"


def _not_run(stage: str, script: Script, error: str) -> dict[str, Any]:
    log = (f"-- papyrus-ops schema_init: {stage}\n-- script: {script.name}\n"
           f"-- sha256: {script.sha256}\n-- not run: {error}\n")
    return {"stage": stage, "ok": False, "outcome": "failed", "error": error, "tags": [],
            "failed_statement": None, "applied": [], "log": REDACTOR.redact(log)}


@flow(name="schema_init", log_prints=False)
def schema_init(env: str = "local", apply: bool = False, sql_path: str | None = None,
                database: str | None = None):
    """Dry run init.sql (BEGIN ... ROLLBACK); with apply=True, then apply it (BEGIN ... COMMIT).

    sql_path: the script (default service/sql/init.sql). database: a database on the same
    server instead of the secret's dbname (a rehearsal copy; tests).
    """
    install_log_redaction()
    logger = get_run_logger()
    mode = "apply" if apply else "dryrun"
    try:
        script = load_script(sql_path)
        settings, secret = load_settings_and_secret(env)
    except (ScriptError, BadInput) as e:
        logger.error("bad input, nothing attempted: %s", e)
        return verdict_state(bad_input_result(str(e), env=env, mode=mode))
    except DbSecretUnavailable as e:
        settings, secret, unavailable = load_env(env), None, str(e)
    else:
        unavailable = None

    bundle = EvidenceBundle.open(settings, flow_name="schema_init")
    bundle.set_context(mode=mode, script=script.name, script_sha256=script.sha256,
                       statements=len(script.statements), db_secret_id=settings.db_secret_id,
                       database=database or (secret.dbname if secret else None),
                       connection=describe(secret, settings, database) if secret else None)
    logger.info("script %s: %d statements, sha256 %s", script.name, len(script.statements),
                script.sha256)

    # -- stage 1: dry run -------------------------------------------------------------------
    if unavailable:
        dry = _not_run("DRY RUN", script, unavailable)
    else:
        try:
            dry = schema_dry_run(secret, settings, script, database=database)
        except Exception as e:  # DbConnectError after retries; anything unexpected
            dry = _not_run("DRY RUN", script, REDACTOR.redact(f"{type(e).__name__}: {e}"))
    bundle.write_text("schema_dryrun_exec", dry["log"], ext="log")
    passed = dry["outcome"] == "passed"
    bundle.add_check("dry run (BEGIN ... ROLLBACK)",
                     f"{len(script.statements)} statements succeed, rolled back",
                     dry["error"] or f"{len(dry['tags'])} statements: {', '.join(dry['tags'])}",
                     "pass" if passed else "fail")
    if passed:
        logger.info("dry run passed: %s (rolled back)", ", ".join(dry["tags"]))
    else:
        logger.error("dry run %s", _reason(dry))

    # -- stage 2: apply ---------------------------------------------------------------------
    ap = None
    if apply and passed:
        applied_by = (f"papyrus-ops schema_init flow-run {_flow_run_id()} "
                      f"({getpass.getuser()}@{socket.gethostname()})")
        try:
            ap = schema_apply(secret, settings, script, passed_checksum=dry["checksum"],
                              applied_by=applied_by, database=database)
        except Exception as e:
            ap = _not_run("APPLY", script, REDACTOR.redact(f"{type(e).__name__}: {e}"))
        bundle.write_text("schema_apply_exec", ap["log"], ext="log")
        ok = ap["outcome"] in ("applied", "noop")
        bundle.add_check("apply (BEGIN ... COMMIT), checksum recorded",
                         "applied, or already applied with this checksum (no-op)",
                         ap["error"] or ap["outcome"], "pass" if ok else "fail")
        if ap["outcome"] == "noop":
            logger.info("apply: no-op, sha256 %s is already applied; nothing executed",
                        script.sha256)
        elif ok:
            logger.info("apply committed: %s; sha256 %s recorded", ", ".join(ap["tags"]),
                        script.sha256)
        else:
            logger.error("apply %s", _reason(ap))
    elif apply:
        bundle.add_check("apply gate", "a dry run of this checksum passed in this run",
                         f"dry run {dry['outcome']}: apply not attempted", "fail")

    verdict = "success" if passed and (not apply or ap["outcome"] in ("applied", "noop")) \
        else "failed"
    error = dry["error"] if not passed else (ap["error"] if ap else None)
    result = {
        "verdict": verdict,
        "bad_input": False,
        "env": env,
        "mode": mode,
        "outcome": (ap or dry)["outcome"],
        "error": error,
        "script": script.name,
        "checksum": script.sha256,
        "statements": len(script.statements),
        "database": (dry.get("session") or {}).get("database") or database
        or (secret.dbname if secret else None),
        "dryrun": _stage_summary(dry),
        "apply": _stage_summary(ap),
        "flow_run_id": _flow_run_id(),
    }
    bundle.write_json("schema_init_result", result)
    res = bundle.finish("pass" if verdict == "success" else "fail",
                        s3=client("s3", settings.region))
    result["evidence"] = evidence_fields(res)
    if res.pending:
        logger.warning("evidence upload pending: %s", res.pending_reason)
    return verdict_state(result)
