"""LookupEvents' NextToken: the (EventTime, EventId) of the last event returned plus a
fingerprint of the query, so a token stays valid while newer events are appended."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from sandbox.cloudtrail.events import _err


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
