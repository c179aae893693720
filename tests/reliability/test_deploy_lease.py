"""The deploy lease (tasks/lease.py): one rollout at a time on the service, whatever started the
deploy — this session's Prefect API, another Prefect server, a CLI run with its own temporary
server — and what happens to a holder that died, one that outlives its TTL, and one that loses
the lease.

The lease is an object in the session sandbox's evidence bucket (versioned: every write is a
version, which is the lease's history). TTLs are shortened through the environment
(`PAPYRUS_LEASE_TTL_SECONDS`, read by deployments/local/config.toml); waits are on conditions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from artifacts.storage import sse_args
from flows.deploy import deploy
from ground import aws
from ground.settings import load_env
from papyrus_ops.runner import run_flow
from tasks import lease, rollout
from tests.support.cli import ROOT, cli_env
from tests.support.faults import Before
from tests.support.sandbox_state import push_variant, service, state_versions
from tests.support.waiting import wait_until


def lease_key(sb) -> str:
    return lease.lease_key(sb.settings)


def history(sb, since: float) -> list[dict]:
    """The bodies of every version of the lease object written since `since` (epoch seconds),
    oldest first: the bucket is versioned, so each take and renewal is one version."""
    s3, bucket, key = sb.client("s3"), sb.settings.evidence_bucket, lease_key(sb)
    resp = s3.list_object_versions(Bucket=bucket, Prefix=key)
    bodies = [json.loads(s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
                         ["Body"].read())
              for v in resp.get("Versions", []) if v["Key"] == key
              and v["LastModified"].timestamp() >= since - 1]
    return sorted((b for b in bodies if b.get("renewed_at", 0) >= since),
                  key=lambda b: b["renewed_at"])


def current(sb) -> dict | None:
    return lease.read_lease(sb.client("s3"), sb.settings)


def write_dead_holder(sb, ttl: float, **owner) -> dict:
    """The lease object exactly as a holder leaves it when its process is killed: written, never
    renewed or released."""
    now = time.time()
    body = {"version": 1, "cluster": sb.settings.cluster, "service": sb.settings.service,
            "lease_id": "dead-" + os.urandom(4).hex(), "acquired_at": now - 30, "renewed_at": now,
            "renewals": 3, "ttl_seconds": ttl, "expires_at": now + ttl,
            "owner": {"flow_run_id": "0b7e0000-dead-4000-8000-000000000001",
                      "flow_run_name": "deploy local killed", "host": "ci-runner-7",
                      "pid": 4242, "user": "runner",
                      "prefect_api_url": "http://127.0.0.1:1/api", **owner}}
    sb.client("s3").put_object(Bucket=sb.settings.evidence_bucket, Key=lease_key(sb),
                               Body=json.dumps(body).encode(),
                               **sse_args(sb.settings.evidence_kms_key))
    return body


@pytest.fixture
def lease_env(sb, monkeypatch):
    """Short TTLs for this test (the env folder reads them from the environment); no lease
    left behind for the next test."""
    monkeypatch.setenv("PAPYRUS_LEASE_TTL_SECONDS", "3")
    monkeypatch.setenv("PAPYRUS_LEASE_WAIT_SECONDS", "120")
    sb.client("s3").delete_object(Bucket=sb.settings.evidence_bucket, Key=lease_key(sb))
    yield sb
    sb.client("s3").delete_object(Bucket=sb.settings.evidence_bucket, Key=lease_key(sb))


def flow_s3(sb):
    """The flows' own client (the flow-run role), as tasks get it."""
    return aws.client("s3", sb.settings.region)


