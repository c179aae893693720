"""The deploy flow under faults, on the session sandbox (moto over HTTP behind the fault layer, real
SSL PostgreSQL, real gunicorn tasks). Each test: the expected verdict, the evidence whole on disk
and in the bucket (same bytes, one object version per key), and no duplicate side effect (task
definition revisions, SKU rows, last-deploy record versions).

Faults are injected where the flow is, not by the clock: a wrapper around the task the flow calls
next (`After`/`Before`) or a watcher thread, so each test hits the stage it names.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

import flows.deploy
from flows.deploy import deploy
from ground import aws
from papyrus_ops.runner import run_flow
from tasks import lease, rollout
from tests.support.evidence import (
    assert_evidence_complete,
    assert_pending,
    bucket_versions,
    upload_pending_twice,
)
from tests.support.faults import After, Before, restart_endpoint
from tests.support.sandbox_state import (
    push_variant,
    revisions,
    service,
    sku_rows,
    stable_on,
    state_versions,
)
from tests.support.waiting import wait_until

# Every AWS service the deploy flow talks to (preflight included).
DEPLOY_SERVICES = ("ecs", "ecr", "iam", "secretsmanager", "ec2", "rds", "s3")


def counts(sb) -> dict:
    return {"revisions": len(revisions(sb)), "app": sku_rows(sb, "app"),
            "cli": sku_rows(sb, "cli"), "state": state_versions(sb)}


def throttle_every_service(sb, services, every: dict[str, int] | None = None) -> dict:
    """Each service's first call throttled (its retry is served), and, for the services named
    in `every`, each n-th call after that too."""
    rules = {}
    for svc in services:
        rules[svc] = [sb.faults.throttle(svc, "*", times=1)]
        if every and svc in every:
            rules[svc].append(sb.faults.throttle(svc, "*", times=None, every=every[svc]))
    return rules


def fired(rules: dict) -> dict[str, int]:
    return {svc: sum((1 - r.remaining) if r.remaining is not None else r.seen // r.every
                     for r in rs) for svc, rs in rules.items()}


def test_throttling_on_every_deploy_service_then_the_bucket_down_at_evidence_upload(
        sb, monkeypatch, capture_dir):
    """Every AWS service the deploy uses (preflight included) is throttled; the deploy still
    works, exactly once. Then, once the deploy is recorded, the evidence bucket becomes
    unreachable: the verdict stays success, the bundle stays whole locally and marked pending,
    and `papyrus-ops evidence upload-pending` completes it exactly once."""
    digest = push_variant(sb, "rel-throttled")
    before = counts(sb)
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 3)  # enough for one throttle; the bucket gives up
    aws._cached.cache_clear()
    hook = After(flows.deploy.record_deploy,
                 lambda _r: sb.faults.unavailable("s3", "*", times=None))
    monkeypatch.setattr(flows.deploy, "record_deploy", hook)
    rules = throttle_every_service(sb, DEPLOY_SERVICES)
    try:
        result = run_flow(deploy, env="local", image="rel-throttled")
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    hits = fired(rules)
    assert all(n >= 1 for n in hits.values()), hits
    assert hook.fired
    assert result["verdict"] == "success", result
    assert result["data"]["preflight"] == "pass" and result["data"]["image_digest"] == digest
    assert service(sb)["taskDefinition"] == result["data"]["task_definition"]
    # One new revision, one row per probe route, one last-deploy record: retries added nothing.
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1,
                          "app": before["app"] + 1, "cli": before["cli"] + 1,
                          "state": before["state"] + 1}
    ev = result["evidence"]
    assert ev["upload_pending"] is True and ev["s3_uri"] is None
    marker = assert_pending(ev["folder"])
    assert marker["bucket"] == sb.settings.evidence_bucket and marker["attempts"] == 1
    assert "Service Unavailable" in marker["reason"] or "ServiceUnavailable" in marker["reason"]
    assert bucket_versions(sb, marker["bucket"], marker["key_prefix"])[0] == {}  # nothing half-up
    upload_pending_twice(sb, capture_dir, ev["folder"])


def test_crash_loop_rolls_back_stable_on_the_old_revision_and_the_verdict_is_failed(
        sb, monkeypatch):
    """The seed's incident: a drifted secret makes every new task exit 3; ECS's circuit breaker
    rolls back and the service is *stable* again (`services-stable` passes) — on the old
    revision. The flow looks only after ECS has settled, so nothing but the revision tells."""
    sm, s = sb.client("secretsmanager"), sb.settings
    good = sm.get_secret_value(SecretId=s.db_secret_id)["SecretString"]
    previous = service(sb)["taskDefinition"]
    push_variant(sb, "rel-crash")
    before = counts(sb)
    ecs = sb.client("ecs")
    # A short loop: the breaker trips at the 2nd failed task, the rollback settles sooner.
    sb.runtime.timing.failure_threshold = 2
    sb.runtime.timing.rollback_min_duration = 0.5

    def until_ecs_settles() -> None:
        wait_until(lambda: service(sb)["deployments"][0]["taskDefinition"] != previous, 60,
                   what="our deployment")
        wait_until(lambda: stable_on(sb, previous), 120, 0.25, what="the circuit breaker")
        ecs.get_waiter("services_stable").wait(cluster=s.cluster, services=[s.service],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 10})

    monkeypatch.setattr(rollout, "wait_for_verdict",
                        Before(rollout.wait_for_verdict, until_ecs_settles))
    drifted = {**json.loads(good), "dbname": "papyrus_drift"}
    sm.put_secret_value(SecretId=s.db_secret_id, SecretString=json.dumps(drifted))
    try:
        # The gate would refuse the drift: skipping it shows what the verdict does on its own.
        result = run_flow(deploy, env="local", image="rel-crash", skip_preflight=True,
                                timeout_seconds=90)
    finally:
        sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good)
    assert result["verdict"] == "failed", result
    assert "rolled back" in result["reason"] and "exit code(s) 3" in result["reason"], result
    rb = result["data"]["rollback"]
    assert rb == {**rb, "to": previous, "started_by_us": False, "ok": True}
    assert stable_on(sb, previous)
    from tasks.probes import probe_targets

    base = probe_targets(ecs, s, previous)[0]
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    # The new revision was registered once; no probe ran, so no row.
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1}
    assert_evidence_complete(sb, result["evidence"]["folder"])


def test_database_down_during_the_probes_fails_and_rolls_back(sb, monkeypatch):
    previous = service(sb)["taskDefinition"]
    push_variant(sb, "rel-dbdown")
    before = counts(sb)
    # The rollout is judged healthy, then the database goes away before /dbcheck.
    hook = After(rollout.wait_for_verdict, lambda _v: sb.pg.stop(), when=lambda v: v["ok"])
    monkeypatch.setattr(rollout, "wait_for_verdict", hook)
    try:
        # The gate is proven elsewhere (the throttled deploy runs it); here it only costs time.
        result = run_flow(deploy, env="local", image="rel-dbdown", skip_preflight=True,
                                timeout_seconds=120)
    finally:
        sb.pg.start()
    assert hook.fired
    assert result["verdict"] == "failed", result
    assert "probe failed" in result["reason"] and "/dbcheck answered 503" in result["reason"]
    rb = result["data"]["rollback"]
    assert rb["ok"] is True and rb["started_by_us"] is True
    assert service(sb)["taskDefinition"] == previous
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1}
    manifest = assert_evidence_complete(sb, result["evidence"]["folder"])
    assert manifest["verdict"] == "fail"
    app_log = next(p for p in manifest["files"]
                   if p["name"].endswith("papyrus_psql_insert_app.log"))
    text = (Path(result["evidence"]["folder"]) / app_log["name"]).read_text()
    assert "/dbcheck -> 503" in text and "database unavailable" in text


def test_aws_endpoint_and_postgres_restart_in_the_middle_of_a_deploy(sb, monkeypatch):
    """Right after our rollout starts, the AWS endpoint goes away for 3 s (refused, or 503 on
    connections already open) while the flow polls for its verdict; then PostgreSQL restarts.
    botocore's and Prefect's retries carry the deploy through: success, once."""
    push_variant(sb, "rel-restarts")
    before = counts(sb)
    window: dict[str, float] = {}
    errors: list[BaseException] = []

    def chaos() -> None:
        try:
            window["down"], window["up"] = restart_endpoint(sb, 3.0)
            sb.pg.restart()
            window["pg"] = time.time()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker = threading.Thread(target=chaos, daemon=True)
    monkeypatch.setattr(rollout, "update_service",
                        After(rollout.update_service, lambda _r: worker.start()))
    result = run_flow(deploy, env="local", image="rel-restarts", skip_preflight=True,
                            timeout_seconds=120)
    worker.join(timeout=120)
    assert not errors, errors
    assert window.get("pg"), window
    assert result["verdict"] == "success", result
    # The verdict could only be reached through the outage: nothing succeeded during it.
    assert result["data"]["verdict_detail"]["decided_at"] >= window["up"]
    # (A request already in flight when the endpoint went is recorded a moment later: skip 0.5 s.)
    during = [c for c in sb.faults.served() if window["down"] + 0.5 < c.at < window["up"]]
    assert all(c.status == 503 for c in during), during
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1,
                          "app": before["app"] + 1, "cli": before["cli"] + 1,
                          "state": before["state"] + 1}
    assert_evidence_complete(sb, result["evidence"]["folder"])


def deployments_started(sb) -> list:
    """UpdateService calls that reached moto (each one starts an ECS deployment)."""
    return [c for c in sb.faults.served("ecs") if c.operation == "UpdateService"]


def test_two_deploys_of_one_image_at_once_are_two_rollouts_in_turn_with_one_revision(sb):
    """Two separate requests are two deploys (flows/deploy.py's docstring): the lock serialises
    them, whichever thread is scheduled first, and the second rolls the same revision out again
    on top of the first's verdict. Nothing here depends on the order the threads start in."""
    push_variant(sb, "rel-twin")
    before = counts(sb)
    sb.faults.reset_calls()
    results: dict[int, dict] = {}

    def run(i: int) -> None:
        results[i] = run_flow(deploy, env="local", image="rel-twin", skip_preflight=True)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=400)
    assert len(results) == 2
    first, second = sorted(results.values(), key=lambda r: r["data"]["lock_acquired_at"])
    assert first["verdict"] == second["verdict"] == "success", (first, second)
    assert first["data"]["lock_released_at"] <= second["data"]["lock_acquired_at"]
    # One revision for both; two deployments, the second started from the first's.
    assert first["data"]["task_definition"] == second["data"]["task_definition"]
    assert second["data"]["previous_task_definition"] == first["data"]["task_definition"]
    assert second["data"]["previous_deployment_id"] == first["data"]["deployment_id"]
    assert second["data"]["deployment_id"] != first["data"]["deployment_id"]
    assert len(deployments_started(sb)) == 2
    assert service(sb)["deployments"][0]["id"] == second["data"]["deployment_id"]
    # Each run proves its own deploy (one row per route each) and records it.
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1,
                          "app": before["app"] + 2, "cli": before["cli"] + 2,
                          "state": before["state"] + 2}
    assert first["evidence"]["folder"] != second["evidence"]["folder"]
    for r in (first, second):
        assert_evidence_complete(sb, r["evidence"]["folder"])


