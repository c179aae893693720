"""Paging LookupEvents: the pages of one [start, end] query, throttling absorbed, and the
prefetch thread that keeps the next request in flight; plus which errors are transient."""

from __future__ import annotations

import datetime as dt
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tasks.cloudtrail.pacing import RateLimiter

PAGE_SIZE = 50  # LookupEvents' maximum
THROTTLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "SlowDown", "RequestThrottled", "RequestThrottledException",
})
TRANSIENT_CODES = THROTTLE_CODES | {
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError",
    "InternalServerError", "RequestTimeout", "RequestTimeoutException",
}


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


def retry_transient(task_, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry a slice only when its failure was transient."""
    try:
        state.result()
    except Exception as exc:
        cause = exc
        while cause is not None and not is_transient(cause):
            cause = cause.__cause__
        return cause is not None
    return False


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
    attribute: tuple[str, str] | None = None,
) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """(events, more) per page of LookupEvents over [start, end] (both inclusive), newest first.

    Every request waits for the limiter. Throttling is retried by botocore (adaptive mode)
    and, past its attempts, here with exponential backoff (cap 30 s) for up to
    `patience_seconds` of consecutive throttling: throttling slows a run, it never fails it
    (a run that stays throttled longer raises, and the next run resumes from the checkpoint).
    attribute: one (AttributeKey, AttributeValue) filter; the API accepts only one per call.
    """
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"StartTime": start, "EndTime": end, "MaxResults": page_size}
        if attribute is not None:
            kwargs["LookupAttributes"] = [{"AttributeKey": attribute[0],
                                           "AttributeValue": attribute[1]}]
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
    return Lookahead([(None, produce)], depth).pages(None, stats)


class Lookahead:
    """`prefetch_pages` over several queries in a row: one thread runs them one after the
    other, so the first page of the next query (the next slice) is in flight while the caller
    still finishes this one — its last page, its checkpoint, the end of its task run and the
    start of the next (about 11 ms per slice boundary at 10,000 events, in which no request
    was in flight: docs/benchmarks.md §2).

    queries: [(key, produce)], in the order they are consumed; `pages(key, stats)` yields
    the pages of one, in order, with its counters added to `stats` as each page is taken.
    Only what comes next can be taken (`takes(key)`): a caller that needs anything else — a
    query restarted at a frontier, a retried slice — runs its own, and the lookahead is
    closed for good once a query fails or its consumer stops before its end (a page fetched
    ahead and never taken is fetched again by whoever runs that query, as on a resume)."""

    def __init__(self, queries: list[tuple[Any, Callable[[dict[str, int]], Iterator[Any]]]],
                 depth: int = 2):
        self._queries = list(queries)
        self._next = 0
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def takes(self, key: Any) -> bool:
        return (not self._stop.is_set() and self._next < len(self._queries)
                and self._queries[self._next][0] == key)

    def close(self) -> None:
        self._stop.set()  # a producer mid-request finishes that request, then exits

    def _put(self, item: tuple[str, Any, dict[str, int]]) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for _key, produce in self._queries:
            own: dict[str, int] = {}

            def delta(own: dict[str, int] = own) -> dict[str, int]:
                out = dict(own)
                own.clear()
                return out

            try:
                for item in produce(own):
                    if not self._put(("page", item, delta())):
                        return  # the consumer is gone
                if not self._put(("end", None, delta())):
                    return
            except BaseException as exc:  # noqa: BLE001 - handed over to the consumer
                self._put(("error", exc, delta()))
                return

    def pages(self, key: Any, stats: dict[str, int]) -> Iterator[Any]:
        if not self.takes(key):
            raise RuntimeError(f"the lookahead does not hold {key!r} next")
        self._next += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cloudtrail-prefetch",
                                            daemon=True)
            self._thread.start()
        finished = False
        try:
            while True:
                kind, value, counters = self._q.get()
                for k, v in counters.items():
                    stats[k] = stats.get(k, 0) + v
                if kind == "page":
                    yield value
                elif kind == "end":
                    finished = True
                    return
                else:
                    raise value
        finally:
            if not finished:
                self.close()
