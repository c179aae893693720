"""The production path's commands start with the pinned dependencies, and the pool command
refuses bad input in one line before it touches AWS or Prefect."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.cli import cli_env, run_cli

BIN = Path(sys.executable).parent


def test_prefect_aws_worker_deploy_service_cli_starts():
    """docs/production.md deploys the worker with prefect-aws's own CLI; typer 0.29 made it
    fail at import (`Option() got an unexpected keyword argument 'click_type'`)."""
    exe = shutil.which("prefect-aws", path=str(BIN))
    assert exe
    r = subprocess.run([exe, "ecs-worker", "deploy-service", "--help"], capture_output=True,
                       text=True, timeout=120, env=cli_env(COLUMNS="200"))
    assert r.returncode == 0, r.stderr[-2000:]
    for option in ("--work-pool-name", "--existing-cluster-identifier", "--existing-subnet-ids"):
        assert option in r.stdout, option


def test_pool_refuses_an_image_that_is_not_pinned_by_digest():
    r = run_cli("prefect", "pool", "--env", "prd", "--image", "papyrus-ops:latest", "--print",
                env=cli_env(AWS_ENDPOINT_URL="", PAPYRUS_ALLOW_ENDPOINT_URL="",
                            AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                            AWS_EC2_METADATA_DISABLED="true"), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "not pinned by digest" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
