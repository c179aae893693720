"""The `papyrus-local` work pool and its process worker (whose environment carries the
sandbox's, so the flow runs it starts reach the sandbox exactly like the CLI does)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from ground.settings import ROOT
from papyrus_ops.prefect_local.processes import (
    PrefectLocalError,
    _prefect_exe,
    _spawn,
    _tail,
    base_env,
)

POOL = "papyrus-local"
WORKER_NAME = "papyrus-local-worker"
# Never let a sandbox worker pick up a real AWS identity from the caller's shell.
# (Keys too: botocore reads them before the sandbox's AWS_PROFILE, the flow-run role.)
_AWS_IDENTITY = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE")


def worker_env(api_url: str, home: Path, sandbox_env: dict[str, str]) -> dict[str, str]:
    """The worker's environment; the flow-run processes it starts inherit it."""
    env = base_env()
    for key in _AWS_IDENTITY:
        env.pop(key, None)
    env.update(sandbox_env)  # the sandbox wins over anything in the caller's shell
    env.update({
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home),
        # prefect.yaml's pull step: `set_working_directory: {{ $PAPYRUS_OPS_HOME }}`.
        "PAPYRUS_OPS_HOME": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _wait_worker(api_url: str, proc: subprocess.Popen, log: Path, timeout: float,
                 pool: str = POOL, name: str = WORKER_NAME) -> None:
    """The worker is up once it has heartbeated into the pool (it creates the pool if needed)
    since it was started: a record left by an earlier worker of the same name does not count."""
    from datetime import UTC, datetime, timedelta

    import httpx

    since = datetime.now(UTC) - timedelta(seconds=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrefectLocalError(f"worker exited with code {proc.returncode}; see {log}:\n"
                                    + _tail(log))
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError):
            r = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5)
            if r.status_code == 200 and any(
                    w.get("name") == name and w.get("last_heartbeat_time")
                    and datetime.fromisoformat(w["last_heartbeat_time"]) >= since
                    for w in r.json()):
                return
        time.sleep(0.5)
    raise PrefectLocalError(f"worker did not join pool {pool!r} within {timeout:.0f}s; "
                            f"see {log}:\n" + _tail(log))


def _spawn_worker(state: Path, api_url: str, sandbox_env: dict[str, str]) -> subprocess.Popen:
    return _spawn([_prefect_exe(), "worker", "start", "--pool", POOL, "--type", "process",
                   "--name", WORKER_NAME, "--install-policy", "never"],
                  worker_env(api_url, state / "worker-home", sandbox_env), state / "worker.log")


def ensure_work_pool(api_url: str, name: str = POOL) -> bool:
    """Create the process work pool if missing; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        try:
            c.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        try:
            c.create_work_pool(WorkPoolCreate(
                name=name, type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="Papyrus Ops on this machine (process worker, sandbox env)."))
        except ObjectAlreadyExists:
            return False
        return True
