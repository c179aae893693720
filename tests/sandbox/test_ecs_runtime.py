"""The local ECS runtime against real things: PostgreSQL with SSL, moto over HTTP, gunicorn.

One module-scoped world (like the sandbox): a PostgreSQL standing behind an RDS endpoint name,
moto's server on loopback with the runtime installed, Secrets Manager / ECR / EC2 / ECS seeded
with plain boto3 from `deployments/local`, and the Papyrus service deployed by `create_service`.
Every assertion goes through the ECS API (boto3, or the AWS CLI), as the deploy flow sees it.
Tests run in file order and each starts from a settled service.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psycopg2
import pytest
from moto.server import ThreadedMotoServer

from ground.render import render_template
from ground.settings import Settings, load_env
from sandbox.ecs_runtime import EcsRuntime, RuntimeTiming
from sandbox.ecs_tasks import resolve_secret
from sandbox.postgres import LocalPostgres, free_port
from tests.support.canaries import ECS_PASSWORD, ECS_TOKEN
from tests.support.waiting import wait_until

# Not the session sandbox's region: moto's backends are per process, and the session sandbox
# (tests/conftest.py) runs its own ECS runtime for us-west-2 in this same process.
REGION = "eu-central-1"
ACCOUNT = "123456789012"
RDS_HOST = "papyrus-prd.aaaaaaaaaa.us-west-2.rds.amazonaws.com"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ROOT = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}


@dataclass
class World:
    settings: Settings
    url: str
    pg: LocalPostgres
    runtime: EcsRuntime
    ecs: object
    ecr: object
    sm: object
    repo_uri: str
    db_secret_arn: str
    token_secret_arn: str
    digests: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # every ECS answer, for the canary check

    def client(self, name: str):
        return boto3.Session().client(name, endpoint_url=self.url, region_name=REGION, **CREDS)

    def push(self, tag: str) -> str:
        """An image in ECR with a real manifest digest (moto needs it passed explicitly)."""
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": 7, "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest()},
            "layers": [],
        })
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        self.ecr.put_image(repositoryName=self.settings.ecr_repository, imageManifest=manifest,
                           imageTag=tag, imageDigest=digest)
        self.digests[tag] = digest
        return digest

    def register(self, image: str, db_secret_arn: str | None = None) -> str:
        s = self.settings
        doc = render_template(s.template_path("task"), {
            "family": s.family, "container": s.container, "container_port": s.container_port,
            "image": image, "region": s.region, "log_group": s.log_group,
            "task_role_arn": f"arn:aws:iam::{ACCOUNT}:role/{s.task_role}",
            "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/{s.execution_role}",
            "db_secret_arn": db_secret_arn or self.db_secret_arn,
            "token_secret_arn": self.token_secret_arn,
        })
        return self.ecs.register_task_definition(**doc)["taskDefinition"]["taskDefinitionArn"]

    def service(self) -> dict:
        s = self.settings
        svc = self.ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
        self.seen.append(json.dumps(svc, default=str))
        return svc

    def tasks(self, **filters) -> list[dict]:
        s = self.settings
        arns = self.ecs.list_tasks(cluster=s.cluster, serviceName=s.service, **filters)["taskArns"]
        if not arns:
            return []
        found = self.ecs.describe_tasks(cluster=s.cluster, tasks=arns)["tasks"]
        self.seen.append(json.dumps(found, default=str))
        return found

    def settled(self, timeout: float = 30) -> dict:
        """Wait for one COMPLETED deployment with running == desired (and return it)."""
        deadline = time.monotonic() + timeout
        while True:
            svc = self.service()
            deps = svc["deployments"]
            if (len(deps) == 1 and deps[0]["rolloutState"] == "COMPLETED"
                    and svc["runningCount"] == svc["desiredCount"] == deps[0]["runningCount"]):
                return svc
            if time.monotonic() > deadline:
                raise AssertionError(f"service never settled: {json.dumps(deps, default=str)}")
            time.sleep(0.1)

    def update(self, **kwargs) -> dict:
        s = self.settings
        out = self.ecs.update_service(cluster=s.cluster, service=s.service, **kwargs)
        return out["service"]


def host_port(task: dict) -> int:
    return task["containers"][0]["networkBindings"][0]["hostPort"]


def healthz(port: int, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def messages(svc: dict) -> list[str]:
    return [e["message"] for e in svc["events"]]


def group_members(pgids: set[int]) -> set[int]:
    """Every live (non-zombie) process whose process group is one of `pgids`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found.add(int(entry.name))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = load_env("local")
    base = tmp_path_factory.mktemp("ecs-runtime")
    # Its own folder under /tmp: pytest's tmp tree is 0700 root, out of reach of `postgres`.
    pg = LocalPostgres(app_password=ECS_PASSWORD, hostnames=[RDS_HOST]).start()
    server = runtime = None
    try:
        with psycopg2.connect(**pg.connect_kwargs()) as conn, conn.cursor() as cur:
            cur.execute((ROOT / "service" / "papyrus" / "sql" / "init.sql").read_text())
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        runtime = EcsRuntime(REGION, ACCOUNT, workdir=base / "runtime",
                             hostaddr=settings.db_hostaddr or "127.0.0.1",
                             timing=RuntimeTiming()).install()
        url = f"http://127.0.0.1:{port}"

        def client(name):
            return boto3.Session().client(name, endpoint_url=url, region_name=REGION, **CREDS)

        sm, ecr, ecs, ec2 = (client(n) for n in ("secretsmanager", "ecr", "ecs", "ec2"))
        db_arn = sm.create_secret(Name=settings.db_secret_id,
                                  SecretString=json.dumps(pg.secret_dict(host=RDS_HOST)))["ARN"]
        token_arn = sm.create_secret(Name=settings.token_secret_id, SecretString=ECS_TOKEN)["ARN"]
        repo_uri = ecr.create_repository(
            repositoryName=settings.ecr_repository)["repository"]["repositoryUri"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName=settings.task_security_group,
                                       Description="ECS tasks", VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName=settings.cluster)
        w = World(settings, url, pg, runtime, ecs, ecr, sm, repo_uri, db_arn, token_arn)
        digest = w.push("v1")
        td = w.register(f"{repo_uri}@{digest}")
        service_def = render_template(settings.template_path("service"),
                                      {"subnets": [subnet], "task_security_group_id": sg})
        started = time.monotonic()
        ecs.create_service(cluster=settings.cluster, serviceName=settings.service,
                           taskDefinition=td, **service_def)
        w.settled()
        TIMINGS["create_service -> COMPLETED"] = time.monotonic() - started
        yield w
    finally:
        if runtime is not None:
            runtime.uninstall()
        if server is not None:
            server.stop()
        pg.destroy()
        print("\nECS runtime timings (s):", {k: round(v, 2) for k, v in TIMINGS.items()})


