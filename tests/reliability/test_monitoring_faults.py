"""The monitoring flow's services throttled (CloudWatch, EventBridge, ELBv2, SNS, EC2, S3, STS):
`monitoring --apply` from nothing still converges, a second plan changes nothing, and every
resource exists exactly once. The account is put back as found (no monitoring resources)."""

from __future__ import annotations

import pytest

from tests.support.cleanup import forget_monitoring
from tests.support.evidence import assert_evidence_complete

MONITORING_SERVICES = ("cloudwatch", "events", "elbv2", "sns", "ec2", "s3", "sts")


@pytest.fixture
def empty_account(sb, monkeypatch):
    monkeypatch.delenv("PAPYRUS_ALB_NAME", raising=False)
    forget_monitoring(sb)
    yield sb
    sb.faults.clear()
    forget_monitoring(sb)


def run(apply: bool):
    from flows.monitoring import monitoring
    from ground.result import KEYS

    state = monitoring(env="local", apply=apply, return_state=True)
    res = state.result(raise_on_failure=False)
    assert set(res) == set(KEYS), res
    return {**res, **res["data"]}  # the flow's own fields, next to the contract's


def test_throttling_on_every_service_monitoring_uses(empty_account):
    sb = empty_account
    from ground.monitoring_settings import load_monitoring

    cfg = load_monitoring(sb.settings)
    # Each service's first call (its retry is served): adaptive retries slow a client down
    # after each throttle, so once per client proves the path without paying for more.
    rules = {svc: sb.faults.throttle(svc, "*", times=2) for svc in MONITORING_SERVICES}
    try:
        applied = run(apply=True)
    finally:
        sb.faults.clear()
    hits = {svc: 2 - r.remaining for svc, r in rules.items()}
    assert all(n >= 1 for n in hits.values()), hits
    assert applied["verdict"] == "success", applied
    assert applied["plan"]["create"] == len(applied["applied"]) > 0
    after = applied["after"]
    assert after == {"create": 0, "update": 0, "unchanged": after["unchanged"], "blocked": 0}
    assert_evidence_complete(sb, applied["evidence"]["folder"])

    n = len(sb.faults.served())
    again = run(apply=True)  # converged: an apply now changes nothing
    assert again["verdict"] == "success" and again["applied"] == [], again
    writes = {(c.service, c.operation) for c in sb.faults.served()[n:]
              if c.mutating and c.service in MONITORING_SERVICES}
    assert writes <= {("s3", "PutObject")}, writes  # the evidence upload only

    # Exactly one of each: retries created no duplicate.
    alarms = sb.client("cloudwatch").describe_alarms(AlarmNamePrefix="papyrus-")["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in alarms) == sorted(
        a.name for a in cfg.alarms if a.name in {x["name"] for x in applied["applied"]})
    topics = [t for t in sb.client("sns").list_topics()["Topics"]
              if t["TopicArn"].endswith(f":{cfg.topic}")]
    assert len(topics) == 1
    targets = sb.client("events").list_targets_by_rule(Rule=cfg.rule)["Targets"]
    assert len(targets) == 1
    groups = sb.client("elbv2").describe_target_groups(Names=[cfg.target_group])["TargetGroups"]
    assert len(groups) == 1
