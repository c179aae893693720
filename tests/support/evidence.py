"""Evidence bundles: whole on disk, pending, or exactly mirrored in the bucket (the session
sandbox's), and S3 clients/readers for the evidence-library tests' own moto server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
from botocore.config import Config

from artifacts import verify_manifest
from artifacts.storage import MANIFEST, PENDING, SIGNATURE, bundle_files
from tests.support.cli import run_cli

# The evidence-library tests' own moto server (tests/artifacts/conftest.py).
REGION = "us-west-2"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def make_s3(endpoint: str, attempts: int = 2):
    return boto3.Session().client("s3", region_name=REGION, endpoint_url=endpoint,
                        config=Config(retries={"mode": "standard", "max_attempts": attempts},
                                      connect_timeout=2, read_timeout=10), **CREDS)


def versions(s3, bucket: str) -> list[tuple[str, str]]:
    """(key, version id) of every object version in the bucket."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    return sorted(out)


# -- bundles on the session sandbox -------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def local_files(folder: Path) -> dict[str, Path]:
    files = {p.relative_to(folder).as_posix(): p for p in bundle_files(folder)}
    files[MANIFEST] = folder / MANIFEST
    if (folder / SIGNATURE).is_file():  # a signed bundle: its signature is uploaded with it
        files[SIGNATURE] = folder / SIGNATURE
    return files


def bucket_versions(sb, bucket: str, prefix: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """{key: [versions]} under `prefix`, and the delete markers there."""
    s3 = sb.client("s3")
    versions: dict[str, list[dict]] = {}
    markers: list[dict] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            versions.setdefault(v["Key"], []).append(v)
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def assert_evidence_local(folder: str | Path) -> dict:
    """The bundle is whole on disk: every file listed with its SHA-256, nothing unlisted."""
    folder = Path(folder)
    assert folder.is_dir(), folder
    assert verify_manifest(folder) == [], verify_manifest(folder)
    return json.loads((folder / MANIFEST).read_text())


def assert_evidence_complete(sb, folder: str | Path) -> dict:
    """Local bundle whole, nothing pending, and the bucket holds exactly the same files under
    the manifest's prefix: same bytes (SHA-256 of what S3 returns), one object version each
    (no duplicate upload), nothing missing, nothing extra."""
    folder = Path(folder)
    manifest = assert_evidence_local(folder)
    assert not (folder / PENDING).exists(), (folder / PENDING).read_text()
    bucket, prefix = manifest["bucket"], manifest["key_prefix"]
    assert bucket == sb.settings.evidence_bucket and prefix.endswith("/"), manifest
    local = local_files(folder)
    versions, markers = bucket_versions(sb, bucket, prefix)
    assert markers == []
    assert sorted(versions) == sorted(prefix + rel for rel in local), (sorted(versions), prefix)
    s3 = sb.client("s3")
    for rel, path in local.items():
        key = prefix + rel
        assert len(versions[key]) == 1, f"{key}: {len(versions[key])} versions"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert sha256(body) == sha256(path.read_bytes()), key
    return manifest


def assert_pending(folder: str | Path) -> dict:
    folder = Path(folder)
    assert_evidence_local(folder)
    marker = folder / PENDING
    assert marker.is_file(), f"{folder}: no {PENDING}"
    return json.loads(marker.read_text())


def upload_pending_twice(sb, capture_dir: Path, folder: str) -> None:
    """`papyrus-ops evidence upload-pending` completes the bundle; a second call finds nothing
    to do and adds no object version."""
    r = run_cli("evidence", "upload-pending", "--env", "local", script=True,
                capture_dir=capture_dir)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"{folder}: uploaded: " in r.stdout, r.stdout
    assert_evidence_complete(sb, folder)
    again = run_cli("evidence", "upload-pending", "--env", "local", script=True,
                    capture_dir=capture_dir)
    assert again.returncode == 0 and "no pending evidence" in again.stdout, again.stdout
    assert_evidence_complete(sb, folder)  # still one version per key
