"""`papyrus-ops sandbox up|down|status`: the sandbox as a background process.

`up` starts `python -m sandbox serve` in its own session and waits for it to write
`<state>/env`; `down` asks it to stop (SIGTERM: it stops the ECS tasks, PostgreSQL and moto) and
then makes sure every process it started is gone, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ground.envfile import read_env_file
from ground.settings import ROOT

DEFAULT_STATE = Path(os.environ.get("PAPYRUS_SANDBOX_DIR", ROOT / ".sandbox"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0): reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def read_state(state: Path = DEFAULT_STATE) -> dict | None:
    path = state / "sandbox.json"
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    info["running"] = _alive(int(info.get("pid", 0) or 0))
    return info


def load_env_file(state: Path = DEFAULT_STATE) -> dict[str, str]:
    return read_env_file(state / "env")


def up(state: Path = DEFAULT_STATE, timeout: float = 120) -> dict:
    info = read_state(state)
    if info and info["running"]:
        return info
    state.mkdir(parents=True, exist_ok=True)
    for stale in ("env", "sandbox.json"):
        (state / stale).unlink(missing_ok=True)
    log = open(state / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--state-dir", str(state)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with code {proc.returncode}; see {log.name}")
        info = read_state(state)
        if info and (state / "env").exists():
            return info
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"sandbox did not come up within {timeout:.0f}s; see {log.name}")


def down(state: Path = DEFAULT_STATE, timeout: float = 60) -> list[int]:
    """Stop the sandbox and every process it recorded; returns the pids that were stopped."""
    info = read_state(state)
    if not info:
        return []
    pids = [int(info["pid"]), *[int(p) for p in info.get("children", [])]]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pids[0], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:  # whatever outlived SIGTERM, with its process group (gunicorn workers)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for stale in ("env", "sandbox.json"):
        (state / stale).unlink(missing_ok=True)
    return pids
