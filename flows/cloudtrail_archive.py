"""The nightly CloudTrail archive (runbook 2025-09-10), as a flow.

    window (incremental: from the last end minus the overlap) -> Papyrus identifiers
    -> passes (the region; us-east-1 per global event source) -> checkpoint (resume or start)
    -> slices, oldest first (weekly for the region, one per global pass) -> evidence bundle
    (both files, summary, manifest; uploaded) -> archive state (the ids archived in the tail)

Ordering, gating and evidence only: LookupEvents, the filter, the gzip streaming and the
checkpoint live in `tasks.cloudtrail*`. See docs/cloudtrail.md.

Returns `ground.result`'s contract. Bad input (`ArchiveInputError`, an unknown environment) is
`bad_input`, nothing written; a failed slice (the checkpoint kept: the next run resumes) or any
other error is `failed`; either ends the run Failed with the dict as its data. `data`: mode,
window_asked, window, events, papyrus_events and, for an archive, first/last_event_time, files,
manifest_sha256, resumed, attempts, slices, api, notes, state, regions, overlap (or `skipped`
when nothing is new).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow

from artifacts.prefect_artifacts import progress
from ground.log_redaction import install_log_redaction
from ground.result import BAD_INPUT, FAILED, SUCCESS, result, to_state
from ground.run_names import run_name
from ground.settings import ConfigError, EnvName, load_env
from tasks.cloudtrail.checkpoint import prepare_archive
from tasks.cloudtrail.names import resolve_papyrus_names
from tasks.cloudtrail.progress import PROGRESS_KEY, done_seconds
from tasks.cloudtrail.publish import publish_archive
from tasks.cloudtrail.regions import plan_passes
from tasks.cloudtrail.slices import archive_slice, lookahead_for
from tasks.cloudtrail.state import (
    read_archive_state,
    state_summary,
    tail_floor,
    tail_ids,
    write_archive_state,
)
from tasks.cloudtrail.store import WorkDir
from tasks.cloudtrail.window import ArchiveInputError, epoch, fmt, resolve_window, utcnow

FLOW = "cloudtrail_archive"
DEFAULT_SETTLE_MINUTES = 15.0  # CloudTrail delivers events within ~15 min of the API call
# CloudTrail "typically delivers logs within an average of about 5 minutes of an API call.
# This time is not guaranteed" (User Guide, "Getting and viewing your CloudTrail log files"):
# the settle time cannot promise an event is visible, so an incremental run reads the last
# hour before the previous end again and archives what showed up late (docs/cloudtrail.md).
DEFAULT_OVERLAP_MINUTES = 60.0


class ArchiveIncompleteError(RuntimeError):
    """A slice failed; the checkpoint is kept and the next run resumes from it."""


def _log():
    from prefect.logging import get_run_logger

    return get_run_logger()


@flow(name="cloudtrail_archive", flow_run_name=run_name("cloudtrail-archive {env}"),
      log_prints=False)
def cloudtrail_archive(
    env: EnvName = "local",
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
    overlap_minutes: float | None = None,
    global_sources: list[str] | None = None,
):
    """Archive CloudTrail LookupEvents over a window as NDJSON + gzip, with a Papyrus subset.

    Args:
        env: Environment folder under deployments/ ("local" = the sandbox, "prd" = AWS).
        days: How many days back from `until` (default 90, CloudTrail's LookupEvents limit);
            ignored when `since` is given.
        since: Window start, ISO-8601 UTC (the window is half-open: [since, until)).
        until: Window end, ISO-8601 UTC (default: now minus `settle_minutes`).
        incremental: Start where the last archive ended (the nightly schedule's mode).
        max_rps: Client-side LookupEvents rate (default PAPYRUS_CLOUDTRAIL_MAX_RPS or 2/s,
            CloudTrail's documented limit).
        slice_hours: The checkpointed unit of the window, in hours.
        resume: Continue an interrupted run of the same request from its checkpoint.
        extra_names: More Papyrus identifiers for the Papyrus-only file's filter.
        settle_minutes: How far behind now the default `until` stays (default 15; 0 with an
            explicit `until`): CloudTrail delivers events minutes late.
        checkpoint_every: Pages between checkpoints.
        log_every: Pages between progress lines.
        overlap_minutes: How far before the last archive's end an incremental run reads again
            for late events (default 60; ids already archived are skipped).
        global_sources: Event sources read from us-east-1 besides the region (default IAM and
            STS, recorded there only; [] for none).
    """
    install_log_redaction()
    logger, started = _log(), time.time()
    try:
        reason, data, evidence = _archive(
            logger, env, days, since, until, incremental, max_rps, slice_hours, resume,
            extra_names, settle_minutes, checkpoint_every, log_every, overlap_minutes,
            global_sources)
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
             extra_names, settle_minutes, checkpoint_every, log_every, overlap_minutes,
             global_sources):
    """The archive itself: (reason, data, evidence); bad input and failures raise."""
    settings = load_env(env)
    if slice_hours <= 0:
        raise ArchiveInputError("slice_hours must be positive")
    if max_rps is not None and max_rps <= 0:
        raise ArchiveInputError("max_rps must be positive")
    settle = (DEFAULT_SETTLE_MINUTES if settle_minutes is None else settle_minutes) * 60
    overlap = (DEFAULT_OVERLAP_MINUTES if overlap_minutes is None else overlap_minutes) * 60
    from ground.aws import client

    s3 = client("s3", settings.region)
    if incremental:
        _refuse_while_an_archive_upload_is_pending(settings)
    state = read_archive_state(settings, s3) if incremental else None
    state_until = state["covered_until"] if state else None
    # Bad input raises here, before anything is written.
    window = resolve_window(days, since, until, incremental=incremental,
                            state_until=state_until, now=utcnow(), settle_seconds=settle,
                            overlap_seconds=overlap, overlap_floor=tail_floor(state))
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
    passes = plan_passes(settings.region, global_sources)
    # EventTime as sent (epoch seconds): the archive converts each one itself, and botocore's
    # datetime in the local zone cost ~10% of the archive's CPU (docs/benchmarks.md §2).
    cloudtrail = {p["region"]: client("cloudtrail", p["region"], raw_timestamps=True)
                  for p in passes}
    prior = tail_ids(state, window.since) if window.previous_until else []
    with work.lock():
        cp = prepare_archive(str(work.root), env, window, names, slice_hours * 3600,
                             resume=resume, state_until=state_until, passes=passes,
                             prior_ids=prior)
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
        # One prefetch thread across the slices: the next slice's first page is on its way
        # while this slice's task run ends (docs/benchmarks.md §2).
        with contextlib.closing(lookahead_for(cp, cloudtrail, max_rps)) as lookahead:
            for index in range(len(cp["slices"])):
                if index in done:
                    continue
                region = cp["slices"][index][2]
                try:
                    archive_slice(cloudtrail[region], str(work.root), index, names,
                                  max_rps=max_rps, checkpoint_every=checkpoint_every,
                                  log_every=log_every, region=region, run_started=started,
                                  base_events=base_events, base_fraction=base_fraction,
                                  lookahead=lookahead)
                except Exception as exc:
                    raise ArchiveIncompleteError(
                        f"slice {index + 1}/{len(cp['slices'])} failed ({type(exc).__name__}: "
                        f"{exc}); the checkpoint in {work.root} is kept: rerun the same "
                        "request to resume") from exc
        published = publish_archive(settings, str(work.root), s3=s3,
                                     kms=client("kms", settings.region))
        summary = published["summary"]
        if published["pending"]:
            # Not archived until it is in the bucket: the state stays where it was, so the
            # next incremental run (after `evidence upload-pending`) starts from the same end.
            state_out = {"state": state}
            logger.warning("cloudtrail: upload pending; the archive state is not advanced")
        else:
            # The ids the next run's overlap must not archive again (read before the work
            # files go).
            archived = work.archived_since(
                work.load(), epoch(summary["window_covered"]["until"]) - overlap)
            state_out = write_archive_state(settings, {
                "env": env,
                "covered_since": summary["window_covered"]["since"],
                "covered_until": summary["window_covered"]["until"],
                "archive": published["s3_uri"] or published["folder"],
                "events": summary["counts"]["all"],
                "papyrus_events": summary["counts"]["papyrus"],
                "written_at": fmt(utcnow()),
            }, s3=s3, archived=archived, overlap_seconds=overlap)
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
        "state": state_summary(state_out["state"]),
        "regions": summary["regions"],
        "overlap": summary["overlap"],
    }
    return reason, data, _evidence(published)


def _refuse_while_an_archive_upload_is_pending(settings) -> None:
    """An earlier archive that is not in the bucket yet did not advance the state; archiving
    its window again now would leave two archives of it once that upload completes."""
    from artifacts.storage import pending_bundles

    waiting = [f for f in pending_bundles(Path(settings.evidence_root), settings.evidence_bucket)
               if "cloudtrail" in f.parts]
    if waiting:
        raise ArchiveIncompleteError(
            f"an earlier archive's upload is pending ({waiting[0]}): run `papyrus-ops evidence "
            f"upload-pending --env {settings.env}` first (the archive state was not advanced)")


def _evidence(published: dict[str, Any]) -> dict[str, Any]:
    """`ground.result.evidence_summary`'s shape for the published archive bundle."""
    manifest = json.loads(Path(published["manifest"]).read_text())
    return {"folder": published["folder"], "s3_uri": published["s3_uri"],
            "manifest": published["manifest"], "upload_pending": published["pending"],
            "pending_reason": published["pending_reason"],
            "files": [f["name"] for f in manifest.get("files", [])]}


def _asked(window) -> dict[str, Any]:
    return {k: (fmt(v) if hasattr(v, "tzinfo") else v) for k, v in window.asked.items()}
