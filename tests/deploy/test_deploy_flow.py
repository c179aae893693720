"""The deploy flow on the sandbox: real moto over HTTP, real PostgreSQL, real gunicorn tasks."""

from __future__ import annotations

import json
import threading

import psycopg2
import pytest

from artifacts import verify_manifest
from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from tests.support.canaries import CANARY_PASSWORD, CANARY_TOKEN
from tests.support.cli import run_cli
from tests.support.sandbox_state import push_variant, revisions, service

pytestmark = pytest.mark.usefixtures("prefect_server")

NAMED_FILES = ("task_definition_diff.log", "running_image.log", "papyrus_psql_insert_app.log",
               "papyrus_psql_insert_cli.log", "rds_sg_inbound_after.json",
               "flask_url_map_after.log")


def db_rows(sb, prefix: str) -> int:
    sql = f"SELECT count(*) FROM skus WHERE sku LIKE '{prefix}%'"  # noqa: S608 - ours
    return int(sb.pg.psql_admin(sql,
                                dbname="papyrus"))


@pytest.fixture(scope="module")
def schema(sandbox):
    from flows.schema_init import schema_init

    result = run_flow(schema_init, env="local", apply=True)
    assert result["verdict"] == "success", result


def test_happy_path(sandbox, schema):
    before_app, before_cli = db_rows(sandbox, "SKU-APP-"), db_rows(sandbox, "SKU-CLI-")
    result = run_flow(deploy, env="local", image="latest")
    assert result["verdict"] == "success", result
    digest = result["data"]["image_digest"]
    assert digest == sandbox.seeded.image_uri.split("@")[1]
    svc = service(sandbox)
    assert svc["taskDefinition"] == result["data"]["task_definition"]
    assert len(svc["deployments"]) == 1 and svc["runningCount"] == 1
    running = result["data"]["verdict_detail"]["running_tasks"]
    assert all(t["image_digest"] == digest for t in running)
    assert db_rows(sandbox, "SKU-APP-") == before_app + 1
    assert db_rows(sandbox, "SKU-CLI-") == before_cli + 1
    assert result["data"]["probes"]["dbcheck"]["result"] == "INSERT 0 1"
    assert result["data"]["kept_from_running"] == []  # our own revision: nothing unowned
    folder = result["evidence"]["folder"]
    from pathlib import Path

    names = [p.name.split("_", 1)[1] for p in Path(folder).iterdir() if "_" in p.name]
    for wanted in NAMED_FILES:
        assert wanted in names, (wanted, names)
    assert verify_manifest(Path(folder)) == []
    assert result["evidence"]["s3_uri"] and not result["evidence"]["upload_pending"]
    # Encrypted with the bucket's customer key, named in the upload (the bucket policy
    # refuses any other): the check after upload compared the stored key id too.
    bucket, _, prefix = result["evidence"]["s3_uri"].removeprefix("s3://").partition("/")
    s3 = sandbox.client("s3")
    key = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == sandbox.evidence_kms_key == sandbox.settings.evidence_kms_key
    for p in Path(folder).iterdir():
        text = p.read_bytes()
        assert CANARY_PASSWORD.encode() not in text and CANARY_TOKEN.encode() not in text


def test_same_digest_again_registers_no_new_revision(sandbox, schema):
    before = revisions(sandbox)
    result = run_flow(deploy, env="local", image="latest")
    assert result["verdict"] == "success", result
    assert revisions(sandbox) == before


def test_plan_changes_nothing(sandbox, schema):
    push_variant(sandbox, "plan-only")
    sandbox.faults.reset_calls()
    result = run_flow(deploy, env="local", image="plan-only", plan=True)
    assert result["verdict"] == "success" and "+" in result["data"]["diff"]
    mutating = [c for c in sandbox.faults.served(mutating=True) if c.service != "s3"]
    assert mutating == []


