"""The flow end to end: moto + the LookupEvents stand-in, a real Prefect API, real S3 uploads."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path

import pytest

from sandbox import cloudtrail as ct
from tests.support.cloudtrail import EXTRA_NAMES, ids_of, papyrus_names, read_lines

pytestmark = pytest.mark.usefixtures("prefect_server")


def run(**kw):
    """The flow's result: the contract's keys, with the flow's own (`data`) next to them."""
    from flows.cloudtrail_archive import cloudtrail_archive
    from ground.result import KEYS

    kw.setdefault("extra_names", EXTRA_NAMES)
    kw.setdefault("settle_minutes", 0)
    res = cloudtrail_archive(env="local", **kw, return_state=True).result(
        raise_on_failure=False)
    assert set(res) == set(KEYS), res
    return {**res, **res["data"]}


def archive_paths(result) -> tuple[Path, Path]:
    folder = Path(result["evidence"]["folder"])
    return folder / result["files"]["all"]["name"], folder / result["files"]["papyrus"]["name"]


def test_full_archive(ct_env):
    from artifacts.bundle import verify_manifest
    from tasks.cloudtrail.papyrus_filter import PapyrusFilter, PapyrusNames

    seeded = ct_env.seed(1500)
    # One event that names a Papyrus security group by id only (resolved through EC2).
    sg_id = ct_env.sg_ids[ct_env.settings.rds_security_group]
    sg_event = _sg_only_event(sg_id)
    ct_env.store.add_event(sg_event)
    seeded.append(ct.StoredEvent(sg_event["EventTime"], sg_event["EventId"], "", "", None,
                                 "true", None, (), ""))
    result = run(days=90, slice_hours=24 * 10, log_every=5)
    assert result["verdict"] == "success"
    all_path, pap_path = archive_paths(result)
    # Keys and names as the runbook has them.
    assert all_path.name == f"cloudtrail_events_{result['files']['all']['name'][18:34]}.jsonl.gz"
    assert pap_path.name.endswith(".papyrus.jsonl.gz")
    assert all_path.parent.parent == ct_env.root / "cloudtrail"
    assert result["files"]["all"]["key"].startswith("docs/evidence/cloudtrail/")
    # gzip is valid (also to the gzip tool, members and all) and holds every event once.
    subprocess.run(["gzip", "-t", str(all_path), str(pap_path)], check=True)
    ids = ids_of(all_path)
    assert len(ids) == len(seeded) == result["events"]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {e.event_id for e in seeded}
    # The Papyrus file is exactly the documented rule applied to the full file…
    names = PapyrusNames.from_dict(json.loads(
        next(all_path.parent.glob("*_cloudtrail_archive.json")).read_text())["papyrus_rule"]
        | {"sources": {}})
    flt = PapyrusFilter(names)
    records = read_lines(all_path)
    expected = [r["EventId"] for r in records if flt(r)]
    assert ids_of(pap_path) == expected
    # …and, independently: the generator made exactly 10% Papyrus events, the others never
    # mention "papyrus"; every line of the Papyrus file mentions one of the names.
    with gzip.open(all_path, "rt") as f:
        mentions = [json.loads(line)["EventId"] for line in f
                    if "papyrus" in line.lower() or sg_id in line]
    assert set(expected) == set(mentions)
    assert sg_id in names.names and sg_event["EventId"] in expected
    assert len(expected) == round(1500 * 0.1) + 1 == result["papyrus_events"]
    lowered = [n.lower() for n in names.names + names.secrets]
    with gzip.open(pap_path, "rt") as f:
        assert all(any(n in line.lower() for n in lowered) for line in f)
    # The manifest verifies and carries the counts, windows, times and hashes.
    assert verify_manifest(all_path.parent) == []
    manifest = json.loads((all_path.parent / "manifest.json").read_text())
    ctx = manifest["context"]
    assert ctx["events_all"] == len(seeded) and ctx["events_papyrus"] == len(expected)
    assert ctx["window_covered"] == result["window"]
    assert ctx["first_event_time"] == min(r["EventTime"] for r in records)
    assert ctx["last_event_time"] == max(r["EventTime"] for r in records)
    by_name = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert by_name[all_path.name] == result["files"]["all"]["sha256"]
    assert by_name[pap_path.name] == result["files"]["papyrus"]["sha256"]
    # The bucket holds the same bytes under the same keys.
    bucket = ct_env.settings.evidence_bucket
    for f in (all_path, pap_path, all_path.parent / "manifest.json"):
        key = manifest["key_prefix"] + f.name
        assert ct_env.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f.read_bytes()
    assert result["api"]["duplicates"] == 0 and not result["evidence"]["upload_pending"]
    # Prefect artifacts: the progress bar (at 100%) and the evidence summary.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["cloudtrail-archive-progress", "cloudtrail-evidence"])))
    kinds = {a.key: a for a in arts}
    assert set(kinds) == {"cloudtrail-archive-progress", "cloudtrail-evidence"}
    assert kinds["cloudtrail-archive-progress"].data == 100.0
    # The work folder is gone; the state records the covered window.
    assert not (ct_env.root / "cloudtrail" / ".work" / "local" / "checkpoint.json").exists()
    assert result["state"]["covered_until"] == result["window"]["until"]


