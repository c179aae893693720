"""Automations as code: deployments/<env>/automations.toml → Prefect automations + the webhook
block they notify through, created or updated by name (docs/alerts.md).

`register_automations(api_url, env)` runs after `prefect deploy` in `papyrus-ops prefect
register`. It is idempotent: an automation that already says what the file says is left alone
(so re-registering never restarts the archive alert's window), one that differs is updated in
place (same id), a missing one is created, and duplicates of a name (two registers racing) are
deleted down to one. Triggers match on names and labels, never on ids, so an automation does
not go stale when a deployment is deleted and registered again.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ground.events import ENV_LABEL, VERDICT_EVENTS, VERDICT_LABEL
from ground.settings import ROOT

FILE = "automations.toml"
KINDS = ("verdict", "run-state", "missing-completion")
_NEEDS = {"verdict": ("event",), "run-state": ("states", "deployments"),
          "missing-completion": ("flow", "deployment", "within_seconds")}

# The notification texts (Jinja, rendered by the Prefect server). Only what the events carry:
# verdicts, reasons (redacted by ground.result), digests, ARNs, run names and ids.
_VERDICT_SUBJECT = "Papyrus {{ event.payload.env }}: {{ event.event }} {{ event.payload.verdict }}"
_VERDICT_BODY = """\
{{ event.event }}: {{ event.payload.verdict }} on {{ event.resource.id }}
reason: {{ event.payload.reason }}
{% if event.payload.image %}image: {{ event.payload.image }} \
{{ event.payload.image_digest or '(not pinned)' }}
{% endif %}{% if event.payload.task_definition %}task definition: \
{{ event.payload.task_definition }} (previous {{ event.payload.previous_task_definition }}, \
rolled back: {{ event.payload.rolled_back }})
{% endif %}{% if event.payload.script %}script: {{ event.payload.script }} \
sha256 {{ event.payload.checksum }} on {{ event.payload.database }} \
({{ event.payload.outcome }})
{% endif %}flow run: {{ flow_run.name }} ({{ event.payload.flow_run_id }}) \
{{ flow_run|ui_url or '' }}
evidence: {{ event.payload.evidence }}
automation: {{ automation.name }}"""
_RUN_SUBJECT = "Papyrus {env}: {{ flow_run.name }} {{ flow_run.state.name }}"
_RUN_BODY = """\
{{ deployment.name }}: flow run {{ flow_run.name }} ({{ flow_run.id }}) ended \
{{ flow_run.state.name }}: {{ flow_run.state.message }}
{{ flow_run|ui_url or '' }}
automation: {{ automation.name }}"""
_MISSING_SUBJECT = "Papyrus {env}: no completed {{ deployment.name }} run"
_MISSING_BODY = """\
{{ automation.name }}: no Completed run of {{ deployment.name }} within \
{{ automation.trigger.within }} of the last one.
last completed: {{ flow_run.name }} ({{ flow_run.id }}) at {{ event.occurred }}
Check the schedule, the work pool's worker and the deployment's Upcoming/Late runs.
automation: {{ automation.name }}"""


class AutomationsError(ValueError):
    """automations.toml says something that cannot be registered (bad input)."""


@dataclass(frozen=True)
class Spec:
    env: str
    block: str
    url_env: str
    json: dict[str, Any]
    automations: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def spec_path(env: str) -> Path:
    return ROOT / "deployments" / env / FILE


def load_spec(env: str, path: Path | None = None) -> Spec | None:
    """The environment's automations file (None when it has none); AutomationsError when it
    is not one."""
    path = Path(path) if path else spec_path(env)
    if not path.is_file():
        return None
    try:
        doc = tomllib.loads(path.read_text())
        notify = doc["notify"]
        spec = Spec(env=env, block=notify["block"], url_env=notify["url_env"],
                    json=dict(notify.get("json") or {"subject": "{{subject}}",
                                                      "body": "{{body}}"}),
                    automations=tuple(doc.get("automations") or ()))
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise AutomationsError(f"{path}: {type(e).__name__}: {e}") from None
    names = [a.get("name") for a in spec.automations]
    if len(set(names)) != len(names) or not all(names):
        raise AutomationsError(f"{path}: every automation needs a name of its own")
    for a in spec.automations:
        if a.get("kind") not in KINDS:
            raise AutomationsError(f"{path}: {a['name']!r}: kind must be one of {KINDS}")
        missing = [k for k in _NEEDS[a["kind"]] if not a.get(k)]
        if missing:
            raise AutomationsError(f"{path}: {a['name']!r} ({a['kind']}) needs "
                                   f"{', '.join(missing)}")
        if a["kind"] == "verdict" and a["event"] not in VERDICT_EVENTS:
            raise AutomationsError(f"{path}: {a['name']!r}: event must be one of "
                                   f"{VERDICT_EVENTS}")
        if a["kind"] == "missing-completion" and not (
                isinstance(a["within_seconds"], int | float) and a["within_seconds"] >= 10):
            # Prefect refuses proactive windows under 10 seconds.
            raise AutomationsError(f"{path}: {a['name']!r}: within_seconds must be a number "
                                   ">= 10")
    return spec


def _deployments(names: list[str]) -> dict:
    return {"prefect.resource.role": "deployment", "prefect.resource.name": list(names)}


def desired(spec: Spec, block_id) -> list:
    """The automations the file describes, notifying through block `block_id`."""
    from prefect.automations import AutomationCore
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    out = []
    for a in spec.automations:
        kind = a["kind"]
        if kind == "verdict":
            trigger = EventTrigger(
                expect={a["event"]},
                match={ENV_LABEL: spec.env, VERDICT_LABEL: "!success"},
                posture=Posture.Reactive, threshold=1, within=timedelta(0))
            subject, body = _VERDICT_SUBJECT, _VERDICT_BODY
        elif kind == "run-state":
            trigger = EventTrigger(
                expect={f"prefect.flow-run.{s}" for s in a["states"]},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=_deployments(a["deployments"]),
                posture=Posture.Reactive, threshold=1, within=timedelta(0))
            subject, body = _RUN_SUBJECT, _RUN_BODY
        else:
            # `after` and `expect` the same event: each completed run starts a new window, so
            # the alert fires `within` after the last completion (not on fixed 26-hour tiles,
            # which can straddle a single missed night). Prefect's heartbeat pattern.
            completed = {"prefect.flow-run.Completed"}
            trigger = EventTrigger(
                after=completed, expect=completed,
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=[{"prefect.resource.role": "flow",
                                "prefect.resource.name": a["flow"]},
                               _deployments([a["deployment"]])],
                posture=Posture.Proactive, threshold=1,
                within=timedelta(seconds=float(a["within_seconds"])))
            subject, body = _MISSING_SUBJECT, _MISSING_BODY
        out.append(AutomationCore(
            name=a["name"], description=a.get("description") or
            f"deployments/{spec.env}/{FILE} ({kind}); registered by papyrus-ops prefect register",
            enabled=True, trigger=trigger, tags=["papyrus", f"env:{spec.env}"],
            actions=[SendNotification(block_document_id=block_id,
                                      subject=subject.replace("{env}", spec.env), body=body)]))
    return out


def _comparable(automation) -> dict:
    """What makes two automations the same (ids and server bookkeeping left out)."""
    from prefect.automations import AutomationCore

    return AutomationCore.model_validate(automation.model_dump()).model_dump(
        mode="json", exclude={"owner_resource"})


def ensure_block(spec: Spec, url: str | None) -> dict:
    """The notification block, created or updated when `url` is given; kept as it is when
    not. {"name", "id", "outcome": created|updated|unchanged|kept|missing}."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.exceptions import ObjectNotFound

    try:
        existing = CustomWebhookNotificationBlock.load(spec.block)
    except (ObjectNotFound, ValueError):
        existing = None
    if not url:
        return {"name": spec.block, "outcome": "kept" if existing else "missing",
                "id": existing._block_document_id if existing else None}
    # The URL only ever lives in the block's secrets; the block's `url` is the placeholder.
    block = CustomWebhookNotificationBlock(name=spec.block, url="{{url}}", json_data=spec.json,
                                           secrets={"url": url})
    same = existing is not None and existing.url == block.url \
        and existing.json_data == block.json_data \
        and existing.secrets.get_secret_value() == block.secrets.get_secret_value()
    if same:
        return {"name": spec.block, "outcome": "unchanged", "id": existing._block_document_id}
    block_id = block.save(spec.block, overwrite=True)
    return {"name": spec.block, "outcome": "updated" if existing else "created", "id": block_id}


