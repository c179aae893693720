"""A stand-in for CloudTrail `LookupEvents` inside moto's server (moto 5.2.5 answers it with 500).

Three pieces:

* :class:`EventStore` holds the events of one (account, region), sorted by (EventTime, EventId)
  in parallel lists, so a page is found by bisection: its cost does not depend on how much
  history is stored. Pages come newest first, like the real API. Tokens carry the position as
  the (EventTime, EventId) of the last event returned plus a fingerprint of the query, so they
  stay valid while newer events are appended. An optional token bucket enforces the API's
  rate (2 requests/s per account and region), and :meth:`EventStore.throttle_next` injects
  throttling for the next N calls.
* :func:`install` / :func:`uninstall` patch ``moto.cloudtrail.responses.CloudTrailResponse`` so
  ``LookupEvents`` is answered from a :class:`StoreRegistry` (moto reads the response class on
  every request, so the patch is seen by a server that is already running).
* :func:`generate_history` builds a realistic, deterministic synthetic history in which an exact
  share of the events concern Papyrus resources and the rest never mention "papyrus".
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
import hashlib
import json
import random
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any, NamedTuple

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_REGION = "us-west-2"
MAX_RESULTS = 50
ATTRIBUTE_KEYS = (
    "EventId", "EventName", "ReadOnly", "Username",
    "ResourceType", "ResourceName", "EventSource", "AccessKeyId",
)

__all__ = [
    "ATTRIBUTE_KEYS", "DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "PAPYRUS_NAMES", "EventStore",
    "LookupEventsError", "StoreRegistry", "StoredEvent", "default_registry", "generate_history",
    "get_store", "install", "installed_registry", "uninstall",
]


# ------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------
class StoredEvent(NamedTuple):
    """One event, stored compactly: the lookup fields plus the CloudTrailEvent JSON, built once."""

    event_time: float  # epoch seconds (an int for whole seconds, as CloudTrail records them)
    event_id: str
    event_name: str
    event_source: str
    username: str | None
    read_only: str  # "true" | "false", as the API returns it
    access_key_id: str | None
    resources: tuple[tuple[str, str], ...]  # (ResourceType, ResourceName)
    cloudtrail_event: str

    def to_api(self) -> dict[str, Any]:
        """The event as `LookupEvents` returns it (EventTime as epoch seconds)."""
        out: dict[str, Any] = {
            "EventId": self.event_id,
            "EventName": self.event_name,
            "ReadOnly": self.read_only,
        }
        if self.access_key_id is not None:
            out["AccessKeyId"] = self.access_key_id
        out["EventTime"] = self.event_time
        out["EventSource"] = self.event_source
        if self.username is not None:
            out["Username"] = self.username
        out["Resources"] = [{"ResourceType": t, "ResourceName": n} for t, n in self.resources]
        out["CloudTrailEvent"] = self.cloudtrail_event
        return out


_KEY = itemgetter(0, 1)


def _epoch(value: Any) -> float:
    """Epoch seconds from a datetime (naive = UTC), a number, or an ISO-8601 string."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a time")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        ts = value.timestamp()
        return int(ts) if ts == int(ts) else ts
    raise TypeError(f"not a time: {value!r}")


def _normalize(event: Any) -> StoredEvent:
    """A StoredEvent from a StoredEvent, an API-shaped dict, or a raw CloudTrail record."""
    if isinstance(event, StoredEvent):
        return event
    if not isinstance(event, Mapping):
        raise TypeError(f"not an event: {type(event).__name__}")
    if "EventId" in event:  # the shape LookupEvents returns
        doc = event.get("CloudTrailEvent")
        resources = tuple(
            (r.get("ResourceType"), r.get("ResourceName")) for r in event.get("Resources") or ()
        )
        read_only = event.get("ReadOnly", "true")
        rec = StoredEvent(
            _epoch(event["EventTime"]), str(event["EventId"]), event.get("EventName", ""),
            event.get("EventSource", ""), event.get("Username"),
            str(read_only).lower() if isinstance(read_only, bool) else str(read_only),
            event.get("AccessKeyId"), resources, "",
        )
        if doc is None:
            doc = _minimal_doc(rec)
        elif not isinstance(doc, str):
            doc = json.dumps(doc, separators=(",", ":"))
        return rec._replace(cloudtrail_event=doc)
    if "eventID" in event:  # a CloudTrail record (the CloudTrailEvent document itself)
        ui = event.get("userIdentity") or {}
        username = ui.get("userName")
        if username is None and ui.get("type") == "AssumedRole" and ui.get("arn"):
            username = ui["arn"].rsplit("/", 1)[-1]
        resources = tuple(
            (r.get("type"), r.get("ARN") or r.get("name")) for r in event.get("resources") or ()
        )
        read_only = event.get("readOnly")
        return StoredEvent(
            _epoch(event["eventTime"]), str(event["eventID"]), event.get("eventName", ""),
            event.get("eventSource", ""), username,
            "false" if read_only is False else "true", ui.get("accessKeyId"), resources,
            json.dumps(dict(event), separators=(",", ":")),
        )
    raise ValueError("an event needs 'EventId' (API shape) or 'eventID' (CloudTrail record)")


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while millions of (acyclic) tuples are made: with it on, every
    generation-2 pass rescans the whole growing history and seeding turns quadratic."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _minimal_doc(rec: StoredEvent) -> str:
    return json.dumps({
        "eventVersion": "1.09",
        "userIdentity": {"userName": rec.username, "accessKeyId": rec.access_key_id},
        "eventTime": _iso(rec.event_time),
        "eventSource": rec.event_source,
        "eventName": rec.event_name,
        "eventID": rec.event_id,
        "readOnly": rec.read_only == "true",
        "resources": [{"type": t, "ARN": n} for t, n in rec.resources],
        "eventType": "AwsApiCall",
        "managementEvent": True,
    }, separators=(",", ":"))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------