def _sg_only_event(sg_id: str) -> dict:
    t = int(time.time()) - 7200
    doc = {"eventVersion": "1.09", "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime(t)),
           "eventSource": "ec2.amazonaws.com", "eventName": "DescribeSecurityGroupRules",
           "awsRegion": "us-west-2", "userIdentity": {"type": "IAMUser", "userName": "alice"},
           "requestParameters": {"DescribeSecurityGroupRulesRequest": {
               "Filter": {"Name": "group-id", "Value": {"content": sg_id}}}},
           "responseElements": None, "eventID": "0b5e7e57-5e9c-4d1d-9c1e-5ec9000000a1",
           "readOnly": True, "eventType": "AwsApiCall"}
    return {"EventId": doc["eventID"], "EventName": doc["eventName"], "ReadOnly": "true",
            "EventTime": t, "EventSource": doc["eventSource"], "Username": "alice",
            "Resources": [], "CloudTrailEvent": json.dumps(doc)}


def _work(ct_env) -> Path:
    return ct_env.root / "cloudtrail" / ".work" / "local"


def test_interrupted_run_resumes_with_the_same_content(ct_env, monkeypatch):
    seeded = ct_env.seed(1200)
    store = ct_env.store
    original = store.handle
    calls = {"n": 0}

    def failing(request):
        calls["n"] += 1
        if calls["n"] > 9:  # after 9 pages: a non-retryable error (the run stops there)
            raise ct.LookupEventsError("AccessDeniedException", "injected after 9 calls")
        return original(request)

    monkeypatch.setattr(store, "handle", failing)
    failed = run(days=90, slice_hours=24 * 10, checkpoint_every=2)
    assert failed["verdict"] == "failed" and "injected after 9 calls" in failed["reason"]
    assert failed["evidence"] is None  # nothing published
    cp = json.loads((_work(ct_env) / "checkpoint.json").read_text())
    assert cp["completed"] or cp["cursor"]  # some progress was checkpointed
    assert 0 < cp["totals"]["events"] < len(seeded)
    assert not list((ct_env.root / "cloudtrail").glob("2*"))  # nothing published

    monkeypatch.setattr(store, "handle", original)
    result = run(days=90, slice_hours=24 * 10, checkpoint_every=2)
    assert result["resumed"] and result["attempts"] == 2
    all_path, pap_path = archive_paths(result)
    ids = ids_of(all_path)
    assert len(ids) == len(set(ids)) == len(seeded) == result["events"]
    assert set(ids) == {e.event_id for e in seeded}
    assert len(ids_of(pap_path)) == round(len(seeded) * 0.1)


def test_throttling_on_every_third_call_loses_nothing(ct_env):
    seeded = ct_env.seed(250, days=20)
    ct_env.faults.throttle("cloudtrail", "LookupEvents", times=None, every=3)
    result = run(days=21, slice_hours=24 * 7)
    served = ct_env.faults.served("cloudtrail")
    throttled = [c for c in served if c.status == 400]
    assert len(throttled) >= len(served) // 3 - 1 and throttled
    assert result["events"] == len(seeded)
    ids = ids_of(archive_paths(result)[0])
    assert len(set(ids)) == len(ids) == len(seeded)
    assert result["api"]["retries"] + result["api"]["throttled"] >= len(throttled)