def test_lost_responses_to_register_and_update_service_make_one_revision_and_one_rollout(sb):
    """AWS made the change, the answer never came back (the connection closed first). botocore
    must not resend these calls; the task's retry finds what the lost call did: the revision it
    registered, and the deployment it started (PRIMARY changed since we read it under the lock)."""
    push_variant(sb, "rel-lost")
    before = counts(sb)
    sb.faults.reset_calls()
    register = sb.faults.lose_response("ecs", "RegisterTaskDefinition", times=1)
    update = sb.faults.lose_response("ecs", "UpdateService", times=1)
    try:
        result = run_flow(deploy, env="local", image="rel-lost", skip_preflight=True)
    finally:
        sb.faults.clear()
    assert register.remaining == 0 and update.remaining == 0  # both faults fired
    assert result["verdict"] == "success", result
    served = [c.operation for c in sb.faults.served("ecs", mutating=True)]
    assert served.count("RegisterTaskDefinition") == 1, served
    assert served.count("UpdateService") == 1, served
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1,
                          "app": before["app"] + 1, "cli": before["cli"] + 1,
                          "state": before["state"] + 1}
    assert service(sb)["deployments"][0]["id"] == result["data"]["deployment_id"]
    assert service(sb)["taskDefinition"] == result["data"]["task_definition"]
    assert_evidence_complete(sb, result["evidence"]["folder"])


