"""The SNS topic every Papyrus alarm and the task-failure rule notify.

`create_topic` is idempotent (it returns the existing topic's ARN), and the topic policy is set
as a whole, so both are safe to retry. The policy keeps the owner account's access (what SNS's
default policy grants) and lets EventBridge publish for our rule only, and CloudWatch alarms of
this account publish. Subscriptions (e-mail, chat) are not managed here: they need a human to
confirm them.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from tasks.monitoring.policies import canonical_policy

RESOURCE = "sns_topic"
_OWNER_ACTIONS = [
    "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission",
    "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic",
    "SNS:Publish",
]


def topic_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:sns:{region}:{account}:{name}"


def desired_fields(topic: str, account: str, rule_arn: str) -> dict[str, Any]:
    policy = {
        "Version": "2012-10-17",
        "Id": "papyrus-alerts-policy",
        "Statement": [
            {"Sid": "OwnerAccountAccess", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
             "Action": _OWNER_ACTIONS, "Resource": topic},
            {"Sid": "EventBridgeTaskFailureRule", "Effect": "Allow",
             "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
             "Resource": topic, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}},
            {"Sid": "CloudWatchAlarms", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
             "Resource": topic, "Condition": {"StringEquals": {"aws:SourceAccount": account}}},
        ],
    }
    return {"Policy": canonical_policy(policy)}


def read(sns, arn: str) -> dict[str, Any] | None:
    try:
        attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    except ClientError as e:
        if e.response["Error"]["Code"] in ("NotFound", "NotFoundException"):
            return None
        raise
    return {"Policy": canonical_policy(json.loads(attrs["Policy"])) if attrs.get("Policy")
            else None}


def apply(sns, name: str, fields: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """Create the topic, or adopt the one that exists (Terraform's, say), then set its policy.

    CreateTopic is sent without tags: with tags that differ from an existing topic's, SNS
    refuses the call (InvalidParameter, "Topic already exists with different tags"). Our tags
    are added afterwards, only those the topic does not carry yet: a tag Terraform set is
    Terraform's, and is never overwritten (the result names the keys left alone)."""
    arn = sns.create_topic(Name=name)["TopicArn"]
    have = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    missing = {k: v for k, v in tags.items() if k not in have}
    if missing:
        sns.tag_resource(ResourceArn=arn, Tags=[{"Key": k, "Value": v}
                                                for k, v in sorted(missing.items())])
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                             AttributeValue=json.dumps(fields["Policy"]))
    kept = sorted(k for k, v in tags.items() if k in have and have[k] != v)
    return {"topic_arn": arn, "tags_added": sorted(missing), "tags_kept_as_found": kept}