# -- the sandbox: conditional writes are atomic ------------------------------------------------
def test_concurrent_conditional_puts_have_one_winner_as_in_s3(sb, monkeypatch):
    """16 threads race `If-None-Match: *` on one key, then 16 race `If-Match` on its ETag: one
    winner each time, the others 412. moto checks the condition and then writes; the gap is
    widened here (20 ms inside moto's PutObject, between the two) so that a race would show:
    without sandbox/s3_conditional most rounds had several winners."""
    from moto.s3.responses import S3Response

    checksum = S3Response._get_checksum

    def slow_checksum(self, *args, **kwargs):
        time.sleep(0.02)
        return checksum(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "_get_checksum", slow_checksum)
    s3, bucket = flow_s3(sb), sb.settings.evidence_bucket
    key = f"locks/test/race-{os.urandom(4).hex()}.json"
    enc = sse_args(sb.settings.evidence_kms_key)
    for rnd in range(3):
        barrier = threading.Barrier(16)
        wins, refused = [], []
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"] if rnd else None

        def put(i: int, rnd=rnd, etag=etag, wins=wins, refused=refused,
                barrier=barrier) -> None:
            cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            barrier.wait()
            try:
                wins.append(s3.put_object(Bucket=bucket, Key=key, Body=f"{rnd}-{i}".encode(),
                                          **enc, **cond)["ETag"])
            except s3.exceptions.ClientError as e:
                refused.append(e.response["Error"]["Code"])

        threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(wins) == 1 and set(refused) == {"PreconditionFailed"}, (rnd, wins, refused)
    sb.client("s3").delete_object(Bucket=bucket, Key=key)


# -- the lease itself ---------------------------------------------------------------------------
def test_a_lost_answer_to_the_take_is_recognised_by_its_lease_id_and_released_once(lease_env):
    """The first PutObject is served and its answer lost: botocore resends it, S3 answers 412
    (the key exists: ours). The lease id says so: the lease is held once, not waited for."""
    sb = lease_env
    s = load_env("local")  # with the test's TTL (the session sandbox's settings have the default)
    sb.faults.lose_response("s3", "PutObject", times=1)
    # Held, not waited for: a take that did not know the lease as its own would wait for it
    # (2 s, then LeaseBusy) or, after the 3 s TTL, take it over (`took_over` set). No bound on
    # the time: botocore's resend comes after its own random back-off (once 2.4 s, idle).
    held = lease.take.fn(flow_s3(sb), s, "id-lost-answer", {"host": "here"}, wait_seconds=2)
    assert held["took_over"] is None
    now = current(sb)
    assert now["body"]["lease_id"] == "id-lost-answer" and now["etag"] == held["etag"]
    keeper = lease.Keeper(flow_s3(sb), s, held).start()
    keeper.check()
    assert keeper.release() is True
    assert current(sb) is None
    assert keeper.release() is False or current(sb) is None  # a second release changes nothing


def test_a_lease_that_expired_on_our_side_names_whoever_holds_it_now(lease_env):
    """The renewal thread starved past 5/6 of a TTL (a busy machine) while someone replaced the
    object: `check()` says lost for the expiry, and names the new holder — the operator reading
    the verdict learns who took it, as when a renewal finds the theft itself."""
    sb = lease_env
    s = load_env("local")
    now = [time.monotonic()]
    held = lease.take.fn(flow_s3(sb), s, "id-starved", {"host": "here"}, wait_seconds=2)
    keeper = lease.Keeper(flow_s3(sb), s, held, clock=lambda: now[0])  # never started
    write_dead_holder(sb, ttl=3600, flow_run_name="deploy local thief", host="laptop-3")
    keeper.check(before="the next step")  # within the TTL: still ours to act on
    now[0] = held["confirmed_at"] + s.lease_ttl_seconds
    with pytest.raises(lease.LeaseLost) as lost:
        keeper.check(before="the next step")
    why = str(lost.value)
    assert "not renewed for 3s (TTL 3s); now taken by flow run 'deploy local thief'" in why, why
    assert "laptop-3" in why and why.endswith("stopped before the next step"), why
    assert keeper.release() is False
    assert current(sb)["body"]["owner"]["flow_run_name"] == "deploy local thief"