def test_throttled_ecs_and_ecr_still_deploy_exactly_one_revision(sandbox, schema):
    digest = push_variant(sandbox, "throttled")
    before = revisions(sandbox)
    sandbox.faults.throttle("ecs", "*", times=None, every=3)
    sandbox.faults.throttle("ecr", "*", times=None, every=2)
    try:
        result = run_flow(deploy, env="local", image="throttled")
    finally:
        sandbox.faults.clear()
    assert result["verdict"] == "success", result
    assert result["data"]["image_digest"] == digest
    assert len(revisions(sandbox)) == len(before) + 1


def test_crash_path_exit_3_rolls_back_and_old_service_answers(sandbox, schema):
    sm, s = sandbox.client("secretsmanager"), sandbox.settings
    good = sm.get_secret_value(SecretId=s.db_secret_id)["SecretString"]
    previous = service(sandbox)["taskDefinition"]
    push_variant(sandbox, "crash")
    sm.put_secret_value(SecretId=s.db_secret_id,
                        SecretString=json.dumps(json.loads(good) | {"dbname": "papyrus_drift"}))
    try:
        # The gate would refuse this drift; skipping it shows what the verdict does on its own.
        result = run_flow(deploy, env="local", image="crash", skip_preflight=True,
                                timeout_seconds=90)
    finally:
        sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good)
    assert result["verdict"] == "failed"
    assert "exit code(s) 3" in result["reason"], result["reason"]
    svc = service(sandbox)
    assert svc["taskDefinition"] == previous
    assert result["data"]["rollback"]["ok"] is True
    # The old task still answers.
    import httpx

    from tasks.probes import probe_targets
    base = probe_targets(sandbox.client("ecs"), s, previous)[0]
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert result["evidence"]["s3_uri"]


def test_stable_but_rolled_back_is_a_failed_verdict(sandbox, schema):
    from tasks.rollout import wait_for_verdict

    svc = service(sandbox)
    current = svc["deployments"][0]
    other = "arn:aws:ecs:us-west-2:123456789012:task-definition/papyrus-task:999"
    verdict = wait_for_verdict.fn(sandbox.client("ecs"), sandbox.settings, current["id"],
                                  other, None, timeout=5, poll=0.2)
    assert verdict["ok"] is False and "rolled back" in verdict["reason"]