def test_bucket_down_for_a_whole_deploy_the_verdict_matches_what_runs(sb, monkeypatch):
    """Found by this suite, fixed in 2b2d916: record_deploy() (the last-deploy record in the
    bucket) used to raise after the probes, outside any rollback path — verdict 'failed' while
    the new revision stayed live. The verdict must say what runs."""
    from artifacts.storage import upload_pending

    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 2)  # fail fast: the bucket stays down
    aws._cached.cache_clear()
    push_variant(sb, "rel-nobucket")
    # Down from the moment the deploy lease is held (without the bucket no deploy starts:
    # tests/reliability/test_deploy_lease.py).
    monkeypatch.setattr(lease, "take", After(
        lease.take, lambda _held: sb.faults.unavailable("s3", "PutObject", times=None)))
    try:
        result = run_flow(deploy, env="local", image="rel-nobucket", skip_preflight=True)
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    # Whatever the verdict: the evidence was kept and completes once the bucket is back.
    assert result["evidence"]["upload_pending"] is True
    upload_pending(sb.settings.evidence_root, lambda region=None: sb.client("s3"))
    assert_evidence_complete(sb, result["evidence"]["folder"])
    running = service(sb)["taskDefinition"]
    deployed = running == result["data"].get("task_definition")
    assert (result["verdict"] == "success") == deployed, (result["verdict"], result.get("error"),
                                                          running)
    assert result["verdict"] == "success" and result["data"]["state_recorded"] is False, result


