"""Verdict events: one Prefect event per verdict a deploy or a schema apply reaches.

Automations (deployments/<env>/automations.toml, docs/alerts.md) and the UI's event feed key on
them: the event names the service (or database) it judged, with the verdict and the
environment as resource labels, so a trigger can say "papyrus.verdict != success in env prd"
without knowing any deployment id. Emitted from inside the flow run, Prefect relates the event
to the run, its flow and deployment itself (the events worker adds them from the run context).

What goes in: the verdict, the reason (already redacted by `ground.result`), the image digest,
task definition ARNs, the flow run id and the evidence location — never a secret, and every
string passes the redactor once more here. Emitting never changes a verdict: an events outage
is logged by Prefect and the run goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from ground.redact import REDACTOR

DEPLOY_VERDICT = "papyrus.deploy.verdict"
SCHEMA_APPLY_VERDICT = "papyrus.schema.apply.verdict"
VERDICT_EVENTS = (DEPLOY_VERDICT, SCHEMA_APPLY_VERDICT)

# Resource labels the automations match on.
ENV_LABEL, VERDICT_LABEL = "papyrus.env", "papyrus.verdict"


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]):
    from prefect.events import emit_event

    try:
        return emit_event(event=event, resource=REDACTOR.redact_obj(resource),
                          payload=REDACTOR.redact_obj(payload))
    except Exception:  # noqa: BLE001 - an event is news about the verdict, never the verdict
        logging.getLogger(__name__).exception("could not emit %s", event)
        return None


def deploy_resource(settings) -> dict[str, str]:
    return {"prefect.resource.id": f"papyrus.service.{settings.cluster}/{settings.service}",
            "prefect.resource.name": settings.service, "papyrus.cluster": settings.cluster,
            ENV_LABEL: settings.env}


def deploy_verdict(settings, res: dict[str, Any]):
    """`papyrus.deploy.verdict` for a deploy's result dict (ground.result); returns the event
    (None when Prefect emits nothing, e.g. no API)."""
    data = res.get("data") or {}
    rollback = data.get("rollback")
    payload = {
        "verdict": res["verdict"], "reason": res.get("reason"), "env": res.get("env"),
        "image": data.get("image"), "image_digest": data.get("image_digest"),
        "task_definition": data.get("task_definition"),
        "previous_task_definition": data.get("previous_task_definition"),
        "rolled_back": bool(rollback and rollback.get("ok")),
        "rollback": rollback, "plan": data.get("plan"),
        "flow_run_id": _flow_run_id(),
        "evidence": (res.get("evidence") or {}).get("s3_uri"),
    }
    return _emit(DEPLOY_VERDICT, deploy_resource(settings) | {VERDICT_LABEL: res["verdict"]},
                 payload)


def schema_apply_verdict(settings, res: dict[str, Any]):
    """`papyrus.schema.apply.verdict` for a schema_init run with apply=True."""
    data = res.get("data") or {}
    resource = {"prefect.resource.id": f"papyrus.database.{settings.rds_instance}/"
                                       f"{data.get('database') or '?'}",
                "prefect.resource.name": settings.rds_instance, ENV_LABEL: settings.env,
                VERDICT_LABEL: res["verdict"]}
    payload = {"verdict": res["verdict"], "reason": res.get("reason"), "env": res.get("env"),
               "outcome": data.get("outcome"), "script": data.get("script"),
               "checksum": data.get("checksum"), "database": data.get("database"),
               "flow_run_id": data.get("flow_run_id") or _flow_run_id(),
               "evidence": (res.get("evidence") or {}).get("s3_uri")}
    return _emit(SCHEMA_APPLY_VERDICT, resource, payload)
