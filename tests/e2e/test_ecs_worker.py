"""The production path, run in the sandbox: the real prefect-aws ECS worker on an ECS pool.

`papyrus-ops prefect up --ecs` (the session's `stack`, tests/e2e/conftest.py) creates the
`papyrus-ecs-sandbox` pool (prefect-aws's template, the sandbox's values from
deployments/local/ecs-pool.json) and starts `prefect worker start --type ecs` as the
`papyrus-worker` role. A deployment on that pool, registered here with `prefect deploy` from a
generated prefect file (the pull step of prefect.yaml), is run through the Prefect API as the UI
does. The worker registers a task definition and calls RunTask on the sandbox; the sandbox's ECS
runtime runs the task's command (`prefect flow-run execute`) with the flow-run role's
credentials from the container credentials endpoint (sandbox.ecs_standalone). Nothing here
mocks the worker: what is checked is what ECS, S3 and the Prefect API say.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from papyrus_ops import prefect_local
from sandbox import image as sandbox_image
from tests.e2e.conftest import ROOT, prefect_env
from tests.support.ui import CHROMIUM, custom_deploy_run
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN_TIMEOUT = 300
ACCOUNT = "123456789012"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DEPLOY = "deploy/deploy-ecs-sandbox"
ARCHIVE = "cloudtrail_archive/cloudtrail-archive-ecs-sandbox"
PREFECT_FILE = f"""\
name: papyrus-ops
prefect-version: 3.9.1
build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $PAPYRUS_OPS_HOME }}}}"
deployments:
  - name: deploy-ecs-sandbox
    entrypoint: flows/deploy.py:deploy
    enforce_parameter_schema: true
    parameters: {{env: local}}
    work_pool: {{name: {prefect_local.ECS_POOL}, work_queue_name: default, job_variables: {{}}}}
  - name: cloudtrail-archive-ecs-sandbox
    entrypoint: flows/cloudtrail_archive.py:cloudtrail_archive
    enforce_parameter_schema: true
    parameters: {{env: local, incremental: true}}
    work_pool: {{name: {prefect_local.ECS_POOL}, work_queue_name: default, job_variables: {{}}}}
