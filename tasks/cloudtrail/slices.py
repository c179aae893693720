"""One half-open time slice of the archive: every page streamed into the two gzip files (all
events, Papyrus-related ones), checkpointed every N pages, resumable from the cursor."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.logs import run_logger
from tasks.cloudtrail import LOGGER
from tasks.cloudtrail.pacing import RateLimiter, shared_limiter
from tasks.cloudtrail.paging import (
    PAGE_SIZE,
    Lookahead,
    error_code,
    lookup_pages,
    prefetch_pages,
    retry_transient,
)
from tasks.cloudtrail.papyrus_filter import PapyrusFilter, PapyrusNames
from tasks.cloudtrail.progress import Progress, done_seconds
from tasks.cloudtrail.records import BoundaryDedupe, event_line
from tasks.cloudtrail.store import WorkDir
from tasks.cloudtrail.window import UTC, epoch, fmt


def _logger():
    return run_logger(LOGGER)


def _bump(totals: dict[str, Any], key: str, n: int) -> None:
    totals[key] = int(totals.get(key, 0)) + n


def _cursor(cp: dict[str, Any], index: int) -> dict[str, Any] | None:
    cursor = cp.get("cursor")
    return cursor if cursor is not None and cursor.get("index") == index else None


def slice_query(cp: dict[str, Any], index: int
                ) -> tuple[dt.datetime, dt.datetime, tuple[str, str] | None]:
    """The LookupEvents query of slice `index`: StartTime, EndTime (at the cursor's frontier
    when the slice was interrupted) and its one LookupAttribute (a global pass filters on
    its event source)."""
    since_s, until_s, _region, source = cp["slices"][index]
    cursor = _cursor(cp, index)
    ceiling = cursor["time"] if cursor and cursor.get("time") is not None else None
    end = epoch(until_s) if ceiling is None else ceiling
    return (dt.datetime.fromtimestamp(math.floor(epoch(since_s)), UTC),
            dt.datetime.fromtimestamp(math.ceil(end), UTC),
            None if source is None else ("EventSource", source))


def _pages_of(client: Any, start: dt.datetime, end: dt.datetime, limiter: RateLimiter,
              attribute: tuple[str, str] | None, page_size: int, patience_seconds: float):
    """One query's pages, as `prefetch_pages` and `Lookahead` run them (`produce(own)`)."""
    return lambda own: lookup_pages(client, start, end, limiter, own, page_size=page_size,
                                    patience_seconds=patience_seconds, attribute=attribute)


def lookahead_for(cp: dict[str, Any], clients: dict[str, Any], max_rps: float | None, *,
                  page_size: int = PAGE_SIZE, patience_seconds: float = 900.0) -> Lookahead:
    """One prefetch thread for every slice still to archive, in order (`paging.Lookahead`):
    each slice's first page is fetched while the slice before it ends. clients: the
    CloudTrail client per region; each region's requests wait for its shared limiter, as the
    slices' own do."""
    done = {s["index"] for s in cp["completed"]}
    queries = []
    for index in range(len(cp["slices"])):
        if index in done:
            continue
        region = cp["slices"][index][2]
        start, end, attribute = slice_query(cp, index)
        queries.append(((index, start, end, attribute),
                        _pages_of(clients[region], start, end, shared_limiter(region, max_rps),
                                  attribute, page_size, patience_seconds)))
    return Lookahead(queries)