def register_automations(api_url: str, env: str, *, webhook_url: str | None = None,
                         path: Path | None = None) -> dict:
    """Create or update, by name, the environment's automations and their block on `api_url`.
    The webhook URL: `webhook_url`, else the variable the file names. Returns what was done."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    spec = load_spec(env, path)
    if spec is None:
        return {"skipped": f"no deployments/{env}/{FILE}", "block": None, "automations": []}
    url = webhook_url or os.environ.get(spec.url_env) or None
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        block = ensure_block(spec, url)
        if block["id"] is None:
            return {"skipped": f"no notification block {spec.block!r} and {spec.url_env} is "
                               "not set: alerts NOT registered", "block": block,
                    "automations": []}
        done = []
        with get_client(sync_client=True) as client:
            for want in desired(spec, block["id"]):
                have = client.read_automations_by_name(want.name)
                if not have:
                    done.append({"name": want.name, "outcome": "created",
                                 "id": str(client.create_automation(want))})
                    continue
                keep, extra = have[0], have[1:]
                for dup in extra:  # two registers raced: one of a name is enough
                    client.delete_automation(dup.id)
                if _comparable(keep) == _comparable(want):
                    outcome = "unchanged"
                else:
                    client.update_automation(keep.id, want)
                    outcome = "updated"
                done.append({"name": want.name, "outcome": outcome, "id": str(keep.id),
                             "duplicates_deleted": len(extra)})
    return {"skipped": None, "block": {**block, "id": str(block["id"])}, "automations": done}