def test_seeded_service_runs_and_answers(world):
    svc = world.settled()
    assert svc["enableExecuteCommand"] is True
    cb = svc["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert cb == {"enable": True, "rollback": True}
    (dep,) = svc["deployments"]
    assert dep["status"] == "PRIMARY" and dep["rolloutState"] == "COMPLETED"
    assert dep["id"].startswith("ecs-svc/") and dep["id"][8:].isdigit()
    assert dep["rolloutStateReason"] == f"ECS deployment {dep['id']} completed."
    assert svc["taskDefinition"] == dep["taskDefinition"]
    (task,) = world.tasks()
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert task["healthStatus"] == "HEALTHY"
    assert task["group"] == f"service:{world.settings.service}"
    assert task["startedBy"] == dep["id"]
    assert task["taskDefinitionArn"] == dep["taskDefinition"]
    assert task["enableExecuteCommand"] is True
    container = task["containers"][0]
    assert container["name"] == "app" and container["imageDigest"] == world.digests["v1"]
    assert container["networkBindings"][0]["containerPort"] == 5000
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert details["privateIPv4Address"] == "127.0.0.1"
    assert healthz(host_port(task)) == 200
    # /dbcheck writes over SSL: the secret's RDS host name reached 127.0.0.1 via PGHOSTADDR.
    req = urllib.request.Request(f"http://127.0.0.1:{host_port(task)}/dbcheck", method="POST",
                                 headers={"Authorization": f"Bearer {ECS_TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - http://127.0.0.1 above
        assert r.status == 200 and json.loads(r.read())["sku"].startswith("SKU-APP-")
    svc = wait_until(lambda: (s := world.service()) and "has reached a steady state." in
                     " ".join(messages(s)) and s, 5, what="steady state event")
    name = world.settings.service
    assert messages(svc)[:3] == [
        f"(service {name}) has reached a steady state.",
        f"(service {name}) (deployment {dep['id']}) deployment completed.",
        f"(service {name}) has started 1 tasks: (task {task['taskArn'].split('/')[-1]}).",
    ]
    assert all(e["id"] and e["createdAt"] for e in svc["events"])


def test_each_task_has_the_task_metadata_endpoint_v4(world):
    """Fargate injects ECS_CONTAINER_METADATA_URI_V4: the service's /runtime reads its own task
    ARN and image digest there, and they are what DescribeTasks says."""
    (task,) = world.tasks()
    req = urllib.request.Request(f"http://127.0.0.1:{host_port(task)}/runtime",
                                 headers={"Authorization": f"Bearer {ECS_TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - http://127.0.0.1 above
        body = json.loads(r.read())
    assert body["metadata_error"] is None, body
    assert body["task_arn"] == task["taskArn"]
    assert body["image_digest"] == task["containers"][0]["imageDigest"] == world.digests["v1"]
    assert body["image"] == task["containers"][0]["image"]
    family, revision = task["taskDefinitionArn"].rsplit("/", 1)[1].split(":")
    assert body["task_definition"] == f"{family}:{revision}"
    assert "/dbcheck" in body["url_map"]
    # Only the task's own (unguessable) path answers: not the bare task id.
    base = world.runtime.metadata._base()
    for path in (f"/v4/{task['taskArn'].rsplit('/', 1)[1]}", "/v4/", "/v4/x/task"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path, timeout=5)  # noqa: S310
        assert err.value.code == 404


def test_secret_json_key_and_name_forms_resolve(world):
    assert resolve_secret(f"{world.db_secret_arn}:dbname::", ACCOUNT, REGION) == "papyrus"
    assert resolve_secret(f"{world.db_secret_arn}:port::", ACCOUNT, REGION) == str(world.pg.port)
    assert resolve_secret(world.settings.token_secret_id, ACCOUNT, REGION) == ECS_TOKEN


def test_good_update_rolls_out_and_waiters_agree(world):
    before = world.settled()
    (old_task,) = world.tasks()
    digest = world.push("v2")
    td = world.register(f"{world.repo_uri}@{digest}")
    started = time.monotonic()
    out = world.update(taskDefinition=td, forceNewDeployment=True, enableExecuteCommand=True)
    new, old = out["deployments"]
    assert (new["status"], new["rolloutState"], new["taskDefinition"]) == (
        "PRIMARY", "IN_PROGRESS", td)
    assert (old["status"], old["id"]) == ("ACTIVE", before["deployments"][0]["id"])
    assert new["id"] != old["id"] and new["id"].startswith("ecs-svc/")

    svc = world.settled()
    TIMINGS["update_service -> COMPLETED"] = time.monotonic() - started
    (dep,) = svc["deployments"]
    assert dep["id"] == new["id"] and dep["taskDefinition"] == td
    assert svc["taskDefinition"] == td and svc["runningCount"] == svc["desiredCount"] == 1
    (task,) = world.tasks()
    assert task["startedBy"] == new["id"]
    assert task["containers"][0]["imageDigest"] == digest
    assert healthz(host_port(task)) == 200

    stopped = {t["taskArn"]: t for t in world.tasks(desiredStatus="STOPPED")}
    gone = stopped[old_task["taskArn"]]
    assert gone["lastStatus"] == "STOPPED" and gone["stopCode"] == "ServiceSchedulerInitiated"
    assert gone["stoppedReason"] == f"Scaling activity initiated by (deployment {new['id']})"
    assert gone["stoppedAt"] and gone["containers"][0]["exitCode"] == 0
    assert healthz(host_port(old_task)) is None
    name, old_id = world.settings.service, old_task["taskArn"].split("/")[-1]
    assert f"(service {name}) has stopped 1 running tasks: (task {old_id})." in messages(svc)

    waiter = world.ecs.get_waiter("services_stable")
    waiter.wait(cluster=world.settings.cluster, services=[world.settings.service],
                WaiterConfig={"Delay": 1, "MaxAttempts": 10})


def test_aws_cli_waiter_agrees_after_good_deploy(world):
    aws = shutil.which("aws") or "/root/.pyenv/shims/aws"
    if not Path(aws).exists():
        pytest.skip("the AWS CLI is not installed")
    world.settled()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    env.pop("AWS_PROFILE", None)
    r = subprocess.run([aws, "ecs", "wait", "services-stable", "--cluster",
                        world.settings.cluster, "--services", world.settings.service,
                        "--endpoint-url", world.url, "--region", REGION],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr


def test_stopped_task_is_replaced(world):
    world.settled()
    (task,) = world.tasks()
    world.ecs.stop_task(cluster=world.settings.cluster, task=task["taskArn"], reason="operator")
    wait_until(lambda: any(t["taskArn"] != task["taskArn"] and t["lastStatus"] == "RUNNING"
                           for t in world.tasks()), 20, what="a replacement task")
    svc = world.settled()
    (stopped,) = [t for t in world.tasks(desiredStatus="STOPPED")
                  if t["taskArn"] == task["taskArn"]]
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "operator")
    assert svc["deployments"][0]["taskDefinition"] == task["taskDefinitionArn"]


def test_drifted_secret_crashes_and_rolls_back(world):
    before = world.settled()
    old_dep = before["deployments"][0]
    (old_task,) = world.tasks()
    old_port = host_port(old_task)
    drifted = world.sm.create_secret(
        Name="papyrus/prd/db-drifted",
        SecretString=json.dumps(dict(world.pg.secret_dict(host=RDS_HOST),
                                     dbname="papyrus_legacy")))["ARN"]
    td = world.register(f"{world.repo_uri}@{world.digests['v2']}", db_secret_arn=drifted)

    answers: list[int | None] = []
    done = threading.Event()

    def poll_old():
        while not done.is_set():
            answers.append(healthz(old_port, timeout=2))
            time.sleep(0.05)

    poller = threading.Thread(target=poll_old, daemon=True)
    poller.start()
    started = time.monotonic()
    try:
        new_id = world.update(taskDefinition=td, forceNewDeployment=True)["deployments"][0]["id"]
        failed_view = wait_until(
            lambda: next((d for d in world.service()["deployments"]
                          if d["id"] == new_id and d["rolloutState"] == "FAILED"), None),
            30, what="the circuit breaker")
        TIMINGS["bad update_service -> FAILED"] = time.monotonic() - started
        svc = world.settled()
        TIMINGS["bad update_service -> rolled back"] = time.monotonic() - started
    finally:
        done.set()
        poller.join()

    assert failed_view["rolloutStateReason"] == (
        "ECS deployment circuit breaker: tasks failed to start.")
    assert failed_view["failedTasks"] == world.runtime.timing.failure_threshold
    (dep,) = svc["deployments"]
    assert dep["id"] == old_dep["id"] and dep["taskDefinition"] == old_dep["taskDefinition"]
    assert svc["taskDefinition"] == old_dep["taskDefinition"]
    (task,) = world.tasks()
    assert task["taskArn"] == old_task["taskArn"]  # never stopped (minimumHealthyPercent 100)
    assert answers and all(a == 200 for a in answers), answers

    crashed = [t for t in world.tasks(desiredStatus="STOPPED") if t["startedBy"] == new_id]
    assert len(crashed) == world.runtime.timing.failure_threshold
    for t in crashed:
        assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "EssentialContainerExited"
        assert t["stoppedReason"] == "Essential container in task exited"
        assert t["containers"][0]["exitCode"] == 3 and t["stoppedAt"]
        assert t["taskDefinitionArn"] == td

    name, msgs = world.settings.service, messages(svc)
    failed = f"(service {name}) (deployment {new_id}) deployment failed: tasks failed to start."
    rolling = f"(service {name}) rolling back to deployment {old_dep['id']}."
    completed = f"(service {name}) (deployment {old_dep['id']}) deployment completed."
    assert msgs.index(completed) < msgs.index(rolling) < msgs.index(failed)

    # The stock waiter calls this "stable" too: that is why the deploy flow has its own verdict.
    world.ecs.get_waiter("services_stable").wait(
        cluster=world.settings.cluster, services=[world.settings.service],
        WaiterConfig={"Delay": 1, "MaxAttempts": 10})


def test_missing_image_fails_without_rollback(world):
    before = world.settled()
    (old_task,) = world.tasks()
    good_td = before["taskDefinition"]
    td = world.register(f"{world.repo_uri}@sha256:{'0' * 64}")
    no_rollback = {"deploymentCircuitBreaker": {"enable": True, "rollback": False},
                   "maximumPercent": 200, "minimumHealthyPercent": 100}
    new_id = world.update(taskDefinition=td, deploymentConfiguration=no_rollback)[
        "deployments"][0]["id"]
    svc = wait_until(lambda: (s := world.service())["deployments"][0]["rolloutState"] == "FAILED"
                     and s, 20, what="FAILED")
    primary, active = svc["deployments"]
    assert (primary["id"], primary["status"], primary["taskDefinition"]) == (
        new_id, "PRIMARY", td)
    assert active["status"] == "ACTIVE" and svc["runningCount"] == 1
    failed = [t for t in world.tasks(desiredStatus="STOPPED") if t["startedBy"] == new_id]
    assert len(failed) == world.runtime.timing.failure_threshold
    for t in failed:
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"].startswith("CannotPullContainerError: ")
        assert t["containers"][0]["reason"].startswith("CannotPullContainerError: ")
    time.sleep(3 * world.runtime.timing.relaunch_delay)  # a FAILED deployment launches nothing
    assert len([t for t in world.tasks(desiredStatus="STOPPED")
                if t["startedBy"] == new_id]) == len(failed)
    assert healthz(host_port(old_task)) == 200

    # Recovery is a plain deployment of the good revision.
    with_rollback = dict(no_rollback, deploymentCircuitBreaker={"enable": True, "rollback": True})
    world.update(taskDefinition=good_td, deploymentConfiguration=with_rollback)
    svc = world.settled()
    assert svc["taskDefinition"] == good_td
    assert svc["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] is True


def test_unresolvable_secret_fails_to_start(world):
    before = world.settled()
    missing = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:papyrus/prd/nope-AbCdEf"
    td = world.register(f"{world.repo_uri}@{world.digests['v2']}", db_secret_arn=missing)
    new_id = world.update(taskDefinition=td)["deployments"][0]["id"]
    wait_until(lambda: any(t["startedBy"] == new_id
                           for t in world.tasks(desiredStatus="STOPPED")), 10,
               what="a stopped task")
    svc = world.settled()
    assert svc["taskDefinition"] == before["taskDefinition"]
    (t, *_) = [t for t in world.tasks(desiredStatus="STOPPED") if t["startedBy"] == new_id]
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"].startswith(
        "ResourceInitializationError: unable to pull secrets or registry auth:")
    assert missing in t["stoppedReason"]


def test_other_moto_ecs_behaviour_is_untouched(world):
    ecs = world.ecs
    ecs.create_cluster(clusterName="plain")
    td = ecs.register_task_definition(
        family="plain", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    assert ecs.describe_task_definition(taskDefinition="plain")["taskDefinition"][
        "taskDefinitionArn"] == td
    (task,) = ecs.run_task(cluster="plain", taskDefinition=td, launchType="FARGATE")["tasks"]
    # RunTask itself is the runtime's (tests/sandbox/test_ecs_standalone.py): busybox is not in
    # the sandbox's ECR, so the task stops (CannotPullContainerError) on the runtime's next tick.
    wait_until(lambda: ecs.list_tasks(cluster="plain", desiredStatus="STOPPED")["taskArns"]
               == [task["taskArn"]], 10, 0.05, "the busybox task to stop")
    stopped = ecs.stop_task(cluster="plain", task=task["taskArn"], reason="x")["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    assert world.settings.cluster in [
        c.split("/")[-1] for c in ecs.list_clusters()["clusterArns"]]


def test_no_secret_in_api_answers_or_logs(world):
    world.service()
    world.tasks()
    world.tasks(desiredStatus="STOPPED")
    text = "\n".join(world.seen)
    logs = world.runtime.workdir / "tasks"
    text += "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    assert ECS_PASSWORD not in text and ECS_TOKEN not in text


def test_stop_all_leaves_no_process_behind(world):
    world.settled()
    pgids = set(world.runtime.live_pids())
    assert pgids, "expected a running task"
    members = group_members(pgids)
    assert len(members) >= 2  # gunicorn master and its workers
    world.runtime.stop_all()
    assert world.runtime.live_pids() == []
    assert group_members(pgids) == set()
    for pid in members:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(
            f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    (task,) = [t for t in world.tasks(desiredStatus="STOPPED") if t["lastStatus"] == "STOPPED"
               and t["stoppedReason"] == "Sandbox ECS runtime stopped"]
    assert task["stoppedAt"]


def test_list_task_definitions_sorts_and_pages_as_aws_does(sandbox):
    """moto ignores `sort` and `maxResults`; the sandbox answers as the ECS API Reference says."""
    ecs, family = sandbox.client("ecs"), "papyrus-sortcheck"
    for _ in range(3):
        ecs.register_task_definition(family=family, containerDefinitions=[
            {"name": "app", "image": "busybox", "memory": 128}])
    desc = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=1)
    assert [a.rsplit(":", 1)[1] for a in desc["taskDefinitionArns"]] == ["3"]
    assert desc["nextToken"]
    rest = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=1,
                                     nextToken=desc["nextToken"])
    assert [a.rsplit(":", 1)[1] for a in rest["taskDefinitionArns"]] == ["2"]
    asc = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in asc] == ["1", "2", "3"]
    for arn in asc:
        ecs.deregister_task_definition(taskDefinition=arn)


def test_the_evidence_bucket_refuses_uploads_that_do_not_name_its_customer_key(sandbox):
    """As in AWS with the usual policy: without the key-id header (bucket default), or with
    `aws:kms` alone (S3 reads that as aws/s3), PutObject is denied; naming the key works."""
    from botocore.exceptions import ClientError

    s3, bucket = sandbox.client("s3"), sandbox.settings.evidence_bucket
    for extra in ({}, {"ServerSideEncryption": "aws:kms"}):
        with pytest.raises(ClientError) as denied:
            s3.put_object(Bucket=bucket, Key="policy-check/x.txt", Body=b"x", **extra)
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        assert "explicit deny" in denied.value.response["Error"]["Message"]
    s3.put_object(Bucket=bucket, Key="policy-check/x.txt", Body=b"x",
                  ServerSideEncryption="aws:kms", SSEKMSKeyId=sandbox.evidence_kms_key)
    head = s3.head_object(Bucket=bucket, Key="policy-check/x.txt")
    assert head["SSEKMSKeyId"] == sandbox.evidence_kms_key
