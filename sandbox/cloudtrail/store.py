"""The events of one (account, region), answering LookupEvents (`EventStore`).

Sorted by (EventTime, EventId) in parallel lists, so a page is found by bisection: its cost
does not depend on how much history is stored. Pages come newest first, like the real API. An
optional token bucket enforces the API's rate (2 requests/s per account and region), and
`EventStore.throttle_next` injects throttling for the next N calls.
"""

from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sandbox.cloudtrail.events import (
    _KEY,
    ATTRIBUTE_KEYS,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    MAX_RESULTS,
    StoredEvent,
    _epoch,
    _err,
    _no_gc,
    _normalize,
)
from sandbox.cloudtrail.tokens import _decode_token, _encode_token, _fingerprint


class _TokenBucket:
    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class EventStore:
    """The CloudTrail events of one (account, region), newest first on lookup.

    Events live in three parallel lists sorted ascending by (EventTime, EventId): the times,
    the ids and the records. A window is two bisections on the times, a token's position one
    more (on the ids inside the token's second), and a page is a slice walked backwards: no
    copy or sort of the history per page. Attribute filters use a per-key inverted index
    (value -> ascending positions) built on first use and kept up to date on appends.
    """

    _insert_limit = 1000  # late events inserted one by one up to this batch size

    def __init__(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        *,
        max_rps: float | None = None,
        burst: float | None = None,
    ):
        self.account_id = account_id
        self.region = region
        self._lock = threading.RLock()
        self._rate_lock = threading.Lock()  # apart, so throttling never waits on a lookup
        self._times: list[float] = []
        self._ids: list[str] = []
        self._records: list[StoredEvent] = []
        self._index: dict[str, dict[str, int | array]] = {}
        self._bucket: _TokenBucket | None = None
        self._throttle_next = 0
        self.max_rps: float | None = None
        self.calls = 0  # LookupEvents requests seen (throttled ones included)
        self.throttled = 0  # requests answered with ThrottlingException
        self.call_times: deque[float] = deque(maxlen=100_000)  # time.monotonic() per request
        self.set_rate_limit(max_rps, burst)

    # -- seeding ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def add_event(self, event: Any) -> None:
        self.add_events((event,))

    def add_events(self, events: Iterable[Any]) -> int:
        """Add events in bulk (StoredEvent, API-shaped dicts or CloudTrail records).

        Events newer than everything stored are appended in O(batch); up to 1000 older ones
        are inserted in place; larger batches are merged with one sort (Timsort: linear on the
        two sorted runs). Returns the number added.
        """
        with _no_gc():
            return self._add(events)

    def _add(self, events: Iterable[Any]) -> int:
        batch = [_normalize(e) for e in events]
        if not batch:
            return 0
        if any(_KEY(a) > _KEY(b) for a, b in zip(batch, batch[1:], strict=False)):
            batch.sort(key=_KEY)
        with self._lock:
            if not self._records or _KEY(batch[0]) >= _KEY(self._records[-1]):
                start = len(self._records)
                self._records.extend(batch)
                self._times.extend([r[0] for r in batch])
                self._ids.extend([r[1] for r in batch])
                for key, idx in self._index.items():
                    self._index_into(idx, key, start)
            elif len(batch) <= self._insert_limit:  # a few late events: insert, no sort
                times, ids, records = self._times, self._ids, self._records
                for rec in batch:
                    t_lo = bisect_left(times, rec[0])
                    pos = bisect_right(ids, rec[1], t_lo, bisect_right(times, rec[0], t_lo))
                    times.insert(pos, rec[0])
                    ids.insert(pos, rec[1])
                    records.insert(pos, rec)
                self._index = {}  # positions shifted
            else:
                records = self._records + batch
                records.sort(key=_KEY)
                self._records = records
                self._times = [r[0] for r in records]
                self._ids = [r[1] for r in records]
                self._index = {}
        return len(batch)

    def clear(self) -> None:
        with self._lock:
            self._times, self._ids, self._records, self._index = [], [], [], {}

    def events(self) -> Iterator[StoredEvent]:
        """All events, newest first (a snapshot)."""
        with self._lock:
            records = self._records[:]
        return reversed(records)

    # -- rate limiting / fault injection ---------------------------------------------------
    def set_rate_limit(self, max_rps: float | None, burst: float | None = None) -> None:
        """Enforce `max_rps` requests/s (token bucket of `burst`, default max(1, max_rps)).

        None turns enforcement off. The real API allows 2 requests/s per account and region.
        """
        with self._rate_lock:
            self.max_rps = max_rps
            if max_rps is None:
                self._bucket = None
            else:
                if max_rps <= 0:
                    raise ValueError("max_rps must be positive")
                self._bucket = _TokenBucket(max_rps, burst if burst else max(1.0, max_rps))

    def throttle_next(self, n: int = 1) -> None:
        """Answer the next `n` LookupEvents requests with ThrottlingException."""
        with self._rate_lock:
            self._throttle_next = max(0, int(n))

    def admit(self) -> None:
        """Count one request; raise ThrottlingException if it is over the rate or injected."""
        with self._rate_lock:
            self.calls += 1
            self.call_times.append(time.monotonic())
            if self._throttle_next > 0:
                self._throttle_next -= 1
            elif self._bucket is None or self._bucket.take():
                return
            self.throttled += 1
        raise _err("ThrottlingException", "Rate exceeded")

    # -- lookup ----------------------------------------------------------------------------
    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a LookupEvents request body (the JSON the SDKs send), rate limit included."""
        self.admit()
        if not isinstance(request, Mapping):
            raise _err("ValidationException", "The request body must be a JSON object")
        start = request.get("StartTime")
        end = request.get("EndTime")
        try:
            start = None if start is None else _epoch(start)
            end = None if end is None else _epoch(end)
        except (TypeError, ValueError) as exc:
            raise _err("InvalidTimeRangeException", "Start/EndTime must be timestamps") from exc
        attrs = request.get("LookupAttributes")
        attribute = None
        if attrs:
            if not isinstance(attrs, list):
                raise _err("InvalidLookupAttributesException", "LookupAttributes must be a list")
            if len(attrs) > 1:
                raise _err("InvalidLookupAttributesException",
                           "You can specify only one lookup attribute")
            a = attrs[0] if isinstance(attrs[0], Mapping) else {}
            attribute = (a.get("AttributeKey"), a.get("AttributeValue"))
        return self.lookup(
            start_time=start, end_time=end, attribute=attribute,
            max_results=request.get("MaxResults"), next_token=request.get("NextToken"),
            event_category=request.get("EventCategory"),
        )

    def lookup(
        self,
        *,
        start_time: Any = None,
        end_time: Any = None,
        attribute: tuple[str, str] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
        event_category: str | None = None,
    ) -> dict[str, Any]:
        """One page, newest first: {"Events": [...], "NextToken": ...} (no token on the last).

        StartTime and EndTime are inclusive (EventTime >= StartTime and <= EndTime), as the
        API documents them. No rate limiting here (see :meth:`handle`).
        """
        if max_results is None:
            max_results = MAX_RESULTS
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not (
            1 <= max_results <= MAX_RESULTS
        ):
            raise _err("InvalidMaxResultsException",
                       f"MaxResults must be between 1 and {MAX_RESULTS}: {max_results!r}")
        start = None if start_time is None else _epoch(start_time)
        end = None if end_time is None else _epoch(end_time)
        if start is not None and end is not None and start > end:
            raise _err("InvalidTimeRangeException", "Start time must be before end time")
        if event_category is not None and event_category != "insight":
            raise _err("InvalidEventCategoryException",
                       f"Invalid event category: {event_category!r}")
        if attribute is not None:
            key, value = attribute
            if key not in ATTRIBUTE_KEYS:
                raise _err("InvalidLookupAttributesException",
                           f"Invalid attribute key: {key!r}")
            if not isinstance(value, str) or not (1 <= len(value) <= 2000):
                raise _err("InvalidLookupAttributesException",
                           "AttributeValue must be a string of 1 to 2000 characters")
            if key == "ReadOnly":
                if value.lower() not in ("true", "false"):
                    raise _err("InvalidLookupAttributesException",
                               "ReadOnly must be 'true' or 'false'")
                value = value.lower()
            attribute = (key, value)
        fingerprint = _fingerprint(start, end, attribute, event_category)
        cursor = None if next_token is None else _decode_token(next_token, fingerprint)
        if event_category == "insight":  # no Insights events are ever stored here
            return {"Events": []}

        with self._lock:
            times, ids, records = self._times, self._ids, self._records
            lo = 0 if start is None else bisect_left(times, start)
            hi = len(times) if end is None else bisect_right(times, end)
            if cursor is not None:
                t, eid = cursor
                t_lo = bisect_left(times, t)
                hi = min(hi, bisect_left(ids, eid, t_lo, bisect_right(times, t, t_lo)))
            if attribute is None:
                stop = max(lo, hi - max_results)
                page = records[stop:hi][::-1]
                more = stop > lo
            else:
                positions = self._positions(*attribute)
                j = bisect_left(positions, hi)
                k = j
                page = []
                while k > 0 and positions[k - 1] >= lo and len(page) < max_results:
                    k -= 1
                    page.append(records[positions[k]])
                more = k > 0 and positions[k - 1] >= lo
        out: dict[str, Any] = {"Events": [r.to_api() for r in page]}
        if more and page:
            out["NextToken"] = _encode_token(page[-1][0], page[-1][1], fingerprint)
        return out

    # -- attribute index -------------------------------------------------------------------
    def _positions(self, key: str, value: str) -> array | tuple[int, ...]:
        idx = self._index.get(key)
        if idx is None:
            idx = {}
            with _no_gc():
                self._index_into(idx, key, 0)
            self._index[key] = idx
        found = idx.get(value)
        if found is None:
            return ()
        return (found,) if isinstance(found, int) else found

    def _index_into(self, idx: dict[str, int | array], key: str, start: int) -> None:
        """value -> position (one event, e.g. an EventId) or ascending array of positions."""
        records = self._records
        for pos in range(start, len(records)):
            for value in _attribute_values(records[pos], key):
                found = idx.get(value)
                if found is None:
                    idx[value] = pos
                elif isinstance(found, int):
                    idx[value] = array("q", (found, pos))
                else:
                    found.append(pos)


def _attribute_values(rec: StoredEvent, key: str) -> tuple[str, ...]:
    if key == "EventName":
        return (rec.event_name,)
    if key == "EventSource":
        return (rec.event_source,)
    if key == "ReadOnly":
        return (rec.read_only,)
    if key == "Username":
        return (rec.username,) if rec.username is not None else ()
    if key == "AccessKeyId":
        return (rec.access_key_id,) if rec.access_key_id is not None else ()
    if key == "ResourceType":
        return tuple(dict.fromkeys(t for t, _ in rec.resources if t is not None))
    if key == "ResourceName":
        return tuple(dict.fromkeys(n for _, n in rec.resources if n is not None))
    if key == "EventId":
        return (rec.event_id,)
    raise KeyError(key)