class LookupEventsError(Exception):
    """An error the real API answers with HTTP 400 and `__type` = error_type."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _err(error_type: str, message: str) -> LookupEventsError:
    return LookupEventsError(error_type, message)


# ------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------
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


def _fingerprint(start: float | None, end: float | None, attribute: Any, category: Any) -> str:
    raw = json.dumps([None if start is None else float(start),
                      None if end is None else float(end),
                      list(attribute) if attribute else None, category])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _encode_token(t: float, event_id: str, fingerprint: str) -> str:
    raw = json.dumps({"v": 1, "t": t, "i": event_id, "q": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: Any, fingerprint: str) -> tuple[float, str]:
    bad = _err("InvalidNextTokenException", "Invalid NextToken")
    if not isinstance(token, str) or not token or len(token) > 1000:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        t, eid, fp = data["t"], data["i"], data["q"]
        ok = data.get("v") == 1 and isinstance(eid, str) and isinstance(fp, str) and (
            isinstance(t, int | float) and not isinstance(t, bool)
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise bad from exc
    if not ok:
        raise bad
    if fp != fingerprint:
        raise _err("InvalidNextTokenException",
                   "NextToken was issued for a request with different parameters")
    return t, eid


# ------------------------------------------------------------------------------------------
# Registry and the moto patch
# ------------------------------------------------------------------------------------------
class StoreRegistry:
    """The stores by (account_id, region); a store is created empty on first use."""

    def __init__(self, *, max_rps: float | None = None, burst: float | None = None):
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str], EventStore] = {}
        self.max_rps = max_rps
        self.burst = burst

    def get(self, account_id: str = DEFAULT_ACCOUNT_ID, region: str = DEFAULT_REGION) -> EventStore:
        with self._lock:
            store = self._stores.get((account_id, region))
            if store is None:
                store = EventStore(account_id, region, max_rps=self.max_rps, burst=self.burst)
                self._stores[(account_id, region)] = store
            return store

    def set_rate_limit(self, max_rps: float | None, burst: float | None = None) -> None:
        """Set the rate for every store, existing and future (None: off)."""
        with self._lock:
            self.max_rps, self.burst = max_rps, burst
            stores = list(self._stores.values())
        for store in stores:
            store.set_rate_limit(max_rps, burst)

    def stores(self) -> dict[tuple[str, str], EventStore]:
        with self._lock:
            return dict(self._stores)

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


default_registry = StoreRegistry()


def get_store(
    account_id: str = DEFAULT_ACCOUNT_ID,
    region: str = DEFAULT_REGION,
    registry: StoreRegistry | None = None,
) -> EventStore:
    """Get or create the store for (account_id, region) in `registry` (default: the module's)."""
    return (registry or default_registry).get(account_id, region)


_MISSING = object()
_patch_lock = threading.Lock()
_installed: list[StoreRegistry] = []  # a stack: nested installs restore the outer one
_original: Any = _MISSING


def _lookup_events(self: Any) -> str:
    """CloudTrailResponse.lookup_events: answered from the installed registry."""
    from moto.core.exceptions import JsonRESTError

    registry = _installed[-1] if _installed else default_registry
    store = registry.get(self.current_account, self.region)
    try:
        body = self.body
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        try:
            request = json.loads(body) if body else {}
        except ValueError as exc:
            raise _err("SerializationException", "The request body is not JSON") from exc
        result = store.handle(request)
    except LookupEventsError as exc:
        raise JsonRESTError(exc.error_type, exc.message) from None
    return json.dumps(result)


def install(registry: StoreRegistry | None = None) -> StoreRegistry:
    """Answer moto's CloudTrail LookupEvents from `registry` (default: `default_registry`).

    Patches ``CloudTrailResponse.lookup_events``; running servers see it on their next
    request. Installs nest: each :func:`uninstall` undoes the latest install, and the last one
    restores moto's class as it was.
    """
    from moto.cloudtrail.responses import CloudTrailResponse

    global _original
    with _patch_lock:
        if _original is _MISSING:
            _original = CloudTrailResponse.__dict__.get("lookup_events")
            CloudTrailResponse.lookup_events = _lookup_events  # type: ignore[attr-defined]
        _installed.append(registry or default_registry)
        return _installed[-1]


def uninstall() -> None:
    """Undo the latest :func:`install`; after the last one moto answers 500 again."""
    from moto.cloudtrail.responses import CloudTrailResponse

    global _original
    with _patch_lock:
        if _installed:
            _installed.pop()
        if _installed or _original is _MISSING:
            return
        if _original is None:
            if "lookup_events" in CloudTrailResponse.__dict__:
                del CloudTrailResponse.lookup_events  # type: ignore[attr-defined]
        else:
            CloudTrailResponse.lookup_events = _original  # type: ignore[attr-defined]
        _original = _MISSING


def installed_registry() -> StoreRegistry | None:
    """The registry moto answers from, or None when not installed."""
    return _installed[-1] if _installed else None


# ------------------------------------------------------------------------------------------
# Synthetic history
# ------------------------------------------------------------------------------------------
PAPYRUS_NAMES: dict[str, str] = {
    "cluster": "papyrus-ecs-prd",
    "service": "papyrus-task-service",
    "task_family": "papyrus-task",
    "secret": "papyrus/prd/db",
    "db_instance": "papyrus-prd",
    "db_parameter_group": "papyrus-prd-pg15",
    "rds_security_group": "papyrus-rds-sg",
    "task_security_group": "papyrus-ecs-task-sg",
    "ecr_repository": "papyrus",
    "evidence_bucket": "papyrus-evidence-prd",
    "task_role": "papyrusTaskRole",
    "task_execution_role": "papyrusTaskExecutionRole",
    "deploy_role": "papyrus-deploy-oidc",
    "github_repository": "example-org/papyrus",
}

# Other workloads of the same account: they fill the rest of the history and never mention
# Papyrus.
_OTHER_APPS = ("orders", "billing", "ledger", "catalog")
_HUMANS = ("alice", "bob", "carol", "ops-automation")
# Random identifiers (access keys, principal ids) draw from an alphabet without "Y", so no
# random string can ever spell "papyrus".
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXZ234567"
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def _app_names(app: str) -> dict[str, str]:
    return {
        "cluster": f"{app}-ecs-prd",
        "service": f"{app}-api-service",
        "task_family": f"{app}-api",
        "secret": f"{app}/prd/db",
        "db_instance": f"{app}-prd",
        "db_parameter_group": f"{app}-prd-pg15",
        "rds_security_group": f"{app}-rds-sg",
        "task_security_group": f"{app}-ecs-task-sg",
        "ecr_repository": app,
        "evidence_bucket": f"{app}-artifacts-prd",
        "task_role": f"{app}TaskRole",
        "task_execution_role": f"{app}TaskExecutionRole",
        "deploy_role": f"{app}-deploy-oidc",
        "github_repository": f"example-org/{app}",
    }


class _Identity(NamedTuple):
    head: str  # userIdentity JSON up to the creationDate value (or all of it)
    tail: str | None  # the rest after creationDate; None when there is no session
    username: str | None
    access_key_id: str | None
    ip: str
    user_agent: str  # JSON-encoded


class _Variant(NamedTuple):
    params: str  # ',"requestParameters":...,"responseElements":...'
    resources: tuple[tuple[str, str], ...]
    tail: str  # '"readOnly":...,...}' (closes the document)
    read_only: str  # "true" | "false"


class _Kind(NamedTuple):
    source: str
    name: str
    weight: float
    head: str  # '"eventSource":..,"eventName":..,"awsRegion":..,'
    variants: tuple[_Variant, ...]
    identities: tuple[_Identity, ...]


_CLI_UA = _DUMPS("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1018-azure exe/x86_64.ubuntu.22 "
                 "prompt/off")
_BOTO_UA = _DUMPS("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.79 md/arch#x86_64 "
                  "lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#standard Botocore/1.34.69")
_CONSOLE_UA = _DUMPS("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                     "(KHTML, like Gecko) Version/17.4 Safari/605.1.15")
_AGENT_UA = _DUMPS("ecs-tasks.amazonaws.com")


class _Gen:
    """Deterministic building blocks for one history."""

    def __init__(self, rng: random.Random, account: str, region: str):
        self.rng = rng
        self.account = account
        self.region = region

    def key(self, prefix: str, n: int = 16) -> str:
        return prefix + "".join(self.rng.choice(_KEY_ALPHABET) for _ in range(n))

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def public_ip(self) -> str:
        r = self.rng
        return f"{r.choice((34, 35, 44, 52, 54, 203))}.{r.randrange(256)}.{r.randrange(256)}." \
               f"{r.randrange(1, 255)}"

    # -- identities ------------------------------------------------------------------------
    def iam_user(self, name: str) -> _Identity:
        ui = {"type": "IAMUser", "principalId": self.key("AIDA", 17),
              "arn": f"arn:aws:iam::{self.account}:user/{name}", "accountId": self.account,
              "accessKeyId": (ak := self.key("AKIA")), "userName": name}
        ua = self.rng.choice((_CLI_UA, _BOTO_UA))
        return _Identity(_DUMPS(ui), None, name, ak, self.public_ip(), ua)

    def assumed_role(self, role: str, session: str, *, ip: str | None = None,
                     ua: str = _BOTO_UA, invoked_by: str | None = None) -> _Identity:
        role_id = self.key("AROA", 17)
        ak = self.key("ASIA")
        ui: dict[str, Any] = {
            "type": "AssumedRole", "principalId": f"{role_id}:{session}",
            "arn": f"arn:aws:sts::{self.account}:assumed-role/{role}/{session}",
            "accountId": self.account, "accessKeyId": ak,
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": role_id,
                                  "arn": f"arn:aws:iam::{self.account}:role/{role}",
                                  "accountId": self.account, "userName": role},
                "webIdFederationData": {},
                "attributes": {"creationDate": "@@T@@", "mfaAuthenticated": "false"},
            },
        }
        if invoked_by:
            ui["invokedBy"] = invoked_by
        head, tail = _DUMPS(ui).split("@@T@@")
        return _Identity(head, tail, session, ak, ip or self.public_ip(), ua)

    def web_identity(self, repo: str) -> _Identity:
        subject = f"repo:{repo}:ref:refs/heads/main"
        provider = f"arn:aws:iam::{self.account}:oidc-provider/token.actions.githubusercontent.com"
        ui = {"type": "WebIdentityUser",
              "principalId": f"{provider}:sts.amazonaws.com:{subject}",
              "userName": subject, "identityProvider": provider}
        ua = _DUMPS("aws-sdk-nodejs/2.1551.0 linux/v20.11.1 configure-aws-credentials-for-"
                    "github-actions promise")
        return _Identity(_DUMPS(ui), None, subject, None, self.public_ip(), ua)


