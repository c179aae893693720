"""Approval between a repair's plan and its changes (tasks/approval.py), through the API: a
prd-like environment (the sandbox with PAPYRUS_APPROVAL_REQUIRED=true) pauses the apply after
its plan, showing the planned changes (the `repair-approval` artifact); approving makes them,
rejecting changes nothing, and a drift that changed meanwhile makes the repair refuse."""

from __future__ import annotations

import pytest

from flows.repair import repair
from papyrus_ops.runner import run_flow
from tests.support.approval import Background, artifact, paused_run, resume
from tests.support.cli import error_lines, invoke

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def prd_like(monkeypatch):
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")
    monkeypatch.setenv("PAPYRUS_APPROVAL_POLL_SECONDS", "0.5")


def _paused(what: str, summary: str):
    bg = Background(run_flow, flow_fn=repair, env="local", what=what, apply=True)
    run = paused_run(lambda p: p.get("what") == what and p.get("apply") is True, background=bg)
    md = artifact(run.id, "repair-approval")
    assert "waiting for approval" in md and summary in md, md
    return bg, run


def test_prd_like_repair_pauses_after_the_plan_and_approving_applies(sandbox, drift, prd_like):
    drift.exec_off()
    bg, run = _paused("exec", "enableExecuteCommand=true")
    assert not drift.exec_enabled()  # paused: nothing changed yet
    resume(run.id, approve=True, reason="exec is needed for the runbook")
    res = bg.result()
    assert res["verdict"] == "success", res
    assert res["data"]["approval"]["outcome"] == "approved" and drift.exec_enabled()


def test_rejecting_a_repair_changes_nothing(sandbox, drift, prd_like):
    drift.exec_off()
    bg, run = _paused("exec", "enableExecuteCommand=true")
    resume(run.id, approve=False, reason="incident review first")
    res = bg.result()
    assert res["verdict"] == "failed", res
    assert res["reason"] == "rejected: incident review first; nothing changed"
    assert res["data"]["applied"] == [] and not drift.exec_enabled()


def test_a_drift_changed_since_the_plan_is_refused_in_one_line(sandbox, drift, prd_like):
    drift.sg_allow(cidr="0.0.0.0/0")
    bg, run = _paused("sg", "revoke")
    drift.sg_allow(cidr6="::/0")  # the drift changed while the plan waited
    rules = drift.inbound()
    resume(run.id, approve=True, reason="looked fine")
    res = bg.result()
    assert res["verdict"] == "failed", res
    assert res["reason"].startswith("refused: repair sg moved since the approved plan")
    assert "\n" not in res["reason"] and res["data"]["applied"] == []
    assert drift.inbound() == rules


def test_cli_apply_needs_a_recorded_plan_or_yes(sandbox, drift, monkeypatch):
    drift.sg_allow(cidr="0.0.0.0/0")
    r = invoke("repair", "sg", "--env", "local", "--apply")
    assert r.exit_code == 2, r.output
    assert any("no recorded plan of this repair" in line for line in error_lines(r.stderr))
    assert len(drift.inbound()) == 2  # the task rule and the drift: nothing changed
    monkeypatch.setenv("PAPYRUS_APPROVAL_REQUIRED", "true")
    r = invoke("repair", "sg", "--env", "local", "--apply", "--yes")
    assert r.exit_code == 2 and "--yes is not allowed" in r.stderr, r.output
    monkeypatch.delenv("PAPYRUS_APPROVAL_REQUIRED")
    assert invoke("repair", "sg", "--env", "local").exit_code == 0  # the plan: recorded
    r = invoke("repair", "sg", "--env", "local", "--apply")
    assert r.exit_code == 0, r.output
    [only] = drift.inbound()
    assert only["ReferencedGroupInfo"]["GroupId"] == drift.task_sg
