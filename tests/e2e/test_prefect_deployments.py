"""The Prefect paths end to end, with nothing in-process that production would not have.

A real `prefect server start` (which serves the UI) and a real `prefect worker start` for the
`papyrus-local` process pool, both started by `papyrus-ops prefect up` with the sandbox's
variables in the worker's environment; deployments registered by `papyrus-ops prefect
register` (`prefect deploy --all` on prefect.yaml). Flow runs then happen in processes the
worker starts, which reach the in-process sandbox (moto over HTTP, PostgreSQL with SSL, the
local ECS runtime running gunicorn) only through AWS_ENDPOINT_URL.

What is proved: the five deployments and their settings are registered; the nightly
archive has its next runs scheduled at 02:30 UTC; a deploy run created through the API (as
the UI does) and one started by `prefect deployment run --watch` both complete, one at a
time (the second waits in AwaitingConcurrencySlot, it is not dropped), with their evidence
artifacts; a custom run started in the UI form in headless Chromium completes and shows its
evidence; the crash path makes `prefect deployment run --watch` exit non-zero and the
service rolls back; `papyrus-ops prefect down` leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from papyrus_ops import prefect_local
from sandbox import image as sandbox_image
from tests.support.canaries import CANARY_PASSWORD, CANARY_TOKEN
from tests.support.cli import cli_env, run_cli
from tests.support.ui import CHROMIUM, custom_deploy_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
RUN_TIMEOUT = 300


# -- helpers ---------------------------------------------------------------------------------
def prefect_env(stack: dict) -> dict[str, str]:
    """What a person's shell needs to talk to the local server with the `prefect` CLI."""
    return prefect_local.base_env(PREFECT_API_URL=stack["api_url"],
                                  PREFECT_HOME=str(stack["state"] / "cli-home"),
                                  COLUMNS="200")


def prefect_cli(stack: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([prefect_local._prefect_exe(), *args], cwd=ROOT,
                            env=prefect_env(stack), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@contextlib.contextmanager
def client(api_url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


def wait_terminal(api_url: str, run_id, timeout: float = RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    with client(api_url) as c:
        while True:
            run = c.read_flow_run(run_id)
            if run.state and run.state.type.value in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {run.name} still {run.state_name} after "
                                     f"{timeout:.0f}s")
            time.sleep(1)


def artifacts_of(api_url: str, run_id, key: str | None = None) -> list:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    with client(api_url) as c:
        return c.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])) if key else None)


def logs_of(api_url: str, run_id) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with client(api_url) as c:
        return [log.message for log in
                c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                            limit=200)]


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        assert CANARY_PASSWORD not in text and CANARY_TOKEN not in text


def push_variant(sb, tag: str) -> str:
    """A new build of the same code: another manifest, so another digest, under `tag`."""
    return sandbox_image.push_build(sb.client("ecr"), sb.settings.ecr_repository, tag)


def service(sb) -> dict:
    return sb.client("ecs").describe_services(cluster=sb.settings.cluster,
                                              services=[sb.settings.service])["services"][0]


def tree_pids(info: dict) -> list[tuple[int, int]]:
    procs = [(int(info[n]["pid"]), info[n]["start"]) for n in prefect_local.PROCESSES
             if info.get(n, {}).get("pid")]
    return procs + [d for pid, _ in procs for d in prefect_local.descendants(pid)]


# -- tests (the `stack` fixture: one per session, tests/e2e/conftest.py) --------------------------
def test_deployments_registered_from_prefect_yaml(stack):
    by_name = {d["name"]: d for d in stack["registered"]["deployments"]}
    assert set(by_name) >= {"deploy/deploy-local", "cloudtrail_archive/cloudtrail-archive-local",
                            "preflight/preflight-local", "schema_init/schema-init-local",
                            "monitoring/monitoring-local"}
    assert all(d["work_pool"] == "papyrus-local" for d in by_name.values())
    assert not [n for n in by_name if n.endswith("-prd")], by_name  # `-n '*/*-local'` only
    with client(stack["api_url"]) as c:
        dep = c.read_deployment_by_name("deploy/deploy-local")
        pool = c.read_work_pool("papyrus-local")
    assert pool.type == "process"
    # One deploy at a time; the rest wait their turn.
    assert dep.global_concurrency_limit.limit == 1
    assert dep.concurrency_options.collision_strategy.value == "ENQUEUE"
    # The UI form: defaults from prefect.yaml, descriptions from the flow's docstring.
    assert "image" not in dep.parameters and dep.parameters["env"] == "local"
    assert "image" in dep.parameter_openapi_schema["required"]  # no default image to ship
    assert dep.parameter_openapi_schema["properties"]["env"]["enum"] == ["local", "prd"]
    props = dep.parameter_openapi_schema["properties"]
    assert "pinned to its digest" in props["image"]["description"]
    assert all(props[p].get("description") for p in props), props
    # The pull step keeps its placeholder; each worker resolves it from its own environment.
    assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                               {"directory": "{{ $PAPYRUS_OPS_HOME }}"}}]


