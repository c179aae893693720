"""State that must outlive a flow run: on a disk that goes with the task (an ECS flow run), a
pending evidence upload is evidence lost — the run says so, Failed; and the incremental
CloudTrail archive never advances its state past an archive that is not in the bucket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from artifacts.storage import upload_pending
from flows.cloudtrail_archive import cloudtrail_archive
from flows.preflight import preflight
from ground import aws
from ground.disk import disk_outlives_run
from papyrus_ops.runner import run_flow
from tasks.cloudtrail.state import STATE_KEY
from tasks.cloudtrail.store import read_local_state, state_path, write_local_state
from tests.support.evidence import assert_evidence_complete, assert_pending


@pytest.mark.parametrize(("env", "outlives"), [
    ({}, True), ({"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x"}, False),
    ({"PAPYRUS_EPHEMERAL_DISK": "1"}, False),
    ({"PAPYRUS_EPHEMERAL_DISK": "0", "ECS_CONTAINER_METADATA_URI_V4": "http://x"}, True),
])
def test_which_disks_outlive_the_run(monkeypatch, env, outlives):
    for var in ("ECS_CONTAINER_METADATA_URI_V4", "ECS_CONTAINER_METADATA_URI",
                "PAPYRUS_EPHEMERAL_DISK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert disk_outlives_run() is outlives


def _bucket_down(sb, monkeypatch):
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 2)  # fail fast: the bucket stays down
    aws._cached.cache_clear()
    return sb.faults.unavailable("s3", "PutObject", times=None)


def test_on_an_ephemeral_disk_a_pending_evidence_upload_fails_the_run(sb, monkeypatch):
    monkeypatch.setenv("PAPYRUS_EPHEMERAL_DISK", "1")
    _bucket_down(sb, monkeypatch)
    try:
        res = run_flow(preflight, env="local", check_db_auth=False)
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    assert res["evidence"]["upload_pending"] is True
    assert res["verdict"] == "failed", res
    assert "only copy" in res["reason"] and "ephemeral disk" in res["reason"], res["reason"]
    assert res["data"]["failed"] == []  # every check passed: the evidence is what failed
    assert_pending(res["evidence"]["folder"])
    upload_pending(sb.settings.evidence_root, lambda region=None: sb.client("s3"))
    assert_evidence_complete(sb, res["evidence"]["folder"])


@pytest.fixture
def no_archive_state(sb):
    """No incremental state for `local` during the test; what was there is put back."""
    s3, s = sb.client("s3"), sb.settings
    key = STATE_KEY.format(env=s.env)
    try:
        remote = s3.get_object(Bucket=s.evidence_bucket, Key=key)["Body"].read()
    except ClientError:
        remote = None
    local = read_local_state(s.evidence_root, s.env)
    s3.delete_object(Bucket=s.evidence_bucket, Key=key)
    state_path(s.evidence_root, s.env).unlink(missing_ok=True)
    yield key
    from artifacts.storage import sse_args

    if remote is None:
        s3.delete_object(Bucket=s.evidence_bucket, Key=key)
    else:
        s3.put_object(Bucket=s.evidence_bucket, Key=key, Body=remote,
                      **sse_args(s.evidence_kms_key))
    if local is None:
        state_path(s.evidence_root, s.env).unlink(missing_ok=True)
    else:
        write_local_state(s.evidence_root, s.env, local)


def _at(hours_ago: float) -> str:
    t = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(hours=hours_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_incremental_archive_does_not_advance_while_its_upload_is_pending(
        sb, monkeypatch, no_archive_state):
    s3, s = sb.client("s3"), sb.settings
    # Once: `_at` reads the clock, and a slow run crosses a minute between two calls.
    three_hours_ago, two_hours_ago = _at(3), _at(2)
    params = {"env": "local", "incremental": True, "days": 1, "max_rps": 100,
              "settle_minutes": 0, "overlap_minutes": 0}
    _bucket_down(sb, monkeypatch)
    try:
        first = cloudtrail_archive(**params, until=three_hours_ago)
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    assert first["verdict"] == "success" and first["evidence"]["upload_pending"] is True, first
    # Not in the bucket, so not archived: no state, locally or in the bucket.
    assert read_local_state(s.evidence_root, s.env) is None
    with pytest.raises(ClientError):
        s3.get_object(Bucket=s.evidence_bucket, Key=no_archive_state)

    refused = cloudtrail_archive(**params, until=two_hours_ago, return_state=True)
    assert refused.is_failed()
    assert "upload is pending" in refused.message and "upload-pending --env local" in \
        refused.message, refused.message

    upload_pending(s.evidence_root, lambda region=None: s3)
    assert_evidence_complete(sb, first["evidence"]["folder"])
    after = cloudtrail_archive(**params, until=two_hours_ago)
    assert after["verdict"] == "success" and not after["evidence"]["upload_pending"], after
    state = json.loads(s3.get_object(Bucket=s.evidence_bucket, Key=no_archive_state)["Body"]
                       .read())
    assert state["covered_until"] == two_hours_ago