def test_incremental_archives_exactly_the_new_events(ct_env):
    first_seed = ct_env.seed(400, days=4, now=time.time() - 5)
    first = run(days=5, incremental=True, slice_hours=48)
    assert first["mode"] == "incremental" and first["events"] == len(first_seed)
    covered = first["state"]["covered_until"]
    u = int(_epoch(covered))
    time.sleep(2.1)
    now = int(time.time()) - 1
    new = ct.generate_history(60, days=(now - u) / 86400, now=now, seed=77,
                              names=papyrus_names(ct_env.settings))
    boundary = ct.generate_history(1, days=1, now=now, seed=78)[0]._replace(event_time=u)
    new.append(boundary)  # exactly at the last archive's (exclusive) end: belongs to the next
    ct_env.store.add_events(new)
    second = run(incremental=True)
    # It reads the default overlap (an hour) again for late deliveries; what the first archive
    # holds there is skipped (asserted below), so the same events are archived as without it.
    from tasks.cloudtrail.window import fmt

    assert second["window"]["since"] == fmt(u - 3600)
    assert second["overlap"]["previous_until"] == covered
    ids = ids_of(archive_paths(second)[0])
    assert sorted(ids) == sorted(e.event_id for e in new)
    assert not set(ids) & {e.event_id for e in first_seed}
    assert second["state"]["covered_until"] == second["window"]["until"]
    # Nothing new: nothing archived, nothing published.
    third = run(incremental=True)
    assert third["events"] == 0


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_client_side_limit_holds_the_real_rate(ct_env, monkeypatch):
    """At the default 2 requests/s, against a store that throttles anything faster."""
    from ground.aws import client

    monkeypatch.delenv("PAPYRUS_CLOUDTRAIL_MAX_RPS")
    ct_env.seed(250, days=2)
    ct_env.store.set_rate_limit(2.0, burst=2)
    sent: list[float] = []  # when botocore sends each LookupEvents (the flow's own client)
    hook = client("cloudtrail", ct_env.settings.region, raw_timestamps=True).meta.events
    record = lambda **_: sent.append(time.monotonic())  # noqa: E731
    hook.register("before-send.cloudtrail.LookupEvents", record)
    try:
        result = run(days=3, slice_hours=24)
    finally:
        hook.unregister("before-send.cloudtrail.LookupEvents", record)
    arrived = list(ct_env.store.call_times)
    assert result["events"] == 250
    gaps = [round(b - a, 3) for a, b in zip(sent, sent[1:], strict=False)]
    assert len(sent) == len(arrived) >= 6, (sent, arrived)
    # The limiter's slots are 0.5 s apart; a send can only be late, never early, so any two
    # sends k calls apart are at least about k/2 s apart.
    assert (sent[-1] - sent[0]) >= (len(sent) - 1) / 2.0 - 0.05, gaps
    assert min(b - a for a, b in zip(sent, sent[2:], strict=False)) >= 1.0 - 0.1, gaps
    # And the store (2/s, burst 2) never had to throttle.
    assert ct_env.store.throttled == 0, gaps


def test_killed_run_resumes(ct_env, tmp_path):
    """A real kill -9 in the middle of a run, then a rerun of the same request."""
    import os
    import signal
    import sys

    seeded = ct_env.seed(1500)
    code = ("from flows.cloudtrail_archive import cloudtrail_archive as f; "
            f"f(env='local', days=90, slice_hours=240, max_rps=8, checkpoint_every=2, "
            f"extra_names={EXTRA_NAMES!r}, settle_minutes=0)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoint = _work(ct_env) / "checkpoint.json"
    deadline = time.monotonic() + 120
    killed_at = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                cp = json.loads(checkpoint.read_text())
            except (OSError, ValueError):
                cp = None
            if cp and cp["totals"].get("events", 0) > 0 and len(cp["completed"]) >= 2:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = cp["totals"]["events"]
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_at is not None and killed_at < len(seeded), "the run was not interrupted"
    result = run(days=90, slice_hours=240, max_rps=1000, checkpoint_every=2)
    assert result["resumed"]
    ids = ids_of(archive_paths(result)[0])
    assert len(ids) == len(set(ids)) == len(seeded)
    assert set(ids) == {e.event_id for e in seeded}


def test_a_failing_archive_ends_the_flow_run_failed_with_the_redacted_reason(ct_env,
                                                                            monkeypatch):
    """Through the Prefect API: FAILED, the state message the result's (redacted) reason, and
    nothing published. The injected error carries a value the redactor knows."""
    import uuid

    from prefect.client.orchestration import get_client

    from flows.cloudtrail_archive import cloudtrail_archive
    from ground.redact import REDACTOR
    from ground.result import KEYS

    secret = f"CANARY-{uuid.uuid4().hex}-PAPYRUS"
    REDACTOR.add(secret)
    ct_env.seed(200, days=2)

    def failing(request):
        raise ct.LookupEventsError("AccessDeniedException", f"injected: token {secret}")

    monkeypatch.setattr(ct_env.store, "handle", failing)
    state = cloudtrail_archive(env="local", days=3, slice_hours=24, extra_names=EXTRA_NAMES,
                               settle_minutes=0, return_state=True)
    res = state.result(raise_on_failure=False)
    assert tuple(res) == KEYS and res["verdict"] == "failed" and res["evidence"] is None, res
    assert "injected: token ***" in res["reason"] and "rerun the same request" in res["reason"]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state.type.value == "FAILED"
    assert flow_run.state.message == res["reason"]
    assert secret not in flow_run.state.message and secret not in json.dumps(res)
    assert not list((ct_env.root / "cloudtrail").glob("2*"))  # nothing published
