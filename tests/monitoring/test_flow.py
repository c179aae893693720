"""The monitoring flow for real (one Prefect API per session) on moto behind the fault layer.

The tests run in order and share one account: first plan → apply → plan again → drift →
a missing ALB → an ALB appears → bad input → throttling (last: adaptive retries keep
rate-limiting the cached CloudWatch client for a while afterwards).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ground import aws
from sandbox.faults import READ_PREFIXES

pytestmark = pytest.mark.usefixtures("prefect_server")

SERVICES = ("cloudwatch", "events", "sns", "elbv2", "s3", "ec2", "sts")
ALARMS = ("papyrus-ecs-cpu-high", "papyrus-ecs-memory-high")


@pytest.fixture(scope="module")
def recorder(mon):
    """Client-side record of every call the flow's (cached) clients make, with the bucket: the
    fault layer sees an S3 PUT as 'PutObject' whatever it is, this tells evidence uploads apart
    from bucket configuration."""
    calls: list[tuple[str, str, str | None]] = []
    hooked = []
    for name in SERVICES:
        c = aws.client(name, mon.settings.region)

        def hook(params, model, _svc=name, **_):
            calls.append((_svc, model.name, params.get("Bucket")))

        c.meta.events.register("before-parameter-build", hook, unique_id=f"mon-rec-{name}")
        hooked.append((c, name))
    yield calls
    for c, name in hooked:
        c.meta.events.unregister("before-parameter-build", unique_id=f"mon-rec-{name}")


def run(apply: bool = False, env: str = "local"):
    from flows.monitoring import monitoring
    from ground.result import KEYS

    state = monitoring(env=env, apply=apply, return_state=True)
    res = state.result(raise_on_failure=False)
    assert set(res) == set(KEYS), res
    return state, {**res, **res["data"]}  # the flow's own fields, next to the contract's


def served_since(faults, n: int):
    return faults.served()[n:]


def evidence(result: dict, name: str) -> dict:
    folder = Path(result["evidence"]["folder"])
    files = sorted(folder.glob(f"*_{name}.json"))
    assert len(files) == 1, sorted(p.name for p in folder.iterdir())
    return json.loads(files[0].read_text())


def alarm(mon, name: str) -> dict:
    return mon.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


def put_by_hand(mon, name: str, **changes) -> None:
    """What an operator does in the console: put the alarm again with something changed."""
    a = alarm(mon, name)
    keep = ("AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions", "MetricName",
            "Namespace", "Statistic", "Dimensions", "Period", "EvaluationPeriods",
            "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData")
    mon.client("cloudwatch").put_metric_alarm(AlarmName=name, **{
        **{k: a[k] for k in keep if k in a}, **changes})


def test_first_plan_creates_everything_and_changes_nothing(mon, recorder):
    n = len(mon.faults.served())
    recorder.clear()
    state, r = run(apply=False)
    assert state.is_completed(), state.message
    assert (r["verdict"], r["apply"]) == ("success", False)
    assert r["plan"] == {"create": 7, "update": 0, "unchanged": 0, "blocked": 0}
    assert {(i["resource"], i["action"]) for i in r["items"]} == {
        ("sns_topic", "create"), ("s3_bucket", "create"), ("target_group", "create"),
        ("cloudwatch_alarm", "create"), ("event_rule", "create"), ("event_target", "create")}
    assert any("papyrus-alb-target-5xx: skipped" in note for note in r["notes"])

    # No mutating call but the evidence upload: server side (the services monitoring uses; the
    # sandbox's own ECS runtime may be busy meanwhile) ...
    mutating = [(c.service, c.operation) for c in served_since(mon.faults, n)
                if c.mutating and c.service in SERVICES]
    assert set(mutating) <= {("s3", "PutObject")}
    assert len(mutating) == r["uploaded"] > 0
    # ... and client side, where an S3 PUT says which bucket it is for.
    writes = [c for c in recorder if not c[1].startswith(READ_PREFIXES)]
    assert writes and all(w == ("s3", "PutObject", mon.settings.evidence_bucket)
                          for w in writes), writes
    assert mon.client("cloudwatch").describe_alarms(AlarmNamePrefix="papyrus-")[
        "MetricAlarms"] == []
    assert not [t for t in mon.client("sns").list_topics()["Topics"]
                if t["TopicArn"].endswith(":papyrus-alerts")]

    plan = evidence(r, "monitoring_plan")
    cpu = next(i for i in plan["items"] if i["name"] == "papyrus-ecs-cpu-high")
    assert cpu["changes"]["Threshold"] == {"actual": None, "desired": 80.0}
    manifest = json.loads((Path(r["evidence"]["folder"]) / "manifest.json").read_text())
    assert manifest["flow"] == "monitoring" and manifest["verdict"] == "pass"

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    table = next(a for a in arts if a.key == "monitoring-plan")
    assert table.type == "table" and "papyrus-ecs-cpu-high" in json.dumps(table.data)


def test_apply_creates_it_all_and_the_replan_is_clean(mon):
    state, r = run(apply=True)
    assert state.is_completed(), state.message
    assert r["verdict"] == "success"
    assert len(r["applied"]) == 7 and {a["action"] for a in r["applied"]} == {"create"}
    assert r["after"] == {"create": 0, "update": 0, "unchanged": 7, "blocked": 0}
    applied = evidence(r, "monitoring_apply")
    assert {i["action"] for i in applied["plan_after"]} == {"unchanged"}
    assert {a["AlarmName"] for a in mon.client("cloudwatch").describe_alarms(
        AlarmNamePrefix="papyrus-")["MetricAlarms"]} == set(ALARMS)


def test_next_plan_shows_no_change_and_changes_nothing(mon):
    n = len(mon.faults.served())
    state, r = run(apply=False)
    assert r["verdict"] == "success" and r["plan"]["unchanged"] == 7, r["items"]
    mutating = {(c.service, c.operation) for c in served_since(mon.faults, n)
                if c.mutating and c.service in SERVICES}
    assert mutating <= {("s3", "PutObject")}


def test_a_threshold_edited_by_hand_is_an_update_and_apply_restores_it(mon):
    put_by_hand(mon, "papyrus-ecs-cpu-high", Threshold=95.0)
    state, r = run(apply=True)
    assert r["verdict"] == "success", r
    assert r["plan"] == {"create": 0, "update": 1, "unchanged": 6, "blocked": 0}
    row = next(i for i in r["items"] if i["name"] == "papyrus-ecs-cpu-high")
    assert row["action"] == "update" and row["changes"] == "Threshold: 95.0 → 80.0"
    cpu = next(i for i in evidence(r, "monitoring_plan")["items"]
               if i["name"] == "papyrus-ecs-cpu-high")
    assert cpu["changes"] == {"Threshold": {"actual": 95.0, "desired": 80.0}}
    assert r["applied"] == [{"resource": "cloudwatch_alarm", "name": "papyrus-ecs-cpu-high",
                             "action": "update"}]
    assert alarm(mon, "papyrus-ecs-cpu-high")["Threshold"] == 80.0


def test_a_configured_but_missing_load_balancer_fails_the_plan(mon, monkeypatch):
    monkeypatch.setenv("PAPYRUS_ALB_NAME", "papyrus-alb")
    state, r = run(apply=False)
    assert state.is_failed()
    assert r["verdict"] == "failed"
    assert any("load balancer 'papyrus-alb'" in p and "not found" in p for p in r["problems"])


def test_a_failing_plan_ends_the_flow_run_failed_with_the_redacted_reason(mon, monkeypatch):
    """Through the Prefect API: the run is FAILED and its state message is the result's
    reason, redacted (here the missing ALB's name carries a value the redactor knows)."""
    import uuid

    from prefect.client.orchestration import get_client

    from ground.redact import REDACTOR

    secret = f"cnry{uuid.uuid4().hex[:12]}"  # an ALB name has at most 32 characters
    REDACTOR.add(secret)
    monkeypatch.setenv("PAPYRUS_ALB_NAME", f"papyrus-alb-{secret}")
    state, r = run(apply=False)
    assert r["verdict"] == "failed" and "load balancer 'papyrus-alb-***'" in r["reason"], r
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state.type.value == "FAILED"
    assert flow_run.state.message == r["reason"]
    assert secret not in flow_run.state.message and secret not in json.dumps(r)


def test_an_alb_gets_its_alarms_on_the_target_group_and_access_logs(mon, monkeypatch):
    elbv2 = mon.client("elbv2")
    lb = elbv2.create_load_balancer(Name="papyrus-alb", Subnets=mon.seeded.subnets,
                                    Scheme="internal", Type="application")["LoadBalancers"][0]
    monkeypatch.setenv("PAPYRUS_ALB_NAME", "papyrus-alb")
    state, r = run(apply=True)
    assert r["verdict"] == "success", r
    # two alarms to create; the ALB's access_logs attributes always exist: an update
    assert r["plan"] == {"create": 2, "update": 1, "unchanged": 7, "blocked": 0}
    assert {(i["resource"], i["action"]) for i in r["items"] if i["action"] != "unchanged"} == {
        ("cloudwatch_alarm", "create"), ("lb_access_logs", "update")}
    assert r["after"]["unchanged"] == 10
    tg_arn = elbv2.describe_target_groups(Names=["papyrus-tg"])["TargetGroups"][0][
        "TargetGroupArn"]
    lb_suffix = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
    for name, metric in (("papyrus-alb-target-5xx", "HTTPCode_Target_5XX_Count"),
                         ("papyrus-alb-target-response-time", "TargetResponseTime")):
        a = alarm(mon, name)
        assert (a["Namespace"], a["MetricName"]) == ("AWS/ApplicationELB", metric)
        assert {d["Name"]: d["Value"] for d in a["Dimensions"]} == {
            "LoadBalancer": lb_suffix, "TargetGroup": tg_arn.split(":")[-1]}
    assert alarm(mon, "papyrus-alb-target-response-time")["ExtendedStatistic"] == "p95"
    attrs = {x["Key"]: x["Value"] for x in elbv2.describe_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["access_logs.s3.bucket"] == "papyrus-alb-logs-prd"
    assert any("containerName=app, containerPort=5000" in n for n in r["notes"])


def test_bad_input_is_one_line_and_touches_nothing(mon):
    n = len(mon.faults.served())
    state, r = run(apply=True, env="no-such-env")
    assert state.is_failed()
    assert r["verdict"] == "bad_input" and r["evidence"] is None
    assert "unknown environment 'no-such-env'" in r["error"] and "\n" not in r["error"]
    assert [c for c in served_since(mon.faults, n) if c.service in SERVICES] == []


def test_throttled_cloudwatch_still_converges(mon):
    mon.client("cloudwatch").delete_alarms(AlarmNames=["papyrus-ecs-cpu-high"])
    put_by_hand(mon, "papyrus-ecs-memory-high", EvaluationPeriods=10, DatapointsToAlarm=10)
    n = len(mon.faults.served())
    mon.faults.throttle("cloudwatch", "DescribeAlarms", times=1)
    mon.faults.throttle("cloudwatch", "PutMetricAlarm", times=2)
    try:
        state, r = run(apply=True)
    finally:
        mon.faults.clear()
    assert r["verdict"] == "success", r
    assert (r["plan"]["create"], r["plan"]["update"]) == (1, 1)
    throttled = [c.operation for c in served_since(mon.faults, n)
                 if c.service == "cloudwatch" and c.status == 400]
    assert sorted(throttled) == ["DescribeAlarms", "PutMetricAlarm", "PutMetricAlarm"]
    assert alarm(mon, "papyrus-ecs-cpu-high")["Threshold"] == 80.0
    assert alarm(mon, "papyrus-ecs-memory-high")["EvaluationPeriods"] == 5
