"""The evidence bundle of one flow run: a timestamped folder, redacted files, a SHA-256 manifest.

    bundle = EvidenceBundle.open(settings, "deploy")
    bundle.write_text("schema_dryrun_exec", output)        # <ts>_schema_dryrun_exec.log
    bundle.write_json("rds_sg_inbound_after", rules)      # <ts>_rds_sg_inbound_after.json
    bundle.set_context(image_digest=digest, task_definition_arn=arn)
    bundle.add_check("force_ssl", "1", actual, "pass")
    result = bundle.finish("pass", s3=s3, kms=kms)         # manifest.json (signed), S3, artifacts

Folder: ``<settings.evidence_root>/<flow_name>/<ts>_<run8>/``; S3 keys: the same relative path
under the evidence bucket. Nothing written here ever holds a registered secret.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from artifacts import signing, storage
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR, Redactor

log = logging.getLogger("papyrus.artifacts.bundle")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# Whole file names brought in by add_file may carry a timestamp: cloudtrail_events_<UTC>.jsonl.gz
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
EXT_RE = re.compile(r"^[a-z0-9][a-z0-9.]*$")
VERDICTS = ("pass", "fail", "warn")
TS_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_ts(dt: datetime | None = None) -> str:
    """UTC timestamp as used in evidence names: 20251021T101500Z."""
    return (dt or datetime.now(UTC)).astimezone(UTC).strftime(TS_FORMAT)


def iso_utc(dt: datetime) -> str:
    """ISO 8601 in UTC with a Z: 2025-10-21T10:15:00.123Z."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_name(name: str, what: str = "evidence name",
               pattern: re.Pattern[str] = NAME_RE) -> str:
    """`name` must match [a-z0-9][a-z0-9_.-]* and hold no '..' (no path can be smuggled in)."""
    if not isinstance(name, str) or not pattern.match(name) or ".." in name:
        raise ValueError(f"invalid {what} {name!r}: expected {pattern.pattern[1:-1]}"
                         " (no '/', '\\' or '..')")
    return name


def _check_ext(ext: str) -> str:
    if not isinstance(ext, str) or not EXT_RE.match(ext) or ".." in ext or ext.endswith("."):
        raise ValueError(f"invalid extension {ext!r}: expected e.g. 'log', 'json', 'jsonl.gz'")
    return ext


def _current_flow_run_id() -> str | None:
    # A process running a flow has imported Prefect; don't pay its import time otherwise.
    if "prefect.context" not in sys.modules:
        return None
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.get_id()
    except Exception:
        return None
    return str(run_id) if run_id else None


def _in_run_context() -> bool:
    if "prefect.context" not in sys.modules:
        return False
    try:
        from prefect.context import FlowRunContext, TaskRunContext

        return bool(FlowRunContext.get() or TaskRunContext.get())
    except Exception:
        return False


def _inside_package(path: Path) -> Path | None:
    for parent in (path, *path.parents):
        if (parent / "__init__.py").is_file():
            return parent
    return None


@dataclass
class BundleResult:
    folder: Path
    manifest: Path
    uploaded: list[str]
    pending: bool
    s3_uri: str | None
    verdict: str
    # Additions to the contract: where the bundle belongs in S3 (even while pending), why it is
    # pending, and the manifest's own SHA-256 (published in the Prefect summary as an anchor).
    bucket: str | None = None
    key_prefix: str = ""
    pending_reason: str | None = None
    manifest_sha256: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    # manifest.json.sig.json when the manifest is signed (artifacts.signing), else None.
    signature: Path | None = None