def _head(source: str, name: str, region: str) -> str:
    return f'"eventSource":"{source}","eventName":"{name}","awsRegion":"{region}",'


def _variant(gen: _Gen, source: str, read_only: bool, request: Any, response: Any,
             resources: list[tuple[str, str, str | None]], *, category: str = "Management",
             event_type: str = "AwsApiCall") -> _Variant:
    """resources: (ResourceType, ResourceName, ARN or None) as CloudTrail reports them."""
    params = f',"requestParameters":{_DUMPS(request)},"responseElements":{_DUMPS(response)}'
    doc_resources = [{"accountId": gen.account, "type": t, "ARN": arn}
                     for t, _, arn in resources if arn]
    tail = f'"readOnly":{"true" if read_only else "false"},'
    if doc_resources:
        tail += f'"resources":{_DUMPS(doc_resources)},'
    host = f"{source.split('.')[0]}.{gen.region}.amazonaws.com"
    tail += (f'"eventType":"{event_type}","managementEvent":'
             f'{"true" if category == "Management" else "false"},'
             f'"recipientAccountId":"{gen.account}","eventCategory":"{category}",'
             f'"tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256",'
             f'"clientProvidedHostHeader":"{host}"}}}}')
    return _Variant(params, tuple((t, n) for t, n, _ in resources), tail,
                    "true" if read_only else "false")


