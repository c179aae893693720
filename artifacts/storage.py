"""Evidence storage in S3: every file of a bundle under the same key prefix, manifest last.

Each object is written with SSE-KMS, a SHA-256 checksum and its hex SHA-256 in the metadata
(``x-amz-meta-sha256``), then read back and compared with the local file byte for byte (S3
validates the checksum on upload; moto does not, so the read-back is what proves it here).
An object that is already there with the same SHA-256 is not written again, so a retry never
adds an object version to the (versioned) evidence bucket.

When S3 cannot be reached the bundle stays on disk with an ``.upload-pending`` marker;
`upload_pending` (``papyrus-ops evidence upload-pending``) completes those later, exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from artifacts import signing
from artifacts.signing import MANIFEST, SIGNATURE
from ground.redact import REDACTOR

log = logging.getLogger("papyrus.artifacts.storage")

PENDING = ".upload-pending"
_CHUNK = 1024 * 1024
_CONTENT_TYPES = {
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".gz": "application/gzip",
    ".sql": "text/plain; charset=utf-8",
    ".diff": "text/plain; charset=utf-8",
}


class UploadVerificationError(RuntimeError):
    """The object in S3 is not the local file (size, checksum, bytes or encryption differ)."""


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, streamed."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def bundle_files(folder: Path) -> list[Path]:
    """Evidence files of a bundle folder, sorted; the manifest, its signature and hidden files
    excluded."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if rel.as_posix() in (MANIFEST, SIGNATURE):
            continue
        out.append(p)
    return out


def _norm_prefix(key_prefix: str) -> str:
    key_prefix = key_prefix.lstrip("/")
    return key_prefix if not key_prefix or key_prefix.endswith("/") else key_prefix + "/"


def _is_missing(err: ClientError) -> bool:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404


