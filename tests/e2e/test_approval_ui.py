"""Approval in the Prefect UI, in headless Chromium: a prd-like schema-init (the sandbox with
``[approval] required``) pauses after its dry run on the e2e session's real `prefect server`
(tests/e2e/conftest.py), its evidence visible as the run's `schema-init-approval` artifact; the
operator approves it in the run's Resume form, and the apply runs; a prd-like deploy pauses after
its plan (digest and diff in `deploy-approval`) and a rejection in the form changes nothing; a
prd-like blue/green deploy pauses with the new revision behind the test listener
(`deploy-traffic-approval`) and an approval in the form ships it. The flows run in a process of
their own against that server, as a worker's would (the other paths — reject, "edited/moved
since", repair, a blue/green rejection — are proved through the API in tests/schema,
tests/deploy and tests/preflight: the UI tests stay three runs)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from papyrus_ops import prefect_local
from tasks.schema.script import DEFAULT_SCRIPT, load_script
from tests.support import alb as alb_support
from tests.support.approval import artifact, paused_run, resume
from tests.support.blue_green import Recorder, blue_green_env
from tests.support.canaries import CANARY_PASSWORD
from tests.support.ui import CHROMIUM, approve_in_ui
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
RUN = ("import json; from papyrus_ops.runner import run_flow; "
       "from flows.schema_init import schema_init; "
       "print(json.dumps(run_flow(schema_init, env='local', apply=True, sql_path={sql!r}, "
       "database={db!r}), default=str))")


def _tables(sandbox, db: str) -> list[str]:
    out = sandbox.pg.psql_admin("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'public' ORDER BY 1", db)
    return out.split() if out else []


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_ui_approval_of_a_paused_schema_init_applies_it(stack, sandbox, tmp_path):
    db = f"approve_ui_{uuid.uuid4().hex[:10]}"
    sandbox.pg.psql_admin(f"CREATE DATABASE {db} OWNER papyrus_app")
    sql = tmp_path / "init.sql"
    sql.write_text(f"-- approval ui test {uuid.uuid4().hex}\n" + DEFAULT_SCRIPT.read_text())
    sha = load_script(sql).sha256
    (tmp_path / "ui").mkdir()
    env = prefect_local.base_env(PREFECT_API_URL=stack["api_url"],
                                 PREFECT_HOME=str(tmp_path / "prefect-home")) | sandbox.env()
    env |= {"PAPYRUS_APPROVAL_REQUIRED": "true", "PAPYRUS_APPROVAL_POLL_SECONDS": "0.5"}
    proc = subprocess.Popen([sys.executable, "-c", RUN.format(sql=str(sql), db=db)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = paused_run(lambda p: p.get("database") == db, timeout=180, api=stack["api_url"])
        assert _tables(sandbox, db) == []  # paused after the dry run: nothing applied
        shots, external = approve_in_ui(
            stack["ui_url"], tmp_path / "ui", flow_run_id=str(run.id),
            artifact_key="schema-init-approval", evidence_text=sha, approve=True,
            reason="reviewed in the UI")
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        tables_after = _tables(sandbox, db)
        sandbox.pg.psql_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    assert proc.returncode == 0, out + err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["verdict"] == "success" and res["data"]["outcome"] == "applied", res
    assert res["data"]["approval"]["answer"] == {"approve": True, "reason": "reviewed in the UI"}
    assert tables_after == ["papyrus_schema_migrations", "skus"]
    assert external == [], f"the UI tried to leave loopback: {external}"
    assert CANARY_PASSWORD not in out + err
    print("screenshots:", *map(str, shots), sep="\n  ")


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_ui_rejection_of_a_paused_deploy_plan_changes_nothing(stack, sandbox, tmp_path):
    """The deploy's pause shows the pinned digest and the diff; rejected in the form, the run
    ends Failed and the service keeps its task definition."""
    from tests.support.sandbox_state import push_variant, revisions, service

    tag = f"ui-reject-{uuid.uuid4().hex[:6]}"
    digest = push_variant(sandbox, tag)
    before = (service(sandbox)["taskDefinition"], revisions(sandbox))
    (tmp_path / "ui").mkdir()
    env = prefect_local.base_env(PREFECT_API_URL=stack["api_url"],
                                 PREFECT_HOME=str(tmp_path / "prefect-home")) | sandbox.env()
    env |= {"PAPYRUS_APPROVAL_REQUIRED": "true", "PAPYRUS_APPROVAL_POLL_SECONDS": "0.5"}
    code = ("import json; from papyrus_ops.runner import run_flow; "
            "from flows.deploy import deploy; "
            f"print(json.dumps(run_flow(deploy, env='local', image={tag!r}), default=str))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = paused_run(lambda p: p.get("image") == tag, timeout=240, api=stack["api_url"])
        _, external = approve_in_ui(
            stack["ui_url"], tmp_path / "ui", flow_run_id=str(run.id),
            artifact_key="deploy-approval", evidence_text=digest, approve=False,
            reason="not this release")
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    res = json.loads(out.strip().splitlines()[-1])
    assert res["verdict"] == "failed", res
    assert res["reason"] == "rejected: not this release; nothing changed"
    assert (service(sandbox)["taskDefinition"], revisions(sandbox)) == before
    assert external == [], f"the UI tried to leave loopback: {external}"


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_ui_approval_of_test_traffic_ships_a_blue_green_deploy(stack, sandbox, tmp_path):
    """A prd-like blue/green deploy: its plan approved (API), it pauses again with the new
    revision behind the test listener and production still on the old one; approved in the
    UI's Resume form, production shifts and the deploy succeeds after the bake time."""
    from tests.support.sandbox_state import push_variant

    api = stack["api_url"]
    with blue_green_env(sandbox, tmp_path / "bg") as bg:
        tag = f"ui-bg-{uuid.uuid4().hex[:6]}"
        digest = push_variant(sandbox, tag)
        (tmp_path / "ui").mkdir()
        env = prefect_local.base_env(PREFECT_API_URL=api,
                                     PREFECT_HOME=str(tmp_path / "prefect-home")) | sandbox.env()
        env |= {"PAPYRUS_APPROVAL_REQUIRED": "true", "PAPYRUS_APPROVAL_POLL_SECONDS": "0.5",
                "PAPYRUS_DEPLOYMENTS_DIR": str(bg.deployments)}
        code = ("import json; from papyrus_ops.runner import run_flow; "
                "from flows.deploy import deploy; "
                f"print(json.dumps(run_flow(deploy, env='local', image={tag!r}, "
                "skip_preflight=True), default=str))")
        with Recorder(bg.alb.prod_port) as prod:
            proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                run = paused_run(lambda p: p.get("image") == tag, timeout=240, api=api)
                resume(run.id, approve=True, reason="plan reviewed", api=api)
                wait_until(lambda: artifact(run.id, "deploy-traffic-approval", api=api), 180,
                           what="the test-traffic approval artifact")
                paused_run(lambda p: p.get("image") == tag, timeout=60, api=api)
                assert alb_support.image_behind(bg.alb.test_port).endswith(digest)
                assert not alb_support.image_behind(bg.alb.prod_port).endswith(digest)
                assert not prod.served(digest)
                _, external = approve_in_ui(
                    stack["ui_url"], tmp_path / "ui", flow_run_id=str(run.id),
                    artifact_key="deploy-traffic-approval", evidence_text=digest, approve=True,
                    reason="test traffic looks right")
                out, err = proc.communicate(timeout=240)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        res = json.loads(out.strip().splitlines()[-1])
        assert res["verdict"] == "success", (res, err[-3000:])
        assert res["data"]["traffic_approval"]["outcome"] == "approved"
        assert any("BAKE_TIME" in st for st in res["data"]["verdict_detail"]["lifecycle"])
        assert prod.served(digest) and alb_support.image_behind(bg.alb.prod_port).endswith(digest)
        assert external == [], f"the UI tried to leave loopback: {external}"