def archive_slice_core(
    client: Any,
    work: WorkDir,
    index: int,
    papyrus: PapyrusFilter,
    limiter: RateLimiter,
    *,
    checkpoint_every: int = 20,
    progress: Progress | None = None,
    page_size: int = PAGE_SIZE,
    patience_seconds: float = 900.0,
    redact: Callable[[str], str] | None = None,
    compresslevel: int = 1,  # work files, written once: level 6 cost ~16% of a run's CPU
    lookahead: Lookahead | None = None,
) -> dict[str, Any]:
    """Archive slice `index` of the checkpointed run in `work`; returns the slice's entry.

    Resumes from the checkpoint's cursor when the slice was interrupted: both files are first
    truncated back to the checkpoint (dropping a partial gzip member), then the query restarts
    with EndTime at the cursor's frontier and skips what the cursor says is written.
    lookahead: the run's (`lookahead_for`); its pages are taken when it holds exactly this
    slice's query next, else the slice fetches its own.
    """
    cp = work.load()
    if cp is None:
        raise RuntimeError(f"{work.checkpoint_path}: no checkpoint to archive into")
    done = {s["index"]: s for s in cp["completed"]}
    if index in done:
        return done[index]
    if len(cp["completed"]) != index:
        raise RuntimeError(f"slice {index} out of order (next is {len(cp['completed'])})")
    since_s, until_s, region, source = cp["slices"][index]
    start, end = epoch(since_s), epoch(until_s)
    query_start, query_end, attribute = slice_query(cp, index)
    # Incremental overlap: events before the last archive's end that it (or one before it)
    # already holds are skipped; a late one, not among them, is archived now.
    previous_until = epoch(cp["previous_until"]) if cp.get("previous_until") else None
    prior = work.prior_ids() if previous_until is not None and start < previous_until \
        else frozenset()
    cursor = _cursor(cp, index)
    work.truncate(cp)

    ceiling = cursor["time"] if cursor and cursor.get("time") is not None else None
    written_at_ceiling = frozenset(cursor["ids"]) if ceiling is not None else frozenset()
    dedupe = BoundaryDedupe(ceiling, written_at_ceiling)
    counts = {k: int(cursor.get(k, 0)) if cursor else 0
              for k in ("events", "papyrus", "pages", "duplicates", "out_of_window", "skipped",
                        "already_archived")}
    totals = cp.setdefault("totals", {})
    stats: dict[str, int] = {}
    first, last = cp.get("first_event_time"), cp.get("last_event_time")
    slice_first: float | None = cursor.get("first") if cursor else None
    slice_last: float | None = cursor.get("last") if cursor else None
    pending = {"events": 0, "papyrus": 0, "duplicates": 0, "out_of_window": 0, "skipped": 0,
               "already_archived": 0}
    events_w, papyrus_w = work.writers(compresslevel)
    where = f" {region} {source}" if source else ""
    label = f"slice {index + 1}/{len(cp['slices'])} [{since_s}, {until_s}){where}"

    def checkpoint(final: bool) -> None:
        off_e, off_p = events_w.commit(), papyrus_w.commit()
        for k, v in pending.items():
            _bump(totals, k, v)
            pending[k] = 0
        for k in ("calls", "throttled", "retries"):
            _bump(totals, k, stats.pop(k, 0))
        _bump(totals, "out_of_order", dedupe.out_of_order)
        dedupe.out_of_order = 0
        cp["offsets"] = {"events": off_e, "papyrus": off_p}
        cp["first_event_time"], cp["last_event_time"] = first, last
        if final:
            entry = {"index": index, "since": since_s, "until": until_s,
                     "region": region, "source": source,
                     "offsets": {"events": off_e, "papyrus": off_p},
                     "events": counts["events"], "papyrus": counts["papyrus"],
                     "already_archived": counts["already_archived"],
                     "pages": counts["pages"], "first_event_time": fmt(slice_first),
                     "last_event_time": fmt(slice_last)}
            cp["completed"].append(entry)
            cp["cursor"] = None
        else:
            cp["cursor"] = {"index": index, "time": dedupe.time, "ids": sorted(dedupe.ids),
                            "first": slice_first, "last": slice_last, **counts}
        work.save(cp)

    restarts = 0

    def pages() -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """The slice's pages; an expired NextToken restarts the query at the frontier (the
        same way a resume does) instead of failing the slice."""
        nonlocal ceiling, written_at_ceiling, restarts
        q_end = query_end
        while True:
            try:
                key = (index, query_start, q_end, attribute)
                if lookahead is not None and lookahead.takes(key):
                    yield from lookahead.pages(key, stats)
                else:
                    yield from prefetch_pages(_pages_of(client, query_start, q_end, limiter,
                                                        attribute, page_size, patience_seconds),
                                              stats)
                return
            except ClientError as exc:
                if error_code(exc) != "InvalidNextTokenException" or restarts >= 3:
                    raise
                restarts += 1
                if dedupe.time is not None:
                    ceiling, written_at_ceiling = dedupe.time, frozenset(dedupe.ids)
                    q_end = dt.datetime.fromtimestamp(math.ceil(ceiling), UTC)
                _logger().warning("cloudtrail: %s: NextToken rejected (%s); restarting the "
                                  "query at %s", label, error_code(exc), fmt(ceiling))

    try:
        for events, more in pages():
            # A page's lines go to each file in one write: one zlib call per page instead of
            # one per line (and zlib lets go of the GIL while it compresses, so the prefetch
            # thread parses the next page meanwhile). Nothing is claimed before the checkpoint
            # below, so a page cut short is lost the same way a partial member always was.
            page_e: list[bytes] = []
            page_p: list[bytes] = []
            for ev in events:
                t = epoch(ev["EventTime"])
                eid = ev["EventId"]
                if t < start or t >= end:
                    counts["out_of_window"] += 1
                    pending["out_of_window"] += 1
                    continue
                if ceiling is not None and (
                        t > ceiling or (t == ceiling and eid in written_at_ceiling)):
                    counts["skipped"] += 1  # written before the interruption
                    pending["skipped"] += 1
                    continue
                if dedupe.seen(eid, t):
                    counts["duplicates"] += 1
                    pending["duplicates"] += 1
                    continue
                if prior and t < previous_until and eid in prior:
                    counts["already_archived"] += 1
                    pending["already_archived"] += 1
                    continue
                rec, text = event_line(ev)
                if redact is not None:
                    text = redact(text)
                line = text.encode()
                page_e.append(line)
                counts["events"] += 1
                pending["events"] += 1
                if papyrus.check(rec, text):
                    page_p.append(line)
                    counts["papyrus"] += 1
                    pending["papyrus"] += 1
                first = t if first is None or t < first else first
                last = t if last is None or t > last else last
                slice_first = t if slice_first is None or t < slice_first else slice_first
                slice_last = t if slice_last is None or t > slice_last else slice_last
            if page_e:
                events_w.write(b"".join(page_e))
            if page_p:
                papyrus_w.write(b"".join(page_p))
            counts["pages"] += 1
            _bump(totals, "pages", 1)
            if more and counts["pages"] % max(1, checkpoint_every) == 0:
                checkpoint(final=False)
            if progress is not None:
                frontier = dedupe.time if dedupe.time is not None else (end if more else start)
                progress.update(int(totals.get("pages", 0)),
                                int(totals.get("events", 0)) + pending["events"],
                                int(totals.get("papyrus", 0)) + pending["papyrus"],
                                done_seconds(cp, (start, end), frontier), label)
        checkpoint(final=True)
    finally:
        events_w.close()
        papyrus_w.close()
    return cp["completed"][-1]


@task(name="cloudtrail-slice", retries=3, retry_delay_seconds=[2, 10, 30],
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def archive_slice(client: Any, work_root: str, index: int, names: dict[str, Any],
                  *, max_rps: float | None = None, checkpoint_every: int = 20,
                  log_every: int = 20, region: str = "", run_started: float = 0.0,
                  base_events: int = 0, base_fraction: float = 0.0,
                  patience_seconds: float = 900.0,
                  lookahead: Lookahead | None = None) -> dict[str, Any]:
    """Archive one slice (see `archive_slice_core`); a retry resumes from the checkpoint (and
    fetches its own pages: the lookahead is past it)."""
    from ground.redact import REDACTOR

    work = WorkDir(work_root)
    cp = work.load()
    flt = PapyrusFilter(PapyrusNames.from_dict(names))
    progress = Progress(cp, log_every, started=run_started or time.time(),
                        base_events=base_events, base_fraction=base_fraction)

    def redact(line: str) -> str:
        return REDACTOR.redact(line) if line in REDACTOR else line

    return archive_slice_core(
        client, work, index, flt, shared_limiter(region, max_rps),
        checkpoint_every=checkpoint_every, progress=progress,
        patience_seconds=patience_seconds, redact=redact, lookahead=lookahead)
