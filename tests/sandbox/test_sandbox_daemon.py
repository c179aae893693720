"""`papyrus-ops sandbox up` / `down`: a background sandbox that leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import boto3

from tests.support.cli import run_cli


def _processes_using(folder: Path) -> list[int]:
    """Every live process whose command line or working directory is inside `folder`."""
    hits, needle = [], str(folder)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (needle in cmd or cwd.startswith(needle)):
            hits.append(int(proc.name))
    return hits


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PAPYRUS_SANDBOX_DIR"] = str(state)
    return run_cli("sandbox", *args, env=env)


def test_up_serves_the_seeded_service_and_down_leaves_nothing(tmp_path, monkeypatch):
    state = tmp_path / "sb"
    up = _cli(state, "up")
    assert up.returncode == 0, up.stderr
    try:
        assert (state / "env").exists()
        env = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines())
        # No key in the env file: a profile that assumes the flow-run role from its files.
        assert not any(k in env for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
        for key in ("AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            monkeypatch.setenv(key, env[key])
        ecs = boto3.session.Session(profile_name=env["AWS_PROFILE"]).client(
            "ecs", region_name="us-west-2")
        svc = ecs.describe_services(cluster="papyrus-ecs-prd",
                                    services=["papyrus-task-service"])["services"][0]
        assert svc["runningCount"] == 1 and svc["enableExecuteCommand"] is True
        status = _cli(state, "status")
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
        assert _cli(state, "up").returncode == 0  # already up: safe to run twice
        assert _processes_using(state), "the sandbox should be running processes"
    finally:
        down = _cli(state, "down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 15  # a SIGKILLed process may take a moment to be reaped
    while _processes_using(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(state) == []
    assert _cli(state, "status").returncode == 1
