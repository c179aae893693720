"""Approval between a deploy's plan and its change (tasks/approval.py), through the API.

A prd-like environment is the sandbox with ``[approval] required`` on (PAPYRUS_APPROVAL_REQUIRED,
read by deployments/local/config.toml). The run pauses after the diff on the session's Prefect
server, showing the pinned digest and the task definition diff (the `deploy-approval` artifact),
and is resumed as the UI's Resume form does. Each test pushes an image tag of its own, so its
plan checksum is its own.
"""

from __future__ import annotations

import pytest

from flows.deploy import deploy
from papyrus_ops.runner import run_flow
from tests.support.approval import Background, artifact, paused_run, resume
from tests.support.canaries import CANARY_PASSWORD, CANARY_TOKEN
from tests.support.sandbox_state import push_variant, revisions, service

pytestmark = pytest.mark.usefixtures("prefect_server", "main_schema")


@pytest.fixture(autouse=True)
def _quick_answers(monkeypatch):
    monkeypatch.setenv("PAPYRUS_APPROVAL_POLL_SECONDS", "0.5")


@pytest.fixture
def prd_like(monkeypatch):
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")


def _paused(sandbox, tag: str):
    digest = push_variant(sandbox, tag)
    before = (service(sandbox)["taskDefinition"], revisions(sandbox))
    bg = Background(run_flow, flow_fn=deploy, env="local", image=tag)
    run = paused_run(lambda p: p.get("image") == tag, background=bg)
    md = artifact(run.id, "deploy-approval")
    assert digest in md and "waiting for approval" in md and "Task definition diff" in md
    assert digest in md.split("Task definition diff", 1)[1]  # the diff shows the new image
    assert CANARY_PASSWORD not in md and CANARY_TOKEN not in md
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before  # nothing yet
    return bg, run, digest, before


def test_prd_like_deploy_pauses_after_the_plan_and_approving_deploys(sandbox, prd_like):
    bg, run, digest, _ = _paused(sandbox, "approve-ok")
    resume(run.id, approve=True, reason="diff reviewed")
    res = bg.result(timeout=300)
    assert res["verdict"] == "success", res
    assert res["data"]["approval"]["outcome"] == "approved"
    assert res["data"]["image_digest"] == digest
    running = res["data"]["verdict_detail"]["running_tasks"]
    assert running and all(t["image_digest"] == digest for t in running)


def test_rejecting_a_deploy_plan_changes_nothing(sandbox, prd_like):
    bg, run, _, before = _paused(sandbox, "approve-no")
    resume(run.id, approve=False, reason="wrong release")
    res = bg.result(timeout=300)
    assert res["verdict"] == "failed", res
    assert res["reason"] == "rejected: wrong release; nothing changed"
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before


def test_a_tag_moved_since_the_plan_is_refused_in_one_line(sandbox, prd_like):
    bg, run, digest, before = _paused(sandbox, "approve-moved")
    other = push_variant(sandbox, "approve-moved")  # the tag now names another build
    assert other != digest
    resume(run.id, approve=True, reason="looked fine")
    res = bg.result(timeout=300)
    assert res["verdict"] == "failed", res
    assert res["reason"].startswith("refused: deploy moved since the approved plan")
    assert "\n" not in res["reason"] and res["reason"].endswith("nothing changed")
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before


def test_a_recorded_deploy_needs_a_recorded_plan_of_the_same_checksum(sandbox):
    tag = "approve-recorded"
    push_variant(sandbox, tag)
    before = (service(sandbox)["taskDefinition"], revisions(sandbox))
    refused = run_flow(deploy, env="local", image=tag, approval="recorded")
    assert refused["verdict"] == "bad_input", refused
    assert "no recorded plan of this deploy" in refused["reason"]
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before

    planned = run_flow(deploy, env="local", image=tag, plan=True)
    assert planned["verdict"] == "success", planned
    assert planned["data"]["record"]["checksum"] == planned["data"]["plan_checksum"]
    done = run_flow(deploy, env="local", image=tag, approval="recorded")
    assert done["verdict"] == "success", done
    assert done["data"]["plan_checksum"] == planned["data"]["plan_checksum"]


def test_yes_is_refused_where_approval_is_required(sandbox, prd_like):
    before = (service(sandbox)["taskDefinition"], revisions(sandbox))
    res = run_flow(deploy, env="local", image="latest", approval="yes")
    assert res["verdict"] == "bad_input" and "--yes is not allowed" in res["reason"], res
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before


def test_cli_deploy_needs_a_recorded_plan_or_yes(sandbox):
    from tests.support.cli import run_cli

    tag = "approve-cli"
    push_variant(sandbox, tag)
    before = (service(sandbox)["taskDefinition"], revisions(sandbox))
    r = run_cli("deploy", "--env", "local", "--image", tag)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "no recorded plan of this deploy" in r.stderr and "Traceback" not in r.stderr
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before
    assert run_cli("deploy", "--env", "local", "--image", tag, "--plan").returncode == 0
    r = run_cli("deploy", "--env", "local", "--image", tag, "--json")
    assert r.returncode == 0, (r.stdout, r.stderr)
