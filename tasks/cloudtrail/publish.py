"""The archive as an evidence bundle: both files under their runbook names, a summary JSON and
the manifest, uploaded to the evidence bucket (the `publish_archive` task)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.cloudtrail.regions import regions_read
from tasks.cloudtrail.store import WorkDir, copy_durably
from tasks.cloudtrail.window import fmt

ARCHIVE_KEY_PREFIX = "docs/evidence/"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        copy_durably(src, dst)


@task(name="cloudtrail-publish", cache_policy=NO_CACHE)
def publish_archive(settings: Any, work_root: str, s3: Any, kms: Any = None) -> dict[str, Any]:
    """The evidence bundle: both files under their runbook names, a summary JSON, and the
    manifest (counts, windows, first/last event time, SHA-256 of each file); uploaded to the
    evidence bucket under ``docs/evidence/cloudtrail/<folder>/`` with the library's checks."""
    from artifacts.bundle import EvidenceBundle
    from artifacts.storage import sha256_file

    work = WorkDir(work_root)
    cp = work.load()
    if cp is None or cp.get("cursor") is not None or len(cp["completed"]) != len(cp["slices"]):
        raise RuntimeError("the archive is not complete: nothing to publish")
    bundle = EvidenceBundle.open(settings, "cloudtrail")
    # Same relative path in the bucket as on disk, under the runbook's docs/evidence/ prefix.
    bundle.key_prefix = ARCHIVE_KEY_PREFIX + bundle.key_prefix
    base = f"cloudtrail_events_{cp['stamp']}"
    all_name, pap_name = f"{base}.jsonl.gz", f"{base}.papyrus.jsonl.gz"
    # The runbook's names carry an upper-case UTC stamp, which `add_file` refuses: the files
    # go straight into the bundle folder (hard links: no second copy), where the manifest
    # picks up every file.
    _link_or_copy(work.events_path, bundle.folder / all_name)
    _link_or_copy(work.papyrus_path, bundle.folder / pap_name)
    files = {}
    for kind, name in (("all", all_name), ("papyrus", pap_name)):
        digest, size = sha256_file(bundle.folder / name)
        files[kind] = {"name": name, "sha256": digest, "bytes": size,
                       "key": bundle.key_prefix + name}
    totals = cp["totals"]
    regions = regions_read(cp.get("passes") or [], cp["completed"])
    overlap = {"previous_until": cp.get("previous_until"),
               "since": cp["window"]["since"] if cp.get("previous_until") else None,
               "already_archived": int(totals.get("already_archived", 0))}
    summary = {
        "mode": cp["mode"],
        "window_asked": cp["asked"],
        "window_covered": cp["window"],
        "notes": cp["notes"],
        "regions": regions,
        "overlap": overlap,
        "counts": {"all": int(totals.get("events", 0)), "papyrus": int(totals.get("papyrus", 0))},
        "first_event_time": fmt(cp["first_event_time"]),
        "last_event_time": fmt(cp["last_event_time"]),
        "files": files,
        "papyrus_rule": {"names": cp["names"]["names"], "secrets": cp["names"]["secrets"],
                         "doc": "docs/cloudtrail.md"},
        "api": {k: int(totals.get(k, 0)) for k in
                ("pages", "calls", "throttled", "retries", "duplicates", "out_of_window",
                 "out_of_order", "skipped", "already_archived")},
        "slices": cp["completed"],
        "attempts": cp.get("attempts", 1),
        "started_at": cp["started_at"],
    }
    bundle.write_json("cloudtrail_archive", summary)
    bundle.set_context(
        mode=cp["mode"], window_asked=cp["asked"], window_covered=cp["window"],
        events_all=summary["counts"]["all"], events_papyrus=summary["counts"]["papyrus"],
        first_event_time=summary["first_event_time"],
        last_event_time=summary["last_event_time"],
        files={k: {"name": v["name"], "sha256": v["sha256"]} for k, v in files.items()},
        throttled=summary["api"]["throttled"], attempts=summary["attempts"],
        regions=regions, overlap=overlap)
    result = bundle.finish("pass", s3=s3, kms=kms)
    return {
        "folder": str(result.folder), "manifest": str(result.manifest),
        "manifest_sha256": result.manifest_sha256, "s3_uri": result.s3_uri,
        "uploaded": list(result.uploaded), "pending": result.pending,
        "pending_reason": result.pending_reason, "bucket": result.bucket,
        "key_prefix": result.key_prefix, "summary": summary,
    }
