"""The archive against two ways real CloudTrail differs from one region's tidy history.

* Global services: IAM's events (and those of STS's global endpoint) are recorded in us-east-1
  only, so a us-west-2 account's changes to its own roles are only in us-east-1's LookupEvents.
* Late delivery: an event can show up in LookupEvents after the run whose window it belongs
  to; the next incremental run must archive it, once.

The flows run for real (moto + the LookupEvents stand-in, per-region stores, a Prefect API).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import boto3
import pytest

from tasks.cloudtrail.regions import GLOBAL_EVENT_SOURCES, plan_passes
from tests.cloudtrail.test_cloudtrail_flow import archive_paths, run
from tests.support.cloudtrail import ids_of, papyrus_names

pytestmark = pytest.mark.usefixtures("prefect_server")

EAST = "us-east-1"


def record(name: str, source: str, region: str, t: int, role: str | None = None) -> dict:
    """A CloudTrail record as AWS writes one (the store accepts records as they are)."""
    params = {"roleName": role, "policyName": f"{role}-inline"} if role else None
    return {"eventVersion": "1.09", "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime(t)),
            "eventSource": source, "eventName": name, "awsRegion": region,
            "userIdentity": {"type": "IAMUser", "userName": "alice",
                             "arn": "arn:aws:iam::123456789012:user/alice"},
            "sourceIPAddress": "203.0.113.7", "userAgent": "aws-cli/2.15.30",
            "requestParameters": params, "responseElements": None,
            "eventID": str(uuid.uuid4()), "readOnly": False, "eventType": "AwsApiCall",
            "managementEvent": True, "recipientAccountId": "123456789012"}


def lookup_ids(ct_env, region: str, source: str | None = None) -> set[str]:
    c = boto3.Session().client("cloudtrail", endpoint_url=ct_env.endpoint, region_name=region)
    kw = {"LookupAttributes": [{"AttributeKey": "EventSource", "AttributeValue": source}]} \
        if source else {}
    return {e["EventId"] for page in c.get_paginator("lookup_events").paginate(**kw)
            for e in page["Events"]}


def seed_by_region(ct_server, ct_env, n: int, days: float, now: float, seed: int) -> list:
    import sandbox.cloudtrail as ct

    events = ct.generate_history(n, days=days, now=now, seed=seed,
                                 names=papyrus_names(ct_env.settings))
    ct_server.registry.add_by_region(events, ct.DEFAULT_ACCOUNT_ID, ct_env.settings.region)
    return events


def test_global_service_events_from_us_east_1_are_in_the_papyrus_file(ct_server, ct_env):
    import sandbox.cloudtrail as ct

    s = ct_env.settings
    now = int(time.time()) - 5
    seeded = seed_by_region(ct_server, ct_env, 600, 3, now, 11)
    # What Terraform does to Papyrus's roles, recorded where AWS records IAM: us-east-1.
    iam = [record(name, "iam.amazonaws.com", EAST, now - 3600 * k, role)
           for k, (name, role) in enumerate((("PutRolePolicy", s.task_role),
                                             ("AttachRolePolicy", s.execution_role),
                                             ("UpdateAssumeRolePolicy", s.task_role)), 1)]
    sts = record("AssumeRole", "sts.amazonaws.com", EAST, now - 7200, s.task_role)
    # A global service the archive does not read (Route 53): stays out of the archive.
    r53 = record("ListHostedZones", "route53.amazonaws.com", EAST, now - 60)
    ct_server.registry.get(ct.DEFAULT_ACCOUNT_ID, EAST).add_events([*iam, sts, r53])
    papyrus_global = {r["eventID"] for r in (*iam, sts)}
    # The sandbox answers per region: us-west-2 has no IAM events, us-east-1 has them.
    assert not lookup_ids(ct_env, s.region, "iam.amazonaws.com")
    assert papyrus_global <= lookup_ids(ct_env, EAST)

    result = run(days=4, slice_hours=48)
    assert result["verdict"] == "success", result["reason"]
    all_path, pap_path = archive_paths(result)
    ids, pap = ids_of(all_path), set(ids_of(pap_path))
    assert len(ids) == len(set(ids))
    assert papyrus_global <= pap
    east = {e.event_id for e in seeded if ct.event_region(e) == EAST
            and e.event_source in GLOBAL_EVENT_SOURCES} | papyrus_global
    west = {e.event_id for e in seeded if ct.event_region(e) == s.region}
    assert set(ids) == west | east  # every source of us-east-1 read, and nothing else there
    assert r53["eventID"] not in ids
    # The summary and the manifest say which regions, and which sources of us-east-1, were read.
    want = [{"region": s.region, "event_sources": "all", "events": len(west)},
            {"region": EAST, "event_sources": list(GLOBAL_EVENT_SOURCES), "events": len(east)}]
    assert result["regions"] == want
    manifest = json.loads((all_path.parent / "manifest.json").read_text())
    assert manifest["context"]["regions"] == want


def test_a_us_east_1_account_reads_its_region_once():
    assert plan_passes(EAST) == [{"region": EAST, "source": None}]
    assert plan_passes("eu-west-1", []) == [{"region": "eu-west-1", "source": None}]
    assert [p["source"] for p in plan_passes("us-west-2")] == [None, *GLOBAL_EVENT_SOURCES]


def test_a_global_pass_is_one_slice_and_the_plan_stays_oldest_first():
    from tasks.cloudtrail.checkpoint import plan_pass_slices
    from tasks.cloudtrail.window import fmt, resolve_window

    now = dt.datetime(2026, 9, 23, tzinfo=dt.UTC)
    window = resolve_window(None, "2026-09-01T00:00:00Z", "2026-09-22T12:00:00Z", now=now)
    plan = plan_pass_slices(window, 7 * 86400, plan_passes("us-west-2"))
    region = [s for s in plan if s[3] is None]
    assert [s[:2] for s in region] == [
        ["2026-09-01T00:00:00Z", "2026-09-08T00:00:00Z"],
        ["2026-09-08T00:00:00Z", "2026-09-15T00:00:00Z"],
        ["2026-09-15T00:00:00Z", "2026-09-22T00:00:00Z"],
        ["2026-09-22T00:00:00Z", "2026-09-22T12:00:00Z"]]
    # Each global source: the whole window in us-east-1, right after the first region slice.
    whole = [fmt(window.since), fmt(window.until)]
    assert plan[1:3] == [[*whole, EAST, src] for src in GLOBAL_EVENT_SOURCES]
    assert [s[0] for s in plan] == sorted(s[0] for s in plan)
    # Slices longer than the window: one per pass, as before.
    assert len(plan_pass_slices(window, 90 * 86400, plan_passes("us-west-2"))) == 3


def test_an_event_delivered_after_the_boundary_is_archived_by_the_next_run_once(ct_server,
                                                                               ct_env):
    import sandbox.cloudtrail as ct

    s = ct_env.settings
    now = int(time.time())
    seeded = seed_by_region(ct_server, ct_env, 400, 2, now - 60 * 20, 12)
    t1, t2 = now - 30 * 60, now - 5 * 60  # the first two runs' ends (explicit: no sleeping)
    # Events after the second run's end: the third run has something new to archive.
    fresh = [record("GetParameter", "ssm.amazonaws.com", s.region, t2 + k) for k in (1, 2)]
    ct_env.store.add_events(fresh)
    first = run(days=3, until=_fmt(t1), incremental=True, slice_hours=24)
    assert first["verdict"] == "success" and first["window"]["until"] == _fmt(t1)

    # Delivered late: event times before the first run's end, visible only now (the store
    # inserts older events in place, as LookupEvents shows a late delivery).
    late = record("PutRolePolicy", "iam.amazonaws.com", EAST, t1 - 10 * 60, s.task_role)
    late_west = record("UpdateService", "ecs.amazonaws.com", s.region, t1 - 20 * 60)
    late_west["requestParameters"] = {"cluster": s.cluster, "service": s.service}
    ct_server.registry.get(ct.DEFAULT_ACCOUNT_ID, EAST).add_event(late)
    ct_env.store.add_event(late_west)
    late_ids = {late["eventID"], late_west["eventID"]}
    assert late_ids <= lookup_ids(ct_env, EAST) | lookup_ids(ct_env, s.region)
    first_ids = set(ids_of(archive_paths(first)[0]))
    assert not late_ids & first_ids

    second = run(until=_fmt(t2), incremental=True)
    assert second["verdict"] == "success"
    assert second["window"]["since"] == _fmt(t1 - 3600)  # the default overlap: an hour
    ids2 = ids_of(archive_paths(second)[0])
    assert late_ids <= set(ids2) and late["eventID"] in ids_of(archive_paths(second)[1])
    # What the first run archived in the overlap is skipped, not archived again.
    in_overlap = {e.event_id for e in seeded if t1 - 3600 <= e.event_time < t1
                  and _read(e)}
    assert second["overlap"]["already_archived"] == len(in_overlap) > 0
    new2 = {e.event_id for e in seeded if t1 <= e.event_time < t2 and _read(e)}
    assert set(ids2) == new2 | late_ids and len(ids2) == len(set(ids2))

    # The third run reads the late events again (they are in its overlap) and skips them:
    # the state's tail lists what both earlier runs archived there.
    third = run(incremental=True)
    assert third["verdict"] == "success"
    ids3 = ids_of(archive_paths(third)[0])
    assert set(ids3) == {r["eventID"] for r in fresh}
    everything = [*first_ids, *ids2, *ids3]
    assert len(everything) == len(set(everything))  # no event in two archives
    assert third["state"]["tail"]["since"] == _fmt(_epoch(third["window"]["until"]) - 3600)


def _read(event) -> bool:
    """Whether the archive reads this seeded event: the region's, or a global source's."""
    import sandbox.cloudtrail as ct

    region = ct.event_region(event)
    return region == "us-west-2" or (region == EAST
                                     and event.event_source in GLOBAL_EVENT_SOURCES)


def _fmt(t: float) -> str:
    from tasks.cloudtrail.window import fmt

    return fmt(t)


def _epoch(iso: str) -> float:
    from tasks.cloudtrail.window import epoch

    return epoch(iso)


def test_raw_timestamps_client_leaves_event_time_as_sent(ct_env):
    """`ground.aws.client(..., raw_timestamps=True)` (the archive's): EventTime stays the
    epoch seconds on the wire, the same instant the default client parses into a datetime;
    other clients of the process keep botocore's datetimes."""
    from ground.aws import client

    ct_env.seed(5, days=1)
    region = ct_env.settings.region
    raw, parsed = client("cloudtrail", region, raw_timestamps=True), client("cloudtrail", region)
    assert raw is not parsed and raw is client("cloudtrail", region, raw_timestamps=True)
    a = raw.lookup_events(MaxResults=5)["Events"]
    b = parsed.lookup_events(MaxResults=5)["Events"]
    assert [e["EventId"] for e in a] == [e["EventId"] for e in b] and len(a) == 5
    for x, y in zip(a, b, strict=True):
        assert isinstance(x["EventTime"], int | float)
        assert isinstance(y["EventTime"], dt.datetime)
        assert x["EventTime"] == y["EventTime"].timestamp()
    s3_time = client("s3", region).list_buckets()["Buckets"][0]["CreationDate"]
    assert isinstance(s3_time, dt.datetime)
