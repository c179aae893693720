"""monitoring.toml loading, desired state and the diff — pure, no AWS (`task.fn`)."""

from __future__ import annotations

import copy
import dataclasses
import re
import shutil

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ground.monitoring_settings import load_monitoring
from ground.settings import ConfigError, load_env
from tasks import monitoring
from tasks.monitoring import alarms
from tasks.monitoring.desired import desired_state
from tasks.monitoring.planning import plan
from tasks.monitoring.policies import canonical_policy

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def settings():
    return load_env("local")


@pytest.fixture(scope="module")
def cfg(settings):
    return load_monitoring(settings)


def _ctx(settings, cfg, *, vpc="vpc-1", tg=None, lb=None):
    return {
        "account": ACCOUNT, "region": settings.region,
        "topic_arn": f"arn:aws:sns:{settings.region}:{ACCOUNT}:{cfg.topic}",
        "rule_arn": f"arn:aws:events:{settings.region}:{ACCOUNT}:rule/{cfg.rule}",
        "cluster_arn": f"arn:aws:ecs:{settings.region}:{ACCOUNT}:cluster/{settings.cluster}",
        "vpc_id": vpc, "target_group_arn": tg and f"arn:aws:elasticloadbalancing:x:1:{tg}",
        "target_group_suffix": tg, "target_group_load_balancers": [], "load_balancer": lb,
    }


def _actual_from(desired, ctx, **overrides):
    """An 'actual' where everything exists exactly as desired, then `overrides` applied."""
    res = {f"{d['resource']}/{d['name']}": copy.deepcopy(d["desired"]) for d in desired["items"]}
    res.update(overrides)
    return {"context": ctx, "resources": res, "problems": []}


# -- the file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["local", "prd"])
def test_shipped_files_load(env):
    cfg = load_monitoring(load_env(env))
    assert cfg.topic.startswith("papyrus-") and cfg.target_group == "papyrus-tg"
    assert cfg.health_check_path == "/healthz" and cfg.matcher == "200"
    metrics = {(a.namespace, a.metric) for a in cfg.alarms}
    assert metrics == {("AWS/ECS", "CPUUtilization"), ("AWS/ECS", "MemoryUtilization"),
                       ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
                       ("AWS/ApplicationELB", "TargetResponseTime")}
    assert cfg.start_failure_reasons == ("CannotPullContainerError",
                                         "ResourceInitializationError")


def _edit(settings, tmp_path, old: str, new: str):
    folder = tmp_path / "env"
    shutil.copytree(settings.folder, folder)
    path = folder / "monitoring.toml"
    text = path.read_text()
    assert re.search(old, text, re.M), old
    path.write_text(re.sub(old, new, text, count=1, flags=re.M))
    return dataclasses.replace(settings, folder=folder)


