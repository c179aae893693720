"""Monitoring tests run on the session sandbox (moto behind the recording/fault layer).

The sandbox is shared with the other suites, so each test module starts from an account without
any monitoring resource (and leaves none behind): "the first plan creates everything" holds
whatever ran before.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

# `tests/` is on sys.path (rootdir conftest, no __init__.py) and `tests/artifacts/` would then be
# imported as a namespace package shadowing the real `artifacts` (the editable install's finder
# comes after the path finder). Put the repository first.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("artifacts"), "__file__", "") is None:
    del sys.modules["artifacts"]

TEST_ALB = "papyrus-alb"


def forget_monitoring(sb) -> None:
    """Delete everything the monitoring flow manages (and the test ALB), if present."""
    from tasks.eventrules import TARGET_ID
    from tasks.monitoring import load_monitoring

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


@pytest.fixture(scope="module")
def mon(sandbox, monkeypatch_module):
    """The session sandbox with no monitoring resource in it, and no ALB configured."""
    monkeypatch_module.delenv("PAPYRUS_ALB_NAME", raising=False)
    sandbox.faults.clear()
    forget_monitoring(sandbox)
    yield sandbox
    sandbox.faults.clear()
    forget_monitoring(sandbox)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def clients(mon):
    from tasks.monitoring import Clients

    return Clients(**{name: mon.client(name) for name in Clients.__dataclass_fields__})
