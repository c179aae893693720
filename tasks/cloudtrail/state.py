"""The incremental archive state (the last archive's covered window), locally and in the
evidence bucket: the `read_archive_state` / `write_archive_state` tasks.

The state also records its *tail*: the (EventTime, EventId) of every event archived in
`[covered_until - overlap, covered_until)`, by this archive or an earlier one. The next
incremental run reads that stretch again (CloudTrail may deliver an event after the run that
should have seen it) and skips the ids listed, so a late event is archived once and nothing
twice. The tail is bounded by the overlap: one overlap's worth of events, not the history."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from artifacts.storage import sse_args
from ground.logs import run_logger
from ground.retry import transient_only
from tasks.cloudtrail import LOGGER
from tasks.cloudtrail.paging import error_code
from tasks.cloudtrail.store import read_local_state, write_local_state
from tasks.cloudtrail.window import epoch, fmt


def _logger():
    return run_logger(LOGGER)


STATE_KEY = "docs/evidence/cloudtrail/state-{env}.json"


@task(name="cloudtrail-read-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=transient_only)
def read_archive_state(settings: Any, s3: Any) -> dict[str, Any] | None:
    """The last archive's covered window: the later of the bucket's and the local copy."""
    candidates = []
    local = read_local_state(settings.evidence_root, settings.env)
    if local:
        candidates.append(local)
    if settings.evidence_bucket:
        try:
            body = s3.get_object(Bucket=settings.evidence_bucket,
                                 Key=STATE_KEY.format(env=settings.env))["Body"].read()
            remote = json.loads(body)
            if isinstance(remote, dict) and remote.get("covered_until"):
                candidates.append(remote)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                _logger().warning("cloudtrail: could not read the archive state from the "
                                  "bucket (%s); using the local copy", error_code(exc))
        except Exception as exc:
            _logger().warning("cloudtrail: could not read the archive state from the bucket "
                              "(%s); using the local copy", type(exc).__name__)
    if not candidates:
        return None
    return max(candidates, key=lambda s: epoch(s["covered_until"]))


def state_summary(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The state as a flow's result shows it: the tail's ids counted, not listed."""
    if not state:
        return state
    tail = state.get("tail")
    if not isinstance(tail, dict):
        return dict(state)
    return {**state, "tail": {"since": tail.get("since"), "until": tail.get("until"),
                              "events": len(tail.get("events", []))}}


def tail_floor(state: dict[str, Any] | None) -> str | None:
    """The oldest time whose archived event ids the state lists (None: it lists none, e.g. a
    state written before the overlap existed)."""
    tail = (state or {}).get("tail")
    return tail.get("since") if isinstance(tail, dict) else None


def tail_ids(state: dict[str, Any] | None, since: Any) -> list[str]:
    """The ids the state lists as archived at or after `since`."""
    tail = (state or {}).get("tail")
    if not isinstance(tail, dict):
        return []
    t0 = epoch(since)
    return [eid for t, eid in tail.get("events", []) if epoch(t) >= t0]


def merge_tail(previous: dict[str, Any] | None, archived: list[tuple[float, str]] | list[list],
               covered_until: str, overlap_seconds: float) -> dict[str, Any]:
    """The new state's tail: what this run archived and what the previous tail lists, kept
    from `covered_until - overlap` on (a run moments after the last one must still know what
    the one before archived in its overlap)."""
    since = epoch(covered_until) - overlap_seconds
    events: dict[str, float] = {}
    tail = (previous or {}).get("tail")
    if isinstance(tail, dict):
        for t, eid in tail.get("events", []):
            if epoch(t) >= since:
                events[eid] = epoch(t)
    for t, eid in archived:
        if epoch(t) >= since:
            events[eid] = epoch(t)
    return {"since": fmt(since), "until": covered_until,
            "events": [[fmt(t), eid] for eid, t in sorted(events.items(),
                                                          key=lambda kv: (kv[1], kv[0]))]}


@task(name="cloudtrail-write-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=transient_only)
def write_archive_state(settings: Any, state: dict[str, Any], s3: Any,
                        archived: list[tuple[float, str]] | None = None,
                        overlap_seconds: float = 0.0) -> dict[str, Any]:
    """Record the covered window locally and in the bucket (never moves it backwards), with
    the tail (see the module): `archived` is this run's (EventTime, EventId) from
    `covered_until - overlap_seconds` on."""
    previous = read_archive_state.fn(settings, s3=s3)
    if previous and epoch(previous["covered_until"]) >= epoch(state["covered_until"]):
        return {"written": False, "state": previous, "reason": "the state is already later"}
    if previous and epoch(state["covered_since"]) > epoch(previous["covered_until"]):
        # [previous end, this start) was never archived: moving the state would hide the gap.
        _logger().warning("cloudtrail: archive state not advanced: this window starts %s, "
                          "after the last covered end %s", state["covered_since"],
                          previous["covered_until"])
        return {"written": False, "state": previous, "reason": "not contiguous"}
    state = {**state, "overlap_seconds": overlap_seconds,
             "tail": merge_tail(previous, archived or [], state["covered_until"],
                                overlap_seconds)}
    path = write_local_state(settings.evidence_root, settings.env, state)
    out: dict[str, Any] = {"written": True, "state": state, "local": str(path), "s3": None}
    if settings.evidence_bucket:
        key = STATE_KEY.format(env=settings.env)
        try:
            s3.put_object(Bucket=settings.evidence_bucket, Key=key,
                          Body=json.dumps(state, indent=1, sort_keys=True).encode(),
                          ContentType="application/json",
                          **sse_args(settings.evidence_kms_key),
                          # Object Lock: S3 refuses a PutObject without Content-MD5 or a
                          # checksum.
                          ChecksumAlgorithm="SHA256")
            out["s3"] = f"s3://{settings.evidence_bucket}/{key}"
        except Exception as exc:
            _logger().warning("cloudtrail: archive state kept locally only (%s: %s)",
                              type(exc).__name__, exc)
    return out
