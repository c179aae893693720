"""Approval between stages: what binds an apply to the dry run (or plan) a person looked at.

Two ways, one per way of starting a run (docs/runbook.md, "Approval between stages"):

- **A pause, in the Prefect UI.** A run that may wait for a person (started from the UI or the
  API of a shared server) writes its dry-run evidence, publishes it as a markdown artifact and
  pauses (`prefect.flow_runs.pause_flow_run(wait_for_input=Approval)`): the run is **Paused**
  and the UI's Resume form asks for `approve` and `reason`. The flow then checks that nothing
  moved since (the same checksum on disk) and applies exactly what it showed.
  Pause, not suspend: a suspended run ends its process and is re-run from the start on resume,
  which would mean a new dry run (NO_CACHE, results not persisted: the DB answer must be fresh)
  and so no longer "the one that was looked at". A pause keeps the script and the dry-run result
  in memory; its cost is a process (an ECS task) held while it waits, bounded by
  ``[approval] timeout_seconds``.
- **A record, for the CLI and CI.** A passed dry run writes ``approvals/<kind>/<checksum>.json``
  in the environment's evidence bucket (who, when, flow run, result), once: ``PutObject
  IfNoneMatch="*"`` keeps the first record, a second dry run of the same checksum changes
  nothing. ``--apply`` then needs that record for the checksum it is about to apply. A pause
  makes no sense there: the command waits in the foreground for its own run, on a server (the
  checkout's resident one, or a temporary one) nobody is watching, and CI has no one to ask.
"""

from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from artifacts.storage import sse_args
from ground.redact import REDACTOR
from ground.retry import transient_only
from ground.settings import Settings

RECORD_VERSION = 1
# A flow's `approval` parameter: "ui" pauses for a person where the environment requires it
# (else goes straight on), "recorded" needs a record of an earlier passed dry run / plan of the
# same content (the CLI), "yes" runs both stages in one go where no approval is required.
ApprovalMode = Literal["ui", "recorded", "yes"]
MODES = ("ui", "recorded", "yes")


class Approval(RunInput):
    """The Resume form of a paused run (the Prefect UI renders this model)."""

    approve: bool = Field(False, description="Tick to apply exactly what this run showed; "
                                             "leave unticked to reject (nothing changes).")
    reason: str = Field("", description="Why (kept in the run's evidence).")


def pauses(settings: Settings, mode: str) -> bool:
    return mode == "ui" and settings.approval_required


def yes_refusal(settings: Settings, mode: str, first: str, then: str) -> str | None:
    """Why `mode` is not allowed in this environment (one line), or None."""
    if mode not in MODES:
        return f"approval {mode!r}: expected one of {', '.join(MODES)}"
    if mode == "yes" and settings.approval_required:
        return (f"environment {settings.env!r} requires approval between the {first} and the "
                f"{then}: --yes is not allowed here; run the {first} first")
    return None


def record_key(kind: str, checksum: str) -> str:
    return f"approvals/{kind}/{checksum}.json"


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def _exists(e: ClientError) -> bool:
    err = e.response.get("Error", {})
    return err.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or \
        e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)


def read_record(s3, settings: Settings, kind: str, checksum: str) -> dict[str, Any] | None:
    """The recorded passed dry run / plan of `checksum`, None when there is none."""
    try:
        obj = s3.get_object(Bucket=settings.evidence_bucket, Key=record_key(kind, checksum))
    except ClientError as e:
        if _missing(e):
            return None
        raise
    try:
        body = json.loads(obj["Body"].read())
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("checksum") == checksum else None


@task(name="record-passed-stage", retries=2, retry_delay_seconds=[1, 4],
      retry_condition_fn=transient_only, cache_policy=NO_CACHE, persist_result=False)
