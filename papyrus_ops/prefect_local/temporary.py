"""A temporary `prefect server start` for one process's flow runs (`TemporaryServer`)."""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
from pathlib import Path

from papyrus_ops.prefect_local.processes import (
    HOST,
    _free_port,
    _prefect_exe,
    _spawn,
    _wait_http,
    base_env,
    start_time,
    stop_tree,
)
from papyrus_ops.prefect_local.seed import seed


class TemporaryServer:
    """`prefect server start` for one process's flow runs, stopped when it is done.

    What Prefect's own temporary server is, but spawned before this process imports Prefect:
    its start (seconds of imports and migrations) then overlaps whatever the caller does
    next instead of delaying the first flow run. Same database as Prefect's temporary server
    (PREFECT_HOME, default ~/.prefect)."""

    def __init__(self, log: Path):
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.api_url = f"http://{HOST}:{port}/api"
        home = {"PREFECT_HOME": os.environ["PREFECT_HOME"]} if os.environ.get("PREFECT_HOME") \
            else {}
        # Prefect's temporary server's database, PREFECT_HOME/prefect.db: migrated if new.
        seed(Path(home.get("PREFECT_HOME") or Path.home() / ".prefect") / "prefect.db")
        self.proc = _spawn(
            [_prefect_exe(), "server", "start", "--host", HOST, "--port", str(port),
             "--analytics-off", "--no-ui"],
            base_env(PREFECT_SERVER_API_HOST=HOST, PREFECT_SERVER_API_PORT=str(port),
                     PREFECT_SERVER_LOGGING_LEVEL="WARNING", **home),
            self.log)
        self.started = start_time(self.proc.pid)
        # Stopped at interpreter exit: Prefect drains its log and event workers at threading
        # shutdown, which comes first; stopping the server earlier leaves them retrying.
        atexit.register(self.stop)

    def wait(self, timeout: float = 120) -> str:
        _wait_http(f"{self.api_url}/health", self.proc, self.log, timeout, "prefect server")
        return self.api_url

    def stop(self) -> None:
        stop_tree(self.proc.pid, self.started)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
