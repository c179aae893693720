"""Shared helpers of the evidence-library tests (a module, so tests can import it)."""

from __future__ import annotations

import time

import boto3
from botocore.config import Config

CANARY = "CANARY-evidence-9b1f4e-PAPYRUS"
REGION = "us-west-2"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def make_s3(endpoint: str, attempts: int = 2):
    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint,
                        config=Config(retries={"mode": "standard", "max_attempts": attempts},
                                      connect_timeout=2, read_timeout=10), **CREDS)


def versions(s3, bucket: str) -> list[tuple[str, str]]:
    """(key, version id) of every object version in the bucket."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    return sorted(out)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
