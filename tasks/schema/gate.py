"""The gate between schema_init's dry run and its apply (tasks/approval.py says why two ways).

``approval`` is the flow's parameter:

- ``"ui"``: where ``[approval] required``, pause after a passing dry run for a person's answer
  in the Prefect UI; elsewhere apply straight after it.
- ``"recorded"`` (the CLI's ``--apply``): apply only when an earlier run recorded a passed dry
  run of this very checksum in the evidence bucket.
- ``"yes"`` (the CLI's ``--apply --yes``): both stages in one go, refused where approval is
  required.
"""

from __future__ import annotations

from typing import Any

from ground.settings import Settings
from tasks import approval
from tasks.approval import MODES, ApprovalMode  # noqa: F401 - the flow's parameter type
from tasks.schema.script import Script, ScriptError, load_script

KIND = "schema_init"


def refusal_before_run(settings: Settings, mode: str, script: Script, s3) -> str | None:
    """Why an apply in `mode` must not start at all (bad input, nothing attempted), or None."""
    if mode not in MODES:
        return f"approval {mode!r}: expected one of {', '.join(MODES)}"
    if mode == "yes" and settings.approval_required:
        return (f"environment {settings.env!r} requires approval between the dry run and the "
                f"apply: --yes is not allowed here; run the dry run, then --apply")
    if mode == "recorded" and approval.read_record(s3, settings, KIND, script.sha256) is None:
        return (f"no recorded passed dry run of {script.name} sha256 {script.sha256[:12]}... in "
                f"s3://{settings.evidence_bucket}/{approval.record_key(KIND, '')}: run "
                f"`papyrus-ops schema-init --env {settings.env}` (the dry run) first"
                + ("" if settings.approval_required else ", or add --yes"))
    return None


def pauses(settings: Settings, mode: str) -> bool:
    return mode == "ui" and settings.approval_required


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def approval_markdown(settings: Settings, script: Script, dry: dict[str, Any],
                      record: dict[str, Any] | None, evidence_folder: str) -> str:
    lines = [f"# schema-init {settings.env}: dry run passed, waiting for approval", "",
             f"- **script**: `{_md(script.name)}` ({len(script.statements)} statements)",
             f"- **sha256**: `{script.sha256}`",
             f"- **dry run** (BEGIN ... ROLLBACK, nothing kept): **{_md(dry['outcome'])}**",
             f"- **evidence**: `{_md(evidence_folder)}`"
             + (f", record `{_md(record['uri'])}`" if record else ""), "",
             "Approve (Resume → tick *approve*, give a reason) to apply exactly this script "
             "(BEGIN ... COMMIT); leave it unticked to reject: nothing changes. If the script "
             "changes before the answer, the apply refuses.", "",
             "| # | line | dry-run result | statement |", "|---|---|---|---|"]
    tags = {e["number"]: e["tag"] for e in dry.get("executed") or []}
    for st in script.statements:
        lines.append(f"| {st.number} | {st.line} | {_md(tags.get(st.number, '-'))} | "
                     f"`{_md(st.first_line)}` |")
    for a in dry.get("applied") or []:
        lines.append("")
        lines.append(f"Applied before: `{a['checksum'][:12]}...` ({_md(a['script_name'])}) at "
                     f"{_md(a['applied_at'])}"
                     + (" = this script: the apply will be a no-op" if
                        a["checksum"] == script.sha256 else
                        " != this script: the apply will be refused"))
    return "\n".join(lines) + "\n"


def ask(settings: Settings, script: Script, sql_path: str | None, dry: dict[str, Any],
        record: dict[str, Any] | None, evidence_folder: str) -> dict[str, Any]:
    """Publish the dry run, pause for the answer, then check the script did not change
    (`tasks.approval.decide`, in schema-init's words). Returns its decision."""
    return approval.decide(
        settings, "schema-init", script.sha256,
        approval_markdown(settings, script, dry, record, evidence_folder),
        "schema-init-approval", lambda: load_script(sql_path).sha256,
        key=f"schema-init-{script.sha256[:12]}", nothing="nothing applied",
        title=f"schema-init {settings.env}: sha256 {script.sha256[:12]}, waiting for approval",
        moved_text=lambda now: (f"{script.name} changed since the approved dry run (sha256 "
                                f"{script.sha256[:12]}... approved, {now[:12]}... now)"),
        unreadable=lambda e: f"{script.name} is no longer readable ({e})",
        unreadable_errors=(ScriptError,))


