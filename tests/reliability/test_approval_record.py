"""The record of a passed dry run / plan (tasks/approval.py) is written once, whatever happens to
the answer: a PutObject served and its answer lost is resent by botocore, S3 answers 412 (the
key exists), and the task returns the record that is there — one object version, never two."""

from __future__ import annotations

import uuid

from ground import aws
from tasks.approval import read_record, record_key, record_passed


def test_a_lost_answer_to_the_record_write_leaves_one_record(sandbox):
    s, checksum = sandbox.settings, uuid.uuid4().hex * 2
    s3 = aws.client("s3", s.region)  # the flows' own client: the flow-run role
    sandbox.faults.lose_response("s3", "PutObject", times=1)
    first = record_passed.fn(s3, s, "schema_init", checksum, "run-1", {"outcome": "passed"})
    assert first["new"] is False and first["flow_run_id"] == "run-1"  # the resend found ours
    again = record_passed.fn(s3, s, "schema_init", checksum, "run-2", {"outcome": "passed"})
    assert again["new"] is False and again["flow_run_id"] == "run-1"  # the first one stays
    assert read_record(s3, s, "schema_init", checksum)["flow_run_id"] == "run-1"
    key = record_key("schema_init", checksum)
    versions = sandbox.client("s3").list_object_versions(Bucket=s.evidence_bucket, Prefix=key)
    assert [v["Key"] for v in versions.get("Versions", [])] == [key]
    assert read_record(s3, s, "schema_init", "0" * 64) is None