@pytest.mark.parametrize(("old", "new", "message"), [
    (r'^threshold = 80$', 'threshold = "80"', r"\[alarms.ecs_cpu\] threshold: expected float"),
    (r'^name = "papyrus-ecs-cpu-high"', 'name = "ecs-cpu-high"',
     r"\[alarms.ecs_cpu\] name: 'ecs-cpu-high' must start with 'papyrus-'"),
    (r'^period = 60$', "period = 45", r"\[alarms.ecs_cpu\] period: must be"),
    (r'^datapoints_to_alarm = 3$', "datapoints_to_alarm = 9",
     r"\[alarms.ecs_cpu\] datapoints_to_alarm: 9 is more than"),
    (r'^statistic = "Average"$', 'statistic = "Mean"', r"\[alarms.ecs_cpu\] statistic"),
    (r'^namespace = "AWS/ECS"$', 'namespace = "AWS/EC2"', r"\[alarms.ecs_cpu\] namespace"),
    (r'^comparison = "GreaterThanOrEqualToThreshold"$', 'comparison = ">="',
     r"\[alarms.ecs_cpu\] comparison"),
    (r'^treat_missing_data = "missing"$', 'tretmissing = "x"',
     r"\[alarms.ecs_cpu\] tretmissing: unknown key"),
    (r'^topic = "papyrus-alerts"$', "", r"\[notification\] topic: missing"),
    (r'^health_check_path = "/healthz"$', 'health_check_path = "healthz"',
     r"\[target_group\] health_check_path: must start with '/'"),
    (r'^matcher = "200"$', 'matcher = "OK"', r"\[target_group\] matcher"),
    (r'^timeout_seconds = 5$', "timeout_seconds = 15", r"\[target_group\] timeout_seconds"),
    (r'^bucket = "papyrus-alb-logs-prd"$', 'bucket = "papyrus-ALB_logs"',
     r"\[access_logs\] bucket: 'papyrus-ALB_logs' is not a valid"),
    (r'^name = "\$\{PAPYRUS_ALB_NAME:-\}"$', 'name = "${PAPYRUS_NO_SUCH_VARIABLE}"',
     r"\[load_balancer\] name: environment variable PAPYRUS_NO_SUCH_VARIABLE is not set"),
    (r'^\[task_failure_rule\]$', "[task_failure_rules]", r"\[task_failure_rules\]: unknown table"),
    (r'^start_failure_reasons = .*$', 'start_failure_reasons = ["*"]',
     r"\[task_failure_rule\] start_failure_reasons"),
    (r'^healthy_threshold = 2$', "healthy_threshold = 0",
     r"\[target_group\] healthy_threshold: must be positive"),
])
def test_bad_settings_name_the_file_and_key(settings, tmp_path, old, new, message):
    bad = _edit(settings, tmp_path, old, new)
    with pytest.raises(ConfigError, match=message) as err:
        load_monitoring(bad)
    assert str(bad.folder / "monitoring.toml") in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_toml(settings, tmp_path):
    folder = tmp_path / "env"
    folder.mkdir()
    with pytest.raises(ConfigError, match="monitoring.toml: missing"):
        load_monitoring(dataclasses.replace(settings, folder=folder))
    (folder / "monitoring.toml").write_text("[alarms\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_monitoring(dataclasses.replace(settings, folder=folder))


def test_environment_variable_sets_the_load_balancer(settings, monkeypatch):
    monkeypatch.setenv("PAPYRUS_ALB_NAME", "papyrus-alb")
    assert load_monitoring(settings).load_balancer == "papyrus-alb"


# -- desired state ----------------------------------------------------------------------------
def test_without_a_load_balancer_alb_alarms_are_skipped_with_a_note(settings, cfg):
    d = desired_state.fn(settings, cfg, _ctx(settings, cfg))
    kinds = [(i["resource"], i["name"]) for i in d["items"]]
    assert ("cloudwatch_alarm", "papyrus-ecs-cpu-high") in kinds
    assert ("cloudwatch_alarm", "papyrus-alb-target-5xx") not in kinds
    assert not any(r == "lb_access_logs" for r, _ in kinds)
    assert any("papyrus-alb-target-5xx: skipped, no load balancer" in n for n in d["notes"])
    cpu = next(i for i in d["items"] if i["name"] == "papyrus-ecs-cpu-high")["desired"]
    assert cpu["Dimensions"] == [{"Name": "ClusterName", "Value": "papyrus-ecs-prd"},
                                 {"Name": "ServiceName", "Value": "papyrus-task-service"}]
    assert cpu["AlarmActions"] == [f"arn:aws:sns:us-west-2:{ACCOUNT}:papyrus-alerts"]
    assert cpu["Threshold"] == 80.0 and cpu["Statistic"] == "Average"
    tg = next(i for i in d["items"] if i["resource"] == "target_group")
    assert tg["desired"]["TargetType"] == "ip" and tg["desired"]["Port"] == 5000
    assert tg["desired"]["HealthCheckPath"] == "/healthz"
    assert tg["desired"]["Matcher"] == {"HttpCode": "200"}
    assert tg["tags"] == {"papyrus:container": "app", "papyrus:containerPort": "5000"}


def test_alb_alarms_wait_for_the_new_target_group(settings, cfg):
    """With an ALB but no target group yet, the TargetGroup dimension is known after apply."""
    lb = {"arn": "arn:aws:elasticloadbalancing:us-west-2:1:loadbalancer/app/papyrus-alb/abc",
          "arn_suffix": "app/papyrus-alb/abc"}
    ctx = _ctx(settings, cfg, lb=lb)
    d = desired_state.fn(settings, cfg, ctx)
    items = plan.fn(d, {"context": ctx, "resources": {}, "problems": []})
    latency = next(i for i in items if i["name"] == "papyrus-alb-target-response-time")
    assert latency["desired"]["ExtendedStatistic"] == "p95"
    assert latency["desired"]["Statistic"] is None
    assert monitoring.display(latency["changes"]["Dimensions"][1]) == [
        {"Name": "LoadBalancer", "Value": "app/papyrus-alb/abc"},
        {"Name": "TargetGroup", "Value": monitoring.KNOWN_AFTER_APPLY}]
    assert monitoring.resolve(latency["desired"]["Dimensions"],
                              {"target_group_suffix": "targetgroup/papyrus-tg/1"})[1] == \
        {"Name": "TargetGroup", "Value": "targetgroup/papyrus-tg/1"}
    with pytest.raises(KeyError):
        monitoring.resolve(latency["desired"], {})
    order = [i["resource"] for i in items]
    assert order.index("target_group") < order.index("cloudwatch_alarm")
    assert order.index("event_rule") < order.index("event_target")


# -- the diff ---------------------------------------------------------------------------------
def test_nothing_exists_everything_is_created(settings, cfg):
    ctx = _ctx(settings, cfg)
    items = plan.fn(desired_state.fn(settings, cfg, ctx),
                    {"context": ctx, "resources": {}, "problems": []})
    assert {i["action"] for i in items} == {"create"}
    assert all(a is None for i in items for a, _ in i["changes"].values())
    assert set(monitoring.plan_rows(items)[0]) == {"resource", "name", "action", "changes"}


def test_everything_as_desired_is_unchanged(settings, cfg):
    ctx = _ctx(settings, cfg, tg="targetgroup/papyrus-tg/1")
    d = desired_state.fn(settings, cfg, ctx)
    items = plan.fn(d, _actual_from(d, ctx))
    assert monitoring.converged(items)
    assert monitoring.counts(items)["unchanged"] == len(d["items"])


def test_a_hand_edited_threshold_is_an_update_of_that_field(settings, cfg):
    ctx = _ctx(settings, cfg)
    d = desired_state.fn(settings, cfg, ctx)
    key = "cloudwatch_alarm/papyrus-ecs-cpu-high"
    actual = _actual_from(d, ctx)
    actual["resources"][key] = dict(actual["resources"][key], Threshold=95.0)
    item = next(i for i in plan.fn(d, actual) if i["name"] == "papyrus-ecs-cpu-high")
    assert item["action"] == "update"
    assert item["changes"] == {"Threshold": (95.0, 80.0)}


def test_target_group_port_change_is_blocked_health_check_change_is_an_update(settings, cfg):
    ctx = _ctx(settings, cfg)
    d = desired_state.fn(settings, cfg, ctx)
    key = "target_group/papyrus-tg"
    actual = _actual_from(d, ctx)
    actual["resources"][key] = dict(actual["resources"][key], HealthCheckPath="/")
    tg = next(i for i in plan.fn(d, actual) if i["resource"] == "target_group")
    assert tg["action"] == "update" and tg["changes"] == {"HealthCheckPath": ("/", "/healthz")}
    actual["resources"][key] = dict(actual["resources"][key], Port=80)
    tg = next(i for i in plan.fn(d, actual) if i["resource"] == "target_group")
    assert tg["action"] == "blocked" and "Port cannot be changed in place" in tg["reason"]
    assert not monitoring.converged([tg])


def test_missing_vpc_blocks_the_target_group(settings, cfg):
    ctx = _ctx(settings, cfg, vpc=None)
    items = plan.fn(desired_state.fn(settings, cfg, ctx),
                    {"context": ctx, "resources": {}, "problems": ["VPC not found"]})
    tg = next(i for i in items if i["resource"] == "target_group")
    assert tg["action"] == "blocked"


def test_alarm_normal_form_absorbs_moto_and_aws_differences():
    described = {  # what describe_alarms gives back (moto 5.2.5 shape)
        "AlarmName": "a", "AlarmArn": "arn", "StateValue": "OK", "Metrics": [],
        "Dimensions": [{"Name": "ServiceName", "Value": "s"}, {"Name": "ClusterName",
                                                               "Value": "c"}],
        "Threshold": 80, "AlarmActions": ["t"], "OKActions": ["t"],
        "InsufficientDataActions": [], "Period": 60,
    }
    n = alarms.normalize(described)
    assert set(n) == set(alarms.FIELDS)
    assert n["Dimensions"][0]["Name"] == "ClusterName" and n["Threshold"] == 80.0
    assert n["DatapointsToAlarm"] is None and n["TreatMissingData"] is None


def test_policies_compare_parsed_and_canonical():
    a = {"Version": "2012-10-17", "Statement": [
        {"Sid": "B", "Effect": "Allow", "Principal": {"AWS": "arn:x"}, "Action": "s3:PutObject",
         "Resource": "r"},
        {"Sid": "A", "Effect": "Deny", "Principal": "*", "Action": ["s3:*"],
         "Resource": ["r2", "r1"]}]}
    b = {"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": ["r1", "r2"]},
        {"Sid": "B", "Effect": "Allow", "Principal": {"AWS": ["arn:x"]},
         "Action": ["s3:PutObject"], "Resource": ["r"]}]}
    assert canonical_policy(a) == canonical_policy(b)


@pytest.mark.parametrize(("exc", "retry"), [
    (ClientError({"Error": {"Code": "Throttling"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                 "PutMetricAlarm"), True),
    (ClientError({"Error": {"Code": "ServiceUnavailable"},
                  "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutRule"), True),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (ClientError({"Error": {"Code": "ValidationError"},
                  "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutMetricAlarm"), False),
    (KeyError("target_group_suffix is not known yet"), False),
])
def test_tasks_retry_only_what_is_transient(exc, retry):
    """The Prefect retry condition of the read/apply tasks (botocore retries come first)."""
    from prefect.states import Failed

    assert monitoring._transient(None, None, Failed(data=exc)) is retry
