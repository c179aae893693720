"""Is an evidence bundle what was written? Every file against the manifest, the manifest against
its signature — in a folder or in the bucket (`papyrus-ops evidence verify`).

    report = verify_folder(Path("docs/evidence/deploy/20251021T101500Z_ab12cd34"), verifier)
    report = verify_s3(s3, "papyrus-evidence-prd", "deploy/20251021T101500Z_ab12cd34/", verifier)
    report.ok, report.problems       # ["<bundle>/<file>: sha256 … != manifest …", …]

A target that holds no manifest.json itself is searched for bundles (every manifest.json below
it), so the whole evidence root, or a bucket prefix, is checked at once. The verifier
(artifacts.signing) is the key the caller trusts; with none, a signature is reported "not
checked". `require_signature` makes an unsigned bundle a problem.

In S3 each object is downloaded and hashed (the latest version; its VersionId is reported):
the metadata sha256 the upload wrote is a claim, the bytes are the evidence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from artifacts import signing
from artifacts.bundle import verify_manifest
from artifacts.signing import MANIFEST, SIGNATURE


class TargetError(ValueError):
    """The target is not there or holds no bundle (bad input, not a failed check)."""


@dataclass
class BundleReport:
    where: str  # the folder or s3://bucket/prefix/
    files: int = 0
    signature: str = "unsigned"  # valid / invalid / unsigned / not checked
    key_id: str | None = None
    problems: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # S3 key -> VersionId checked

    def as_dict(self) -> dict[str, Any]:
        out = {"where": self.where, "files": self.files, "signature": self.signature,
               "key_id": self.key_id, "problems": self.problems}
        if self.versions:
            out["versions"] = self.versions
        return out


@dataclass
class Report:
    target: str
    bundles: list[BundleReport] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every problem, each naming its bundle and file."""
        return [f"{b.where.rstrip('/')}/{p}" for b in self.bundles for p in b.problems]

    @property
    def ok(self) -> bool:
        return not self.problems


def _judge_signature(report: BundleReport, manifest: bytes, doc: dict | None, verifier: Any,
                     require_signature: bool) -> None:
    report.key_id = (doc or {}).get("key_id")
    status, problems = signing.check_signature(manifest, doc, verifier)
    report.signature = status
    report.problems += problems
    if status == "unsigned" and require_signature:
        report.problems.append(f"{SIGNATURE}: missing (the manifest is not signed)")


def _read_signature(raw: bytes | None, report: BundleReport) -> dict | None:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError as err:
        report.problems.append(f"{SIGNATURE}: unreadable ({err})")
        return {}
    return doc