def _app_kinds(gen: _Gen, n: Mapping[str, str], humans: list[_Identity]) -> list[_Kind]:
    """The API calls of one ECS/RDS workload, every one naming a resource of `n`."""
    acct, region, rng = gen.account, gen.region, gen.rng
    arn_role = f"arn:aws:iam::{acct}:role/"
    cluster_arn = f"arn:aws:ecs:{region}:{acct}:cluster/{n['cluster']}"
    service_arn = f"arn:aws:ecs:{region}:{acct}:service/{n['cluster']}/{n['service']}"
    secret_arn = f"arn:aws:secretsmanager:{region}:{acct}:secret:{n['secret']}-{gen.key('', 6)}"
    db_arn = f"arn:aws:rds:{region}:{acct}:db:{n['db_instance']}"
    pg_arn = f"arn:aws:rds:{region}:{acct}:pg:{n['db_parameter_group']}"
    repo_arn = f"arn:aws:ecr:{region}:{acct}:repository/{n['ecr_repository']}"
    registry = f"{acct}.dkr.ecr.{region}.amazonaws.com"
    rds_sg, task_sg = f"sg-{gen.hex(17)}", f"sg-{gen.hex(17)}"
    subnets = [f"subnet-{gen.hex(17)}" for _ in range(2)]
    deploy_session = "GitHubActions"
    deploy = [gen.assumed_role(n["deploy_role"], deploy_session, ua=_CLI_UA) for _ in range(3)]
    tasks = [gen.hex(32) for _ in range(6)]
    task_role = [gen.assumed_role(n["task_role"], t, ip=f"10.0.{rng.randrange(1, 3)}."
                                  f"{rng.randrange(2, 250)}") for t in tasks]
    exec_role = [gen.assumed_role(n["task_execution_role"], t, ip="ecs-tasks.amazonaws.com",
                                  ua=_AGENT_UA, invoked_by="ecs-tasks.amazonaws.com")
                 for t in tasks]
    revisions = sorted(rng.sample(range(2, 120), 6))
    digests = [f"sha256:{gen.hex(64)}" for _ in range(6)]
    tags = [f"v1.{rng.randrange(0, 20)}.{rng.randrange(0, 30)}" for _ in range(6)]
    ecs, sm, rds, ec2, ecr = ("ecs.amazonaws.com", "secretsmanager.amazonaws.com",
                              "rds.amazonaws.com", "ec2.amazonaws.com", "ecr.amazonaws.com")
    kinds: list[_Kind] = []

    def kind(source: str, name: str, weight: float, variants: list[_Variant],
             identities: list[_Identity], region_: str | None = None) -> None:
        kinds.append(_Kind(source, name, weight, _head(source, name, region_ or region),
                           tuple(variants), tuple(identities)))

    def td(rev: int) -> str:
        return f"{n['task_family']}:{rev}"

    td_arn = f"arn:aws:ecs:{region}:{acct}:task-definition/"

    kind(ecs, "DescribeServices", 10, [
        _variant(gen, ecs, True, {"cluster": c, "services": [n["service"]]}, None, [])
        for c in (n["cluster"], cluster_arn)
    ], humans + deploy)
    kind(ecs, "UpdateService", 1, [
        _variant(gen, ecs, False, {
            "cluster": n["cluster"], "service": n["service"], "taskDefinition": td(rev),
            "forceNewDeployment": True, "enableExecuteCommand": True,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "maximumPercent": 200, "minimumHealthyPercent": 100},
        }, {"service": {
            "serviceArn": service_arn, "serviceName": n["service"], "clusterArn": cluster_arn,
            "status": "ACTIVE", "desiredCount": 1, "launchType": "FARGATE",
            "taskDefinition": td_arn + td(rev), "enableExecuteCommand": True}},
            [("AWS::ECS::Service", n["service"], service_arn),
             ("AWS::ECS::Cluster", n["cluster"], cluster_arn)])
        for rev in revisions
    ], deploy * 4 + humans)
    kind(ecs, "RegisterTaskDefinition", 1, [
        _variant(gen, ecs, False, {
            "family": n["task_family"], "taskRoleArn": arn_role + n["task_role"],
            "executionRoleArn": arn_role + n["task_execution_role"], "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
            "containerDefinitions": [{
                "name": "app", "image": f"{registry}/{n['ecr_repository']}@{digest}",
                "essential": True,
                "portMappings": [{"containerPort": 5000, "protocol": "tcp"}],
                "environment": [{"name": "PGSSLMODE", "value": "require"}],
                "secrets": [{"name": "DB_SECRET", "valueFrom": secret_arn}]}],
        }, {"taskDefinition": {
            "taskDefinitionArn": td_arn + td(rev), "family": n["task_family"],
            "revision": rev, "status": "ACTIVE"}},
            [("AWS::ECS::TaskDefinition", td(rev), td_arn + td(rev))])
        for rev, digest in zip(revisions, digests, strict=True)
    ], deploy * 4 + humans)
    kind(ecs, "RunTask", 1, [
        _variant(gen, ecs, False, {
            "cluster": n["cluster"], "taskDefinition": td(rev), "count": 1,
            "launchType": "FARGATE", "enableExecuteCommand": True, "startedBy": "schema-init",
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": subnets, "securityGroups": [task_sg], "assignPublicIp": "DISABLED"}},
        }, {"tasks": [{
            "taskArn": f"arn:aws:ecs:{region}:{acct}:task/{n['cluster']}/{task}",
            "clusterArn": cluster_arn, "taskDefinitionArn": td_arn + td(rev),
            "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING"}], "failures": []},
            [("AWS::ECS::Cluster", n["cluster"], cluster_arn),
             ("AWS::ECS::TaskDefinition", td(rev), td_arn + td(rev))])
        for rev, task in zip(revisions, tasks, strict=True)
    ], deploy)
    kind(sm, "GetSecretValue", 8, [
        _variant(gen, sm, True, {"secretId": s}, None, [])
        for s in (secret_arn, n["secret"])
    ], exec_role * 3 + humans)
    kind(sm, "PutSecretValue", 0.3, [
        _variant(gen, sm, False, {
            "secretId": n["secret"], "clientRequestToken": gen.uuid(),
            "secretString": "HIDDEN_DUE_TO_SECURITY_REASONS"},
            {"arn": secret_arn, "name": n["secret"], "versionId": gen.uuid(),
             "versionStages": ["AWSCURRENT"]}, [])
        for _ in range(3)
    ], humans)
    kind(rds, "DescribeDBInstances", 6, [
        _variant(gen, rds, True, {"dBInstanceIdentifier": n["db_instance"]}, None, [])
    ], humans + deploy + task_role[:2])
    kind(rds, "RebootDBInstance", 0.2, [
        _variant(gen, rds, False, {"dBInstanceIdentifier": n["db_instance"],
                                   "forceFailover": False},
                 {"dBInstanceIdentifier": n["db_instance"], "dBInstanceClass": "db.t4g.micro",
                  "engine": "postgres", "dBInstanceStatus": "rebooting",
                  "dBInstanceArn": db_arn},
                 [("AWS::RDS::DBInstance", n["db_instance"], db_arn)])
    ], humans)
    kind(rds, "ModifyDBParameterGroup", 0.2, [
        _variant(gen, rds, False, {
            "dBParameterGroupName": n["db_parameter_group"],
            "parameters": [{"parameterName": "rds.force_ssl", "parameterValue": v,
                            "applyMethod": "pending-reboot"}]},
            {"dBParameterGroupName": n["db_parameter_group"]},
            [("AWS::RDS::DBParameterGroup", n["db_parameter_group"], pg_arn)])
        for v in ("1", "0")
    ], humans)
    sg_rule = {"ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432,
               "groups": {"items": [{"groupId": task_sg, "description":
                                     f"postgres from {n['task_security_group']}"}]},
               "ipRanges": {}, "ipv6Ranges": {}, "prefixListIds": {}}
    sg_desc = f"{n['rds_security_group']}: postgres from {n['task_security_group']}"
    sg_arn = f"arn:aws:ec2:{region}:{acct}:security-group/{rds_sg}"
    kind(ec2, "AuthorizeSecurityGroupIngress", 0.3, [
        _variant(gen, ec2, False, {"groupId": rds_sg, "ipPermissions": {"items": [sg_rule]},
                                   "description": sg_desc},
                 {"requestId": gen.uuid(), "_return": True, "securityGroupRuleSet": {"items": [{
                     "groupRuleId": f"sgr-{gen.hex(17)}", "groupId": rds_sg,
                     "groupOwnerId": acct, "isEgress": False, "ipProtocol": "tcp",
                     "fromPort": 5432, "toPort": 5432,
                     "referencedGroupInfo": {"groupId": task_sg, "userId": acct}}]}},
                 [("AWS::EC2::SecurityGroup", rds_sg, sg_arn)])
    ], humans)
    kind(ec2, "RevokeSecurityGroupIngress", 0.3, [
        _variant(gen, ec2, False, {"groupId": rds_sg, "ipPermissions": {"items": [{
            "ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "groups": {},
            "ipRanges": {"items": [{"cidrIp": cidr, "description":
                                    f"temporary access to {n['rds_security_group']}"}]},
            "ipv6Ranges": {}, "prefixListIds": {}}]}},
            {"requestId": gen.uuid(), "_return": True},
            [("AWS::EC2::SecurityGroup", rds_sg, sg_arn)])
        for cidr in ("0.0.0.0/0", "10.0.0.0/16")
    ], humans)
    kind(ecr, "BatchGetImage", 4, [
        _variant(gen, ecr, True, {
            "repositoryName": n["ecr_repository"], "registryId": acct,
            "imageIds": [{"imageDigest": d}],
            "acceptedMediaTypes": ["application/vnd.docker.distribution.manifest.v2+json",
                                   "application/vnd.oci.image.manifest.v1+json"]}, None,
            [("AWS::ECR::Repository", n["ecr_repository"], repo_arn)])
        for d in digests
    ], exec_role)
    kind(ecr, "PutImage", 1, [
        _variant(gen, ecr, False, {
            "repositoryName": n["ecr_repository"], "registryId": acct, "imageTag": tag,
            "imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json"},
            {"image": {"registryId": acct, "repositoryName": n["ecr_repository"],
                       "imageId": {"imageDigest": d, "imageTag": tag}}},
            [("AWS::ECR::Repository", n["ecr_repository"], repo_arn)])
        for tag, d in zip(tags, digests, strict=True)
    ], deploy)
    bucket = n["evidence_bucket"]
    s3_variants = []
    for _ in range(8):
        stamp = f"2024{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}T" \
                f"{rng.randrange(24):02d}{rng.randrange(60):02d}00Z"
        key = f"docs/evidence/{stamp}/{rng.choice(('manifest.json', 'bundle.tar.gz'))}"
        s3_variants.append(_variant(
            gen, "s3.amazonaws.com", False,
            {"bucketName": bucket, "Host": f"{bucket}.s3.{region}.amazonaws.com", "key": key,
             "x-amz-server-side-encryption": "AES256"},
            {"x-amz-server-side-encryption": "AES256"},
            [("AWS::S3::Object", f"{bucket}/{key}", f"arn:aws:s3:::{bucket}/{key}"),
             ("AWS::S3::Bucket", bucket, f"arn:aws:s3:::{bucket}")],
            category="Data"))
    kind("s3.amazonaws.com", "PutObject", 3, s3_variants, deploy + task_role)
    iam = "iam.amazonaws.com"
    kind(iam, "GetRole", 2, [
        _variant(gen, iam, True, {"roleName": r}, None, [])
        for r in (n["task_role"], n["task_execution_role"], n["deploy_role"])
    ], humans + deploy, "us-east-1")
    kind(iam, "PutRolePolicy", 0.3, [
        _variant(gen, iam, False, {"roleName": r, "policyName": f"{r}-inline",
                                   "policyDocument": "{\"Version\":\"2012-10-17\"}"}, None,
                 [("AWS::IAM::Role", r, arn_role + r)])
        for r in (n["task_role"], n["task_execution_role"])
    ], humans, "us-east-1")
    sts = "sts.amazonaws.com"
    oidc = gen.web_identity(n["github_repository"])
    provider = f"arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com"
    sts_variants = []
    for ident in deploy:
        role_id = ident.head.split('"principalId":"', 1)[1].split(":", 1)[0]
        sts_variants.append(_variant(gen, sts, True, {
            "roleArn": arn_role + n["deploy_role"], "roleSessionName": deploy_session,
            "durationSeconds": 3600},
            {"credentials": {"accessKeyId": ident.access_key_id,
                             "expiration": "Jan 1, 2025, 1:00:00 AM"},
             "subjectFromWebIdentityToken": oidc.username,
             "assumedRoleUser": {
                 "assumedRoleId": f"{role_id}:{deploy_session}",
                 "arn": f"arn:aws:sts::{acct}:assumed-role/{n['deploy_role']}/{deploy_session}"},
             "provider": provider, "audience": "sts.amazonaws.com"},
            [("AWS::IAM::AccessKey", ident.access_key_id, None),
             ("AWS::STS::AssumedRole", f"{role_id}:{deploy_session}", None),
             ("AWS::IAM::Role", arn_role + n["deploy_role"], arn_role + n["deploy_role"])]))
    kind(sts, "AssumeRoleWithWebIdentity", 1.5, sts_variants, [oidc])
    return kinds


