"""The run's checkpoint: a fresh one for a request, whether an old one can be resumed, and the
`prepare_archive` task that resumes or starts over (the files live in `store.WorkDir`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.logs import run_logger
from tasks.cloudtrail import LOGGER
from tasks.cloudtrail.papyrus_filter import PapyrusNames
from tasks.cloudtrail.store import WorkDir
from tasks.cloudtrail.window import GRACE_SECONDS, UTC, Window, epoch, fmt, plan_slices, stamp


def _logger():
    return run_logger(LOGGER)


def new_checkpoint(env: str, window: Window, names: PapyrusNames, slice_seconds: float,
                   now: dt.datetime | None = None,
                   passes: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A fresh run's checkpoint. Its slices are [since, until, region, event source] (source
    None: every event), oldest first across the passes (`plan_pass_slices`), so the oldest
    events of every region are fetched before they age out of the 90 days."""
    now = now or dt.datetime.now(UTC)
    passes = [dict(p) for p in passes] if passes else [{"region": "", "source": None}]
    return {
        "version": 2,
        "env": env,
        "mode": window.mode,
        "request": request_key(window, slice_seconds, names, passes),
        "window": window.to_dict(),
        "previous_until": fmt(window.previous_until),
        "passes": passes,
        "asked": {k: (fmt(v) if isinstance(v, dt.datetime) else v)
                  for k, v in window.asked.items()},
        "notes": list(window.notes),
        "names": names.to_dict(),
        "slice_seconds": slice_seconds,
        "slices": plan_pass_slices(window, slice_seconds, passes),
        "started_at": fmt(now.replace(microsecond=0)),
        "stamp": stamp(now),
        "attempts": 1,
        "completed": [],
        "cursor": None,
        "totals": {},
        "first_event_time": None,
        "last_event_time": None,
    }


def plan_pass_slices(window: Window, slice_seconds: float,
                     passes: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """[since, until, region, source] for every pass, ordered by start (then pass order).

    The unfiltered pass is cut into `slice_seconds` slices. A filtered pass — a global
    service's event source in us-east-1 — is one slice over the whole window: its events are
    that one service's (IAM's, STS's global endpoint's), few next to the region's, and a slice
    that holds none still costs a LookupEvents call (0.5 s of the API's 2 requests/s) and a
    task run. A slice resumes from its cursor, so a long one loses nothing when interrupted."""
    out = []
    for order, p in enumerate(passes):
        span = slice_seconds if p["source"] is None else max(slice_seconds, window.seconds)
        out += [(a, order, b, p) for a, b in plan_slices(window.since, window.until, span)]
    out.sort(key=lambda s: (s[0], s[1]))
    return [[fmt(a), fmt(b), p["region"], p["source"]] for a, _, b, p in out]


def request_key(window: Window, slice_seconds: float, names: PapyrusNames,
                passes: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """What a rerun must ask for to resume this run (relative windows match by their ask)."""
    asked = window.asked
    passes = [dict(p) for p in passes] if passes else [{"region": "", "source": None}]
    return {"mode": window.mode, "days": asked.get("days"),
            "since": None if asked.get("since") is None else fmt(window.since),
            "until": None if asked.get("until") is None else fmt(window.until),
            "slice_seconds": slice_seconds, "names": names.fingerprint(),
            "passes": [[p["region"], p["source"]] for p in passes]}


def resumable(cp: Mapping[str, Any] | None, window: Window, slice_seconds: float,
              names: PapyrusNames, *, now: dt.datetime,
              state_until: str | None = None,
              passes: Sequence[Mapping[str, Any]] | None = None) -> str | None:
    """Why the checkpoint `cp` cannot be resumed by this request (None: it can)."""
    if cp is None:
        return "no checkpoint"
    if cp.get("request") != request_key(window, slice_seconds, names, passes):
        return "it was started with other parameters"
    # Slices run oldest first: what is left to fetch starts at the first unfinished slice
    # (or its cursor). It must still be inside LookupEvents' 90 days.
    oldest = now.timestamp() - 90 * 86400 - GRACE_SECONDS
    done = len(cp["completed"])
    if done < len(cp["slices"]) and epoch(cp["slices"][done][0]) < oldest:
        return "what is left of its window now starts more than 90 days ago"
    # It started from the state's end as it was then (its overlap and skipped ids too).
    if window.mode == "incremental" and state_until is not None and \
            cp.get("previous_until") != fmt(dt.datetime.fromisoformat(
                state_until.replace("Z", "+00:00"))):
        return "the archive state moved on since it started"
    return None


@task(name="cloudtrail-prepare", cache_policy=NO_CACHE)
def prepare_archive(work_root: str, env: str, window: Window, names: dict[str, Any],
                    slice_seconds: float, resume: bool = True,
                    state_until: str | None = None,
                    passes: list[dict[str, Any]] | None = None,
                    prior_ids: list[str] | None = None) -> dict[str, Any]:
    """Resume the checkpoint in the work folder when it belongs to this request, else start
    fresh. Returns the checkpoint plus `resumed` and `discarded` (why an old one was dropped).

    passes: the (region, event source) series to read (`regions.plan_passes`). prior_ids:
    the event ids earlier archives hold in the overlap, skipped by this run (a resumed run
    keeps the set it started with)."""
    work = WorkDir(work_root)
    pnames = PapyrusNames.from_dict(names)
    now = dt.datetime.now(UTC)
    cp = work.load()
    why = resumable(cp, window, slice_seconds, pnames, now=now, state_until=state_until,
                    passes=passes)
    logger = _logger()
    if resume and why is None:
        cut = work.truncate(cp)
        cp["attempts"] = int(cp.get("attempts", 1)) + 1
        work.save(cp)
        logger.info("cloudtrail: resuming %s (attempt %d): %d/%d slices done, %d events; "
                    "discarded %d uncommitted bytes", work.root, cp["attempts"],
                    len(cp["completed"]), len(cp["slices"]),
                    int(cp["totals"].get("events", 0)), sum(cut.values()))
        return {**cp, "resumed": True, "discarded": None}
    discarded = None
    if cp is not None:
        discarded = why if resume else "resume was turned off"
        logger.warning("cloudtrail: discarding the unfinished run in %s: %s", work.root,
                       discarded)
        work.discard()
    cp = new_checkpoint(env, window, pnames, slice_seconds, now, passes)
    work.start(cp, prior_ids or ())
    return {**work.load(), "resumed": False, "discarded": discarded}
