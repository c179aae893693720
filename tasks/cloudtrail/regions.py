"""Which LookupEvents the archive reads: the configured region, and us-east-1 for global services.

CloudTrail records the events of global services (IAM, STS through its global endpoint) in US
East (N. Virginia) only (CloudTrail User Guide, "Understanding global service events"), so the
configured region's LookupEvents never holds a `PutRolePolicy` on the Papyrus roles. A
*pass* is one (region, event source) series of LookupEvents: the configured region with no
filter, plus, when that region is not us-east-1, one pass per global event source in
us-east-1. LookupEvents takes one LookupAttribute per call, so two sources are two passes,
each filtered server-side by `EventSource` (reading all of us-east-1 would archive another
region's whole workload). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GLOBAL_REGION = "us-east-1"
# Papyrus's global-service activity: its roles (IAM) and sessions of them (STS's global
# endpoint). CloudFront and Route 53, also global, are not used by Papyrus.
GLOBAL_EVENT_SOURCES = ("iam.amazonaws.com", "sts.amazonaws.com")


def plan_passes(region: str, global_sources: Iterable[str] | None = None
                ) -> list[dict[str, Any]]:
    """The passes, configured region first: [{"region", "source"}] (source None = every event).

    When the configured region is us-east-1 its unfiltered pass already holds the global
    services' events: it is not read twice."""
    sources = GLOBAL_EVENT_SOURCES if global_sources is None else tuple(global_sources)
    passes: list[dict[str, Any]] = [{"region": region, "source": None}]
    if region != GLOBAL_REGION:
        for source in dict.fromkeys(sources):  # in order, once each
            passes.append({"region": GLOBAL_REGION, "source": source})
    return passes


def regions_read(passes: Sequence[Mapping[str, Any]],
                 completed: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """For the manifest and the summary: each region read, with `event_sources` ("all" or the
    sources it was filtered on) and the events archived from it."""
    out: dict[str, dict[str, Any]] = {}
    for p in passes:
        entry = out.setdefault(p["region"], {"region": p["region"], "event_sources": []})
        if p["source"] is None:
            entry["event_sources"] = "all"
        elif entry["event_sources"] != "all":
            entry["event_sources"].append(p["source"])
    for entry in out.values():
        entry["events"] = sum(int(s.get("events", 0)) for s in completed
                              if s.get("region") == entry["region"])
    return list(out.values())
