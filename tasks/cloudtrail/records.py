"""One API event as one archived NDJSON line, and EventId dedupe in bounded memory.

* `event_record` — the envelope fields plus the parsed CloudTrailEvent document.
* `event_line` — that record and its line, with AWS's document bytes spliced in.
* `BoundaryDedupe` — see its docstring.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from tasks.cloudtrail.window import epoch, fmt

ENVELOPE = ("EventId", "EventName", "EventTime", "EventSource", "Username", "ReadOnly",
            "AccessKeyId", "Resources")


def _envelope(event: Mapping[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for key in ENVELOPE:
        if key in event and event[key] is not None:
            rec[key] = event[key]
    t = event["EventTime"]
    rec["EventTime"] = fmt(t if isinstance(t, dt.datetime) and t.tzinfo else epoch(t))
    return rec


def _loads(text: str) -> Any:
    """`json.loads(text)`, through orjson first: each CloudTrail document is parsed (to check
    it before its bytes are spliced into the line, and for the Papyrus rule), and the stdlib
    parser took 15 us of a ~1.4 KB document — 0.15 s of GIL-bound CPU per 10,000 events, the
    largest cost of the writing thread (docs/benchmarks.md §2). orjson accepts less than json
    and nothing more; what it refuses and json takes (NaN, Infinity, lone surrogates) goes to
    json, so a document is valid exactly when json says so, and its objects, arrays, strings
    and floats are json's. One difference stays: an integer beyond 64 bits comes back as a
    float — harmless here, since the Papyrus rule searches strings only and the line keeps
    AWS's bytes (tested)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _parsed(raw: Any) -> Any:
    try:
        return _loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """One archived line: the API envelope (EventTime as ISO-8601 UTC) plus the CloudTrail
    document parsed (kept as a string only if it is not valid JSON)."""
    rec = _envelope(event)
    raw = event.get("CloudTrailEvent")
    if raw is not None:
        rec["CloudTrailEvent"] = _parsed(raw)
    return rec


def dumps_line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def event_line(event: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(`event_record(event)`, its NDJSON line). The CloudTrail document is spliced in as AWS
    sent it (it is compact JSON already, and was just parsed, so it is valid) instead of being
    re-encoded: the line holds AWS's bytes and costs half the CPU. The envelope is built and
    encoded once (it is the line's head, and the record without its document)."""
    rec = _envelope(event)
    raw = event.get("CloudTrailEvent")
    if raw is None:
        return rec, dumps_line(rec).decode()
    doc = _parsed(raw)
    if isinstance(raw, str) and isinstance(doc, dict) and "\n" not in raw and "\r" not in raw:
        head = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
        rec["CloudTrailEvent"] = doc
        return rec, f'{head[:-1]},"CloudTrailEvent":{raw.strip()}}}\n'
    rec["CloudTrailEvent"] = doc
    return rec, dumps_line(rec).decode()


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
