"""Standalone tasks of the local ECS runtime (RunTask), on the session sandbox, through the ECS
API: the container's command (with the request's overrides) runs as a local process with the
task role's credentials from the container credentials endpoint; DescribeTasks follows it to
STOPPED with its exit code; StopTask stops it; an image ECR does not have never starts."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

SCRIPT = """
import json, os, boto3
ident = boto3.session.Session().client("sts").get_caller_identity()
print(json.dumps({"arn": ident["Arn"], "greeting": os.environ.get("GREETING"),
                  "from_td": os.environ.get("FROM_TD"), "endpoint": os.environ["AWS_ENDPOINT_URL"],
                  "keys_in_env": sorted(k for k in os.environ if k.startswith("AWS_")
                                        and ("KEY" in k or "TOKEN" in k and "AUTH" not in k)),
                  "cwd": os.getcwd()}))
raise SystemExit(int(os.environ.get("EXIT", "0")))
"""


@pytest.fixture(scope="module")
def ecs(sandbox):
    return sandbox.client("ecs")


def register(sandbox, ecs, *, image=None, command=None) -> str:
    container = {"name": "prefect", "image": image or sandbox.ops_image_uri, "essential": True,
                 "environment": [{"name": "FROM_TD", "value": "td"},
                                 {"name": "GREETING", "value": "from the definition"}]}
    if command:
        container["command"] = command
    return ecs.register_task_definition(
        family=f"standalone-{uuid.uuid4().hex[:6]}", containerDefinitions=[container],
        requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        executionRoleArn=sandbox.role_arn("flow-run-execution"),
    )["taskDefinition"]["taskDefinitionArn"]


def run(sandbox, ecs, td: str, **overrides) -> dict:
    r = ecs.run_task(cluster=sandbox.settings.cluster, taskDefinition=td, launchType="FARGATE",
                     networkConfiguration={"awsvpcConfiguration": {
                         "subnets": sandbox.seeded.subnets[:1],
                         "securityGroups": [sandbox.seeded.task_sg_id]}},
                     tags=[{"key": "prefect.io/flow-run-id", "value": "abc"}],
                     overrides=overrides)
    assert r["failures"] == []
    [task] = r["tasks"]
    return task


def describe(sandbox, ecs, arn: str) -> dict:
    return ecs.describe_tasks(cluster=sandbox.settings.cluster, tasks=[arn],
                              include=["TAGS"])["tasks"][0]


def stopped(sandbox, ecs, arn: str, timeout: float = 60) -> dict:
    return wait_until(lambda: (t := describe(sandbox, ecs, arn))["lastStatus"] == "STOPPED"
                      and t, timeout, 0.2, "the task to stop")


def output(sandbox, task_arn: str) -> str:
    return (sandbox.runtime.log_dir / f"{task_arn.rsplit('/', 1)[-1]}.log").read_text()


def test_run_task_runs_the_override_command_as_the_task_role(sandbox, ecs):
    td = register(sandbox, ecs, command=["python", "-c", "raise SystemExit(9)"])
    task = run(sandbox, ecs, td, taskRoleArn=sandbox.role_arn("flow-run"), containerOverrides=[{
        "name": "prefect", "command": ["python", "-c", SCRIPT],
        "environment": [{"name": "GREETING", "value": "from the override"},
                        {"name": "EXIT", "value": "3"}]}])
    assert task["lastStatus"] == "PROVISIONING" and task["group"].startswith("family:standalone-")
    assert "startedBy" not in task
    seen = {describe(sandbox, ecs, task["taskArn"])["lastStatus"]}
    done = wait_until(lambda: (t := describe(sandbox, ecs, task["taskArn"]), seen.add(
        t["lastStatus"]))[0]["lastStatus"] == "STOPPED" and t, 60, 0.05, "STOPPED")
    assert done["stopCode"] == "EssentialContainerExited", done
    assert done["containers"][0]["exitCode"] == 3
    assert done["containers"][0]["imageDigest"] == sandbox.ops_image_uri.split("@")[1]
    assert done["tags"] == [{"key": "prefect.io/flow-run-id", "value": "abc"}]
    assert done["overrides"]["taskRoleArn"] == sandbox.role_arn("flow-run")
    assert seen <= {"PROVISIONING", "PENDING", "RUNNING", "STOPPED"}
    report = json.loads(output(sandbox, task["taskArn"]).strip().splitlines()[-1])
    assert report["arn"].startswith(
        "arn:aws:sts::123456789012:assumed-role/papyrus-ops-flow-run/"), report
    assert report["greeting"] == "from the override" and report["from_td"] == "td"
    assert report["endpoint"] == sandbox.endpoint
    assert report["keys_in_env"] == []  # credentials only from the endpoint
    assert report["cwd"].endswith(task["taskArn"].rsplit("/", 1)[-1])


def test_stop_task_stops_it_with_sigterm_and_user_initiated(sandbox, ecs):
    td = register(sandbox, ecs, command=["python", "-c",
                                         "import time; time.sleep(120)"])
    task = run(sandbox, ecs, td)
    wait_until(lambda: describe(sandbox, ecs, task["taskArn"])["lastStatus"] == "RUNNING", 30,
               0.1, "RUNNING")
    listed = ecs.list_tasks(cluster=sandbox.settings.cluster, family=td.rsplit("/", 1)[1]
                            .split(":")[0])["taskArns"]
    assert task["taskArn"] in listed
    ecs.stop_task(cluster=sandbox.settings.cluster, task=task["taskArn"], reason="test says so")
    done = stopped(sandbox, ecs, task["taskArn"])
    assert done["stopCode"] == "UserInitiated" and done["stoppedReason"] == "test says so"
    assert done["containers"][0]["exitCode"] == 143  # SIGTERM, as the container runtime says
    assert done["desiredStatus"] == "STOPPED"


def test_an_image_ecr_does_not_have_never_starts(sandbox, ecs):
    uri = sandbox.ops_image_uri.split("@")[0] + ":no-such-tag"
    task = run(sandbox, ecs, register(sandbox, ecs, image=uri, command=["python", "-V"]))
    done = stopped(sandbox, ecs, task["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("CannotPullContainerError"), done


def test_a_container_without_a_command_cannot_start(sandbox, ecs):
    task = run(sandbox, ecs, register(sandbox, ecs))
    done = stopped(sandbox, ecs, task["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("CannotStartContainerError"), done
