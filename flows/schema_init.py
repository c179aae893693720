"""schema_init: init.sql in two explicit stages (runbook 2025-10-21).

1. Dry run (always): the script inside BEGIN ... ROLLBACK; each statement's command tag into
   ``<ts>_schema_dryrun_exec.log``.
   A passed dry run is recorded once in the evidence bucket (``approvals/schema_init/
   <sha256>.json``: who, when, flow run, result; tasks/approval.py).
2. The gate (``approval``, tasks/schema/gate.py): where the environment requires approval, a
   UI/API run publishes the dry run as the ``schema-init-approval`` artifact and pauses until a
   person approves or rejects it in the UI; a rejection, no answer, or a script that changed
   since ends the run failed with nothing applied. The CLI's ``--apply`` needs a recorded passed
   dry run of the same checksum instead (``approval="recorded"``), ``--yes`` both stages in one
   go where no approval is required.
3. Apply (only with ``apply=True``, and only for the checksum that passed the dry run and the
   gate): BEGIN ... COMMIT into ``<ts>_schema_apply_exec.log``; the checksum recorded in
   ``papyrus_schema_migrations``. The same checksum again is a no-op; a different script over an
   applied one is refused ("init.sql is production data").

Returns `ground.result`'s contract: ``verdict`` "success", "failed", or "bad_input" (nothing
attempted: the environment, the SQL file or the DB secret is unusable); ``data`` holds mode,
outcome, script, checksum, statements, database, dryrun, record, approval, apply and
flow_run_id. Anything but
success ends the flow run Failed (so the UI tells the truth) with the dict as the state's data:
``papyrus_ops.runner.run_flow(schema_init, ...)`` gives the dict in both cases. An apply's
verdict is also a `papyrus.schema.apply.verdict` event (ground/events.py; the alerts key on it).
"""

from __future__ import annotations

import getpass
import socket
import time
from typing import Any

from prefect import flow, get_run_logger

from artifacts.bundle import EvidenceBundle
from flows.common import BadInput
from ground import events
from ground.aws import client
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR
from ground.result import BAD_INPUT, FAILED, SUCCESS, evidence_summary, result, to_state
from ground.run_names import run_name
from ground.settings import ConfigError, EnvName, Settings, load_env
from tasks.approval import record_passed
from tasks.db import DbSecret, DbSecretError, DbSecretUnavailable, describe, read_db_secret
from tasks.schema import gate
from tasks.schema.gate import ApprovalMode
from tasks.schema.script import Script, ScriptError, load_script
from tasks.schema.stages import schema_apply, schema_dry_run


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


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


@flow(name="schema_init", flow_run_name=run_name("schema-init {env} apply={apply}"),
      log_prints=False)