# -- folders ------------------------------------------------------------------------------------
def _bundle_folders(root: Path) -> list[Path]:
    if (root / MANIFEST).is_file():
        return [root]
    found = sorted(p.parent for p in root.rglob(MANIFEST)
                   if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not found:
        raise TargetError(f"{root}: no {MANIFEST} in it or below it")
    return found


def verify_folder(root: Path, verifier: Any = None, *,
                  require_signature: bool = False) -> Report:
    root = Path(root)
    if not root.is_dir():
        raise TargetError(f"{root}: not a folder")
    report = Report(str(root))
    for folder in _bundle_folders(root):
        b = BundleReport(str(folder))
        manifest = (folder / MANIFEST).read_bytes()
        b.problems += verify_manifest(folder)
        with contextlib.suppress(ValueError, AttributeError):  # verify_manifest named it
            b.files = len(json.loads(manifest).get("files", []))
        sig = folder / SIGNATURE
        doc = _read_signature(sig.read_bytes() if sig.is_file() else None, b)
        _judge_signature(b, manifest, doc, verifier, require_signature)
        report.bundles.append(b)
    return report


# -- S3 -----------------------------------------------------------------------------------------
def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, "prefix/" or "")."""
    rest = uri[len("s3://"):] if uri.startswith("s3://") else None
    bucket, _, prefix = (rest or "").partition("/")
    if not bucket or any(c in bucket for c in " \\"):
        raise TargetError(f"{uri!r}: expected s3://<bucket>/<prefix>/")
    prefix = prefix.lstrip("/")
    if prefix.endswith(MANIFEST):
        prefix = prefix[: -len(MANIFEST)]
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _get(s3: Any, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """(bytes, VersionId) of an object; (None, None) when it is not there."""
    try:
        resp = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _code(err) in ("NoSuchKey", "404", "NotFound"):
            return None, None
        if _code(err) == "NoSuchBucket":
            raise TargetError(f"s3://{bucket}: no such bucket") from None
        raise
    body = resp["Body"]
    try:
        return body.read(), resp.get("VersionId")
    finally:
        body.close()


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
    except ClientError as err:
        if _code(err) == "NoSuchBucket":
            raise TargetError(f"s3://{bucket}: no such bucket") from None
        raise
    return out


def _sha256_stream(s3: Any, bucket: str, key: str) -> tuple[str, int, str | None] | None:
    try:
        resp = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _code(err) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    h, size, body = hashlib.sha256(), 0, resp["Body"]
    try:
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            h.update(chunk)
            size += len(chunk)
    finally:
        body.close()
    return h.hexdigest(), size, resp.get("VersionId")


def _verify_s3_bundle(s3: Any, bucket: str, prefix: str, keys: list[str], verifier: Any,
                      require_signature: bool) -> BundleReport:
    b = BundleReport(f"s3://{bucket}/{prefix}")
    manifest, version = _get(s3, bucket, prefix + MANIFEST)
    if manifest is None:
        b.problems.append(f"{MANIFEST}: missing")
        return b
    b.versions[MANIFEST] = version or ""
    try:
        entries = json.loads(manifest)["files"]
        listed = {str(e.get("name", "")) for e in entries}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        b.problems.append(f"{MANIFEST}: unreadable ({err})")
        entries, listed = [], set()
    b.files = len(entries)
    for entry in entries:
        name = str(entry.get("name", ""))
        if not name or ".." in PurePosixPath(name).parts:
            b.problems.append(f"{name}: missing")
            continue
        got = _sha256_stream(s3, bucket, prefix + name)
        if got is None:
            b.problems.append(f"{name}: missing")
            continue
        digest, size, version = got
        b.versions[name] = version or ""
        if size != entry.get("size"):
            b.problems.append(f"{name}: size {size} != manifest {entry.get('size')}")
        if digest != entry.get("sha256"):
            b.problems.append(f"{name}: sha256 {digest} != manifest {entry.get('sha256')}")
    for key in keys:
        rel = key[len(prefix):]
        if rel in (MANIFEST, SIGNATURE) or rel in listed:
            continue
        b.problems.append(f"{rel}: not listed in manifest")
    raw_sig, sig_version = _get(s3, bucket, prefix + SIGNATURE)
    if raw_sig is not None:
        b.versions[SIGNATURE] = sig_version or ""
    _judge_signature(b, manifest, _read_signature(raw_sig, b), verifier, require_signature)
    return b


def verify_s3(s3: Any, bucket: str, prefix: str, verifier: Any = None, *,
              require_signature: bool = False) -> Report:
    report = Report(f"s3://{bucket}/{prefix}")
    keys = _keys(s3, bucket, prefix)
    prefixes = sorted({k[: -len(MANIFEST)] for k in keys
                       if k == prefix + MANIFEST or k.endswith("/" + MANIFEST)})
    if not prefixes:
        raise TargetError(f"s3://{bucket}/{prefix}: no {MANIFEST} in it or below it")
    for p in prefixes:
        nested = [q for q in prefixes if q != p and q.startswith(p)]
        mine = [k for k in keys if k.startswith(p) and not any(k.startswith(q) for q in nested)]
        report.bundles.append(_verify_s3_bundle(s3, bucket, p, mine, verifier,
                                                require_signature))
    return report