"""


# -- helpers ---------------------------------------------------------------------------------
def client(api_url: str):
    from tests.e2e.test_prefect_deployments import client as prefect_client

    return prefect_client(api_url)


def wait_state(api_url: str, run_id, states: set[str], timeout: float = RUN_TIMEOUT):
    with client(api_url) as c:
        def reached():
            run = c.read_flow_run(run_id)
            return run if run.state and run.state.type.value in states else None

        return wait_until(reached, timeout, 1, f"flow run {run_id} in {sorted(states)}")


def start(stack, name: str, **parameters):
    with client(stack["api_url"]) as c:
        dep = c.read_deployment_by_name(name)
        return c.create_flow_run_from_deployment(dep.id, parameters=parameters)


def flow_run_tasks(sandbox, run_id) -> list[dict]:
    """The ECS tasks (any status) tagged with this flow run, as the prefect-aws worker tags."""
    ecs, cluster = sandbox.client("ecs"), sandbox.settings.cluster
    arns = [a for status in ("RUNNING", "STOPPED")
            for a in ecs.list_tasks(cluster=cluster, desiredStatus=status)["taskArns"]]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster, tasks=sorted(set(arns)), include=["TAGS"])
    return [t for t in tasks["tasks"]
            if {"key": "prefect.io/flow-run-id", "value": str(run_id)} in t.get("tags", [])]


def evidence_markdown(stack, run_id) -> str:
    from tests.e2e.test_prefect_deployments import artifacts_of

    [summary, *_] = artifacts_of(stack["api_url"], run_id, "deploy-evidence")
    return summary.data


def evidence_in_bucket(sandbox, markdown: str) -> tuple[str, dict[str, bytes]]:
    """The bundle's S3 folder (from the summary's location) and its objects, read back."""
    [uri] = set(re.findall(r"s3://papyrus-evidence-prd/deploy/[^\s`|)]+/", markdown))
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = sandbox.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    return uri, {k.removeprefix(prefix): s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                 for k in keys}


def service_image(sandbox) -> str:
    ecs, s = sandbox.client("ecs"), sandbox.settings
    svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
    td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
    return td["containerDefinitions"][0]["image"]


# -- the registration ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ecs_deployments(stack, tmp_path_factory):
    """The two deployments on the sandbox's ECS pool, registered by `prefect deploy` without
    PAPYRUS_OPS_HOME (so the pull step keeps its placeholder, resolved in the ECS task from the
    pool's `env`)."""
    path = tmp_path_factory.mktemp("ecs-deployments") / "prefect.ecs-sandbox.yaml"
    path.write_text(PREFECT_FILE)
    env = prefect_env(stack)
    env.pop("PAPYRUS_OPS_HOME", None)
    r = subprocess.run([prefect_local._prefect_exe(), "deploy", "--all", "--no-prompt",
                        "--prefect-file", str(path)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return path


# -- tests -----------------------------------------------------------------------------------
def test_the_ecs_pool_carries_the_sandbox_values(stack, sandbox):
    with client(stack["api_url"]) as c:
        pool = c.read_work_pool(prefect_local.ECS_POOL)
        workers = c.read_workers_for_work_pool(prefect_local.ECS_POOL)
    assert pool.type == "ecs"
    props = pool.base_job_template["variables"]["properties"]
    assert props["cluster"]["default"] == sandbox.settings.cluster
    assert props["image"]["default"] == sandbox.ops_image_uri
    assert props["task_role_arn"]["default"] == sandbox.role_arn("flow-run")
    assert props["network_configuration"]["default"]["subnets"] == sandbox.seeded.subnets
    assert props["env"]["default"]["PAPYRUS_OPS_HOME"] == str(ROOT)
    assert props["env"]["default"]["PAPYRUS_EPHEMERAL_DISK"] == "1"  # as on Fargate
    # The same template as production's, rendered by the same code.
    prd = json.loads((ROOT / "deployments/prd/ecs-pool.json").read_text())
    assert pool.base_job_template["job_configuration"] == prd["job_configuration"]
    assert sandbox.ops_image_uri.endswith("@" + sandbox_image.push_ops(
        sandbox.client("ecr"), []))  # the digest is this checkout's
    assert [w.name for w in workers] == [prefect_local.ECS_WORKER_NAME]


def test_deploy_on_the_ecs_pool_runs_in_its_own_ecs_task(stack, sandbox, ecs_deployments):
    """Started through the API as the UI does: Completed, inside the flow run's own ECS task
    (started by the real worker), the service on the new digest, the evidence in the bucket."""
    api = stack["api_url"]
    digest = sandbox_image.push_build(sandbox.client("ecr"), sandbox.settings.ecr_repository,
                                      "e2e-ecs")
    t0 = time.monotonic()
    run = start(stack, DEPLOY, image="e2e-ecs", timeout_seconds=120)
    done = wait_state(api, run.id, TERMINAL)
    seconds = time.monotonic() - t0
    assert done.state.type.value == "COMPLETED", (done.state.message, stack["state"])

    # The engine has reported Completed; its process exits right after, and the task stops.
    [task] = wait_until(lambda: [t for t in flow_run_tasks(sandbox, run.id)
                                 if t["lastStatus"] == "STOPPED"], 60, 0.2, "the task to stop")
    assert len(flow_run_tasks(sandbox, run.id)) == 1
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 0
    assert task["containers"][0]["name"] == "prefect"
    # The pool's template (deployments/*/ecs-pool.json) names the flow-run family.
    assert task["group"] == "family:papyrus-ops-flow-run", task["group"]
    assert "startedBy" not in task  # prefect-aws 0.7.12 sets none; it tags the task instead
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert tags["prefect.io/worker-name"] == prefect_local.ECS_WORKER_NAME
    assert task["overrides"]["taskRoleArn"] == sandbox.role_arn("flow-run")
    [override] = task["overrides"]["containerOverrides"]
    assert override["command"] == ["prefect", "flow-run", "execute"]
    assert task["containers"][0]["imageDigest"] == sandbox.ops_image_uri.split("@")[1]
    task_id = task["taskArn"].rsplit("/", 1)[1]
    # Its AWS identity came from the container credentials endpoint (the environment carries
    # no key): the flow-run role, assumed through STS by the sandbox for this task.
    from moto.ecs.models import ecs_backends

    local = ecs_backends[ACCOUNT][sandbox.settings.region].tasks[sandbox.settings.cluster][
        task["taskArn"]]
    assert local._credentials["RoleArn"] == sandbox.role_arn("flow-run")

    assert service_image(sandbox).endswith("@" + digest)
    markdown = evidence_markdown(stack, run.id)
    assert "Evidence — deploy: **PASS**" in markdown and digest in markdown
    assert f"flow run: `{run.id}`" in markdown
    uri, files = evidence_in_bucket(sandbox, markdown)
    manifest = json.loads(files["manifest.json"])
    assert str(run.id) in json.dumps(manifest)
    assert any(name.endswith("_running_image.log") and digest.encode() in body
               for name, body in files.items()), sorted(files)
    print(f"deploy on the ECS pool: {seconds:.1f}s; task {task_id}; evidence {uri}")


def test_nightly_archive_on_the_ecs_pool_completes(stack, sandbox, ecs_deployments):
    # At 20 requests/s, as the demo runs it: the sandbox enforces no AWS limit, and the
    # 2/s pacing is tests/cloudtrail's subject, not the pool's (the session's 3,000 events
    # at 2/s took 30 of this test's 41 s, on the e2e suite's critical path).
    run = start(stack, ARCHIVE, incremental=True, max_rps=20)
    done = wait_state(stack["api_url"], run.id, TERMINAL)
    assert done.state.type.value == "COMPLETED", done.state.message
    [task] = wait_until(lambda: [t for t in flow_run_tasks(sandbox, run.id)
                                 if t["lastStatus"] == "STOPPED"], 60, 0.2, "the task to stop")
    assert task["containers"][0]["exitCode"] == 0


def test_flow_run_task_stopped_mid_deploy_is_not_a_success(stack, sandbox, ecs_deployments):
    """StopTask on the flow run's task while it deploys: the run does not end Completed; the
    next deploy reports what the service really runs."""
    api = stack["api_url"]
    killed = sandbox_image.push_build(sandbox.client("ecr"), sandbox.settings.ecr_repository,
                                      "e2e-ecs-killed")
    ecs, s = sandbox.client("ecs"), sandbox.settings

    def primary() -> str:
        svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
        return next(d["id"] for d in svc["deployments"] if d["status"] == "PRIMARY")

    before = primary()
    run = start(stack, DEPLOY, image="e2e-ecs-killed", timeout_seconds=120)
    [task] = wait_until(lambda: flow_run_tasks(sandbox, run.id), 120, 0.5, "the flow-run task")
    # Mid-deploy: the run has started its ECS deployment (UpdateService) and waits for it.
    wait_until(lambda: primary() != before, RUN_TIMEOUT, 0.1, "the run's service deployment")
    ecs.stop_task(cluster=sandbox.settings.cluster, task=task["taskArn"],
                  reason="e2e: stopped mid-deploy")
    done = wait_state(api, run.id, TERMINAL)
    # SIGTERM reaches the engine, which reports the run Crashed (never Completed).
    assert done.state.type.value in {"CRASHED", "FAILED"}, done.state
    print(f"stopped mid-deploy: {done.state.type.value}: {done.state.message}")
    stopped = wait_until(lambda: [t for t in flow_run_tasks(sandbox, run.id)
                                  if t["lastStatus"] == "STOPPED"], 30, 0.5, "STOPPED")[0]
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "e2e: stopped mid-deploy"
    # Nothing lost with the task's disk: between SIGTERM and SIGKILL the run wrote its
    # evidence — interrupted, and what ECS showed then — to the bucket.
    markdown = evidence_markdown(stack, run.id)
    assert "Evidence — deploy: **FAIL**" in markdown, markdown
    _, killed_files = evidence_in_bucket(sandbox, markdown)
    context = json.loads(killed_files["manifest.json"])["context"]
    assert "interrupted before its verdict" in context["interrupted"], context
    assert context["ecs_at_interrupt"]["task_definition"], context

    # What really runs now: the killed run's deployment, which goes on in ECS without it.
    really = service_image(sandbox)
    assert really.endswith("@" + killed)
    digest = sandbox_image.push_build(sandbox.client("ecr"), sandbox.settings.ecr_repository,
                                      "e2e-ecs-after")
    after = start(stack, DEPLOY, image="e2e-ecs-after", timeout_seconds=120)
    done = wait_state(api, after.id, TERMINAL)
    assert done.state.type.value == "COMPLETED", done.state.message
    assert service_image(sandbox).endswith("@" + digest)
    # The next deploy's diff starts from what really ran, not from what the killed run asked.
    _, files = evidence_in_bucket(sandbox, evidence_markdown(stack, after.id))
    [diff] = [body.decode() for name, body in files.items()
              if name.endswith("_task_definition_diff.log")]
    assert really.split("@")[1] in diff, diff


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_a_deploy_from_the_ui_on_the_ecs_pool_runs_in_its_own_ecs_task(
        stack, sandbox, ecs_deployments, tmp_path):
    """What an operator does on production: Run → Custom run on the ECS pool's deploy
    deployment in the UI; the run Completes inside its own ECS task, started by the worker."""
    from tests.e2e.test_prefect_deployments import wait_terminal

    digest = sandbox_image.push_build(sandbox.client("ecr"), sandbox.settings.ecr_repository,
                                      "e2e-ecs-ui")
    run, _shots, external = custom_deploy_run(
        stack["ui_url"], stack["api_url"], tmp_path, deployment=DEPLOY.split("/")[1],
        pool=prefect_local.ECS_POOL, image="e2e-ecs-ui", digest=digest,
        run_name="e2e-ecs-ui-run", wait_terminal=wait_terminal, client=client)
    assert external == [], external
    [task] = wait_until(lambda: [t for t in flow_run_tasks(sandbox, run.id)
                                 if t["lastStatus"] == "STOPPED"], 60, 0.2, "the task to stop")
    assert task["containers"][0]["exitCode"] == 0
    assert task["overrides"]["taskRoleArn"] == sandbox.role_arn("flow-run")
    assert service_image(sandbox).endswith("@" + digest)