class EvidenceBundle:
    """Evidence of one flow run. Thread-safe for writes from concurrent tasks."""

    def __init__(self, settings: Any, flow_name: str, run_id: str, started_at: datetime,
                 folder: Path, key_prefix: str, redactor: Redactor) -> None:
        self.settings = settings
        self.flow_name = flow_name
        self.run_id = run_id
        self.started_at = started_at
        self.ts = utc_ts(started_at)
        self.folder = folder
        self.key_prefix = key_prefix
        self.redactor = redactor
        self.context: dict[str, Any] = {}
        self.checks: list[dict[str, Any]] = []
        self.result: BundleResult | None = None
        self._text_files: set[Path] = set()
        self._lock = threading.RLock()
        self._dirty = True

    # Picklable (the lock is recreated), so Prefect can hash a bundle passed to a task for its
    # default cache key instead of logging "Unable to create hash". A copy in another process
    # writes to the same folder, but its context/checks stay with the copy.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"EvidenceBundle({self.flow_name!r}, folder={str(self.folder)!r})"

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Any, flow_name: str, run_id: str | None = None,
             redactor: Redactor = REDACTOR, *, key_prefix: str | None = None,
             folder_name: str | None = None) -> EvidenceBundle:
        """Create `<evidence_root>/<flow_name>/<ts>_<run8>/`.

        run_id: the Prefect flow run id when inside a run, else a fresh uuid4.
        key_prefix: S3 key prefix override (default: the folder's path under evidence_root),
            e.g. "docs/evidence/cloudtrail/<ts>/" for the CloudTrail archive.
        folder_name: folder name override (default "<ts>_<run8>"); an existing folder of that
            name is reused (resume).
        """
        install_log_redaction()
        check_name(flow_name, "flow name")
        root = Path(settings.evidence_root).expanduser()
        if not root.is_absolute():
            root = Path.cwd() / root
        root = root.resolve()
        package = _inside_package(root)
        if package is not None:
            raise ValueError(f"evidence root {root} is inside the Python package {package}")
        started = datetime.now(UTC)
        run_id = str(run_id or _current_flow_run_id() or uuid.uuid4())
        run8 = (re.sub(r"[^a-z0-9]", "", run_id.lower()) or uuid.uuid4().hex)[:8]
        ts = utc_ts(started)
        base = root / flow_name
        if folder_name is not None:
            check_name(folder_name, "folder name", FILE_NAME_RE)
            folder = base / folder_name
            folder.mkdir(parents=True, exist_ok=True)
        else:
            base.mkdir(parents=True, exist_ok=True)
            folder = base / f"{ts}_{run8}"
            n = 1
            while True:
                try:
                    folder.mkdir()
                    break
                except FileExistsError:
                    n += 1
                    folder = base / f"{ts}_{run8}-{n}"
        prefix = key_prefix if key_prefix is not None else folder.relative_to(root).as_posix()
        prefix = prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        bundle = cls(settings, flow_name, run_id, started, folder, prefix, redactor)
        env = getattr(settings, "env", None)
        if env:
            bundle.context["environment"] = env
        return bundle

    # -- files ------------------------------------------------------------------------------
    def path(self, name: str, ext: str = "log") -> Path:
        return self.folder / f"{self.ts}_{check_name(name)}.{_check_ext(ext)}"

    def write_text(self, name: str, text: str, ext: str = "log") -> Path:
        p = self.path(name, ext)
        clean = self.redactor.redact(text)
        with self._lock:
            p.write_text(clean, encoding="utf-8")
            self._text_files.add(p)
            self._dirty = True
        return p

    def append_text(self, name: str, text: str, ext: str = "log") -> Path:
        p = self.path(name, ext)
        clean = self.redactor.redact(text)
        with self._lock:
            with open(p, "a", encoding="utf-8") as f:
                f.write(clean)
            self._text_files.add(p)
            self._dirty = True
        return p

    def write_json(self, name: str, obj: Any, ext: str = "json") -> Path:
        p = self.path(name, ext)
        # Through JSON first so that objects rendered by default=str are redacted too.
        plain = json.loads(json.dumps(obj, default=str))
        text = json.dumps(self.redactor.redact_obj(plain), indent=2, default=str, sort_keys=True)
        with self._lock:
            p.write_text(text + "\n", encoding="utf-8")
            self._dirty = True
        return p

    def add_file(self, src: Path, name: str | None = None) -> Path:
        """Copy an already-produced file in as-is (binary, not redacted: the caller vouches for
        its content). `name` is the file name in the bundle (default: src's name)."""
        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"evidence source {src} is not a file")
        dest = self.folder / check_name(src.name if name is None else name, "file name",
                                       FILE_NAME_RE)
        with self._lock:
            if dest.resolve() != src.resolve():
                tmp = dest.with_name(f".{dest.name}.tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            self._text_files.discard(dest)
            self._dirty = True
        return dest

    # -- facts ------------------------------------------------------------------------------
    def set_context(self, **fields: Any) -> None:
        with self._lock:
            self.context.update(self.redactor.redact_obj(fields))
            self._dirty = True

    def add_check(self, check: str, expected: Any, actual: Any, verdict: str) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"invalid verdict {verdict!r}: expected one of {VERDICTS}")
        row = self.redactor.redact_obj(
            {"check": str(check), "expected": expected, "actual": actual, "verdict": verdict})
        with self._lock:
            self.checks.append(json.loads(json.dumps(row, default=str)))
            self._dirty = True

    # -- finishing --------------------------------------------------------------------------
    def _files(self) -> list[dict[str, Any]]:
        out = []
        for p in storage.bundle_files(self.folder):
            digest, size = storage.sha256_file(p)
            out.append({"name": p.relative_to(self.folder).as_posix(), "sha256": digest,
                        "size": size})
        return out

    def _rescan_text_files(self) -> None:
        """Redact whole text files again: catches a secret split across appends and secrets
        registered after the file was written."""
        for p in sorted(self._text_files):
            if not p.is_file():
                continue
            text = p.read_text(encoding="utf-8")
            clean = self.redactor.redact(text)
            if clean != text:
                p.write_text(clean, encoding="utf-8")

    def _bucket(self) -> str | None:
        return getattr(self.settings, "evidence_bucket", None) or None

    def _write_manifest(self, verdict: str, finished: datetime) -> Path:
        self._rescan_text_files()
        files = self._files()
        manifest = {
            "schema": 1,
            "flow": self.flow_name,
            "flow_run_id": self.run_id,
            "environment": getattr(self.settings, "env", None) or self.context.get("environment"),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(finished),
            "duration_seconds": round((finished - self.started_at).total_seconds(), 3),
            "verdict": verdict,
            "context": self.context,
            "checks": self.checks,
            "files": files,
            "bucket": self._bucket(),
            "key_prefix": self.key_prefix,
            "region": getattr(self.settings, "region", None),
        }
        manifest = self.redactor.redact_obj(manifest)
        path = self.folder / storage.MANIFEST
        tmp = self.folder / f".{storage.MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=str, sort_keys=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
        return path

    def finish(self, verdict: str, s3: Any = None, upload: bool = True,
               kms: Any = None) -> BundleResult:
        """Write manifest.json, sign it (when `[evidence] signing_key` is set), upload (unless
        there is no bucket), publish Prefect artifacts.

        Never raises because of S3 or KMS: on failure the bundle stays on disk,
        `.upload-pending` is written and `result.pending` is True (upload-pending signs first
        if the signature is what failed). Calling finish again with nothing changed keeps the
        manifest and its signature as they are and only retries the upload (which skips what
        is there). `upload=False` keeps the bundle local and unsigned (e.g. refused input must
        not write anywhere). The caller gives the `s3` and `kms` clients (tasks and bundles
        receive their clients)."""
        if verdict not in VERDICTS:
            raise ValueError(f"invalid verdict {verdict!r}: expected one of {VERDICTS}")
        with self._lock:
            manifest = self.folder / storage.MANIFEST
            if (self._dirty or self.result is None or self.result.verdict != verdict
                    or not manifest.is_file()):
                manifest = self._write_manifest(verdict, datetime.now(UTC))
                self._dirty = False
            files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            manifest_sha, _ = storage.sha256_file(manifest)
            bucket = self._bucket()
            result = BundleResult(folder=self.folder, manifest=manifest, uploaded=[],
                                  pending=False, s3_uri=None, verdict=verdict, bucket=bucket,
                                  key_prefix=self.key_prefix, manifest_sha256=manifest_sha,
                                  files=files)
            if bucket and upload and s3 is None:
                raise ValueError(f"finish: bucket {bucket!r} needs the s3 client to upload "
                                 "to (or upload=False)")
            signing_key = self._signing_key()
            if signing_key and upload and kms is None:
                raise ValueError(f"finish: signing key {signing_key!r} needs the kms client "
                                 "to sign with (or upload=False)")
            signed = not (signing_key and upload) or self._sign(result, kms, signing_key)
            if bucket and upload and signed:
                self._upload(result, s3)
            self.result = result
        if _in_run_context():
            try:
                from artifacts.prefect_artifacts import publish_summary

                publish_summary(self, result)
            except Exception as err:  # artifacts are a view; the evidence is on disk/S3
                log.warning("could not publish evidence artifacts: %s",
                            self.redactor.redact(f"{type(err).__name__}: {err}"))
        return result

    def _signing_key(self) -> str | None:
        return getattr(self.settings, "evidence_signing_key", None) or None

    def _sign(self, result: BundleResult, kms: Any, key: str) -> bool:
        """Sign the manifest; on failure mark the bundle pending (nothing is uploaded unsigned:
        an auditor would find a bundle without its signature)."""
        try:
            signing.sign_manifest(self.folder, kms, key)
        except signing.SigningError as err:
            reason = " ".join(self.redactor.redact(str(err)).split())
            result.pending, result.pending_reason = True, reason
            if result.bucket:
                try:
                    storage.mark_pending(self.folder, reason, bucket=result.bucket,
                                         key_prefix=self.key_prefix,
                                         region=getattr(self.settings, "region", None),
                                         kms_key=self._kms_key(), signing_key=key)
                except OSError as mark_err:
                    log.error("could not write %s in %s: %s", storage.PENDING, self.folder,
                              mark_err)
            _warn(f"evidence manifest in {self.folder} not signed ({reason}); bundle kept and "
                  "marked pending; run `papyrus-ops evidence upload-pending` to complete it")
            return False
        result.signature = self.folder / storage.SIGNATURE
        return True

    def _kms_key(self) -> str | None:
        return getattr(self.settings, "evidence_kms_key", None) or None

    def _upload(self, result: BundleResult, s3: Any) -> None:
        bucket = result.bucket
        assert bucket
        region = getattr(self.settings, "region", None)
        try:
            result.uploaded = storage.upload_bundle(self.folder, bucket, self.key_prefix, s3,
                                                    kms_key=self._kms_key())
        except Exception as err:
            reason = self.redactor.redact(f"{type(err).__name__}: {err}")
            result.pending, result.pending_reason = True, " ".join(reason.split())
            try:
                storage.mark_pending(self.folder, reason, bucket=bucket,
                                     key_prefix=self.key_prefix, region=region,
                                     kms_key=self._kms_key(), signing_key=self._signing_key())
            except OSError as mark_err:
                log.error("could not write %s in %s: %s", storage.PENDING, self.folder, mark_err)
            _warn(f"evidence upload to s3://{bucket}/{self.key_prefix} failed; bundle kept at "
                  f"{self.folder} and marked pending ({result.pending_reason}); run "
                  "`papyrus-ops evidence upload-pending` to complete it")
            return
        (self.folder / storage.PENDING).unlink(missing_ok=True)
        result.s3_uri = f"s3://{bucket}/{self.key_prefix}"


