"""One contract for "how did it go", for every flow and every command.

Every flow returns `result(...)`'s shape:

    {"flow": "deploy", "env": "local",
     "verdict": "success" | "failed" | "bad_input",
     "reason": "one line: what happened",           # redacted; the Prefect state message
     "error": "ExcType: text" | None,               # what raised, if anything did (redacted)
     "evidence": {"folder", "s3_uri", "manifest", "upload_pending", "pending_reason",
                  "files"} | None,                  # None only when nothing was written
     "seconds": 12.3,
     "data": {...}}                                 # everything specific to the flow

and ends its run through `to_state`: the dict itself (Completed) on success, a Prefect `Failed`
state carrying the dict otherwise — so the UI, the schedule and the CLI agree. The CLI maps the
verdict to its exit code with `exit_code` (0 success, 1 failed, 2 bad input) and `--json` prints
the dict.
"""

from __future__ import annotations

import time
from typing import Any

from ground.disk import disk_outlives_run
from ground.redact import REDACTOR
from ground.retry import BadInput, naming_denied

SUCCESS, FAILED, BAD_INPUT = "success", "failed", "bad_input"
VERDICTS = (SUCCESS, FAILED, BAD_INPUT)
EXIT_CODES = {SUCCESS: 0, FAILED: 1, BAD_INPUT: 2}
KEYS = ("flow", "env", "verdict", "reason", "error", "evidence", "seconds", "data")

__all__ = ["BAD_INPUT", "EXIT_CODES", "FAILED", "KEYS", "SUCCESS", "VERDICTS", "BadInput",
           "crashed", "evidence_summary", "exit_code", "from_state", "one_line", "result",
           "to_state"]


def one_line(text: Any) -> str:
    return REDACTOR.redact(" ".join(str(text).split())) if text is not None else ""


def result(flow: str, env: str, verdict: str, reason: str = "", *, error: str | None = None,
           evidence: dict | None = None, started: float | None = None,
           data: dict | None = None) -> dict[str, Any]:
    """The one result shape. Every string is redacted here, whatever the caller did."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if verdict == SUCCESS and evidence and evidence.get("upload_pending") \
            and not disk_outlives_run():
        # The only copy of the evidence is on a disk that goes with this task: not a success
        # an auditor could check (ground/disk.py).
        verdict = FAILED
        error = error or (f"evidence upload failed ({evidence.get('pending_reason')}); the only "
                          f"copy is {evidence.get('folder')} on this task's ephemeral disk")
        reason = f"{one_line(reason)}; but {error}"
    reason = one_line(reason) or one_line(error) or verdict
    if verdict != SUCCESS:
        reason = one_line(naming_denied(reason, error))
    return REDACTOR.redact_obj({
        "flow": flow, "env": env, "verdict": verdict, "reason": reason,
        "error": one_line(error) if error else None, "evidence": evidence,
        "seconds": round(time.time() - started, 2) if started else None,
        "data": data or {},
    })


def evidence_summary(res: Any) -> dict[str, Any]:
    """What the caller needs of an `artifacts.bundle.BundleResult` (duck-typed: ground does not
    import the writers)."""
    return {"folder": str(res.folder), "s3_uri": res.s3_uri, "manifest": str(res.manifest),
            "upload_pending": res.pending, "pending_reason": res.pending_reason,
            "files": [f["name"] for f in getattr(res, "files", [])]}


def to_state(res: dict[str, Any]):
    """What a flow returns: the dict (Completed) on success, `Failed` carrying it otherwise."""
    if res["verdict"] == SUCCESS:
        return res
    # Imported here, not at the top: the CLI answers bad input without importing Prefect (~1 s).
    from prefect.states import Failed

    return Failed(message=res["reason"], data=res)


def crashed(flow: str, env: str, message: str) -> dict[str, Any]:
    return result(flow, env, FAILED, message, error=message)


def from_state(state, flow: str = "", env: str = "") -> dict[str, Any]:
    """The result dict of a finished flow run, whatever its final state. A run that crashed or
    returned something else becomes a `failed` result naming the state."""
    try:
        value = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - a crashed run still gets a one-line verdict
        return crashed(flow, env, f"{type(e).__name__}: {e}")
    if isinstance(value, dict) and value.get("verdict") in VERDICTS:
        return value
    if isinstance(value, BaseException):
        return crashed(flow, env, f"{type(value).__name__}: {value}")
    return crashed(flow, env, state.message or f"flow ended {state.type.value}")


def exit_code(res: dict[str, Any]) -> int:
    return EXIT_CODES.get(res.get("verdict"), 1)
