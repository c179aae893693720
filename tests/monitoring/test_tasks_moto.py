"""The read and apply tasks (`task.fn`) against moto in server mode: idempotent creates, the
moto quirks they absorb, and the deployed rule's pattern checked with our matcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ground.monitoring_settings import load_monitoring
from tasks.monitoring import accesslogs, eventrules, targets
from tasks.monitoring.actual import read_actual
from tasks.monitoring.apply import apply_item
from tasks.monitoring.desired import desired_state
from tasks.monitoring.event_pattern import matches
from tasks.monitoring.planning import plan
from tests.support.cleanup import forget_monitoring

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cfg(mon):
    return load_monitoring(mon.settings)


def _plan(clients, mon, cfg):
    actual = read_actual.fn(clients, mon.settings, cfg)
    return actual, plan.fn(desired_state.fn(mon.settings, cfg, actual["context"]), actual)


def test_apply_each_item_twice_is_harmless(mon, clients, cfg):
    actual, items = _plan(clients, mon, cfg)
    assert not actual["problems"] and actual["context"]["vpc_id"] == mon.seeded.vpc_id
    assert {i["action"] for i in items} == {"create"}
    refs = dict(actual["context"])
    for item in items:  # a retried create: the second one must adopt, not fail or duplicate
        first = apply_item.fn(clients, item, refs, mon.settings.region)
        second = apply_item.fn(clients, item, refs, mon.settings.region)
        assert first["refs"] == second["refs"]
        refs.update(first["refs"])
    groups = clients.elbv2.describe_target_groups()["TargetGroups"]
    assert [g["TargetGroupName"] for g in groups].count("papyrus-tg") == 1
    topics = [t["TopicArn"] for t in clients.sns.list_topics()["Topics"]]
    assert [t.rsplit(":", 1)[1] for t in topics].count("papyrus-alerts") == 1
    _, again = _plan(clients, mon, cfg)
    assert {i["action"] for i in again} == {"unchanged"}, [
        (i["name"], i["changes"]) for i in again if i["action"] != "unchanged"]


def test_what_was_created(mon, clients, cfg):
    s = mon.settings
    tg = clients.elbv2.describe_target_groups(Names=["papyrus-tg"])["TargetGroups"][0]
    assert (tg["TargetType"], tg["Protocol"], tg["Port"], tg["VpcId"]) == \
        ("ip", "HTTP", 5000, mon.seeded.vpc_id)
    assert (tg["HealthCheckPath"], tg["Matcher"]["HttpCode"]) == ("/healthz", "200")
    tags = clients.elbv2.describe_tags(ResourceArns=[tg["TargetGroupArn"]])
    tags = {t["Key"]: t["Value"] for t in tags["TagDescriptions"][0]["Tags"]}
    assert tags["papyrus:container"] == "app" and tags["papyrus:containerPort"] == "5000"

    cw = clients.cloudwatch.describe_alarms(AlarmNamePrefix="papyrus-")["MetricAlarms"]
    by_name = {a["AlarmName"]: a for a in cw}
    assert set(by_name) == {"papyrus-ecs-cpu-high", "papyrus-ecs-memory-high"}
    mem = by_name["papyrus-ecs-memory-high"]
    assert (mem["Namespace"], mem["MetricName"], mem["Threshold"]) == \
        ("AWS/ECS", "MemoryUtilization", 85.0)
    assert {d["Name"]: d["Value"] for d in mem["Dimensions"]} == \
        {"ClusterName": s.cluster, "ServiceName": s.service}
    topic = f"arn:aws:sns:{s.region}:123456789012:papyrus-alerts"
    assert mem["AlarmActions"] == [topic] and mem["OKActions"] == [topic]

    policy = json.loads(clients.s3.get_bucket_policy(Bucket=cfg.log_bucket)["Policy"])
    writer = next(st for st in policy["Statement"] if st["Sid"] == "ELBAccessLogDelivery")
    assert writer["Principal"] == {"AWS": ["arn:aws:iam::797873946194:root"]}  # us-west-2 ELB
    assert writer["Resource"] == [
        f"arn:aws:s3:::{cfg.log_bucket}/papyrus-alb/AWSLogs/123456789012/*"]
    pab = clients.s3.get_public_access_block(Bucket=cfg.log_bucket)
    assert all(pab["PublicAccessBlockConfiguration"].values())
    enc = clients.s3.get_bucket_encryption(Bucket=cfg.log_bucket)
    assert enc["ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    targets_ = clients.events.list_targets_by_rule(Rule=cfg.rule)["Targets"]
    assert [(t["Id"], t["Arn"]) for t in targets_] == [(eventrules.TARGET_ID, topic)]
    topic_policy = json.loads(clients.sns.get_topic_attributes(TopicArn=topic)[
        "Attributes"]["Policy"])
    events_stmt = next(st for st in topic_policy["Statement"]
                       if st["Principal"] == {"Service": ["events.amazonaws.com"]})
    assert events_stmt["Condition"]["ArnEquals"]["aws:SourceArn"].endswith(f"rule/{cfg.rule}")


@pytest.mark.parametrize(("name", "expected"), [
    ("task_stopped_exit3.json", True),
    ("task_failed_to_start_cannot_pull.json", True),
    ("task_failed_to_start_resource_init.json", True),
    ("task_stopped_exit0_user.json", False),
    ("task_stopped_scale_in_exit0.json", False),
    ("task_stopped_exit3_other_service.json", False),
    ("task_stopped_exit3_other_cluster.json", False),
])
def test_the_deployed_rule_pattern_matches_the_right_events(clients, cfg, name, expected):
    """The pattern as stored (describe_rule), not as generated, against the sample events."""
    stored = clients.events.describe_rule(Name=cfg.rule)["EventPattern"]
    event = json.loads((FIXTURES / name).read_text())
    assert matches(stored, event) is expected


def test_readers_report_missing_things_as_none(clients):
    assert targets.read(clients.elbv2, "papyrus-nope") == (None, None, [])
    assert targets.read_load_balancer(clients.elbv2, "papyrus-nope") is None
    assert accesslogs.read_bucket(clients.s3, "papyrus-nope-bucket") is None
    assert eventrules.read_rule(clients.events, "papyrus-nope") is None
    assert eventrules.read_target(clients.events, "papyrus-nope", "x") is None


def test_an_existing_terraform_topic_with_other_tags_is_adopted_not_fought(mon, clients, cfg):
    """Terraform made `papyrus-alerts` with its own tags. SNS refuses CreateTopic with other
    tags on it (the sandbox answers as SNS does: InvalidParameter); monitoring --apply adopts
    the topic instead: Terraform's tags stay as they are, ours are added beside them."""
    from botocore.exceptions import ClientError

    from flows.monitoring import monitoring
    from papyrus_ops.runner import run_flow

    terraform_tags = [{"Key": "ManagedBy", "Value": "terraform"},
                      {"Key": "Owner", "Value": "platform-team"}]
    forget_monitoring(mon)  # the tests above applied the topic with our tags
    arn = clients.sns.create_topic(Name=cfg.topic, Tags=terraform_tags)["TopicArn"]
    try:
        with pytest.raises(ClientError) as refused:
            clients.sns.create_topic(Name=cfg.topic, Tags=[{"Key": "Project", "Value": "x"}])
        assert refused.value.response["Error"]["Code"] == "InvalidParameter"
        assert "already exists with different tags" in str(refused.value)
        res = run_flow(monitoring, env="local", apply=True)
        assert res["verdict"] == "success", res["reason"]
        tags = {t["Key"]: t["Value"]
                for t in clients.sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
        # Terraform's stay (ManagedBy is not overwritten with ours); Project, which Terraform
        # did not set, is added.
        assert tags == {"ManagedBy": "terraform", "Owner": "platform-team",
                        "Project": "papyrus"}, tags
        again = run_flow(monitoring, env="local", apply=True)
        assert again["verdict"] == "success", again["reason"]
    finally:
        forget_monitoring(mon)
