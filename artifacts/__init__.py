"""Evidence for every Papyrus Ops flow: naming, redaction, bundle + SHA-256 manifest, local and
S3 storage, Prefect artifacts. Nothing else in the project writes evidence."""

from artifacts.bundle import BundleResult, EvidenceBundle, check_name, utc_ts, verify_manifest
from artifacts.prefect_artifacts import artifact_key, checks_table, progress, publish_summary
from artifacts.redact import (
    REDACTOR,
    RedactedError,
    Redactor,
    install_log_redaction,
    redacted_errors,
)
from artifacts.storage import (
    UploadVerificationError,
    mark_pending,
    upload_bundle,
    upload_pending,
)

__all__ = [
    "REDACTOR",
    "BundleResult",
    "EvidenceBundle",
    "RedactedError",
    "Redactor",
    "UploadVerificationError",
    "artifact_key",
    "check_name",
    "checks_table",
    "install_log_redaction",
    "mark_pending",
    "progress",
    "publish_summary",
    "redacted_errors",
    "upload_bundle",
    "upload_pending",
    "utc_ts",
    "verify_manifest",
]
