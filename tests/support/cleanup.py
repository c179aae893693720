"""Putting the shared session sandbox back the way the seed left it, for suites that must start
from an account without what they create."""

from __future__ import annotations

import contextlib

from botocore.exceptions import ClientError

TEST_ALB = "papyrus-alb"  # the load balancer tests/monitoring creates for the ALB alarms


def forget_monitoring(sb) -> None:
    """Delete everything the monitoring flow manages (and the test ALB), whatever is present."""
    from ground.monitoring_settings import load_monitoring
    from tasks.monitoring.eventrules import TARGET_ID

    cfg = load_monitoring(sb.settings)
    cw, events, sns = sb.client("cloudwatch"), sb.client("events"), sb.client("sns")
    elbv2, s3 = sb.client("elbv2"), sb.client("s3")
    cw.delete_alarms(AlarmNames=[a.name for a in cfg.alarms])
    with contextlib.suppress(ClientError):
        events.remove_targets(Rule=cfg.rule, Ids=[TARGET_ID])
    with contextlib.suppress(ClientError):
        events.delete_rule(Name=cfg.rule)
    for t in sns.list_topics()["Topics"]:
        if t["TopicArn"].endswith(f":{cfg.topic}"):
            sns.delete_topic(TopicArn=t["TopicArn"])
    with contextlib.suppress(ClientError):
        for lb in elbv2.describe_load_balancers(Names=[TEST_ALB])["LoadBalancers"]:
            elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    with contextlib.suppress(ClientError):
        for tg in elbv2.describe_target_groups(Names=[cfg.target_group])["TargetGroups"]:
            elbv2.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
    with contextlib.suppress(ClientError):
        for obj in s3.list_objects_v2(Bucket=cfg.log_bucket).get("Contents", []):
            s3.delete_object(Bucket=cfg.log_bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=cfg.log_bucket)
