"""insert_check: the CLI insert route of the runbook (2025-10-21).

psycopg2 straight to the environment's database over SSL: one ``SKU-CLI-...`` row (source
'cli'), the real command tag and ``pg_stat_ssl`` for the session, written to
``<ts>_papyrus_psql_insert_cli.log``. Verdict "success" only for ``INSERT 0 1`` with ssl true.
Returns `ground.result`'s contract (``data``: sku, source, tag, ssl, ssl_version, cipher, database,
committed, flow_run_id); anything but success ends the run Failed with the dict as its data.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from artifacts.bundle import EvidenceBundle
from flows.common import BadInput
from flows.schema_init import load_settings_and_secret
from ground.aws import client
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR
from ground.result import BAD_INPUT, FAILED, SUCCESS, evidence_summary, result, to_state
from ground.run_names import run_name
from ground.settings import EnvName, load_env
from tasks.db import DbSecretUnavailable
from tasks.insert_check import (
    EXPECTED_TAG,
    base_record,
    format_insert_log,
    insert_cli_row,
    new_cli_sku,
)


def _not_run(settings, env: str, error: str, started: float) -> dict[str, Any]:
    """Evidence of an attempt that never reached the database (Secrets Manager unreachable)."""
    bundle = EvidenceBundle.open(settings, flow_name="insert_check")
    bundle.write_text("papyrus_psql_insert_cli",
                      f"-- papyrus-ops insert-check: CLI route (psycopg2 direct)\n"
                      f"-- not run: {error}\n-- verdict: failed\n", ext="log")
    bundle.add_check("CLI insert command tag", EXPECTED_TAG, error, "fail")
    res = bundle.finish("fail", s3=client("s3", settings.region),
                        kms=client("kms", settings.region))
    return result("insert_check", env, FAILED, error, error=error,
                  evidence=evidence_summary(res), started=started,
                  data={"flow_run_id": bundle.run_id})


@flow(name="insert_check", flow_run_name=run_name("insert-check {env}"), log_prints=False)
def insert_check(env: EnvName = "local", database: str | None = None):
    """Insert an SKU-CLI row with psycopg2 over SSL and keep the evidence.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        database: A database on the same server instead of the secret's dbname (tests).
    """
    install_log_redaction()
    logger, started = get_run_logger(), time.time()
    try:
        settings, secret = load_settings_and_secret(env)
    except BadInput as e:
        logger.error("bad input, nothing attempted: %s", e)
        return to_state(result("insert_check", env, BAD_INPUT, str(e), error=str(e),
                               started=started, data={"flow_run_id": _flow_run_id()}))
    except DbSecretUnavailable as e:
        logger.error("%s", e)
        return to_state(_not_run(load_env(env), env, str(e), started))

    bundle = EvidenceBundle.open(settings, flow_name="insert_check")
    sku = new_cli_sku()
    try:
        rec = insert_cli_row(secret, settings, sku=sku, database=database)
    except Exception as e:  # DbConnectError after retries
        rec = base_record(secret, settings, sku, database=database,
                          error=REDACTOR.redact(f"{type(e).__name__}: {e}"))
    bundle.set_context(route="cli (psycopg2)", sku=rec["sku"], database=rec["database"],
                       connection=rec["connection"], db_secret_id=settings.db_secret_id)
    bundle.write_text("papyrus_psql_insert_cli", format_insert_log(rec), ext="log")
    bundle.add_check("CLI insert command tag", EXPECTED_TAG, rec["tag"] or rec["error"],
                     "pass" if rec["tag"] == EXPECTED_TAG else "fail")
    bundle.add_check("session over SSL (pg_stat_ssl.ssl)", True,
                     f"{str(rec['ssl']).lower()} {rec['ssl_version'] or ''}".strip(),
                     "pass" if rec["ssl"] is True else "fail")
    if rec["ok"]:
        logger.info("%s: %s over %s (%s)", rec["sku"], rec["tag"], rec["ssl_version"],
                    rec["cipher"])
    else:
        logger.error("CLI insert check failed: %s", rec["error"])
    data = {
        "sku": rec["sku"],
        "source": "cli",
        "tag": rec["tag"],
        "ssl": rec["ssl"],
        "ssl_version": rec["ssl_version"],
        "cipher": rec["cipher"],
        "database": rec["database"],
        "committed": rec["committed"],
        "flow_run_id": bundle.run_id,
    }
    res = bundle.finish("pass" if rec["ok"] else "fail", s3=client("s3", settings.region),
                        kms=client("kms", settings.region))
    if res.pending:
        logger.warning("evidence upload pending: %s", res.pending_reason)
    if rec["ok"]:
        verdict, reason = SUCCESS, (f"{rec['sku']}: {rec['tag']} over "
                                    f"{rec['ssl_version'] or 'SSL'}")
    else:
        verdict, reason = FAILED, rec["error"] or (
            f"{rec['sku']}: {rec['tag'] or 'no insert'}, ssl={str(rec['ssl']).lower()}")
    return to_state(result("insert_check", env, verdict, reason, error=rec["error"],
                           evidence=evidence_summary(res), started=started, data=data))


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None
