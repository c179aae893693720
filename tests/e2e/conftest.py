"""The e2e session's one local Prefect: `papyrus-ops prefect up --ecs --register` against the
session sandbox (tests/conftest.py), shared by every e2e module and stopped at the end of the
session (tests/e2e/test_prefect_deployments.py's last test also proves `down` itself)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from papyrus_ops import prefect_local
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


def prefect_env(stack: dict) -> dict[str, str]:
    """What a person's shell needs to talk to the local server with the `prefect` CLI."""
    return prefect_local.base_env(PREFECT_API_URL=stack["api_url"],
                                  PREFECT_HOME=str(stack["state"] / "cli-home"),
                                  COLUMNS="200")


@pytest.fixture(scope="session")
def stack(sandbox, tmp_root):
    """`papyrus-ops prefect up --register --ecs`; the schema is applied (CLI, recorded on the same
    server) as soon as the server answers, while the worker starts and deployments register."""
    # In the session's own tmp root, not pytest's: the stack's PostgreSQL runs as `postgres` and
    # must traverse every parent, and any other pytest session on the machine resets
    # /tmp/pytest-of-<user> to 0700 when it starts (seen: PANIC "pg_control: Permission denied"
    # mid-suite, and every later e2e call a 500).
    out = tmp_root / "e2e-prefect"
    out.mkdir()
    env_file = out / "sandbox.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in sandbox.env().items()))
    state = out / "prefect"
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "papyrus_ops.cli", "prefect", "up", "--port", "0", "--env-file",
         str(env_file), "--state-dir", str(state), "--timeout", "240", "--register", "--ecs",
         "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    schema = None
    try:
        while schema is None and up.poll() is None:
            info = prefect_local.read_state(state)
            with contextlib.suppress(httpx.HTTPError, TypeError):
                if info and httpx.get(f"{info['api_url']}/health", timeout=2).status_code == 200:
                    timings["server"] = time.monotonic() - t0
                    schema = subprocess.Popen(
                        [sys.executable, "-m", "papyrus_ops.cli", "schema-init", "--env",
                         "local", "--apply", "--yes", "--json"], cwd=ROOT, text=True,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        env=prefect_env({"api_url": info["api_url"], "state": state})
                        | sandbox.env())
            time.sleep(0.5)
        up_out, up_err = up.communicate(timeout=600)
        timings["up --register"] = time.monotonic() - t0
        assert up.returncode == 0, up_out + up_err
        info = json.loads(up_out)
        st = {"api_url": info["api_url"], "ui_url": info["ui_url"], "state": state, "out": out,
              "info": info, "registered": info["registered"], "timings": timings}
        assert schema is not None
        s_out, s_err = schema.communicate(timeout=300)
        timings["schema applied"] = time.monotonic() - t0
        assert schema.returncode == 0, s_out + s_err
        assert json.loads(s_out)["verdict"] == "success"
        yield st
    finally:
        for proc in (up, schema):
            if proc is not None and proc.poll() is None:
                proc.kill()
        run_cli("prefect", "down", "--state-dir", state)
        print("timings:", {k: round(v, 1) for k, v in timings.items()})