def _generic_kinds(gen: _Gen, humans: list[_Identity]) -> list[_Kind]:
    """Account-wide activity that belongs to no workload (none of it names Papyrus)."""
    acct, region = gen.account, gen.region
    monitoring = [gen.assumed_role("DatadogIntegrationRole", "DatadogAWSIntegration",
                                   ua=_DUMPS("Datadog")) for _ in range(2)]
    sso = [gen.assumed_role("AWSReservedSSO_AdministratorAccess_1a2b3c4d5e6f7a8b", who,
                            ua=_CONSOLE_UA) for who in ("dave@example.com", "erin@example.com")]
    people = humans + sso
    kms_keys = [f"arn:aws:kms:{region}:{acct}:key/{gen.uuid()}" for _ in range(3)]
    kinds: list[_Kind] = []

    def kind(source: str, name: str, weight: float, read_only: bool, requests: list[Any],
             identities: list[_Identity], resources: Any = None, region_: str | None = None,
             event_type: str = "AwsApiCall") -> None:
        variants = [
            _variant(gen, source, read_only, req, None,
                     resources(i) if resources else [], event_type=event_type)
            for i, req in enumerate(requests)
        ]
        kinds.append(_Kind(source, name, weight, _head(source, name, region_ or region),
                           tuple(variants), tuple(identities)))

    kind("kms.amazonaws.com", "Decrypt", 6, True, [
        {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "keyId": k} for k in kms_keys
    ], people + monitoring, lambda i: [("AWS::KMS::Key", kms_keys[i], kms_keys[i])])
    kind("logs.amazonaws.com", "CreateLogStream", 4, False, [
        {"logGroupName": f"/ecs/{app}-api", "logStreamName": f"ecs/app/{gen.hex(32)}"}
        for app in _OTHER_APPS
    ], people)
    kind("sts.amazonaws.com", "AssumeRole", 3, True, [
        {"roleArn": f"arn:aws:iam::{acct}:role/{r}", "roleSessionName": s}
        for r, s in (("DatadogIntegrationRole", "DatadogAWSIntegration"),
                     ("OrganizationAccountAccessRole", "admin"))
    ], people + monitoring)
    kind("sts.amazonaws.com", "GetCallerIdentity", 2, True, [None], people + monitoring)
    kind("cloudtrail.amazonaws.com", "LookupEvents", 2, True, [
        {"maxResults": 50, "startTime": "Jan 1, 2024, 12:00:00 AM"},
        {"lookupAttributes": [{"attributeKey": "EventName", "attributeValue": "ConsoleLogin"}]},
    ], people + monitoring)
    kind("cloudtrail.amazonaws.com", "DescribeTrails", 0.5, True,
         [{"includeShadowTrails": True}], people + monitoring)
    kind("cloudtrail.amazonaws.com", "GetTrailStatus", 0.5, True, [
        {"name": f"arn:aws:cloudtrail:{region}:{acct}:trail/management-events"}
    ], people + monitoring)
    kind("signin.amazonaws.com", "ConsoleLogin", 0.5, False, [None], people,
         region_="us-east-1", event_type="AwsConsoleSignIn")
    kind("ssm.amazonaws.com", "GetParameter", 3, True, [
        {"name": f"/{app}/prd/feature-flags", "withDecryption": True} for app in _OTHER_APPS
    ], people + monitoring)
    kind("elasticloadbalancing.amazonaws.com", "DescribeTargetHealth", 3, True, [
        {"targetGroupArn": f"arn:aws:elasticloadbalancing:{region}:{acct}:targetgroup/"
                           f"{app}-tg/{gen.hex(16)}"} for app in _OTHER_APPS
    ], monitoring + people)
    kind("dynamodb.amazonaws.com", "DescribeTable", 2, True, [
        {"tableName": f"{app}-sessions"} for app in _OTHER_APPS
    ], monitoring + people)
    kind("lambda.amazonaws.com", "ListFunctions20150331", 1, True, [None], monitoring)
    kind("autoscaling.amazonaws.com", "DescribeAutoScalingGroups", 1, True, [None],
         monitoring)
    kind("route53.amazonaws.com", "ListHostedZones", 0.3, True, [None], people,
         region_="us-east-1")
    kind("monitoring.amazonaws.com", "DescribeAlarms", 2, True, [
        {"alarmNamePrefix": f"{app}-"} for app in _OTHER_APPS
    ], monitoring + people)
    return kinds