def record_passed(s3, settings: Settings, kind: str, checksum: str, flow_run_id: str | None,
                  summary: dict[str, Any]) -> dict[str, Any]:
    """Write the record of a passed dry run / plan once; returns it with ``new`` (False: one
    was there already, and it stays as it was) and ``uri``."""
    body = REDACTOR.redact_obj({"version": RECORD_VERSION, "kind": kind, "env": settings.env,
                                "checksum": checksum, "who": who(), "when": _now(),
                                "flow_run_id": flow_run_id, "result": summary})
    key = record_key(kind, checksum)
    uri = f"s3://{settings.evidence_bucket}/{key}"
    try:
        s3.put_object(Bucket=settings.evidence_bucket, Key=key,
                      Body=json.dumps(body, sort_keys=True, indent=2).encode(),
                      ContentType="application/json", IfNoneMatch="*",
                      **sse_args(settings.evidence_kms_key))
    except ClientError as e:
        if not _exists(e):
            raise
        return {**(read_record(s3, settings, kind, checksum) or body), "new": False, "uri": uri}
    return {**body, "new": True, "uri": uri}


def wait_for_approval(settings: Settings, key: str) -> Approval:
    """Pause this flow run until someone answers its Resume form (raises
    prefect.exceptions.FlowPauseTimeout after ``[approval] timeout_seconds``)."""
    from prefect.flow_runs import pause_flow_run

    return pause_flow_run(wait_for_input=Approval, timeout=settings.approval_timeout_seconds,
                          poll_interval=settings.approval_poll_seconds, key=key)


def checksum_of(obj: Any) -> str:
    """The checksum of a plan: SHA-256 of its canonical JSON (sorted keys)."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str,
                                     separators=(",", ":")).encode()).hexdigest()


def decide(settings: Settings, what: str, checksum: str, markdown: str, artifact: str,
           recheck, *, key: str | None = None, nothing: str = "nothing changed",
           moved_text=None, unreadable=None, unreadable_errors: tuple = (Exception,),
           title: str | None = None) -> dict[str, Any]:
    """Publish `markdown` as the run's `artifact`, pause for the answer, then `recheck()` (the
    checksum of the same thing read again now). Returns the decision: ``approved`` (True only
    when the change may go ahead), ``outcome`` (approved / rejected / moved / timed_out),
    ``reason`` (one line), the answer, and the checksums shown and found. A caller words its
    own kind: `nothing` (what a refusal leaves undone), `moved_text(now)`, `unreadable(error)`
    for the `unreadable_errors` a recheck may raise, the pause `key` and artifact `title`."""
    from prefect.exceptions import FlowPauseTimeout

    from artifacts.prefect_artifacts import publish_markdown

    publish_markdown(artifact, markdown, title or f"{what} {settings.env}: {checksum[:12]}, "
                                                 "waiting for approval")
    base: dict[str, Any] = {"asked_at": _now(), "checksum_shown": checksum,
                            "timeout_seconds": settings.approval_timeout_seconds}
    try:
        answer = wait_for_approval(settings, key=key or f"{artifact}-{checksum[:12]}")
    except FlowPauseTimeout:
        return {**base, "approved": False, "outcome": "timed_out", "answered_at": None,
                "reason": f"no approval within {settings.approval_timeout_seconds} s: "
                          f"{nothing}"}
    given = {"approve": bool(answer.approve), "reason": (answer.reason or "").strip()}
    base |= {"answered_at": _now(), "answer": given}
    if not given["approve"]:
        return {**base, "approved": False, "outcome": "rejected",
                "reason": f"rejected: {given['reason'] or 'no reason given'}; {nothing}"}
    try:
        now = recheck()
    except unreadable_errors as e:  # cannot tell what it is now: not what was approved
        now = None
        moved = unreadable(e) if unreadable else REDACTOR.redact(
            f"could not read it again ({type(e).__name__}: {e})")
    else:
        moved = None if now == checksum else (
            moved_text(now) if moved_text else
            f"{what} moved since the approved plan ({checksum[:12]}... approved, "
            f"{str(now)[:12]}... now)")
    base["checksum_now"] = now
    if moved:
        return {**base, "approved": False, "outcome": "moved",
                "reason": f"refused: {moved}; {nothing}"}
    return {**base, "approved": True, "outcome": "approved",
            "reason": f"approved: {given['reason'] or 'no reason given'}"}