def test_nightly_cloudtrail_archive_is_scheduled(stack):
    from datetime import UTC, datetime, timedelta

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with client(stack["api_url"]) as c:
        dep = c.read_deployment_by_name("cloudtrail_archive/cloudtrail-archive-local")
        deadline, runs = time.monotonic() + 60, []
        while not runs and time.monotonic() < deadline:  # the scheduler loops every 5 s
            runs = c.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=3)
            time.sleep(0 if runs else 1)
    [schedule] = dep.schedules
    assert schedule.active and schedule.schedule.cron == "30 2 * * *"
    assert schedule.schedule.timezone == "UTC"
    assert runs, "no scheduled run for the nightly archive"
    now = datetime.now(UTC)
    first = runs[0].expected_start_time.astimezone(UTC)
    assert now < first <= now + timedelta(days=1)
    assert (first.hour, first.minute, first.second) == (2, 30, 0)
    assert runs[0].parameters == {"env": "local", "incremental": True}
    if len(runs) > 1:
        assert runs[1].expected_start_time - runs[0].expected_start_time == timedelta(days=1)


def test_deploy_via_api_and_cli_watch_run_one_at_a_time(stack, sandbox):
    """The UI's call (create a run from the deployment, with parameters) and `prefect
    deployment run --watch`, at once: both complete, never overlapping."""
    api = stack["api_url"]
    digest = push_variant(sandbox, "e2e-api")
    watch = prefect_cli(stack, "deployment", "run", "deploy/deploy-local", "--watch",
                        "--watch-timeout", str(RUN_TIMEOUT), "--flow-run-name", "e2e-cli-watch",
                        "--param", "image=latest")
    try:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        with client(api) as c:
            dep = c.read_deployment_by_name("deploy/deploy-local")
            # The CLI's run exists (and has not started: the worker needs seconds for that)
            # before the API's is created, so the two really compete for the one slot.
            deadline = time.monotonic() + 120
            while not c.read_flow_runs(flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=["e2e-cli-watch"]))):
                assert time.monotonic() < deadline and watch.poll() is None, "no CLI run"
                time.sleep(0.3)
            # No name, as the UI's quick run: the server's generated one is replaced by what
            # the run does; the CLI's hand-given name is kept.
            run = c.create_flow_run_from_deployment(
                dep.id, parameters={"image": "e2e-api", "timeout_seconds": 120})
        api_run = wait_terminal(api, run.id)
        output, _ = watch.communicate(timeout=RUN_TIMEOUT)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, output
    assert "Flow run finished successfully in 'Completed'" in output, output
    assert api_run.state.type.value == "COMPLETED", api_run.state.message
    assert api_run.parameters["image"] == "e2e-api"
    assert api_run.name == "deploy local e2e-api", api_run.name

    # Its evidence, read back through the API.
    [summary, *_] = artifacts_of(api, run.id, "deploy-evidence")
    assert summary.type == "markdown"
    assert "Evidence — deploy: **PASS**" in summary.data
    assert digest in summary.data and "requested_image | `e2e-api`" in summary.data
    assert "s3://papyrus-evidence-prd/deploy/" in summary.data
    keys = {a.key for a in artifacts_of(api, run.id)}
    assert {"deploy-evidence", "deploy-evidence-checks", "deploy-evidence-location"} <= keys
    assert_no_canary(*(str(a.data) for a in artifacts_of(api, run.id)),
                     *logs_of(api, run.id), output)

    # One at a time: the later one waited for a slot (it was not dropped) and the two
    # running intervals do not overlap.
    with client(api) as c:
        [cli_run] = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=["e2e-cli-watch"])))
        histories = {r.id: [s.name for s in c.read_flow_run_states(r.id)]
                     for r in (api_run, cli_run)}
    first, second = sorted((api_run, cli_run), key=lambda r: r.start_time)
    assert first.end_time <= second.start_time, (first.end_time, second.start_time)
    assert "AwaitingConcurrencySlot" in histories[second.id], histories


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_ui_custom_run_completes_with_its_evidence(stack, sandbox, tmp_path):
    """Headless Chromium on the local UI: open the deployment, Run > Custom run, fill the
    form, submit, follow the run to Completed, open its evidence artifact."""
    digest = push_variant(sandbox, "e2e-ui")
    run, shots, external = custom_deploy_run(
        stack["ui_url"], stack["api_url"], tmp_path, deployment="deploy-local",
        pool="papyrus-local", image="e2e-ui", digest=digest, run_name="e2e-ui-run",
        wait_terminal=wait_terminal, client=client)
    assert external == [], f"the UI tried to leave loopback: {external}"
    # The service now runs the image the form asked for, pinned by digest.
    ecs = sandbox.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=service(sandbox)["taskDefinition"])
    assert td["taskDefinition"]["containerDefinitions"][0]["image"].endswith("@" + digest)
    if os.environ.get("PAPYRUS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for path in shots:
            shutil.copy(path, SCREENSHOTS / f"prefect-ui-{path.name}")
    print("screenshots:", *map(str, shots), sep="\n  ")


def test_cli_watch_crash_path_exits_nonzero_and_rolls_back(stack, sandbox):
    """A drifted DB secret and a new digest, the gate skipped: the tasks exit 3, the
    circuit breaker fails the rollout, the flow rolls back and ends Failed; `--watch` says so
    with a non-zero exit."""
    api = stack["api_url"]
    sm, s = sandbox.client("secretsmanager"), sandbox.settings
    good = sm.get_secret_value(SecretId=s.db_secret_id)["SecretString"]
    previous = service(sandbox)["taskDefinition"]
    push_variant(sandbox, "e2e-crash")
    sm.put_secret_value(SecretId=s.db_secret_id,
                        SecretString=json.dumps(json.loads(good) | {"dbname": "papyrus_drift"}))
    try:
        watch = prefect_cli(stack, "deployment", "run", "deploy/deploy-local", "--watch",
                            "--watch-timeout", str(RUN_TIMEOUT),
                            "--param", "image=e2e-crash", "--param", "skip_preflight=true",
                            "--param", "timeout_seconds=90", "--flow-run-name", "e2e-crash")
        output, _ = watch.communicate(timeout=RUN_TIMEOUT + 60)
    finally:
        sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good)
    assert watch.returncode != 0, output
    assert "Flow run finished in state 'Failed'" in output, output
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", output).group(1)
    run = wait_terminal(api, run_id, timeout=10)
    assert run.state.type.value == "FAILED"
    assert "exit code(s) 3" in (run.state.message or ""), run.state.message
    [summary, *_] = artifacts_of(api, run_id, "deploy-evidence")
    assert "Evidence — deploy: **FAIL**" in summary.data
    assert_no_canary(summary.data, *logs_of(api, run_id), output)
    # Rolled back: the service runs what it ran before, and it still answers.
    assert service(sandbox)["taskDefinition"] == previous
    from tasks.probes import probe_targets

    base = probe_targets(sandbox.client("ecs"), s, previous)[0]
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