@pytest.mark.parametrize(("args", "message"), [
    (["--image", "not a ref"], "malformed image reference"),
    (["--image", "papyrus@sha256:1234"], "malformed image reference"),
    (["--image", "no-such-tag"], "not found in ECR"),
    (["--image", "papyrus:no-such-tag"], "not found in ECR"),
    (["--image", "other-repo:latest"], "not this environment's"),
    (["--image", "latest", "--env", "nowhere"], "unknown environment"),
])
def test_bad_input_one_line_exit_2_no_mutation(sandbox, args, message):
    sandbox.faults.reset_calls()
    before = revisions(sandbox)
    r = run_cli("deploy", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    # Exactly one line on stderr, and no traceback: it is answered before any flow runs.
    err_lines = r.stderr.splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("papyrus-ops: error: "), r.stderr
    assert message in err_lines[0], r.stderr
    assert sandbox.faults.served(mutating=True) == []
    assert revisions(sandbox) == before


def test_two_deploys_of_the_same_service_never_interleave(sandbox, schema):
    push_variant(sandbox, "concurrent-a")
    push_variant(sandbox, "concurrent-b")
    results: dict[str, dict] = {}

    def run(tag: str) -> None:
        results[tag] = run_flow(deploy, env="local", image=tag, skip_preflight=True)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("concurrent-a", "concurrent-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    a, b = results["concurrent-a"], results["concurrent-b"]
    assert a["verdict"] == b["verdict"] == "success", (a, b)
    first, second = sorted((a, b), key=lambda r: r["data"]["lock_acquired_at"])
    assert first["data"]["lock_released_at"] <= second["data"]["lock_acquired_at"]


def test_canary_in_no_captured_output(sandbox, schema, capfd):
    run_flow(deploy, env="local", image="latest", plan=True)
    out, err = capfd.readouterr()
    assert CANARY_PASSWORD not in out + err and CANARY_TOKEN not in out + err


def test_rows_really_over_ssl(sandbox, schema):
    conn = psycopg2.connect(**sandbox.pg.connect_kwargs())
    with conn, conn.cursor() as cur:
        cur.execute("SELECT source, count(*) FROM skus GROUP BY source")
        counts = dict(cur.fetchall())
    assert counts.get("app", 0) >= 1 and counts.get("cli", 0) >= 1


# -- the environment folder is the whole truth: render, diff, rollback -------------------------
def test_render_prints_what_a_deploy_would_send_and_changes_nothing(sandbox):
    sandbox.faults.reset_calls()
    r = run_cli("render", "--env", "local", "--image", "latest")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    [app] = [c for c in doc["taskDefinition"]["containerDefinitions"] if c["name"] == "app"]
    assert app["image"].endswith(sandbox.seeded.image_uri.split("@")[1])
    declared = json.loads((sandbox.settings.folder / "service-definition.json").read_text())
    assert doc["service"]["deploymentConfiguration"] == declared["deploymentConfiguration"]
    assert "launchType" not in doc["service"]  # create-only: never sent on update
    assert sandbox.faults.served(mutating=True) == []


def test_a_changed_deployment_configuration_in_a_copy_of_the_env_folder_is_what_deploy_sends(
        sandbox, schema, tmp_path, monkeypatch):
    import shutil

    import ground.settings
    from papyrus_ops.runner import run_flow

    copy = tmp_path / "deployments"
    shutil.copytree(sandbox.settings.folder.parent, copy)
    path = copy / "local" / "service-definition.json"
    doc = json.loads(path.read_text())
    doc["deploymentConfiguration"].update(maximumPercent=150, minimumHealthyPercent=50)
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(ground.settings, "DEPLOYMENTS", copy)
    planned = run_flow(deploy, env="local", image="latest", plan=True)
    assert planned["verdict"] == "success", planned
    assert '"maximumPercent": 150' in planned["data"]["service_diff"]
    try:
        done = run_flow(deploy, env="local", image="latest", skip_preflight=True)
        assert done["verdict"] == "success", done
        conf = service(sandbox)["deploymentConfiguration"]
        assert (conf["maximumPercent"], conf["minimumHealthyPercent"]) == (150, 50), conf
    finally:
        monkeypatch.undo()
        back = run_flow(deploy, env="local", image="latest", skip_preflight=True)
        assert back["verdict"] == "success", back
    conf = service(sandbox)["deploymentConfiguration"]
    assert (conf["maximumPercent"], conf["minimumHealthyPercent"]) == (200, 100), conf


def test_diff_shows_what_a_new_image_changes_and_nothing_else(sandbox, schema):
    digest = push_variant(sandbox, "diff-me")
    sandbox.faults.reset_calls()
    r = run_cli("diff", "--env", "local", "--image", "diff-me", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "success" and out["data"]["changed"] is True, out
    assert digest in out["data"]["task_definition_diff"]
    assert out["data"]["service_diff"] == "(no change)", out["data"]["service_diff"]
    same = json.loads(run_cli("diff", "--env", "local", "--json").stdout)
    assert same["data"]["task_definition_diff"] == "(no change)", same
    assert sandbox.faults.served(mutating=True) == []


def test_rollback_returns_to_the_previous_primary_with_a_true_verdict(sandbox, schema):
    from flows.rollback import rollback
    from papyrus_ops.runner import run_flow

    push_variant(sandbox, "rollback-me")
    before = service(sandbox)["taskDefinition"]
    deployed = run_flow(deploy, env="local", image="rollback-me", skip_preflight=True)
    assert deployed["verdict"] == "success", deployed
    assert service(sandbox)["taskDefinition"] != before
    back = run_flow(rollback, env="local")
    assert back["verdict"] == "success", back
    assert back["data"]["task_definition"] == before
    assert back["data"]["from_task_definition"] == deployed["data"]["task_definition"]
    assert service(sandbox)["taskDefinition"] == before
    assert back["data"]["verdict_detail"]["ok"] and back["data"]["healthz"] == 200
    from pathlib import Path

    assert verify_manifest(Path(back["evidence"]["folder"])) == []
    # Now the last recorded deploy is the rollback: a second one without --to would return to
    # the variant, which is what "previous PRIMARY" means.
    again = run_flow(rollback, env="local", to=deployed["data"]["task_definition"])
    assert again["verdict"] == "success", again
    assert run_flow(rollback, env="local", to=before)["verdict"] == "success"


@pytest.mark.parametrize(("to", "message"), [
    ("99999", "no such task definition"),
    ("other-family:1", "not a revision of this environment's family"),
])
def test_rollback_to_an_unknown_revision_is_bad_input_and_changes_nothing(sandbox, to, message):
    sandbox.faults.reset_calls()
    r = run_cli("rollback", "--env", "local", "--to", to)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert [c for c in sandbox.faults.served(mutating=True)] == []


def test_terraform_owned_settings_the_env_folder_does_not_declare_survive_a_deploy(
        sandbox, schema):
    """Terraform made the service and its task definition with more than the env folder says:
    ARM64, an extra environment variable, a sidecar, deployment alarms and a bake time. The
    deploy keeps every one of them (and the plan lists them) instead of dropping them."""
    from papyrus_ops.runner import run_flow

    ecs, s = sandbox.client("ecs"), sandbox.settings
    svc = service(sandbox)
    declared = json.loads((s.folder / "service-definition.json").read_text())
    td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
    keys = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "cpu", "memory",
            "requiresCompatibilities")
    [app] = [c for c in td["containerDefinitions"] if c["name"] == s.container]
    app = {**app, "environment": [*app.get("environment", []),
                                  {"name": "FEATURE_FROM_TERRAFORM", "value": "on"}]}
    sidecar = {"name": "log-router", "image": app["image"], "essential": False,
               "memory": 64}
    terraform_td = ecs.register_task_definition(
        **{k: td[k] for k in keys if k in td}, containerDefinitions=[app, sidecar],
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
    )["taskDefinition"]["taskDefinitionArn"]
    conf = {**declared["deploymentConfiguration"], "bakeTimeInMinutes": 3,
            "alarms": {"alarmNames": ["papyrus-5xx"], "enable": True, "rollback": True}}
    ecs.update_service(cluster=s.cluster, service=s.service, taskDefinition=terraform_td,
                       deploymentConfiguration=conf)
    try:
        wait = ecs.get_waiter("services_stable")
        wait.wait(cluster=s.cluster, services=[s.service],
                  WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        push_variant(sandbox, "terraformed")
        planned = run_flow(deploy, env="local", image="terraformed", plan=True)
        kept = set(planned["data"]["kept_from_running"])
        assert {"runtimePlatform", "container log-router",
                f"{s.container}.environment FEATURE_FROM_TERRAFORM",
                "deploymentConfiguration.alarms",
                "deploymentConfiguration.bakeTimeInMinutes"} <= kept, kept
        done = run_flow(deploy, env="local", image="terraformed", skip_preflight=True)
        assert done["verdict"] == "success", done
        new = ecs.describe_task_definition(
            taskDefinition=done["data"]["task_definition"])["taskDefinition"]
        assert new["runtimePlatform"]["cpuArchitecture"] == "ARM64"
        assert [c["name"] for c in new["containerDefinitions"]] == [s.container, "log-router"]
        env = {e["name"]: e["value"] for e in new["containerDefinitions"][0]["environment"]}
        assert env["FEATURE_FROM_TERRAFORM"] == "on" and env["PGSSLMODE"] == "require"
        now = service(sandbox)["deploymentConfiguration"]
        assert now["bakeTimeInMinutes"] == 3 and now["alarms"]["alarmNames"] == ["papyrus-5xx"]
        assert now["maximumPercent"] == declared["deploymentConfiguration"]["maximumPercent"]
    finally:
        # Back to what the env folder alone describes, for the tests after this one.
        ecs.update_service(cluster=s.cluster, service=s.service,
                           taskDefinition=svc["taskDefinition"],
                           deploymentConfiguration=declared["deploymentConfiguration"])
        ecs.get_waiter("services_stable").wait(
            cluster=s.cluster, services=[s.service], WaiterConfig={"Delay": 1,
                                                                   "MaxAttempts": 120})