def _head(s3, bucket: str, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as err:
        if _is_missing(err):
            return None
        raise


def _hash_body(body) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    try:
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    finally:
        body.close()
    return h.hexdigest(), size


def _same(head: dict, hexdigest: str, b64: str, size: int) -> bool:
    """Does the object described by a head_object answer hold our file?"""
    if head.get("Metadata", {}).get("sha256") != hexdigest:
        return False
    if head.get("ContentLength") != size:
        return False
    checksum = head.get("ChecksumSHA256")
    # A full-object checksum must match; a multipart one ("…-N") cannot be compared here.
    return not (checksum and "-" not in checksum and checksum != b64)


def sse_args(kms_key: str | None) -> dict[str, str]:
    """PutObject's encryption arguments. With the bucket's key: SSE-KMS naming it — S3 reads
    `aws:kms` without a key id as "the AWS managed key aws/s3", which a bucket policy requiring
    the customer key refuses. Without one: no header, the bucket's default encryption applies."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}


def check_encryption(head: dict, where: str, kms_key: str | None) -> None:
    """The object is SSE-KMS encrypted, with the bucket's key when one is configured."""
    if head.get("ServerSideEncryption") != "aws:kms":
        raise UploadVerificationError(
            f"{where}: ServerSideEncryption is {head.get('ServerSideEncryption')!r},"
            " expected 'aws:kms'")
    if kms_key and head.get("SSEKMSKeyId") != kms_key:
        raise UploadVerificationError(
            f"{where}: encrypted with KMS key {head.get('SSEKMSKeyId')!r}, expected {kms_key!r}")


def _verify(s3, bucket: str, key: str, path: Path, hexdigest: str, b64: str, size: int,
            version_id: str | None, verify_bytes: bool = True,
            kms_key: str | None = None) -> None:
    head = _head(s3, bucket, key)
    if head is None:
        raise UploadVerificationError(f"s3://{bucket}/{key}: missing right after upload")
    check_encryption(head, f"s3://{bucket}/{key}", kms_key)
    if not _same(head, hexdigest, b64, size):
        raise UploadVerificationError(
            f"s3://{bucket}/{key}: size/sha256 differ from {path.name} after upload")
    # Strict: the bytes stored are the bytes we have (moto echoes any checksum unvalidated).
    if not verify_bytes:
        return
    got = _stored_hash(s3, bucket, key, version_id)
    if got != (hexdigest, size):
        raise UploadVerificationError(
            f"s3://{bucket}/{key}: stored bytes differ from {path.name}"
            f" ({got[1]} bytes, sha256 {got[0][:12]}… vs {size} bytes, {hexdigest[:12]}…)")


def _stored_hash(s3, bucket: str, key: str, version_id: str | None) -> tuple[str, int]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    return _hash_body(s3.get_object(**kwargs)["Body"])


def upload_file(path: Path, bucket: str, key: str, s3, *, verify_bytes: bool = True,
                kms_key: str | None = None) -> bool:
    """Upload one file unless an identical object is already there; verify it. True when a new
    object (version) was written.

    verify_bytes: read objects back and hash them, after an upload and before trusting one
    that is already there (default; S3 itself validates checksums, moto does not).
    kms_key: the bucket's customer-managed key ARN (settings.evidence_kms_key): named in the
    upload and checked on the stored object."""
    hexdigest, size = sha256_file(path)
    b64 = base64.b64encode(bytes.fromhex(hexdigest)).decode()
    head = _head(s3, bucket, key)
    if head is not None and _same(head, hexdigest, b64, size):
        check_encryption(head, f"s3://{bucket}/{key} (already present)", kms_key)
        if not verify_bytes or _stored_hash(s3, bucket, key, head.get("VersionId")) == (
                hexdigest, size):
            log.debug("s3://%s/%s already present (sha256 %s)", bucket, key, hexdigest)
            return False
        log.warning("s3://%s/%s claims sha256 %s but holds other bytes; uploading again",
                    bucket, key, hexdigest)
    content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    with open(path, "rb") as body:
        resp = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentLength=size,
            ContentType=content_type,
            **sse_args(kms_key),
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64,
            Metadata={"sha256": hexdigest},
        )
    _verify(s3, bucket, key, path, hexdigest, b64, size, resp.get("VersionId"), verify_bytes,
            kms_key)
    return True