def _warn(message: str) -> None:
    """A warning that reaches the Prefect run log when inside a run, the module logger always."""
    if _in_run_context():
        try:
            from prefect.logging import get_run_logger

            get_run_logger().warning(message)
            return
        except Exception:  # noqa: S110 - fall back to the module logger
            pass
    log.warning(message)


def verify_manifest(folder: Path) -> list[str]:
    """Problems with a bundle folder against its manifest.json ([] when everything matches):
    missing files, size or SHA-256 mismatches, files not listed in the manifest."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / storage.MANIFEST).read_text(encoding="utf-8"))
        entries = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{storage.MANIFEST}: unreadable ({err})"]
    problems: list[str] = []
    listed = set()
    for entry in entries:
        name = entry.get("name", "")
        listed.add(name)
        p = folder / name
        if not name or ".." in Path(name).parts or not p.is_file():
            problems.append(f"{name}: missing")
            continue
        digest, size = storage.sha256_file(p)
        if size != entry.get("size"):
            problems.append(f"{name}: size {size} != manifest {entry.get('size')}")
        if digest != entry.get("sha256"):
            problems.append(f"{name}: sha256 {digest} != manifest {entry.get('sha256')}")
    for p in storage.bundle_files(folder):
        rel = p.relative_to(folder).as_posix()
        if rel not in listed:
            problems.append(f"{rel}: not listed in manifest")
    return problems
