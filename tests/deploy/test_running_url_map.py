"""The deploy's URL-map evidence comes from the new task itself (GET /runtime: its own URL map,
and the digest and task ARN from the ECS task metadata endpoint v4), and the check before the
rollout reads the pinned image's code, not the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from tasks.service_code import judge_running_url_map
from tests.support.canaries import CANARY_TOKEN
from tests.support.sandbox_state import push_service_copy, revisions, service, without_dbcheck

pytestmark = pytest.mark.usefixtures("prefect_server")


def evidence(result: dict, name: str) -> str:
    [path] = Path(result["evidence"]["folder"]).glob(f"*_{name}.log")
    return path.read_text()


def running_task_arns(sb) -> list[str]:
    ecs, s = sb.client("ecs"), sb.settings
    return ecs.list_tasks(cluster=s.cluster, serviceName=s.service)["taskArns"]


@pytest.fixture(scope="module")
def no_dbcheck_image(sandbox, tmp_path_factory):
    """An image whose code lacks /dbcheck (a copy of service/ without the blueprint)."""
    return push_service_copy(sandbox, "no-dbcheck", tmp_path_factory.mktemp("no-dbcheck"),
                             without_dbcheck)


def test_url_map_evidence_names_the_task_and_the_pinned_digest(sandbox, main_schema):
    result = run_flow(deploy, env="local", image="latest")
    assert result["verdict"] == "success", result
    digest = result["data"]["image_digest"]
    [arn] = running_task_arns(sandbox)
    after = evidence(result, "flask_url_map_after")
    assert f"task (ECS at this address): {arn}" in after
    assert f"task (its metadata endpoint): {arn}" in after
    assert f"image digest: {digest}" in after
    assert "'/dbcheck'" in after and after.rstrip().endswith("# verdict: PASS")
    assert result["data"]["url_map_after"]["tasks"] == [
        {"task_arn": arn, "image_digest": digest,
         "url_map": ["/", "/dbcheck", "/healthz", "/runtime"]}]
    assert f"{arn} digest={digest}" in evidence(result, "running_image")
    # Before the rollout: the pinned image's own code (its pushed build context).
    before = evidence(result, "flask_url_map_before")
    assert before.startswith(f"# source: the code of image {digest}")
    assert CANARY_TOKEN not in after + before


def test_an_image_without_dbcheck_fails_on_the_running_tasks_evidence_and_rolls_back(
        sandbox, main_schema, no_dbcheck_image):
    previous = service(sandbox)["taskDefinition"]
    # Past the gate on purpose: what the running task says must fail the deploy by itself.
    result = run_flow(deploy, env="local", image="no-dbcheck", skip_preflight=True)
    assert result["verdict"] == "failed", result
    assert "missing from its URL map: /dbcheck" in result["reason"], result["reason"]
    assert result["data"]["image_digest"] == no_dbcheck_image
    assert result["data"]["rollback"]["ok"] is True
    assert service(sandbox)["taskDefinition"] == previous
    after = evidence(result, "flask_url_map_after")
    [task] = result["data"]["url_map_after"]["tasks"]
    # The task that really ran the image's code named itself and its digest.
    assert task["image_digest"] == no_dbcheck_image and "/dbcheck" not in task["url_map"]
    assert f"task (its metadata endpoint): {task['task_arn']}" in after
    assert f"image digest: {no_dbcheck_image}" in after
    assert "# verdict: FAIL" in after and "/dbcheck" in after.split("# verdict")[1]
    # Nothing was written through the wrong code: /dbcheck was never called.
    assert "/dbcheck" not in evidence(result, "papyrus_psql_insert_app")


def test_the_gate_reads_the_images_code_not_the_checkout(sandbox, main_schema,
                                                          no_dbcheck_image):
    before = revisions(sandbox)
    result = run_flow(deploy, env="local", image="no-dbcheck")
    assert result["verdict"] == "failed" and "service.url_map" in result["reason"], result
    assert revisions(sandbox) == before  # refused before anything changed
    log = evidence(result, "flask_url_map_before")
    assert log.startswith(f"# source: the code of image {no_dbcheck_image}")
    assert "'/dbcheck'" not in log


# -- the judgement alone ------------------------------------------------------------------------
PINNED = "sha256:" + "1" * 64
ARN = "arn:aws:ecs:us-west-2:123456789012:task/papyrus-ecs-prd/abc"


def _report(**body):
    doc = {"url_map": ["/", "/dbcheck", "/healthz", "/runtime"], "image_digest": PINNED,
           "task_arn": ARN, "version": "1.0.0"} | body
    return {"url": "http://10.0.0.1:5000/runtime", "status": 200, "body": doc,
            "ecs_task_arn": ARN}


@pytest.mark.parametrize(("report", "problem"), [
    (_report(image_digest="sha256:" + "2" * 64), "not the pinned " + PINNED),
    (_report(image_digest=None, task_arn=None, metadata_error="ECS_CONTAINER_METADATA_URI_V4 "
             "not set (not an ECS task)"), "names task none (ECS_CONTAINER_METADATA_URI_V4"),
    (_report(task_arn=ARN.replace("abc", "other")), "names task " + ARN.replace("abc", "other")),
    (_report(url_map=["/", "/healthz", "/runtime"]), "missing from its URL map: /dbcheck"),
    ({"url": "http://10.0.0.1:5000/runtime", "status": 404, "body": {"error": "Not Found"},
      "ecs_task_arn": ARN}, "/runtime answered 404"),
], ids=["other-digest", "no-metadata", "other-task", "no-dbcheck", "old-code-404"])
def test_judgement_fails_on_what_was_not_meant_to_run(report, problem):
    check = judge_running_url_map([report], PINNED)
    assert check["verdict"] == "fail" and problem in check["detail"], check["detail"]
    assert problem in check["evidence"]["flask_url_map_after"]


def test_judgement_passes_and_url_mode_takes_the_tasks_word():
    assert judge_running_url_map([_report()], PINNED)["verdict"] == "pass"
    behind_lb = _report() | {"ecs_task_arn": None}
    assert judge_running_url_map([behind_lb], PINNED)["verdict"] == "pass"
    assert judge_running_url_map([], PINNED)["verdict"] == "fail"