def _cumulative(kinds: list[_Kind]) -> list[float]:
    out, total = [], 0.0
    for k in kinds:
        total += k.weight
        out.append(total)
    return out


def generate_history(
    n: int,
    days: float = 90,
    now: Any = None,
    papyrus_share: float = 0.1,
    seed: int = 7237093586,
    *,
    names: Mapping[str, str] | None = None,
    account_id: str = DEFAULT_ACCOUNT_ID,
    region: str = DEFAULT_REGION,
) -> list[StoredEvent]:
    """`n` synthetic CloudTrail events spread uniformly over the `days` days before `now`.

    Exactly ``round(n * papyrus_share)`` events concern the Papyrus workload (`names`, merged
    over :data:`PAPYRUS_NAMES`); their CloudTrailEvent names a Papyrus resource in
    requestParameters (and often Resources). The others come from unrelated workloads and
    account-wide activity and never contain "papyrus" (any case) in any field, as long as
    the names passed in contain it and the other workloads' names do not.

    Event times are whole seconds in ``(now - days, now]``. The result is sorted ascending by
    (EventTime, EventId), ready for :meth:`EventStore.add_events`. The same (n, days, now,
    share, seed, names, account, region) always gives the same events; `now` defaults to the
    current time (truncated to the second).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0 <= papyrus_share <= 1:
        raise ValueError("papyrus_share must be within [0, 1]")
    now_s = int(time.time()) if now is None else int(_epoch(now))
    span = max(1, int(days * 86400))
    rng = random.Random(seed)
    gen = _Gen(rng, account_id, region)
    humans = [gen.iam_user(h) for h in _HUMANS]
    papyrus = _app_kinds(gen, {**PAPYRUS_NAMES, **(names or {})}, humans)
    others = [k for app in _OTHER_APPS for k in _app_kinds(gen, _app_names(app), humans)]
    others += _generic_kinds(gen, humans)
    n_papyrus = round(n * papyrus_share)

    with _no_gc():
        return _generate(n, n_papyrus, papyrus, others, rng, now_s - span + 1, span)


def _generate(n: int, n_papyrus: int, papyrus: list[_Kind], others: list[_Kind],
              rng: random.Random, first: int, span: int) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    append = out.append
    rand, getrandbits = rng.random, rng.getrandbits
    gmtime, strftime = time.gmtime, time.strftime
    for kinds, count in ((papyrus, n_papyrus), (others, n - n_papyrus)):
        cum = _cumulative(kinds)
        total, last = cum[-1], len(kinds) - 1
        for _ in range(count):
            kind = kinds[min(bisect_right(cum, rand() * total), last)]
            variant = kind.variants[int(rand() * len(kind.variants))]
            ident = kind.identities[int(rand() * len(kind.identities))]
            t = first + int(rand() * span)
            ts = strftime("%Y-%m-%dT%H:%M:%SZ", gmtime(t))
            h = f"{getrandbits(128):032x}"
            eid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
            h = f"{getrandbits(128):032x}"
            rid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-b{h[17:20]}-{h[20:32]}"
            ui = ident.head if ident.tail is None else f"{ident.head}{ts}{ident.tail}"
            doc = (f'{{"eventVersion":"1.09","userIdentity":{ui},"eventTime":"{ts}",'
                   f'{kind.head}"sourceIPAddress":"{ident.ip}","userAgent":{ident.user_agent}'
                   f'{variant.params},"requestID":"{rid}","eventID":"{eid}",{variant.tail}')
            append(StoredEvent(t, eid, kind.name, kind.source, ident.username,
                               variant.read_only, ident.access_key_id, variant.resources, doc))
    out.sort(key=_KEY)
    return out

