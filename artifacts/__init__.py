"""Evidence for every Papyrus Ops flow: naming, bundle + SHA-256 manifest, local and S3 storage,
Prefect artifacts. Nothing else in the project writes evidence. (Redaction is the ground's:
`ground.redact`, `ground.log_redaction`.)"""

from artifacts.bundle import BundleResult, EvidenceBundle, check_name, utc_ts, verify_manifest
from artifacts.prefect_artifacts import artifact_key, checks_table, progress, publish_summary
from artifacts.storage import (
    UploadVerificationError,
    mark_pending,
    upload_bundle,
    upload_pending,
)

__all__ = [
    "BundleResult",
    "EvidenceBundle",
    "UploadVerificationError",
    "artifact_key",
    "check_name",
    "checks_table",
    "mark_pending",
    "progress",
    "publish_summary",
    "upload_bundle",
    "upload_pending",
    "utc_ts",
    "verify_manifest",
]
