"""The nightly CloudTrail archive (runbook 2025-09-10), as a flow.

    window -> Papyrus identifiers -> checkpoint (resume or start) -> slices, oldest first
    -> evidence bundle (both files, summary, manifest; uploaded) -> archive state

Ordering, gating and evidence only: LookupEvents, the filter, the gzip streaming and the
checkpoint live in `tasks.cloudtrail*`. See docs/cloudtrail.md.

Returns `ground.result`'s contract. Bad input (`ArchiveInputError`, an unknown environment) is
`bad_input`, nothing written; a failed slice (the checkpoint kept: the next run resumes) or any
other error is `failed`; either ends the run Failed with the dict as its data. `data`: mode,
window_asked, window, events, papyrus_events and, for an archive, first/last_event_time, files,
manifest_sha256, resumed, attempts, slices, api, notes, state (or `skipped` when nothing is new).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow

from artifacts.prefect_artifacts import progress
from ground.log_redaction import install_log_redaction
from ground.result import BAD_INPUT, FAILED, SUCCESS, result, to_state
from ground.run_names import run_name
from ground.settings import ConfigError, load_env
from tasks.cloudtrail.checkpoint import prepare_archive
from tasks.cloudtrail.names import resolve_papyrus_names
from tasks.cloudtrail.progress import PROGRESS_KEY, done_seconds
from tasks.cloudtrail.publish import publish_archive
from tasks.cloudtrail.slices import archive_slice
from tasks.cloudtrail.state import read_archive_state, write_archive_state
from tasks.cloudtrail.store import WorkDir
from tasks.cloudtrail.window import ArchiveInputError, fmt, resolve_window, utcnow

FLOW = "cloudtrail_archive"
DEFAULT_SETTLE_MINUTES = 15.0  # CloudTrail delivers events within ~15 min of the API call


class ArchiveIncompleteError(RuntimeError):
    """A slice failed; the checkpoint is kept and the next run resumes from it."""


def _log():
    from prefect.logging import get_run_logger

    return get_run_logger()


@flow(name="cloudtrail_archive", flow_run_name=run_name("cloudtrail-archive {env}"),
      log_prints=False)
def cloudtrail_archive(
    env: str = "local",
    days: float | None = None,
    since: str | None = None,
    until: str | None = None,
    incremental: bool = False,
    max_rps: float | None = None,
    slice_hours: float = 168.0,
    resume: bool = True,
    extra_names: list[str] | None = None,
    settle_minutes: float | None = None,
    checkpoint_every: int = 20,
    log_every: int = 20,
):
    """Archive CloudTrail LookupEvents over a window as NDJSON + gzip, with a Papyrus subset.

    env: environment folder under deployments/. days (default 90) or since/until (ISO-8601
    UTC, half-open [since, until)). incremental: start at the last archive's covered end.
    max_rps: client-side LookupEvents rate (default PAPYRUS_CLOUDTRAIL_MAX_RPS or 2).
    slice_hours: the checkpointed unit of the window. resume: continue an interrupted run
    of the same request. extra_names: more Papyrus identifiers for the filter.
    settle_minutes: how far behind now the default `until` stays (default 15, 0 with an
    explicit until). checkpoint_every / log_every: pages between checkpoints / progress.
    """
    install_log_redaction()
    logger, started = _log(), time.time()
    try:
        reason, data, evidence = _archive(
            logger, env, days, since, until, incremental, max_rps, slice_hours, resume,
            extra_names, settle_minutes, checkpoint_every, log_every)
    except (ArchiveInputError, ConfigError) as e:
        logger.error("cloudtrail: bad input, nothing written: %s", e)
        res = result(FLOW, env, BAD_INPUT, str(e), error=str(e), started=started)
    except Exception as e:  # noqa: BLE001 - one verdict, the Prefect state message its reason
        error = f"{type(e).__name__}: {e}"
        reason = str(e) if isinstance(e, ArchiveIncompleteError) else error
        logger.error("cloudtrail: %s", reason)
        res = result(FLOW, env, FAILED, reason, error=error, started=started)
    else:
        res = result(FLOW, env, SUCCESS, reason, evidence=evidence, started=started, data=data)
    return to_state(res)


def _archive(logger, env, days, since, until, incremental, max_rps, slice_hours, resume,
             extra_names, settle_minutes, checkpoint_every, log_every):
    """The archive itself: (reason, data, evidence); bad input and failures raise."""
    settings = load_env(env)
    if slice_hours <= 0:
        raise ArchiveInputError("slice_hours must be positive")
    if max_rps is not None and max_rps <= 0:
        raise ArchiveInputError("max_rps must be positive")
    settle = (DEFAULT_SETTLE_MINUTES if settle_minutes is None else settle_minutes) * 60
    from ground.aws import client

    s3 = client("s3", settings.region)
    state = read_archive_state(settings, s3) if incremental else None
    state_until = state["covered_until"] if state else None
    # Bad input raises here, before anything is written.
    window = resolve_window(days, since, until, incremental=incremental,
                            state_until=state_until, now=utcnow(), settle_seconds=settle)
    for note in window.notes:
        logger.warning("cloudtrail: %s", note)
    base = {"env": env, "mode": window.mode, "window_asked": _asked(window),
            "window": window.to_dict()}
    if window.empty:
        logger.info("cloudtrail: nothing new since %s", fmt(window.since))
        skipped = "nothing new since the last archive"
        return (f"{skipped} ({fmt(window.since)})",
                {**base, "skipped": skipped, "events": 0, "papyrus_events": 0}, None)

    names = resolve_papyrus_names(settings, client("ec2", settings.region), extra_names)
    work = WorkDir.for_env(settings.evidence_root, env)
    cloudtrail = client("cloudtrail", settings.region)
    with work.lock():
        cp = prepare_archive(str(work.root), env, window, names, slice_hours * 3600,
                             resume=resume, state_until=state_until)
        logger.info("cloudtrail: %s window %s .. %s in %d slices%s", window.mode,
                    cp["window"]["since"], cp["window"]["until"], len(cp["slices"]),
                    " (resumed)" if cp["resumed"] else "")
        started = time.time()
        base_events = int(cp["totals"].get("events", 0))
        span = max(1.0, window.seconds)
        base_fraction = done_seconds(cp, None, None) / span
        progress(PROGRESS_KEY, base_fraction,
                 f"cloudtrail: {window.mode} archive of {cp['window']['since']} .. "
                 f"{cp['window']['until']}: {base_events} events so far")
        done = {s["index"] for s in cp["completed"]}
        for index in range(len(cp["slices"])):
            if index in done:
                continue
            try:
                archive_slice(cloudtrail, str(work.root), index, names, max_rps=max_rps,
                              checkpoint_every=checkpoint_every, log_every=log_every,
                              region=settings.region, run_started=started,
                              base_events=base_events, base_fraction=base_fraction)
            except Exception as exc:
                raise ArchiveIncompleteError(
                    f"slice {index + 1}/{len(cp['slices'])} failed ({type(exc).__name__}: "
                    f"{exc}); the checkpoint in {work.root} is kept: rerun the same request "
                    "to resume") from exc
        published = publish_archive(settings, str(work.root), s3=s3,
                                     kms=client("kms", settings.region))
        summary = published["summary"]
        state_out = write_archive_state(settings, {
            "env": env,
            "covered_since": summary["window_covered"]["since"],
            "covered_until": summary["window_covered"]["until"],
            "archive": published["s3_uri"] or published["folder"],
            "events": summary["counts"]["all"],
            "papyrus_events": summary["counts"]["papyrus"],
            "written_at": fmt(utcnow()),
        }, s3=s3)
        work.remove()
    progress(PROGRESS_KEY, 1.0, f"cloudtrail: archived {summary['counts']['all']} events "
             f"({summary['counts']['papyrus']} Papyrus)")
    logger.info("cloudtrail: archived %d events (%d Papyrus) to %s%s", summary["counts"]["all"],
                summary["counts"]["papyrus"], published["s3_uri"] or published["folder"],
                " (upload pending)" if published["pending"] else "")
    where = published["s3_uri"] or published["folder"]
    reason = (f"archived {summary['counts']['all']} events ({summary['counts']['papyrus']} "
              f"Papyrus) to {where}" + (" (upload pending)" if published["pending"] else ""))
    data = {
        **base,
        "window": summary["window_covered"],
        "events": summary["counts"]["all"],
        "papyrus_events": summary["counts"]["papyrus"],
        "first_event_time": summary["first_event_time"],
        "last_event_time": summary["last_event_time"],
        "files": summary["files"],
        "manifest_sha256": published["manifest_sha256"],
        "resumed": bool(cp["resumed"]),
        "attempts": summary["attempts"],
        "slices": len(cp["slices"]),
        "api": summary["api"],
        "notes": summary["notes"],
        "state": state_out["state"],
    }
    return reason, data, _evidence(published)


def _evidence(published: dict[str, Any]) -> dict[str, Any]:
    """`ground.result.evidence_summary`'s shape for the published archive bundle."""
    manifest = json.loads(Path(published["manifest"]).read_text())
    return {"folder": published["folder"], "s3_uri": published["s3_uri"],
            "manifest": published["manifest"], "upload_pending": published["pending"],
            "pending_reason": published["pending_reason"],
            "files": [f["name"] for f in manifest.get("files", [])]}


def _asked(window) -> dict[str, Any]:
    return {k: (fmt(v) if hasattr(v, "tzinfo") else v) for k, v in window.asked.items()}