def upload_bundle(folder: Path, bucket: str, key_prefix: str, s3, *,
                  verify_bytes: bool = True, kms_key: str | None = None) -> list[str]:
    """Upload every file of `folder` under `key_prefix`, then the manifest's signature (if the
    bundle is signed), manifest.json last; verify each.

    Returns the keys now in S3 (uploaded or already present with the same SHA-256). Raises on
    any S3 error or verification failure (the caller decides: `finish` marks the bundle
    pending)."""
    folder = Path(folder)
    prefix = _norm_prefix(key_prefix)
    files = bundle_files(folder)
    files += [p for p in (folder / SIGNATURE, folder / MANIFEST) if p.is_file()]
    keys: list[str] = []
    for path in files:
        key = prefix + path.relative_to(folder).as_posix()
        upload_file(path, bucket, key, s3, verify_bytes=verify_bytes, kms_key=kms_key)
        keys.append(key)
    return keys


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(REDACTOR.redact(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def mark_pending(folder: Path, reason: str, *, bucket: str | None = None,
                 key_prefix: str | None = None, region: str | None = None,
                 kms_key: str | None = None, signing_key: str | None = None) -> None:
    """Write `folder/.upload-pending`: where the bundle must go and why it is not there yet
    (and the key its manifest must be signed with, when it is signed).

    bucket/key_prefix/region default to the values recorded in the folder's manifest.json."""
    folder = Path(folder)
    recorded: dict[str, Any] = {}
    try:
        recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    previous: dict[str, Any] = {}
    try:
        previous = json.loads((folder / PENDING).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    marker = {
        "bucket": bucket or recorded.get("bucket") or previous.get("bucket"),
        "key_prefix": key_prefix if key_prefix is not None
        else recorded.get("key_prefix", previous.get("key_prefix")),
        "region": region or recorded.get("region") or previous.get("region"),
        "kms_key": kms_key or previous.get("kms_key"),
        "signing_key": signing_key or previous.get("signing_key"),
        "reason": _one_line(reason),
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "attempts": int(previous.get("attempts", 0)) + 1,
    }
    if not marker["bucket"] or marker["key_prefix"] is None:
        raise ValueError(f"{folder}: no bucket/key_prefix given and none in {MANIFEST}")
    _atomic_write(folder / PENDING, json.dumps(marker, indent=2, sort_keys=True) + "\n")


def _call_factory(s3_factory: Callable[..., Any], region: str | None):
    try:
        params = inspect.signature(s3_factory).parameters.values()
        takes_arg = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in params)
    except (TypeError, ValueError):
        takes_arg = True
    return s3_factory(region) if takes_arg else s3_factory()


def pending_bundles(evidence_root: Path, bucket: str | None = None) -> list[Path]:
    """The bundle folders under `evidence_root` still waiting for their upload (to `bucket`)."""
    found = []
    for marker_path in sorted(Path(evidence_root).rglob(PENDING)):
        try:
            target = json.loads(marker_path.read_text(encoding="utf-8")).get("bucket")
        except (OSError, ValueError, AttributeError):
            target = None  # unreadable: upload_pending reports it; count it as waiting
        if bucket is None or target in (None, bucket):
            found.append(marker_path.parent)
    return found


def upload_pending(evidence_root: Path, s3_factory: Callable[..., Any],
                   kms_factory: Callable[..., Any] | None = None) -> list[tuple[Path, str]]:
    """Upload every bundle under `evidence_root` that carries an `.upload-pending` marker.

    `s3_factory(region)` (or `s3_factory()`) returns an S3 client; `kms_factory` likewise a KMS
    client, used when the marker names a signing key and the manifest's signature is missing
    or stale (signed first, then uploaded). On success the marker is
    removed (status "uploaded: N objects"); on failure it stays, with the new reason and the
    attempt count (status "failed: <one-line reason>"). Never raises for one bundle's failure.
    """
    results: list[tuple[Path, str]] = []
    clients: dict[str | None, Any] = {}
    kms_clients: dict[str | None, Any] = {}
    for marker_path in sorted(Path(evidence_root).rglob(PENDING)):
        folder = marker_path.parent
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
            bucket, prefix = marker["bucket"], marker["key_prefix"]
            region = marker.get("region")
        except (OSError, ValueError, KeyError, TypeError) as err:
            results.append((folder, f"skipped: unreadable {PENDING} ({_one_line(str(err))})"))
            continue
        try:
            signing_key = marker.get("signing_key")
            if signing_key and not signing.is_current(folder, signing_key):
                if kms_factory is None:
                    raise signing.SigningError(
                        f"the manifest must be signed with {signing_key}: no KMS client")
                if region not in kms_clients:
                    kms_clients[region] = _call_factory(kms_factory, region)
                signing.sign_manifest(folder, kms_clients[region], signing_key)
            if region not in clients:
                clients[region] = _call_factory(s3_factory, region)
            keys = upload_bundle(folder, bucket, prefix, clients[region],
                                 kms_key=marker.get("kms_key"))
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            try:
                mark_pending(folder, reason, bucket=bucket, key_prefix=prefix, region=region,
                             signing_key=marker.get("signing_key"))
            except (OSError, ValueError):
                log.exception("could not update %s", marker_path)
            log.warning("evidence upload still pending for %s: %s", folder, _one_line(reason))
            results.append((folder, f"failed: {_one_line(reason)}"))
            continue
        marker_path.unlink(missing_ok=True)
        log.info("evidence uploaded: %s -> s3://%s/%s (%d objects)", folder, bucket,
                 _norm_prefix(prefix), len(keys))
        results.append((folder, f"uploaded: {len(keys)} objects"))
    return results
