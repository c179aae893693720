"""The "last recorded deploy": one small JSON object per environment in the evidence bucket.

Key: ``state/<env>/last_deploy.json`` in ``settings.evidence_bucket``. Shape (version 1)::

    {
      "version": 1,
      "env": "prd",
      "at": "2025-10-21T03:04:05Z",            # UTC, when the deploy was recorded
      "rds_endpoint_address": "papyrus-prd.xxxx.us-west-2.rds.amazonaws.com",
      "rds_endpoint_port": 5432,
      "task_definition_arn": "arn:aws:ecs:...:task-definition/papyrus-task:39",
      "image_digest": "sha256:...",
      ...                                        # any further fields the caller passes
    }

The deploy flow calls `record_deploy` after a successful deploy; preflight reads it with
`read_last_deploy` to detect an RDS endpoint change. No object yet means "no previous deploy".
Nothing secret ever goes in here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from botocore.exceptions import ClientError
from prefect import task

from artifacts.storage import sse_args
from ground.settings import Settings
from tasks.rds_report import SNAPSHOT_FIELDS
from tasks.rds_report import snapshot as _snapshot

STATE_VERSION = 1
KNOWN_FIELDS = ("rds_endpoint_address", "rds_endpoint_port", "task_definition_arn",
                "image_digest")
_SECRETISH = ("password", "secret", "token")


class StateError(ValueError):
    """The state object exists but cannot be read as a last-deploy record."""


def state_key(settings: Settings) -> str:
    return f"state/{settings.env}/last_deploy.json"


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_last_deploy(s3, settings: Settings) -> dict[str, Any] | None:
    """The last recorded deploy, or None when nothing has been recorded for this env."""
    try:
        obj = s3.get_object(Bucket=settings.evidence_bucket, Key=state_key(settings))
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    raw = obj["Body"].read()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StateError(f"s3://{settings.evidence_bucket}/{state_key(settings)} is not JSON") \
            from None
    if not isinstance(doc, dict):
        raise StateError(f"s3://{settings.evidence_bucket}/{state_key(settings)} is not an object")
    return doc


def current_rds_endpoint(rds, settings: Settings) -> dict[str, Any]:
    """{"rds_endpoint_address", "rds_endpoint_port"} of the environment's RDS instance now."""
    inst = rds.describe_db_instances(DBInstanceIdentifier=settings.rds_instance)["DBInstances"][0]
    ep = inst.get("Endpoint") or {}
    return {"rds_endpoint_address": ep.get("Address"), "rds_endpoint_port": ep.get("Port")}


def rds_snapshot(rds, settings: Settings) -> dict[str, Any]:
    snap = _snapshot(rds, settings)
    return {k: snap[k] for k in SNAPSHOT_FIELDS}


def record_deploy(s3, settings: Settings, *, rds, **fields: Any) -> dict[str, Any]:
    """Write the last-deploy record (overwrites; idempotent for the same fields).

    Usual fields: rds_endpoint_address, rds_endpoint_port, task_definition_arn, image_digest;
    `at` defaults to now (UTC). When the RDS endpoint is not given it is looked up with `rds`
    (None: not recorded), so the next preflight can tell whether it changed.
    Returns the document written.
    """
    bad = [k for k in fields if any(w in k.lower() for w in _SECRETISH)]
    if bad:
        raise ValueError(f"refusing to record secret-looking fields in deploy state: {bad}")
    if not fields.get("rds_endpoint_address"):
        try:
            if rds is not None:
                fields.update(current_rds_endpoint(rds, settings))
        except Exception as e:  # noqa: BLE001 - the record is still worth writing
            logging.getLogger("papyrus.state").warning(
                "deploy state: RDS endpoint not recorded (%s)", type(e).__name__)
    if rds is not None and "rds_snapshot" not in fields:
        # What the next preflight's RDS change report compares with (tasks/rds_report).
        try:
            fields["rds_snapshot"] = rds_snapshot(rds, settings)
        except Exception as e:  # noqa: BLE001 - the record is still worth writing
            logging.getLogger("papyrus.state").warning(
                "deploy state: RDS snapshot not recorded (%s)", type(e).__name__)
    if fields.get("rds_endpoint_port") is not None:
        fields["rds_endpoint_port"] = int(fields["rds_endpoint_port"])
    at = fields.pop("at", None) or _utc_now()
    doc = {"version": STATE_VERSION, "env": settings.env, "at": at}
    doc.update({k: fields.pop(k, None) for k in KNOWN_FIELDS})
    doc.update(fields)
    s3.put_object(Bucket=settings.evidence_bucket, Key=state_key(settings),
                  Body=json.dumps(doc, indent=2, sort_keys=True, default=str).encode(),
                  ContentType="application/json", **sse_args(settings.evidence_kms_key),
                  # Object Lock: S3 refuses a PutObject without Content-MD5 or a checksum.
                  ChecksumAlgorithm="SHA256")
    return doc


def clear_last_deploy(s3, settings: Settings) -> None:
    """Remove the record (tests, or after decommissioning an environment)."""
    s3.delete_object(Bucket=settings.evidence_bucket, Key=state_key(settings))


# Prefect task wrappers for flows that want the call in their graph (S3 calls are safe to retry).
read_last_deploy_task = task(read_last_deploy, name="read-last-deploy", retries=3,
                             retry_delay_seconds=[1, 2, 4])
record_deploy_task = task(record_deploy, name="record-deploy", retries=3,
                          retry_delay_seconds=[1, 2, 4])