def test_renewals_that_cannot_reach_s3_give_the_lease_up_before_it_can_expire(lease_env):
    """S3 answers every PutObject with 503 after the take: the holder's `check()` says lost
    5/6 of a TTL after its last confirmed write (by then nobody else could take it yet: that
    needs a whole TTL by S3's clock), and release leaves the object to expire."""
    sb = lease_env
    s = load_env("local")
    held = lease.take.fn(flow_s3(sb), s, "id-unreachable", {"host": "here"}, wait_seconds=2)
    keeper = lease.Keeper(flow_s3(sb), s, held).start()
    sb.faults.unavailable("s3", "PutObject")
    try:
        def lost() -> str | None:
            try:
                keeper.check(before="the next step")
            except lease.LeaseLost as e:
                return str(e)
            return None

        why = wait_until(lost, 30, what="the lease to be given up")
        given_up = time.monotonic()
        assert "not renewed" in why and why.endswith("stopped before the next step"), why
        assert given_up - held["confirmed_at"] < s.lease_ttl_seconds
        assert not current(sb)["expired"]  # nobody else may take it yet
    finally:
        sb.faults.clear()
    assert keeper.release() is False
    assert current(sb)["body"]["lease_id"] == "id-unreachable"


# -- a killed holder ------------------------------------------------------------------------------
def test_a_killed_holders_lease_expires_and_the_next_deploy_takes_it(lease_env):
    sb = lease_env
    push_variant(sb, "lease-after-kill")
    written = time.time()
    dead = write_dead_holder(sb, ttl=8)  # expiring soon: within the deploy's wait
    result = run_flow(deploy, env="local", image="lease-after-kill", skip_preflight=True)
    assert result["verdict"] == "success", result
    got = result["data"]["lease"]
    # It waited for the expiry (judged by S3's clock: LastModified + TTL + 1 s), then took over.
    assert got["waited_seconds"] >= 1, got
    assert result["data"]["lock_acquired_at"] >= written + 8, (written, got)
    assert "deploy local killed" in got["took_over"] and "ci-runner-7" in got["took_over"]
    assert got["lost"] is None
    ids = [b["lease_id"] for b in history(sb, written)]
    assert ids[0] == dead["lease_id"] and set(ids[1:]) == {got["lease_id"]}
    assert current(sb) is None  # released


def test_a_holder_that_does_not_expire_in_time_is_named_and_nothing_changes(lease_env,
                                                                            monkeypatch):
    sb = lease_env
    monkeypatch.setenv("PAPYRUS_LEASE_WAIT_SECONDS", "2")
    push_variant(sb, "lease-refused")
    dead = write_dead_holder(sb, ttl=3600)
    before = service(sb)["taskDefinition"]
    sb.faults.reset_calls()
    started = time.monotonic()
    result = run_flow(deploy, env="local", image="lease-refused", skip_preflight=True)
    assert result["verdict"] == "failed", result
    reason = result["reason"]
    assert "\n" not in reason and reason.startswith("another deploy holds the lease"), reason
    assert "'deploy local killed'" in reason and "ci-runner-7" in reason and "since" in reason
    assert "waited 2s" in reason
    assert time.monotonic() - started < 60
    # Nothing changed: no ECS or ECR write, the service as it was, the holder's lease untouched.
    assert [c for c in sb.faults.served(mutating=True) if c.service != "s3"] == []
    assert service(sb)["taskDefinition"] == before
    assert current(sb)["body"]["lease_id"] == dead["lease_id"]
    assert result["data"]["lease"] is None


def test_without_the_bucket_no_deploy_starts(lease_env, monkeypatch):
    """The lease cannot be written (S3 answers 503): the deploy refuses in one line naming the
    lease object, and changes nothing. Failing closed: no lease, no "one at a time"."""
    sb = lease_env
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 2)
    aws._cached.cache_clear()
    push_variant(sb, "lease-nobucket")
    before = service(sb)["taskDefinition"]
    sb.faults.unavailable("s3", "PutObject", times=None)
    sb.faults.reset_calls()
    try:
        result = run_flow(deploy, env="local", image="lease-nobucket", skip_preflight=True)
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    assert result["verdict"] == "failed", result
    assert result["reason"].startswith("could not take the deploy lease s3://"), result
    assert lease_key(sb) in result["reason"] and "\n" not in result["reason"]
    assert [c for c in sb.faults.served(mutating=True) if c.service != "s3"] == []
    assert service(sb)["taskDefinition"] == before