FAKE_ACCOUNT = {"account_id": "123456789012", "vpc_id": "vpc-0123456789abcdef0",
                "subnet_ids": ["subnet-0aaa", "subnet-0bbb"],
                "task_security_group_id": "sg-0task",
                "ops_image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/papyrus-ops@sha256:"
                             + "ab" * 32}


def test_prd_deployments_register_by_name_on_the_ecs_pool_without_aws(stack):
    """`papyrus-ops prefect register --env prd` is `prefect deploy -n '*/*-prd'`: every prd
    deployment, on the ECS pool, with the literal pull step and the git commit as version,
    and no AWS anywhere (the pool's template is rendered from given values; the deployments
    carry no account ids). Refused, saying how to fix it, while the pool is missing."""
    from prefect_aws.workers.ecs_worker import ECSWorker

    from ground.settings import load_env
    from papyrus_ops.prefect_local.ecs_pool import ECS_POOL, apply_ecs_pool
    from tasks.ecs_pool import render_pool_template

    api, state = stack["api_url"], stack["state"]
    env = cli_env(AWS_ENDPOINT_URL="http://127.0.0.1:9")  # nothing listens there: no AWS
    missing = run_cli("prefect", "register", "--env", "prd", "--api-url", api,
                      "--state-dir", state, env=env)
    assert missing.returncode == 1 and "papyrus-ops prefect pool --env prd" in missing.stderr, \
        missing.stdout + missing.stderr

    settings = load_env("prd")
    template = render_pool_template(settings, FAKE_ACCOUNT | {
        "region": settings.region, "cluster": settings.cluster,
        "flow_run_role": "papyrus-ops-flow-run", "flow_run_execution_role": "papyrus-ops-execution",
        "flow_run_log_group": "/ecs/papyrus-ops"})
    # prefect-aws's own job configuration, only the variables' defaults are Papyrus's.
    assert template["job_configuration"] == \
        ECSWorker.get_default_base_job_template()["job_configuration"]
    assert apply_ecs_pool(api, template) == "created"
    assert apply_ecs_pool(api, template) == "unchanged"

    r = run_cli("prefect", "register", "--env", "prd", "--api-url", api, "--state-dir", state,
                "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    names = {d["name"] for d in json.loads(r.stdout)["deployments"]}
    prd = {"deploy/deploy-prd", "cloudtrail_archive/cloudtrail-archive-prd",
           "preflight/preflight-prd", "schema_init/schema-init-prd", "monitoring/monitoring-prd"}
    assert prd <= names, names
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    with client(api) as c:
        deps = {n: c.read_deployment_by_name(n) for n in prd}
        pool = c.read_work_pool(ECS_POOL)
    for name, dep in deps.items():
        assert dep.work_pool_name == ECS_POOL and dep.parameters["env"] == "prd", name
        assert dep.job_variables == {}, name  # the account's values are the pool's
        assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                   {"directory": "/opt/papyrus-ops"}}], name
        # `-dirty` when the work tree had changes at registration.
        assert dep.version in (commit, f"{commit}-dirty"), (name, dep.version)
    defaults = {k: v.get("default") for k, v in
                pool.base_job_template["variables"]["properties"].items()}
    assert defaults["image"] == FAKE_ACCOUNT["ops_image"]
    assert defaults["cluster"] == "papyrus-ecs-prd" and defaults["launch_type"] == "FARGATE"
    assert defaults["task_role_arn"] == "arn:aws:iam::123456789012:role/papyrus-ops-flow-run"
    assert defaults["network_configuration"] == {
        "subnets": ["subnet-0aaa", "subnet-0bbb"], "securityGroups": ["sg-0task"],
        "assignPublicIp": "DISABLED"}
    assert deps["deploy/deploy-prd"].global_concurrency_limit.limit == 1
    assert deps["cloudtrail_archive/cloudtrail-archive-prd"].schedules[0].schedule.cron == \
        "30 2 * * *"
    # The local ones are still the sandbox's.
    with client(api) as c:
        assert c.read_deployment_by_name("deploy/deploy-local").work_pool_name == "papyrus-local"


def test_down_leaves_nothing_behind(stack):
    info = prefect_local.read_state(stack["state"])
    assert info["db"] == "postgres"
    assert all(info[n]["running"] for n in ("server", "worker", "postgres")), info
    pids = tree_pids(info)
    assert len(pids) > 3  # PostgreSQL's own processes are in the tree too
    r = run_cli("prefect", "down", "--state-dir", stack["state"])
    assert r.returncode == 0 and "processes stopped" in r.stdout, r.stdout + r.stderr
    alive = [p for p, st in pids if prefect_local.is_same_process(p, st)]
    assert alive == [], alive
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{stack['api_url']}/health", timeout=3)
    for port in (info["port"], info["postgres"]["port"]):
        assert not prefect_local._port_in_use(port), port
    assert not prefect_local.state_file(stack["state"]).exists()
    r = run_cli("prefect", "status", "--state-dir", stack["state"])
    assert r.returncode == 1 and "not running" in r.stdout