def schema_init(env: EnvName = "local", apply: bool = False, sql_path: str | None = None,
                database: str | None = None, approval: ApprovalMode = "ui"):
    """Dry run init.sql (BEGIN ... ROLLBACK); with apply=True, then apply it (BEGIN ... COMMIT).

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        apply: After a passing dry run, apply the script (one apply at a time; its checksum
            is recorded). False: the dry run only, nothing is kept.
        sql_path: The script (default service/papyrus/sql/init.sql).
        database: A database on the same server instead of the secret's dbname (a
            rehearsal copy; tests).
        approval: How the apply is bound to the dry run. "ui": where the environment
            requires approval (prd), pause after a passing dry run until someone approves or
            rejects it here (the run's Resume button); elsewhere apply straight after it.
            "recorded": only if an earlier run recorded a passed dry run of this checksum.
            "yes": both stages at once, where no approval is required.
    """
    install_log_redaction()
    logger, started = get_run_logger(), time.time()
    mode = "apply" if apply else "dryrun"
    try:
        script = load_script(sql_path)
        settings, secret = load_settings_and_secret(env)
    except (ScriptError, BadInput) as e:
        logger.error("bad input, nothing attempted: %s", e)
        return to_state(result("schema_init", env, BAD_INPUT, str(e), error=str(e),
                               started=started,
                               data={"mode": mode, "flow_run_id": _flow_run_id()}))
    except DbSecretUnavailable as e:
        settings, secret, unavailable = load_env(env), None, str(e)
    else:
        unavailable = None
    s3 = client("s3", settings.region)
    try:
        refusal = gate.refusal_before_run(settings, approval, script, s3) if apply else None
    except Exception as e:  # noqa: BLE001 - the record could not be read (S3 down, denied)
        err = REDACTOR.redact(f"{type(e).__name__}: {e}")
        logger.error("could not read the dry-run record, nothing attempted: %s", err)
        return to_state(result("schema_init", env, FAILED, f"dry-run record not readable: {err}",
                               error=err, started=started,
                               data={"mode": mode, "flow_run_id": _flow_run_id()}))
    if refusal:
        logger.error("bad input, nothing attempted: %s", refusal)
        return to_state(result("schema_init", env, BAD_INPUT, refusal, error=refusal,
                               started=started, data={"mode": mode, "approval": None,
                                                      "checksum": script.sha256,
                                                      "flow_run_id": _flow_run_id()}))

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
    record = None
    if passed:
        logger.info("dry run passed: %s (rolled back)", ", ".join(dry["tags"]))
        record = _record(s3, settings, script, dry, logger)
    else:
        logger.error("dry run %s", _reason(dry))

    # -- the gate: a person's approval (UI) ---------------------------------------------------
    decision = None
    if apply and passed and gate.pauses(settings, approval):
        decision = gate.ask(settings, script, sql_path, dry, record, str(bundle.folder))
        bundle.write_json("schema_approval", decision)
        bundle.add_check("approval (Prefect UI)", f"approved, sha256 {script.sha256[:12]} "
                         "unchanged", decision["reason"],
                         "pass" if decision["approved"] else "fail")
        (logger.info if decision["approved"] else logger.error)("approval: %s",
                                                                decision["reason"])

    # -- stage 2: apply ---------------------------------------------------------------------
    ap = None
    if apply and passed and (decision is None or decision["approved"]):
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
    elif apply and decision is not None:
        pass  # refused at the gate: its check is above, nothing was applied
    elif apply:
        bundle.add_check("apply gate", "a dry run of this checksum passed in this run",
                         f"dry run {dry['outcome']}: apply not attempted", "fail")

    ok = passed and (not apply or (ap is not None and ap["outcome"] in ("applied", "noop")))
    error = dry["error"] if not passed else (ap["error"] if ap else None)
    data = {
        "mode": mode,
        "outcome": (ap or {}).get("outcome") or (decision or {}).get("outcome")
        or dry["outcome"],
        "script": script.name,
        "checksum": script.sha256,
        "statements": len(script.statements),
        "database": (dry.get("session") or {}).get("database") or database
        or (secret.dbname if secret else None),
        "dryrun": _stage_summary(dry),
        "apply": _stage_summary(ap),
        "record": record,
        "approval": {"mode": approval, "required": settings.approval_required,
                     **(decision or {})} if apply else None,
        "flow_run_id": _flow_run_id(),
    }
    verdict, reason = (SUCCESS, _success_reason(script, dry, ap)) if ok else \
        (FAILED, error or (decision["reason"] if decision and ap is None else _reason(ap or dry)))
    bundle.write_json("schema_init_result",
                      result("schema_init", env, verdict, reason, error=error, data=data))
    res = bundle.finish("pass" if ok else "fail", s3=s3,
                        kms=client("kms", settings.region))
    if res.pending:
        logger.warning("evidence upload pending: %s", res.pending_reason)
    final = result("schema_init", env, verdict, reason, error=error,
                   evidence=evidence_summary(res), started=started, data=data)
    if apply:  # an apply's verdict is news (automations, the event feed); a dry run's is not
        events.schema_apply_verdict(settings, final)
    return to_state(final)


def _record(s3, settings: Settings, script: Script, dry: dict[str, Any], logger):
    """The passed dry run's record in the evidence bucket (once per checksum); None, with a
    warning, when it could not be written: a later --apply then asks for a dry run again."""
    summary = {"outcome": dry["outcome"], "script": script.name,
               "statements": len(script.statements), "tags": dry["tags"],
               "database": (dry.get("session") or {}).get("database")}
    try:
        rec = record_passed(s3, settings, gate.KIND, script.sha256, _flow_run_id(), summary)
    except Exception as e:  # noqa: BLE001 - the dry run's own verdict stands
        logger.warning("dry run passed but not recorded (%s): --apply will not find it",
                       REDACTOR.redact(f"{type(e).__name__}: {e}"))
        return None
    logger.info("dry run %s: %s", "recorded" if rec["new"] else "already recorded", rec["uri"])
    return rec


def _success_reason(script: Script, dry: dict[str, Any], ap: dict[str, Any] | None) -> str:
    if ap is None:
        return f"dry run passed: {len(dry['tags'])} statements, rolled back"
    if ap["outcome"] == "noop":
        return f"already applied: sha256 {script.sha256[:12]}, nothing executed"
    return f"applied: {len(ap['tags'])} statements committed, sha256 {script.sha256[:12]} recorded"
