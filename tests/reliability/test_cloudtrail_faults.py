"""The CloudTrail archive on the session sandbox (its LookupEvents stand-in holds a 90-day history):
interrupted part-way (a non-retryable error after a few pages), then rerun under throttling. The
first run fails with a clear message and publishes nothing; the rerun resumes from the checkpoint
and the archive holds every event of the window exactly once, in the bucket byte for byte."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from flows.cloudtrail_archive import cloudtrail_archive
from sandbox import cloudtrail as ct
from sandbox import seed
from tasks.cloudtrail.publish import ARCHIVE_KEY_PREFIX
from tasks.cloudtrail.window import parse_utc
from tests.support.evidence import assert_evidence_complete, bucket_versions

PARAMS = {"env": "local", "days": 6, "max_rps": 100, "slice_hours": 24, "checkpoint_every": 1,
          "settle_minutes": 0}


def event_ids(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["EventId"] for line in f]


def published(sb) -> set[str]:
    root = Path(sb.settings.evidence_root) / "cloudtrail"
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} \
        if root.is_dir() else set()


def test_interrupted_archive_resumes_under_throttling_exactly_once(sb, monkeypatch):
    store = sb.cloudtrail.get(seed.ACCOUNT_ID, sb.settings.region)
    original = store.handle
    calls = {"n": 0}

    def failing(request):
        calls["n"] += 1
        if calls["n"] > 3:
            raise ct.LookupEventsError("AccessDeniedException", "injected: cut after 3 pages")
        return original(request)

    before_local = published(sb)
    before_bucket, _ = bucket_versions(sb, sb.settings.evidence_bucket, ARCHIVE_KEY_PREFIX)
    monkeypatch.setattr(store, "handle", failing)
    state = cloudtrail_archive(**PARAMS, return_state=True)
    assert state.is_failed(), state
    assert "failed" in state.message and "the checkpoint" in state.message \
        and "rerun the same request to resume" in state.message, state.message
    failed = state.result(raise_on_failure=False)
    assert failed["verdict"] == "failed" and failed["reason"] == state.message
    assert failed["evidence"] is None
    # Nothing published: no bundle, no object.
    assert published(sb) == before_local
    assert bucket_versions(sb, sb.settings.evidence_bucket, ARCHIVE_KEY_PREFIX)[0] == before_bucket

    monkeypatch.setattr(store, "handle", original)
    rule = sb.faults.throttle("cloudtrail", "LookupEvents", times=None, every=2)
    try:
        res = cloudtrail_archive(**PARAMS)
    finally:
        sb.faults.clear()
    result = {**res, **res["data"]}  # the flow's own fields next to the contract's
    assert rule.seen // rule.every >= 1  # the rerun really was throttled
    assert result["verdict"] == "success" and result["resumed"] is True, result
    assert result["attempts"] == 2
    since = parse_utc(result["window"]["since"]).timestamp()
    until = parse_utc(result["window"]["until"]).timestamp()
    # The region's events, and the global services' the archive reads from us-east-1.
    east = sb.cloudtrail.get(seed.ACCOUNT_ID, "us-east-1")
    expected = {e.event_id for e in [*store.events(), *(
        e for e in east.events() if e.event_source in ("iam.amazonaws.com", "sts.amazonaws.com"))]
        if since <= e.event_time < until}
    folder = Path(result["evidence"]["folder"])
    [all_path] = folder.glob("cloudtrail_events_*Z.jsonl.gz")
    ids = event_ids(all_path)
    assert len(ids) == len(set(ids)) == result["events"] == len(expected) > 0
    assert set(ids) == expected
    manifest = assert_evidence_complete(sb, folder)
    assert manifest["key_prefix"].startswith(ARCHIVE_KEY_PREFIX)
    assert published(sb) - before_local == {folder.name}
