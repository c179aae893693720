"""Prefect artifacts for evidence: a markdown summary, a checks table, a link, progress bars.

All of them are no-ops outside a flow or task run, redact every string they send, and never
raise (a failed artifact is logged as a warning: the evidence itself is on disk and in S3).
Artifact keys must match ``^[a-z0-9-]*$`` (Prefect rejects anything else, underscores
included); `artifact_key` turns any name into one.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any

from ground.redact import REDACTOR

log = logging.getLogger("papyrus.artifacts.prefect")

_progress_ids: dict[tuple[str, str | None], str] = {}
_progress_lock = threading.Lock()


def artifact_key(*parts: str) -> str:
    """'schema_init', 'Evidence' -> 'schema-init-evidence' (lowercase letters, digits, dashes)."""
    text = "-".join(str(p) for p in parts if p)
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")


def _run_ids() -> tuple[str | None, str | None] | None:
    """(flow_run_id, task_run_id) of the current run, None outside any run."""
    if "prefect.context" not in sys.modules:  # no Prefect imported: no run
        return None
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except Exception:
        return None
    task_ctx, flow_ctx = TaskRunContext.get(), FlowRunContext.get()
    if task_ctx is not None:
        return str(task_ctx.task_run.flow_run_id), str(task_ctx.task_run.id)
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        return str(flow_ctx.flow_run.id), None
    return None


def _warn(what: str, err: Exception) -> None:
    log.warning("could not create Prefect %s artifact: %s", what,
                REDACTOR.redact(f"{type(err).__name__}: {err}"))


def _md_escape(value: Any) -> str:
    text = REDACTOR.redact("" if value is None else str(value))
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return REDACTOR.redact(value)
    import json

    return REDACTOR.redact(json.dumps(REDACTOR.redact_obj(value), default=str, sort_keys=True))


def checks_table(key: str, rows: list[dict], description: str) -> None:
    """A table artifact (one row per dict); strings redacted, nested values as JSON."""
    if _run_ids() is None:
        return
    try:
        from prefect.artifacts import create_table_artifact

        table = [{str(k): _cell(v) for k, v in REDACTOR.redact_obj(dict(r)).items()}
                 for r in rows]
        create_table_artifact(table=table, key=artifact_key(key),
                              description=REDACTOR.redact(description), _sync=True)
    except Exception as err:
        _warn("table", err)


def progress(key: str | None, fraction: float, description: str) -> str | None:
    """Create the progress artifact of `key` on first use in this flow run, update it after.

    `fraction` is 0.0-1.0 (clamped), shown as a percentage. Returns the artifact id."""
    ids = _run_ids()
    if ids is None:
        return None
    pct = max(0.0, min(1.0, float(fraction))) * 100.0
    slot = (ids[0] or "", artifact_key(key) if key else None)
    desc = REDACTOR.redact(description)
    try:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        with _progress_lock:
            existing = _progress_ids.get(slot)
            if existing is None:
                artifact_id = create_progress_artifact(progress=pct, key=slot[1],
                                                       description=desc, _sync=True)
                _progress_ids[slot] = str(artifact_id)
                return str(artifact_id)
        update_progress_artifact(artifact_id=existing, progress=pct, description=desc,
                                 _sync=True)
        return existing
    except Exception as err:
        _warn("progress", err)
        return None


def _location(bundle: Any, result: Any) -> tuple[str, str]:
    if getattr(result, "s3_uri", None) and not result.pending:
        return result.s3_uri, result.s3_uri
    uri = result.folder.resolve().as_uri()
    return uri, f"{result.folder} (local; S3 upload pending)"


def summary_markdown(bundle: Any, result: Any) -> str:
    link, where = _location(bundle, result)
    lines = [
        f"# Evidence — {bundle.flow_name}: **{result.verdict.upper()}**",
        "",
        f"- flow run: `{bundle.run_id}`",
        f"- started: {bundle.started_at.isoformat(timespec='seconds')} — "
        f"manifest sha256: `{getattr(result, 'manifest_sha256', '')}`",
        f"- location: {where}",
    ]
    if result.pending:
        reason = getattr(result, "pending_reason", None) or "S3 unreachable"
        lines.append(f"- **upload pending**: {_md_escape(reason)} — run "
                     "`papyrus-ops evidence upload-pending`")
    if bundle.context:
        lines += ["", "## Context", "", "| field | value |", "|---|---|"]
        lines += [f"| {_md_escape(k)} | `{_md_escape(v)}` |"
                  for k, v in sorted(bundle.context.items())]
    if bundle.checks:
        counts = {v: sum(1 for c in bundle.checks if c["verdict"] == v)
                  for v in ("pass", "warn", "fail")}
        lines += ["", "## Checks", "",
                  f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail", "",
                  "| check | expected | actual | verdict |", "|---|---|---|---|"]
        lines += [f"| {_md_escape(c['check'])} | {_md_escape(c['expected'])} | "
                  f"{_md_escape(c['actual'])} | {_md_escape(c['verdict'])} |"
                  for c in bundle.checks]
    files = getattr(result, "files", None) or []
    lines += ["", "## Files", "", "| file | size | sha256 |", "|---|---:|---|"]
    lines += [f"| {_md_escape(f['name'])} | {f['size']} | `{f['sha256']}` |" for f in files]
    lines += [f"| manifest.json | {result.manifest.stat().st_size} | "
              f"`{getattr(result, 'manifest_sha256', '')}` |"]
    return REDACTOR.redact("\n".join(lines) + "\n")


def publish_summary(bundle: Any, result: Any) -> None:
    """Markdown summary, checks table and link artifacts for a finished bundle, keyed
    `<flow>-evidence`, `<flow>-evidence-checks`, `<flow>-evidence-location`."""
    if _run_ids() is None:
        return
    base = artifact_key(bundle.flow_name, "evidence")
    try:
        from prefect.artifacts import create_link_artifact, create_markdown_artifact

        create_markdown_artifact(
            markdown=summary_markdown(bundle, result), key=base,
            description=REDACTOR.redact(f"{bundle.flow_name} evidence: {result.verdict}"),
            _sync=True)
    except Exception as err:
        _warn("markdown", err)
    checks_table(f"{base}-checks", bundle.checks,
                 f"{bundle.flow_name} checks ({result.verdict})")
    try:
        link, where = _location(bundle, result)
        create_link_artifact(link=REDACTOR.redact(link), link_text=REDACTOR.redact(where),
                             key=f"{base}-location",
                             description=REDACTOR.redact(f"{bundle.flow_name} evidence bundle"),
                             _sync=True)
    except Exception as err:
        _warn("link", err)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """One markdown artifact of the current run (e.g. the dry run a paused run waits on);
    nothing outside a run. Redacted; a failure to publish is a warning, never the run's end."""
    if _run_ids() is None:
        return
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=REDACTOR.redact(markdown), key=artifact_key(key),
                                 description=REDACTOR.redact(description), _sync=True)
    except Exception as err:
        _warn("markdown", err)
