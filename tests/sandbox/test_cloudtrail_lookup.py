"""CloudTrail LookupEvents answered by sandbox.cloudtrail inside a real moto server.

Everything goes through plain boto3 (and the AWS CLI) against a ThreadedMotoServer: paging,
windows, filters, errors, throttling, and flat page cost on a 100k-event history.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

from sandbox import cloudtrail as ct

REGION = "us-west-2"
ACCOUNT = os.environ.get("MOTO_ACCOUNT_ID", ct.DEFAULT_ACCOUNT_ID)  # whom moto answers for
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so the history is the same on every run
N_EVENTS = 3000
SEED = 20240601


@pytest.fixture(scope="module")
def server():
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    registry = ct.StoreRegistry()
    ct.install(registry)
    host, port = srv.get_host_and_port()
    try:
        yield f"http://{host}:{port}", registry
    finally:
        ct.uninstall()
        srv.stop()


@pytest.fixture(scope="module")
def endpoint(server):
    return server[0]


@pytest.fixture(scope="module")
def registry(server):
    return server[1]


@pytest.fixture(scope="module")
def history(registry):
    events = ct.generate_history(N_EVENTS, days=90, now=NOW, papyrus_share=0.1, seed=SEED)
    registry.get(ACCOUNT, REGION).add_events(events)
    return events


def client(endpoint, region=REGION, *, attempts=1, validate=True, mode="standard"):
    return boto3.Session().client(
        "cloudtrail", endpoint_url=endpoint, region_name=region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": mode, "total_max_attempts": attempts},
                      parameter_validation=validate),
    )


def newest_first(events):
    return [e.event_id for e in sorted(events, key=lambda e: (e.event_time, e.event_id),
                                       reverse=True)]


def ts(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def page_all(c, token=None, **kwargs):
    """Manual NextToken loop from `token`; returns (events, number of pages)."""
    events, pages = [], 0
    while True:
        resp = c.lookup_events(**kwargs, **({"NextToken": token} if token else {}))
        pages += 1
        events += resp["Events"]
        token = resp.get("NextToken")
        if not token:
            return events, pages
        assert resp["Events"], "a page with a NextToken must not be empty"


# -- paging --------------------------------------------------------------------------------
def test_paginator_returns_the_whole_history_newest_first(endpoint, history):
    pages = list(client(endpoint).get_paginator("lookup_events").paginate())
    ids = [e["EventId"] for p in pages for e in p["Events"]]
    assert len(ids) == N_EVENTS == len(set(ids))
    assert ids == newest_first(history)
    assert len(pages) == N_EVENTS // 50 and all(len(p["Events"]) == 50 for p in pages)
    assert "NextToken" not in pages[-1]
    times = [e["EventTime"] for p in pages for e in p["Events"]]
    assert times == sorted(times, reverse=True)


def test_manual_next_token_with_odd_page_size(endpoint, history):
    events, pages = page_all(client(endpoint), MaxResults=37)
    assert [e["EventId"] for e in events] == newest_first(history)
    assert pages == -(-N_EVENTS // 37)


def test_response_shape_is_the_apis(endpoint, history):
    c = client(endpoint)
    raw = {}
    c.meta.events.register("after-call.cloudtrail.LookupEvents",
                           lambda http_response, **_: raw.update(body=http_response.content))
    resp = c.lookup_events(MaxResults=50)
    body = json.loads(raw["body"])
    assert set(body) == {"Events", "NextToken"}
    by_id = {e.event_id: e for e in history}
    for event in body["Events"]:
        assert set(event) <= {"EventId", "EventName", "ReadOnly", "AccessKeyId", "EventTime",
                              "EventSource", "Username", "Resources", "CloudTrailEvent"}
        assert {"EventId", "EventName", "ReadOnly", "EventTime", "EventSource", "Resources",
                "CloudTrailEvent"} <= set(event)
        assert isinstance(event["EventTime"], int | float)  # epoch seconds on the wire
        assert event["ReadOnly"] in ("true", "false")
        assert all(set(r) == {"ResourceType", "ResourceName"} for r in event["Resources"])
        doc = json.loads(event["CloudTrailEvent"])
        assert doc["eventID"] == event["EventId"]
        assert doc["eventName"] == event["EventName"]
        assert doc["eventSource"] == event["EventSource"]
        assert doc["eventTime"] == ts(event["EventTime"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert str(doc["readOnly"]).lower() == event["ReadOnly"]
        assert doc["userIdentity"].get("accessKeyId") == event.get("AccessKeyId")
        assert by_id[event["EventId"]].to_api() == event
    # boto3 parses it like any AWS answer.
    first = resp["Events"][0]
    assert isinstance(first["EventTime"], dt.datetime)
    assert first["EventTime"].timestamp() == body["Events"][0]["EventTime"]


# -- windows -------------------------------------------------------------------------------
def test_time_windows_are_inclusive_and_exact(endpoint, history):
    c = client(endpoint)
    times = sorted({e.event_time for e in history})
    windows = [
        (times[100], times[400]),  # both edges are event times: both included
        (times[0], times[0]),
        (times[-1], None),
        (None, times[50]),
        (NOW + 10, NOW + 20),  # nothing there
    ]
    for start, end in windows:
        kwargs = {}
        if start is not None:
            kwargs["StartTime"] = ts(start)
        if end is not None:
            kwargs["EndTime"] = ts(end)
        expected = [e for e in history
                    if (start is None or e.event_time >= start)
                    and (end is None or e.event_time <= end)]
        got, _ = page_all(c, **kwargs)
        assert [e["EventId"] for e in got] == newest_first(expected), (start, end)


# -- attribute filters ---------------------------------------------------------------------
def _values(e, key):
    return {
        "EventId": {e.event_id}, "EventName": {e.event_name}, "ReadOnly": {e.read_only},
        "Username": {e.username}, "AccessKeyId": {e.access_key_id},
        "EventSource": {e.event_source},
        "ResourceType": {t for t, _ in e.resources}, "ResourceName": {n for _, n in e.resources},
    }[key]


@pytest.mark.parametrize(("key", "value"), [
    ("EventName", "UpdateService"),
    ("EventSource", "secretsmanager.amazonaws.com"),
    ("ReadOnly", "false"),
    ("Username", "alice"),
    ("ResourceType", "AWS::ECS::TaskDefinition"),
    ("ResourceName", "papyrus-task-service"),
    ("ResourceName", "papyrus"),
    ("EventId", None),  # picked from the history
    ("AccessKeyId", None),
])
def test_each_attribute_filter(endpoint, history, key, value):
    if value is None:
        sample = next(e for e in history[1234:] if e.access_key_id)
        value = sample.event_id if key == "EventId" else sample.access_key_id
    expected = [e for e in history if value in _values(e, key)]
    assert expected, "the filter must match something in the seeded history"
    got, _ = page_all(client(endpoint), MaxResults=50,
                      LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}])
    assert [e["EventId"] for e in got] == newest_first(expected)


def test_filter_with_window_and_small_pages(endpoint, history):
    times = sorted(e.event_time for e in history)
    start, end = times[500], times[2500]
    expected = [e for e in history if start <= e.event_time <= end
                and e.event_source == "ecs.amazonaws.com"]
    got, pages = page_all(
        client(endpoint), StartTime=ts(start), EndTime=ts(end), MaxResults=7,
        LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "ecs.amazonaws.com"}])
    assert [e["EventId"] for e in got] == newest_first(expected)
    assert pages == -(-len(expected) // 7)


# -- errors --------------------------------------------------------------------------------
def _error(c, **kwargs):
    raw = {}
    c.meta.events.register("after-call.cloudtrail.LookupEvents",
                           lambda http_response, **_: raw.update(body=http_response.content))
    with pytest.raises(ClientError) as info:
        c.lookup_events(**kwargs)
    err = info.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert json.loads(raw["body"])["__type"] == err["Error"]["Code"]
    return err["Error"]["Code"]


def test_error_cases_answer_with_the_apis_types(endpoint, history):
    c = client(endpoint)
    loose = client(endpoint, validate=False)  # what botocore would refuse before sending
    attr = {"AttributeKey": "EventName", "AttributeValue": "RunTask"}
    token = c.lookup_events(MaxResults=5, LookupAttributes=[attr])["NextToken"]
    cases = [
        (c, {"MaxResults": 51}, "InvalidMaxResultsException"),
        (loose, {"MaxResults": 0}, "InvalidMaxResultsException"),
        (c, {"NextToken": "not-a-token"}, "InvalidNextTokenException"),
        (c, {"NextToken": "eyJ2IjoxfQ"}, "InvalidNextTokenException"),  # base64 of {"v":1}
        (c, {"NextToken": token}, "InvalidNextTokenException"),  # issued for other parameters
        (c, {"StartTime": ts(NOW), "EndTime": ts(NOW - 60)}, "InvalidTimeRangeException"),
        (c, {"LookupAttributes": [attr, attr]}, "InvalidLookupAttributesException"),
        (loose, {"LookupAttributes": [{"AttributeKey": "Bucket", "AttributeValue": "x"}]},
         "InvalidLookupAttributesException"),
        (loose, {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": ""}]},
         "InvalidLookupAttributesException"),
        (loose, {"EventCategory": "data"}, "InvalidEventCategoryException"),
    ]
    for cl, kwargs, code in cases:
        assert _error(cl, **kwargs) == code, kwargs
    # The same token with the same parameters is fine.
    assert c.lookup_events(MaxResults=5, LookupAttributes=[attr], NextToken=token)["Events"]


def test_insight_category_is_empty(endpoint, history):
    assert client(endpoint).lookup_events(EventCategory="insight")["Events"] == []


def test_uninstall_restores_moto_and_install_is_seen_by_a_running_server(endpoint, registry,
                                                                        history):
    c = client(endpoint)
    ct.uninstall()
    try:
        if ct.installed_registry() is not None:
            pytest.skip("the session sandbox in this process holds its own install")
        with pytest.raises(ClientError) as info:
            c.lookup_events(MaxResults=1)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        ct.install(registry)
    assert len(c.lookup_events(MaxResults=1)["Events"]) == 1


# -- tokens stay valid while the history grows ---------------------------------------------
def test_token_survives_newer_events_being_appended(endpoint, registry):
    region = "us-east-1"
    store = registry.get(ACCOUNT, region)
    old = ct.generate_history(500, now=NOW - 86400, days=30, seed=1)
    store.add_events(old)
    c = client(endpoint, region)
    first = c.lookup_events(MaxResults=50)
    newer = ct.generate_history(200, now=NOW, days=0.5, seed=2)
    store.add_events(newer[:100])  # appended in order (fast path)
    store.add_events(reversed(newer[100:]))  # out of order: merged with one sort
    rest, _ = page_all(c, first["NextToken"])
    ids = [e["EventId"] for e in first["Events"] + rest]
    assert ids == newest_first(old)
    everything = [e["EventId"] for p in c.get_paginator("lookup_events").paginate()
                  for e in p["Events"]]
    assert everything == newest_first(old + newer)


# -- throttling ----------------------------------------------------------------------------
def test_throttle_next_and_standard_retries_recover(endpoint, registry, history):
    store = registry.get(ACCOUNT, REGION)
    before = store.throttled
    store.throttle_next(1)
    with pytest.raises(ClientError) as info:
        client(endpoint).lookup_events(MaxResults=1)
    assert info.value.response["Error"] == {"Code": "ThrottlingException",
                                            "Message": "Rate exceeded"}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    store.throttle_next(2)
    resp = client(endpoint, attempts=3).lookup_events(MaxResults=1)
    assert len(resp["Events"]) == 1
    assert resp["ResponseMetadata"]["RetryAttempts"] == 2
    assert store.throttled - before == 3


def test_rate_limit_knob(endpoint, registry):
    region = "ap-northeast-1"
    store = registry.get(ACCOUNT, region)
    store.add_events(ct.generate_history(100, now=NOW, seed=3))
    # 2/s (AWS's LookupEvents rate): a token every 0.5 s, so even a busy machine makes its
    # next call before the bucket refills (at 8/s a 125 ms stall let a call through).
    store.set_rate_limit(2.0, burst=1)
    try:
        raw = client(endpoint, region)
        time.sleep(0.6)  # let the bucket fill
        raw.lookup_events(MaxResults=1)
        with pytest.raises(ClientError) as info:
            raw.lookup_events(MaxResults=1)
        assert info.value.response["Error"]["Code"] == "ThrottlingException"

        retrying = client(endpoint, region, attempts=10)
        t0 = time.monotonic()
        for _ in range(3):
            assert retrying.lookup_events(MaxResults=1)["Events"]
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.9  # 3 calls at 2/s right after the bucket was emptied: >= 1.0 s
        assert store.throttled >= 2
    finally:
        store.set_rate_limit(None)
    assert client(endpoint, region).lookup_events(MaxResults=1)["Events"]


def test_token_bucket_is_thread_safe():
    store = ct.EventStore(max_rps=50.0, burst=5)
    admitted = []
    stop = time.monotonic() + 0.4

    def hammer():
        n = 0
        while time.monotonic() < stop:
            try:
                store.admit()
                n += 1
            except ct.LookupEventsError as exc:
                assert exc.error_type == "ThrottlingException"
        admitted.append(n)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert sum(admitted) <= 5 + 50.0 * elapsed + 1
    assert sum(admitted) >= 10
    assert store.calls == store.throttled + sum(admitted)


# -- scale ---------------------------------------------------------------------------------
def test_100k_history_seeds_fast_and_pages_at_flat_cost(endpoint, registry):
    # CPU time of this process (client and moto threads alike): robust when other jobs load
    # the machine, which wall time is not.
    clock = time.process_time
    region = "eu-west-1"
    t0 = clock()
    events = ct.generate_history(100_000, now=NOW, seed=4)
    generated = clock() - t0
    store = registry.get(ACCOUNT, region)
    store.add_events(events)
    seeded = clock() - t0
    assert len(store) == 100_000
    assert seeded < 10, f"generate {generated:.2f}s, generate+seed {seeded:.2f}s"

    # The token of the very last page, reached in-process (2000 pages).
    token, pages = None, 0
    while True:
        page = store.lookup(next_token=token)
        pages += 1
        if "NextToken" not in page:
            break
        token = page["NextToken"]
        last_token = token
    assert pages == 2000

    c = client(endpoint, region)

    def best(call, reps=5):
        spent, result = [], None
        for _ in range(reps):
            t = clock()
            result = call()
            spent.append(clock() - t)
        return min(spent), result

    first_t, first = best(lambda: c.lookup_events())
    last_t, last = best(lambda: c.lookup_events(NextToken=last_token))
    assert len(first["Events"]) == len(last["Events"]) == 50
    assert last["Events"][-1]["EventId"] == events[0].event_id  # the oldest event
    assert last_t < 5 * first_t + 0.02, (first_t, last_t)

    # Filtered pages: the index keeps them flat too (in-process, no HTTP noise).
    attr = ("ResourceName", "papyrus-task-service")
    store.lookup(attribute=attr)  # builds the index once
    token, deep = None, None
    while True:
        page = store.lookup(attribute=attr, next_token=token)
        if "NextToken" not in page:
            break
        deep, token = token, page["NextToken"]
    assert deep is not None
    shallow_t, _ = best(lambda: store.lookup(attribute=attr))
    deep_t, _ = best(lambda: store.lookup(attribute=attr, next_token=deep))
    assert deep_t < 5 * shallow_t + 0.005, (shallow_t, deep_t)


# -- the synthetic history -----------------------------------------------------------------
def test_history_papyrus_share_and_hygiene(history):
    docs = [json.loads(e.cloudtrail_event) for e in history]
    papyrus = [e for e in history if "papyrus" in e.cloudtrail_event.lower()]
    assert len(papyrus) == round(N_EVENTS * 0.1)
    names = set(ct.PAPYRUS_NAMES.values())
    seen = set()
    for e, doc in zip(history, docs, strict=True):
        assert doc["eventID"] == e.event_id
        assert {"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName",
                "awsRegion", "sourceIPAddress", "userAgent", "requestParameters",
                "responseElements", "requestID", "eventID", "readOnly", "eventType",
                "managementEvent", "recipientAccountId"} <= set(doc)
        if "papyrus" in e.cloudtrail_event.lower():
            where = json.dumps(doc["requestParameters"]) + json.dumps(doc.get("resources"))
            assert "papyrus" in where
            seen |= {n for n in names if n in where or any(n == r for _, r in e.resources)}
        else:
            assert "papyrus" not in repr(e).lower()
    assert len({e.event_id for e in history}) == N_EVENTS
    # Every Papyrus resource name shows up somewhere.
    assert seen >= names - {ct.PAPYRUS_NAMES["github_repository"]}, names - seen
    sources = {e.event_source for e in history}
    assert {"ecs.amazonaws.com", "secretsmanager.amazonaws.com", "rds.amazonaws.com",
            "ec2.amazonaws.com", "ecr.amazonaws.com", "s3.amazonaws.com", "iam.amazonaws.com",
            "sts.amazonaws.com", "cloudtrail.amazonaws.com"} <= sources
    assert min(e.event_time for e in history) > NOW - 90 * 86400
    assert max(e.event_time for e in history) <= NOW


def test_history_is_deterministic_and_names_are_parameters():
    a = ct.generate_history(300, now=NOW, seed=9)
    assert a == ct.generate_history(300, now=NOW, seed=9)
    assert a != ct.generate_history(300, now=NOW, seed=10)
    custom = ct.generate_history(300, now=NOW, seed=9, papyrus_share=1.0,
                                 names={"cluster": "papyrus-ecs-stg"})
    assert any("papyrus-ecs-stg" in e.cloudtrail_event for e in custom)
    assert not any("papyrus-ecs-prd" in e.cloudtrail_event for e in custom)
    none = ct.generate_history(300, now=NOW, seed=9, papyrus_share=0.0)
    assert not any("papyrus" in repr(e).lower() for e in none)


# -- the store on its own ------------------------------------------------------------------
def test_add_events_accepts_api_dicts_and_cloudtrail_records():
    store = ct.EventStore()
    store.add_events([
        {"EventId": "e-1", "EventName": "PutObject", "EventSource": "s3.amazonaws.com",
         "EventTime": dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "ReadOnly": "false",
         "Username": "alice", "Resources": [{"ResourceType": "AWS::S3::Bucket",
                                             "ResourceName": "b"}]},
        {"eventID": "e-2", "eventName": "GetRole", "eventSource": "iam.amazonaws.com",
         "eventTime": "2025-01-02T00:00:00Z", "readOnly": True,
         "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIAX",
                          "arn": "arn:aws:sts::1:assumed-role/r/session-1"}},
    ])
    page = store.lookup()
    assert [e["EventId"] for e in page["Events"]] == ["e-2", "e-1"]
    e2, e1 = page["Events"]
    assert (e2["Username"], e2["AccessKeyId"], e2["ReadOnly"]) == ("session-1", "ASIAX", "true")
    assert json.loads(e2["CloudTrailEvent"])["eventID"] == "e-2"
    assert e1["EventTime"] == 1735689600
    assert json.loads(e1["CloudTrailEvent"])["eventName"] == "PutObject"
    assert store.lookup(attribute=("ResourceName", "b"))["Events"][0]["EventId"] == "e-1"


_event = st.builds(
    lambda t, i, name, res: ct.StoredEvent(t, f"{i:08x}", name, "x.amazonaws.com", None,
                                           "true", None, res, "{}"),
    st.integers(0, 40), st.integers(0, 20) | st.integers(0, 2**32 - 1),
    st.sampled_from(["A", "B", "C"]),
    st.sampled_from([(), (("T", "r1"),), (("T", "r1"), ("U", "r2"))]),
)


@settings(max_examples=120, deadline=None)
@given(
    batches=st.lists(st.lists(_event, max_size=40), min_size=1, max_size=3),
    start=st.none() | st.integers(-1, 41), end=st.none() | st.integers(-1, 41),
    page=st.integers(1, 9),
    attribute=st.none() | st.sampled_from([("EventName", "B"), ("ResourceName", "r2"),
                                           ("ResourceType", "T"), ("EventId", "0000000a")]),
    insert_limit=st.sampled_from([0, 3, 1000]),  # merge-by-sort, mixed, insert-in-place
)
def test_paging_matches_brute_force(batches, start, end, page, attribute, insert_limit):
    if start is not None and end is not None and start > end:
        start, end = end, start
    store = ct.EventStore()
    store._insert_limit = insert_limit
    everything = {}
    for batch in batches:
        fresh = []
        for e in batch:
            if e.event_id not in everything:
                everything[e.event_id] = e
                fresh.append(e)
        store.add_events(fresh)
        if attribute:  # builds the index now, so the next batches must keep it right
            store.lookup(attribute=attribute, max_results=1)
    expected = [
        e for e in everything.values()
        if (start is None or e.event_time >= start) and (end is None or e.event_time <= end)
        and (attribute is None or attribute[1] in _values(e, attribute[0]))
    ]
    got, token = [], None
    while True:
        resp = store.lookup(start_time=start, end_time=end, attribute=attribute,
                            max_results=page, next_token=token)
        got += resp["Events"]
        token = resp.get("NextToken")
        if not token:
            break
    assert [e["EventId"] for e in got] == newest_first(expected)


# -- the AWS CLI ---------------------------------------------------------------------------
def _aws_binary():
    found = shutil.which("aws")
    if found:
        return found
    shim = Path("/root/.pyenv/shims/aws")
    return str(shim) if shim.exists() else None


def test_aws_cli_pages_through_the_history(endpoint, history, tmp_path):
    aws = _aws_binary()
    if aws is None:
        pytest.skip("the `aws` CLI is not installed on this machine")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") or k in ("AWS_CA_BUNDLE",)}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_CONFIG_FILE=str(tmp_path / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"))
    base = [aws, "cloudtrail", "lookup-events", "--endpoint-url", endpoint,
            "--region", REGION, "--output", "json"]
    out = subprocess.run(base, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    ids = [e["EventId"] for e in json.loads(out.stdout)["Events"]]
    assert len(ids) == N_EVENTS == len(set(ids))
    assert ids == newest_first(history)