def test_a_rollback_takes_the_same_lease(lease_env, monkeypatch):
    """A rollback is a deploy: it waits for the same lease and is refused the same way."""
    from flows.rollback import rollback

    sb = lease_env
    monkeypatch.setenv("PAPYRUS_LEASE_WAIT_SECONDS", "1")
    before = service(sb)["taskDefinition"]
    write_dead_holder(sb, ttl=3600, flow_run_name="deploy local busy")
    sb.faults.reset_calls()
    result = run_flow(rollback, env="local", to=before.rsplit(":", 1)[-1])
    assert result["verdict"] == "failed", result
    assert result["reason"].startswith("another deploy holds the lease"), result
    assert "'deploy local busy'" in result["reason"]
    assert [c for c in sb.faults.served(mutating=True) if c.service != "s3"] == []
    assert service(sb)["taskDefinition"] == before


# -- renewal -----------------------------------------------------------------------------------
def test_a_deploy_longer_than_the_ttl_keeps_the_lease(lease_env, monkeypatch):
    """TTL 3 s (renewed every second); the deploy is held before its verdict until it has
    renewed 6 times, past two TTLs, while another taker tries for 4 s: nobody else gets it."""
    sb = lease_env
    push_variant(sb, "lease-long")
    rivals: list = []

    def rival_tries_meanwhile() -> None:
        wait_until(lambda: (current(sb) or {}).get("body", {}).get("renewals", 0) >= 1, 60,
                   what="the first renewal")
        s = load_env("local")
        try:
            rivals.append(lease.take.fn(flow_s3(sb), s, "rival", {"host": "rival"},
                                        wait_seconds=4))
        except lease.LeaseBusy as e:
            rivals.append(e)
        wait_until(lambda: (current(sb) or {}).get("body", {}).get("renewals", 0) >= 6, 60,
                   what="6 renewals")

    monkeypatch.setattr(rollout, "wait_for_verdict",
                        Before(rollout.wait_for_verdict, rival_tries_meanwhile))
    result = run_flow(deploy, env="local", image="lease-long", skip_preflight=True)
    assert result["verdict"] == "success", result
    got = result["data"]["lease"]
    assert got["renewals"] >= 6 and got["lost"] is None, got
    assert result["data"]["lock_released_at"] - result["data"]["lock_acquired_at"] > 2 * 3
    assert len(rivals) == 1 and isinstance(rivals[0], lease.LeaseBusy), rivals
    assert "flow run 'deploy local lease-long'" in str(rivals[0]), rivals
    ids = {b["lease_id"] for b in history(sb, got["acquired_at"] - 1)}
    assert ids == {got["lease_id"]}  # no version of anyone else's


def test_a_lease_taken_away_mid_deploy_stops_the_deploy_before_its_next_change(lease_env,
                                                                              monkeypatch):
    """While the deploy waits for its verdict, someone replaces the lease object (an operator,
    or a taker that judged it expired). The next renewal finds it: the deploy changes nothing
    more — no probe row, no last-deploy record — and its verdict is failed, naming the new
    holder; the other's lease is not deleted."""
    sb = lease_env
    push_variant(sb, "lease-stolen")
    records = state_versions(sb)
    keepers: list = []

    class Recorded(lease.Keeper):
        def start(self):
            keepers.append(self)
            return super().start()

    def steal() -> None:
        write_dead_holder(sb, ttl=3600, flow_run_name="deploy local thief", host="laptop-3")
        wait_until(lambda: keepers[0].lost, 30, what="the renewal to notice")

    monkeypatch.setattr(lease, "Keeper", Recorded)
    monkeypatch.setattr(rollout, "wait_for_verdict", Before(rollout.wait_for_verdict, steal))
    result = run_flow(deploy, env="local", image="lease-stolen", skip_preflight=True)
    assert result["verdict"] == "failed", result
    reason = result["reason"]
    assert reason.startswith("deploy lease on papyrus-ecs-prd/papyrus-task-service lost"), reason
    assert "deploy local thief" in reason and "stopped before the probes" in reason, reason
    assert "probes" not in result["data"] and "state_recorded" not in result["data"]
    assert result["data"]["verdict_detail"]["ok"] is True  # the rollout itself went fine
    assert state_versions(sb) == records
    assert current(sb)["body"]["owner"]["host"] == "laptop-3"  # not released by the loser


