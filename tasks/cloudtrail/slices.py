"""CloudTrail archive tasks: LookupEvents, streamed into gzip as it arrives, resumable.

Pieces (each usable alone, each tested alone):

* `RateLimiter` — a monotonic-clock limiter shared by every call in the process for one
  region (LookupEvents allows 2 requests/s per account and region); botocore's adaptive
  retries sit under it and back off further when AWS throttles anyway.
* `lookup_pages` — the pages of one [start, end] query, throttling absorbed (botocore's
  retries first, then our own patient backoff), never a run failure.
* `event_record` — one API event as one archived JSON object (the envelope fields plus the
  parsed CloudTrailEvent document).
* `BoundaryDedupe` — EventId dedupe in bounded memory (see its docstring).
* `archive_slice_core` — one half-open time slice: streams every page into the two gzip
  files (all events, Papyrus-related ones) and checkpoints every N pages.
* Prefect tasks: `resolve_papyrus_names`, `prepare_archive`, `archive_slice`,
  `publish_archive`, `read_archive_state`, `write_archive_state`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.cloudtrail_filter import PapyrusFilter, PapyrusNames, names_from_settings
from tasks.cloudtrail_store import (
    ArchiveBusyError,
    WorkDir,
    read_local_state,
    write_local_state,
)
from tasks.cloudtrail_window import GRACE_SECONDS, UTC, Window, fmt, plan_slices, stamp

__all__ = [
    "ArchiveBusyError", "BoundaryDedupe", "RateLimiter", "archive_slice", "archive_slice_core",
    "event_record", "lookup_pages", "prepare_archive", "publish_archive", "read_archive_state",
    "resolve_papyrus_names", "shared_limiter", "write_archive_state",
]

DEFAULT_MAX_RPS = 2.0  # LookupEvents: 2 requests per second per account and region
PAGE_SIZE = 50  # LookupEvents' maximum
THROTTLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "SlowDown", "RequestThrottled", "RequestThrottledException",
})
TRANSIENT_CODES = THROTTLE_CODES | {
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError",
    "InternalServerError", "RequestTimeout", "RequestTimeoutException",
}
STATE_KEY = "docs/evidence/cloudtrail/state-{env}.json"
ARCHIVE_KEY_PREFIX = "docs/evidence/"
PROGRESS_KEY = "cloudtrail-archive-progress"

log = logging.getLogger("papyrus.cloudtrail")


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        return log


def env_max_rps() -> float:
    """The client-side rate: PAPYRUS_CLOUDTRAIL_MAX_RPS, default 2 requests/s."""
    raw = os.environ.get("PAPYRUS_CLOUDTRAIL_MAX_RPS", "")
    try:
        value = float(raw) if raw else DEFAULT_MAX_RPS
    except ValueError:
        value = DEFAULT_MAX_RPS
    return value if value > 0 else DEFAULT_MAX_RPS


# ------------------------------------------------------------------------------------------
# Rate limiting
# ------------------------------------------------------------------------------------------
class RateLimiter:
    """At most `rate` acquisitions per second, evenly spaced (no burst), thread-safe.

    Each caller reserves the next free slot under the lock and sleeps outside it, so
    concurrent callers queue up fairly and the spacing holds across threads.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self.set_rate(rate)
        self.acquired = 0
        self.waited = 0.0

    def set_rate(self, rate: float) -> None:
        if not rate or rate <= 0 or math.isnan(rate):
            raise ValueError(f"rate must be positive, got {rate!r}")
        with self._lock:
            self.rate = float(rate)
            self.interval = 1.0 / self.rate

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
            self.acquired += 1
        wait = at - now
        if wait > 0:
            self._sleep(wait)
            self.waited += wait
        return max(0.0, wait)


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(region: str, rate: float | None = None) -> RateLimiter:
    """The process-wide limiter of `region` (and endpoint), created or re-rated on demand."""
    rate = rate or env_max_rps()
    key = (region, os.environ.get("AWS_ENDPOINT_URL", ""))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(rate)
        elif limiter.rate != rate:
            limiter.set_rate(rate)
        return limiter


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------
def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_throttle(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLE_CODES


def is_transient(exc: BaseException) -> bool:
    """Worth a Prefect retry: throttling, 5xx, timeouts and connection errors."""
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError |
                  ConnectTimeoutError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in TRANSIENT_CODES or status >= 500
    return False


def _retry_transient(task_, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry a slice only when its failure was transient."""
    try:
        state.result()
    except Exception as exc:
        cause = exc
        while cause is not None and not is_transient(cause):
            cause = cause.__cause__
        return cause is not None
    return False


# ------------------------------------------------------------------------------------------
# LookupEvents
# ------------------------------------------------------------------------------------------
def lookup_pages(
    client: Any,
    start: dt.datetime,
    end: dt.datetime,
    limiter: RateLimiter,
    stats: dict[str, int],
    *,
    page_size: int = PAGE_SIZE,
    patience_seconds: float = 900.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """(events, more) per page of LookupEvents over [start, end] (both inclusive), newest first.

    Every request waits for the limiter. Throttling is retried by botocore (adaptive mode)
    and, past its attempts, here with exponential backoff (cap 30 s) for up to
    `patience_seconds` of consecutive throttling: throttling slows a run, it never fails it
    (a run that stays throttled longer raises, and the next run resumes from the checkpoint).
    """
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"StartTime": start, "EndTime": end, "MaxResults": page_size}
        if token:
            kwargs["NextToken"] = token
        throttled_since: float | None = None
        attempt = 0
        while True:
            limiter.acquire()
            stats["calls"] = stats.get("calls", 0) + 1
            try:
                resp = client.lookup_events(**kwargs)
                break
            except ClientError as exc:
                if not is_throttle(exc):
                    raise
                stats["throttled"] = stats.get("throttled", 0) + 1
                now = time.monotonic()
                throttled_since = throttled_since or now
                if now - throttled_since > patience_seconds:
                    raise
                attempt += 1
                sleep(min(30.0, 0.25 * 2 ** min(attempt, 8)) * (0.5 + random.random() / 2))
        retries = resp.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0
        if retries:
            stats["retries"] = stats.get("retries", 0) + retries
        token = resp.get("NextToken")
        yield resp.get("Events") or [], bool(token)
        if not token:
            return


def prefetch_pages(produce: Callable[[dict[str, int]], Iterator[Any]], stats: dict[str, int],
                   depth: int = 2) -> Iterator[Any]:
    """Iterate `produce(own_stats)` in a thread, up to `depth` pages ahead, so the next
    LookupEvents request is in flight while this page is parsed, filtered and compressed
    (docs/benchmarks.md §2). Pages, the producer's exception and its stats counters come
    back in order on the caller's thread, so restarts, retries and checkpoints see exactly
    what they would without the thread; a prefetched page not yet written is simply fetched
    again on resume."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any, dict[str, int]]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        own: dict[str, int] = {}

        def delta() -> dict[str, int]:
            out = dict(own)
            own.clear()
            return out

        try:
            for item in produce(own):
                if not put(("page", item, delta())):
                    return  # the consumer is gone
            put(("end", None, delta()))
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer
            put(("error", exc, delta()))

    threading.Thread(target=run, name="cloudtrail-prefetch", daemon=True).start()
    try:
        while True:
            kind, value, counters = q.get()
            for k, v in counters.items():
                stats[k] = stats.get(k, 0) + v
            if kind == "page":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()  # a producer mid-request finishes that request, then exits


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


ENVELOPE = ("EventId", "EventName", "EventTime", "EventSource", "Username", "ReadOnly",
            "AccessKeyId", "Resources")


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """One archived line: the API envelope (EventTime as ISO-8601 UTC) plus the CloudTrail
    document parsed (kept as a string only if it is not valid JSON)."""
    rec: dict[str, Any] = {}
    for key in ENVELOPE:
        if key in event and event[key] is not None:
            rec[key] = event[key]
    t = event["EventTime"]
    rec["EventTime"] = fmt(t if isinstance(t, dt.datetime) and t.tzinfo else _epoch(t))
    raw = event.get("CloudTrailEvent")
    if raw is not None:
        try:
            rec["CloudTrailEvent"] = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            rec["CloudTrailEvent"] = raw
    return rec


def dumps_line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def event_line(event: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(`event_record(event)`, its NDJSON line). The CloudTrail document is spliced in as AWS
    sent it (it is compact JSON already, and was just parsed, so it is valid) instead of being
    re-encoded: the line holds AWS's bytes and costs half the CPU."""
    rec = event_record(event)
    raw = event.get("CloudTrailEvent")
    doc = rec.get("CloudTrailEvent")
    if isinstance(raw, str) and isinstance(doc, dict) and "\n" not in raw and "\r" not in raw:
        envelope = {k: v for k, v in rec.items() if k != "CloudTrailEvent"}
        head = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        return rec, f'{head[:-1]},"CloudTrailEvent":{raw.strip()}}}\n'
    return rec, dumps_line(rec).decode()


# ------------------------------------------------------------------------------------------
# Dedupe in bounded memory
# ------------------------------------------------------------------------------------------
class BoundaryDedupe:
    """EventId dedupe for a newest-first stream, in memory bounded by the burst size.

    Why this is enough: LookupEvents pages one query newest first, and a NextToken continues
    after the last event returned, so within a query an event can only reappear where two
    pages (or a resumed query) meet — i.e. at the *frontier*: the oldest event time reached
    so far. Slices are half-open ([start, end), an event at `end` belongs to the next slice)
    so two slices never share an event, and a resume restarts at the checkpointed frontier.
    Therefore we keep:

    * `time`, `ids`: the frontier time and the ids already written at exactly that time
      (bounded by the number of events in one second);
    * `recent`: the last `recent_size` ids written (an LRU), against an API that repeats an
      already-passed event slightly out of order at a page boundary.

    Nothing grows with the number of events archived.
    """

    def __init__(self, time: float | None = None, ids: Iterable[str] = (),
                 recent_size: int = 1000):
        self.time = time
        self.ids: set[str] = set(ids)
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.recent_size = recent_size
        self.out_of_order = 0

    def _remember(self, event_id: str) -> None:
        self.recent[event_id] = None
        if len(self.recent) > self.recent_size:
            self.recent.popitem(last=False)

    def seen(self, event_id: str, t: float) -> bool:
        """True if `event_id` was already written; otherwise records it and returns False."""
        if self.time is None or t < self.time:
            if event_id in self.recent:
                return True
            self.time, self.ids = t, {event_id}
        elif t == self.time:
            if event_id in self.ids or event_id in self.recent:
                return True
            self.ids.add(event_id)
        else:  # newer than the frontier: only an out-of-order repeat can be a duplicate
            if event_id in self.recent:
                return True
            self.out_of_order += 1
        self._remember(event_id)
        return False


# ------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------
class Progress:
    """A log line and the Prefect progress artifact every `every` pages."""

    def __init__(self, cp: Mapping[str, Any], every: int, *, started: float, base_events: int,
                 base_fraction: float, key: str = PROGRESS_KEY):
        self.every = max(1, int(every))
        self.since = _epoch(cp["window"]["since"])
        self.until = _epoch(cp["window"]["until"])
        self.span = max(1.0, self.until - self.since)
        self.started = started
        self.base_events = base_events
        self.base_fraction = base_fraction
        self.key = key
        self.pages = 0

    def fraction(self, done_seconds: float) -> float:
        return max(0.0, min(1.0, done_seconds / self.span))

    def update(self, pages: int, events: int, papyrus: int, done_seconds: float, label: str,
               force: bool = False) -> dict[str, Any]:
        """Report when the run's page count `pages` is a multiple of `every` (or forced)."""
        self.pages = pages
        if not force and pages % self.every:
            return {}
        frac = self.fraction(done_seconds)
        elapsed = max(1e-6, time.time() - self.started)
        rate = max(0, events - self.base_events) / elapsed
        gained = frac - self.base_fraction
        eta = elapsed * (1.0 - frac) / gained if gained > 1e-9 else None
        eta_text = "unknown" if eta is None else _duration(eta)
        line = (f"cloudtrail: {label}: {events} events ({papyrus} Papyrus), "
                f"{frac * 100:.1f}% of the window, {rate:.1f} events/s, ETA {eta_text}")
        _logger().info(line)
        with contextlib.suppress(Exception):
            from artifacts.prefect_artifacts import progress

            progress(self.key, frac, line)
        return {"fraction": frac, "rate": rate, "eta_seconds": eta}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def done_seconds(cp: Mapping[str, Any], current: tuple[float, float] | None = None,
                 frontier: float | None = None) -> float:
    """Seconds of the window archived: completed slices plus the part of the current slice
    above the frontier (the stream goes newest first inside a slice)."""
    total = sum(_epoch(s["until"]) - _epoch(s["since"]) for s in cp.get("completed", []))
    if current is not None and frontier is not None:
        start, end = current
        total += max(0.0, end - max(start, frontier))
    return total


# ------------------------------------------------------------------------------------------
# One slice
# ------------------------------------------------------------------------------------------
def _bump(totals: dict[str, Any], key: str, n: int) -> None:
    totals[key] = int(totals.get(key, 0)) + n


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
) -> dict[str, Any]:
    """Archive slice `index` of the checkpointed run in `work`; returns the slice's entry.

    Resumes from the checkpoint's cursor when the slice was interrupted: both files are first
    truncated back to the checkpoint (dropping a partial gzip member), then the query restarts
    with EndTime at the cursor's frontier and skips what the cursor says is written.
    """
    cp = work.load()
    if cp is None:
        raise RuntimeError(f"{work.checkpoint_path}: no checkpoint to archive into")
    done = {s["index"]: s for s in cp["completed"]}
    if index in done:
        return done[index]
    if len(cp["completed"]) != index:
        raise RuntimeError(f"slice {index} out of order (next is {len(cp['completed'])})")
    since_s, until_s = cp["slices"][index]
    start, end = _epoch(since_s), _epoch(until_s)
    cursor = cp.get("cursor")
    if cursor is not None and cursor.get("index") != index:
        cursor = None
    work.truncate(cp)

    ceiling = cursor["time"] if cursor and cursor.get("time") is not None else None
    written_at_ceiling = frozenset(cursor["ids"]) if ceiling is not None else frozenset()
    dedupe = BoundaryDedupe(ceiling, written_at_ceiling)
    counts = {k: int(cursor.get(k, 0)) if cursor else 0
              for k in ("events", "papyrus", "pages", "duplicates", "out_of_window", "skipped")}
    totals = cp.setdefault("totals", {})
    stats: dict[str, int] = {}
    query_start = dt.datetime.fromtimestamp(math.floor(start), UTC)
    query_end = dt.datetime.fromtimestamp(math.ceil(end if ceiling is None else ceiling), UTC)
    first, last = cp.get("first_event_time"), cp.get("last_event_time")
    slice_first: float | None = cursor.get("first") if cursor else None
    slice_last: float | None = cursor.get("last") if cursor else None
    pending = {"events": 0, "papyrus": 0, "duplicates": 0, "out_of_window": 0, "skipped": 0}
    events_w, papyrus_w = work.writers(compresslevel)
    label = f"slice {index + 1}/{len(cp['slices'])} [{since_s}, {until_s})"

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
                     "events": counts["events"], "papyrus": counts["papyrus"],
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
                yield from prefetch_pages(
                    lambda own, q_end=q_end: lookup_pages(
                        client, query_start, q_end, limiter, own, page_size=page_size,
                        patience_seconds=patience_seconds),
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
            for ev in events:
                t = _epoch(ev["EventTime"])
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
                rec, text = event_line(ev)
                if redact is not None:
                    text = redact(text)
                line = text.encode()
                events_w.write(line)
                counts["events"] += 1
                pending["events"] += 1
                if papyrus.check(rec, text):
                    papyrus_w.write(line)
                    counts["papyrus"] += 1
                    pending["papyrus"] += 1
                first = t if first is None or t < first else first
                last = t if last is None or t > last else last
                slice_first = t if slice_first is None or t < slice_first else slice_first
                slice_last = t if slice_last is None or t > slice_last else slice_last
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


# ------------------------------------------------------------------------------------------
# Prefect tasks
# ------------------------------------------------------------------------------------------
@task(name="cloudtrail-papyrus-names", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def resolve_papyrus_names(settings: Any, extra: list[str] | None = None,
                          ec2: Any = None) -> dict[str, Any]:
    """The filter's identifiers from settings, plus the security groups' ids when EC2 knows
    them (events often name a group only by id). EC2 failing is a warning, not an error."""
    sg_ids: list[str] = []
    wanted = [n for n in (settings.rds_security_group, settings.task_security_group) if n]
    if wanted:
        try:
            if ec2 is None:
                from ground.aws import client

                ec2 = client("ec2", settings.region)
            resp = ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": wanted}])
            sg_ids = sorted({g["GroupId"] for g in resp.get("SecurityGroups", [])})
        except Exception as exc:
            _logger().warning("cloudtrail: could not resolve security group ids (%s: %s); "
                              "matching on names only", type(exc).__name__, exc)
    return names_from_settings(settings, [*configured_extra_names(settings), *(extra or ())],
                               sg_ids).to_dict()


def configured_extra_names(settings: Any) -> list[str]:
    """``[cloudtrail] extra_names`` of the environment's config.toml (identifiers Settings
    does not carry, e.g. the CI deploy role); [] when absent."""
    import tomllib

    folder = getattr(settings, "folder", None)
    if folder is None:
        return []
    try:
        raw = tomllib.loads((Path(folder) / "config.toml").read_text())
    except (OSError, ValueError):
        return []
    values = raw.get("cloudtrail", {}).get("extra_names", [])
    return [v for v in values if isinstance(v, str) and v.strip()] \
        if isinstance(values, list) else []


def new_checkpoint(env: str, window: Window, names: PapyrusNames, slice_seconds: float,
                   now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(UTC)
    slices = plan_slices(window.since, window.until, slice_seconds)
    return {
        "version": 1,
        "env": env,
        "mode": window.mode,
        "request": _request_key(window, slice_seconds, names),
        "window": window.to_dict(),
        "asked": {k: (fmt(v) if isinstance(v, dt.datetime) else v)
                  for k, v in window.asked.items()},
        "notes": list(window.notes),
        "names": names.to_dict(),
        "slice_seconds": slice_seconds,
        "slices": [[fmt(a), fmt(b)] for a, b in slices],
        "started_at": fmt(now.replace(microsecond=0)),
        "stamp": stamp(now),
        "attempts": 1,
        "completed": [],
        "cursor": None,
        "totals": {},
        "first_event_time": None,
        "last_event_time": None,
    }


def _request_key(window: Window, slice_seconds: float, names: PapyrusNames) -> dict[str, Any]:
    """What a rerun must ask for to resume this run (relative windows match by their ask)."""
    asked = window.asked
    return {"mode": window.mode, "days": asked.get("days"),
            "since": None if asked.get("since") is None else fmt(window.since),
            "until": None if asked.get("until") is None else fmt(window.until),
            "slice_seconds": slice_seconds, "names": names.fingerprint()}


def resumable(cp: Mapping[str, Any] | None, window: Window, slice_seconds: float,
              names: PapyrusNames, *, now: dt.datetime,
              state_until: str | None = None) -> str | None:
    """Why the checkpoint `cp` cannot be resumed by this request (None: it can)."""
    if cp is None:
        return "no checkpoint"
    if cp.get("request") != _request_key(window, slice_seconds, names):
        return "it was started with other parameters"
    # Slices run oldest first: what is left to fetch starts at the first unfinished slice
    # (or its cursor). It must still be inside LookupEvents' 90 days.
    oldest = now.timestamp() - 90 * 86400 - GRACE_SECONDS
    done = len(cp["completed"])
    if done < len(cp["slices"]) and _epoch(cp["slices"][done][0]) < oldest:
        return "what is left of its window now starts more than 90 days ago"
    if window.mode == "incremental" and state_until is not None and \
            cp["window"]["since"] != fmt(dt.datetime.fromisoformat(
                state_until.replace("Z", "+00:00"))):
        return "the archive state moved on since it started"
    return None


@task(name="cloudtrail-prepare", cache_policy=NO_CACHE)
def prepare_archive(work_root: str, env: str, window: Window, names: dict[str, Any],
                    slice_seconds: float, resume: bool = True,
                    state_until: str | None = None) -> dict[str, Any]:
    """Resume the checkpoint in the work folder when it belongs to this request, else start
    fresh. Returns the checkpoint plus `resumed` and `discarded` (why an old one was dropped)."""
    work = WorkDir(work_root)
    pnames = PapyrusNames.from_dict(names)
    now = dt.datetime.now(UTC)
    cp = work.load()
    why = resumable(cp, window, slice_seconds, pnames, now=now, state_until=state_until)
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
    cp = new_checkpoint(env, window, pnames, slice_seconds, now)
    work.start(cp)
    return {**work.load(), "resumed": False, "discarded": discarded}


@task(name="cloudtrail-slice", retries=3, retry_delay_seconds=[2, 10, 30],
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def archive_slice(client: Any, work_root: str, index: int, names: dict[str, Any],
                  *, max_rps: float | None = None, checkpoint_every: int = 20,
                  log_every: int = 20, region: str = "", run_started: float = 0.0,
                  base_events: int = 0, base_fraction: float = 0.0,
                  patience_seconds: float = 900.0) -> dict[str, Any]:
    """Archive one slice (see `archive_slice_core`); a retry resumes from the checkpoint."""
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
        patience_seconds=patience_seconds, redact=redact)


def _link_or_copy(src: Path, dst: Path) -> None:
    from tasks.cloudtrail_store import copy_durably

    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        copy_durably(src, dst)


@task(name="cloudtrail-publish", cache_policy=NO_CACHE)
def publish_archive(settings: Any, work_root: str, s3: Any = None) -> dict[str, Any]:
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
    summary = {
        "mode": cp["mode"],
        "window_asked": cp["asked"],
        "window_covered": cp["window"],
        "notes": cp["notes"],
        "counts": {"all": int(totals.get("events", 0)), "papyrus": int(totals.get("papyrus", 0))},
        "first_event_time": fmt(cp["first_event_time"]),
        "last_event_time": fmt(cp["last_event_time"]),
        "files": files,
        "papyrus_rule": {"names": cp["names"]["names"], "secrets": cp["names"]["secrets"],
                         "doc": "docs/cloudtrail.md"},
        "api": {k: int(totals.get(k, 0)) for k in
                ("pages", "calls", "throttled", "retries", "duplicates", "out_of_window",
                 "out_of_order", "skipped")},
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
        throttled=summary["api"]["throttled"], attempts=summary["attempts"])
    result = bundle.finish("pass", s3=s3)
    return {
        "folder": str(result.folder), "manifest": str(result.manifest),
        "manifest_sha256": result.manifest_sha256, "s3_uri": result.s3_uri,
        "uploaded": list(result.uploaded), "pending": result.pending,
        "pending_reason": result.pending_reason, "bucket": result.bucket,
        "key_prefix": result.key_prefix, "summary": summary,
    }


@task(name="cloudtrail-read-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_archive_state(settings: Any, s3: Any = None) -> dict[str, Any] | None:
    """The last archive's covered window: the later of the bucket's and the local copy."""
    candidates = []
    local = read_local_state(settings.evidence_root, settings.env)
    if local:
        candidates.append(local)
    if settings.evidence_bucket:
        try:
            if s3 is None:
                from ground.aws import client

                s3 = client("s3", settings.region)
            body = s3.get_object(Bucket=settings.evidence_bucket,
                                 Key=STATE_KEY.format(env=settings.env))["Body"].read()
            remote = json.loads(body)
            if isinstance(remote, dict) and remote.get("covered_until"):
                candidates.append(remote)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                _logger().warning("cloudtrail: could not read the archive state from the "
                                  "bucket (%s); using the local copy", error_code(exc))
        except Exception as exc:
            _logger().warning("cloudtrail: could not read the archive state from the bucket "
                              "(%s); using the local copy", type(exc).__name__)
    if not candidates:
        return None
    return max(candidates, key=lambda s: _epoch(s["covered_until"]))


@task(name="cloudtrail-write-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def write_archive_state(settings: Any, state: dict[str, Any], s3: Any = None) -> dict[str, Any]:
    """Record the covered window locally and in the bucket (never moves it backwards)."""
    previous = read_archive_state.fn(settings, s3=s3)
    if previous and _epoch(previous["covered_until"]) >= _epoch(state["covered_until"]):
        return {"written": False, "state": previous, "reason": "the state is already later"}
    if previous and _epoch(state["covered_since"]) > _epoch(previous["covered_until"]):
        # [previous end, this start) was never archived: moving the state would hide the gap.
        _logger().warning("cloudtrail: archive state not advanced: this window starts %s, "
                          "after the last covered end %s", state["covered_since"],
                          previous["covered_until"])
        return {"written": False, "state": previous, "reason": "not contiguous"}
    path = write_local_state(settings.evidence_root, settings.env, state)
    out: dict[str, Any] = {"written": True, "state": state, "local": str(path), "s3": None}
    if settings.evidence_bucket:
        key = STATE_KEY.format(env=settings.env)
        try:
            if s3 is None:
                from ground.aws import client

                s3 = client("s3", settings.region)
            s3.put_object(Bucket=settings.evidence_bucket, Key=key,
                          Body=json.dumps(state, indent=1, sort_keys=True).encode(),
                          ContentType="application/json", ServerSideEncryption="aws:kms")
            out["s3"] = f"s3://{settings.evidence_bucket}/{key}"
        except Exception as exc:
            _logger().warning("cloudtrail: archive state kept locally only (%s: %s)",
                              type(exc).__name__, exc)
    return out