def test_errors_at_every_poll_for_a_while_never_abandon_the_deploy(sb, monkeypatch):
    """DescribeServices answers 503 on every call for a stretch after our rollout starts (past
    botocore's retries each time): the wait goes on, and the verdict is reached once the API is
    back — the deploy is not abandoned half-way with ECS carrying on."""
    push_variant(sb, "rel-pollerrors")
    before = counts(sb)
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 1)  # each poll gives up fast
    aws._cached.cache_clear()
    outage: dict = {}

    def api_down(_r) -> None:
        outage["rule"] = sb.faults.unavailable("ecs", "DescribeServices", times=6)

    monkeypatch.setattr(rollout, "update_service", After(rollout.update_service, api_down))
    try:
        result = run_flow(deploy, env="local", image="rel-pollerrors", skip_preflight=True,
                          timeout_seconds=120, poll_seconds=0.5)
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    assert outage["rule"].remaining == 0  # every one of the six answered 503
    assert result["verdict"] == "success", result
    detail = result["data"]["verdict_detail"]
    assert detail["outcome"] == "success" and detail["poll_errors"] >= 3, detail
    assert counts(sb) == {**before, "revisions": before["revisions"] + 1,
                          "app": before["app"] + 1, "cli": before["cli"] + 1,
                          "state": before["state"] + 1}


def test_credentials_expiring_mid_wait_give_an_unknown_verdict_and_no_blind_rollback(
        sb, monkeypatch):
    """Right after UpdateService the CI role's session expires (every ECS read answers
    ExpiredTokenException until the timeout): no verdict can be reached. The deploy says so —
    failed, outcome `unknown`, with what ECS last showed — starts no rollback it could not
    watch either, and keeps its evidence. ECS meanwhile finishes the rollout on its own."""
    push_variant(sb, "rel-expired")
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 1)
    aws._cached.cache_clear()

    def expire(_r) -> None:
        for op in ("DescribeServices", "ListTasks", "DescribeTasks"):
            sb.faults.error("ecs", op, "ExpiredTokenException", 400)

    monkeypatch.setattr(rollout, "update_service", After(rollout.update_service, expire))
    try:
        result = run_flow(deploy, env="local", image="rel-expired", skip_preflight=True,
                          timeout_seconds=6, poll_seconds=0.5)
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    assert result["verdict"] == "failed", result
    detail = result["data"]["verdict_detail"]
    assert detail["outcome"] == "unknown" and detail["poll_errors"] >= 3, detail
    assert "no verdict after 6s" in result["reason"] and "ExpiredTokenException" in \
        result["reason"] and "no rollback started" in result["reason"], result["reason"]
    assert "rollback" not in result["data"]
    assert_evidence_complete(sb, result["evidence"]["folder"])
    # What really happened: ECS finished our rollout (we did not see it, and said so).
    wait_until(lambda: stable_on(sb, result["data"]["task_definition"]), 120, 0.5,
               what="the rollout ECS carried on with")