# -- three entry points ----------------------------------------------------------------------------
def _cli_deploy(image: str, prefect_api_url: str | None, home) -> subprocess.Popen:
    """`papyrus-ops deploy --json` in its own process: on `prefect_api_url`, or (None) on the
    temporary server Prefect starts for a run without PREFECT_API_URL, in its own PREFECT_HOME."""
    env = cli_env(PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    else:
        env["PAPYRUS_PREFECT_SERVER"] = "temporary"  # Prefect's own, not the checkout's server
    return subprocess.Popen([sys.executable, "-m", "papyrus_ops.cli", "deploy", "--env", "local",
                             "--image", image, "--skip-preflight", "--yes", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)


def test_three_entry_points_at_once_roll_out_one_at_a_time(lease_env, capture_dir, tmp_root,
                                                          monkeypatch):
    """A run on this session's Prefect API, a CLI run on a second Prefect server, and a CLI run
    with its own temporary server (no PREFECT_API_URL), all at once: their Prefect limits
    cannot see each other, the lease orders them. Never two rollouts at a time: every
    UpdateService falls inside the window of the lease its deploy held, and the windows do not
    overlap. All three succeed."""
    from papyrus_ops.prefect_local import TemporaryServer

    # What this test is about is the order, not expiry: with the fixture's 3 s TTL a holder
    # gives up after 2.5 s without a confirmed renewal, and three Prefect servers starting on
    # two cores can keep one renewal out that long (CI, idle: the second-server run failed,
    # its reason not kept; the assertion now prints each run's reason).
    monkeypatch.setenv("PAPYRUS_LEASE_TTL_SECONDS", "30")
    sb = lease_env
    push_variant(sb, "lease-three")
    # Each server its own database (PREFECT_HOME): no concurrency limit is shared.
    homes = {k: tmp_root / f"lease-prefect-{k}-{os.urandom(3).hex()}" for k in ("second", "own")}
    session_home = os.environ["PREFECT_HOME"]
    os.environ["PREFECT_HOME"] = str(homes["second"])  # read once, when the server is spawned
    try:
        second = TemporaryServer(tmp_root / "lease-second-prefect.log")
    finally:
        os.environ["PREFECT_HOME"] = session_home
    results: dict[str, dict] = {}
    try:
        second_url = second.wait()
        sb.faults.reset_calls()
        procs = {"second-server": _cli_deploy("lease-three", second_url, homes["second"]),
                 "own-server": _cli_deploy("lease-three", None, homes["own"])}
        here = threading.Thread(target=lambda: results.__setitem__(
            "session", run_flow(deploy, env="local", image="lease-three",
                                skip_preflight=True)))
        here.start()
        for name, p in procs.items():
            out, err = p.communicate(timeout=600)
            (capture_dir / f"cli-lease-three-{name}.txt").write_text(
                f"--- exit {p.returncode}\n--- stdout\n{out}\n--- stderr\n{err}\n")
            results[name] = json.loads(out)
            if results[name]["verdict"] != "success":  # CI keeps no capture dir: say why here
                results[name]["reason"] += "\n" + "\n".join(err.splitlines()[-40:])
        here.join(timeout=600)
    finally:
        second.stop()
    assert {k: r["verdict"] for k, r in results.items()} == dict.fromkeys(
        ("session", "second-server", "own-server"), "success"), {
            k: (r["verdict"], r["reason"]) for k, r in results.items()}
    # From the take's answer to the release's request: inside the time each really held it.
    windows = sorted((r["data"]["lease"]["held_at"], r["data"]["lease"]["released_at"], k)
                     for k, r in results.items())
    for (_, end, a), (start, _, b) in zip(windows, windows[1:], strict=False):
        assert end <= start, f"{a} still held the lease when {b} took it: {windows}"
    updates = [c.at for c in sb.faults.served("ecs") if c.operation == "UpdateService"]
    assert len(updates) == 3
    for at in updates:
        assert sum(1 for s, e, _ in windows if s <= at <= e) == 1, (at, windows)
    # Each held its own lease (three ids), and who waited knew who for.
    ids = [r["data"]["lease"]["lease_id"] for r in results.values()]
    assert len(set(ids)) == 3
    apis = {b["owner"]["prefect_api_url"] for b in history(sb, windows[0][0] - 1)}
    assert second_url in apis and len(apis) == 3, apis
    assert current(sb) is None
