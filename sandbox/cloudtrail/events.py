"""One stored CloudTrail event (`StoredEvent`), how events of every accepted shape become one,
and the error LookupEvents answers with (`LookupEventsError`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import time
from collections.abc import Iterator, Mapping
from operator import itemgetter
from typing import Any, NamedTuple

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_REGION = "us-west-2"
MAX_RESULTS = 50
ATTRIBUTE_KEYS = (
    "EventId", "EventName", "ReadOnly", "Username",
    "ResourceType", "ResourceName", "EventSource", "AccessKeyId",
)


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


_REGION_FIELD = '"awsRegion":"'
# The region whose LookupEvents holds the events of global services (IAM, the global STS
# endpoint, CloudFront, Route 53 ...): CloudTrail records them in US East (N. Virginia).
GLOBAL_SERVICE_REGION = "us-east-1"


def event_region(event: StoredEvent, default: str = DEFAULT_REGION) -> str:
    """The region whose LookupEvents answers `event`: its record's `awsRegion` (CloudTrail
    records an event in the region the call was made in, a global service's in us-east-1);
    `default` when the record has none."""
    doc = event.cloudtrail_event
    at = doc.find(_REGION_FIELD)
    if at < 0:
        return default
    start = at + len(_REGION_FIELD)
    end = doc.find('"', start)
    return doc[start:end] if end > start else default


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class LookupEventsError(Exception):
    """An error the real API answers with HTTP 400 and `__type` = error_type."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _err(error_type: str, message: str) -> LookupEventsError:
    return LookupEventsError(error_type, message)
