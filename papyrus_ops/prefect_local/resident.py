"""The checkout's Prefect server for CLI calls: started by the first call, reused by the next.

Without `PREFECT_API_URL`, Prefect gives every process a temporary server of its own, and every
CLI call paid its start (10-20 s on 2 cores: imports, migrations, readiness) before the flow
ran. Instead, the first call starts `prefect server start` (with its UI, so each run's history
stays visible) in `<checkout>/.prefect/cli-server/` and later calls use it. It stops itself
after `PAPYRUS_PREFECT_IDLE_SECONDS` (default 600) with no CLI call running.

Per checkout: its own folder, port, PREFECT_HOME and database. Safe when calls start at once,
by two `flock`s in that folder:
  * `start.lock` (exclusive, held briefly): whoever holds it may read, start or retire the
    server — so two first calls start one server, not two;
  * `use.lock` (shared by every CLI call while it runs): the watcher retires the server only
    when it can take it exclusively, i.e. when no call is using the server.
The watcher (`python -m papyrus_ops.prefect_local.resident watch <dir>`) is a small process
of its own session beside the server; it stops the server (and itself) when idle, and cleans
up when the server died. `PAPYRUS_PREFECT_SERVER=temporary` keeps Prefect's own behaviour.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ground.settings import ROOT
from papyrus_ops.prefect_local.processes import (
    HOST,
    _free_port,
    _prefect_exe,
    _spawn,
    _wait_http,
    base_env,
    http_ok,
    is_same_process,
    start_time,
    stop_tree,
)
from papyrus_ops.prefect_local.seed import seed

DEFAULT_DIR = ROOT / ".prefect" / "cli-server"
IDLE_SECONDS = 600.0
WATCH_SECONDS = 2.0


def server_dir() -> Path:
    return Path(os.environ.get("PAPYRUS_PREFECT_CLI_DIR") or DEFAULT_DIR)


def enabled() -> bool:
    """A resident server is used unless an API is given or Prefect's own mode is asked for."""
    return not os.environ.get("PREFECT_API_URL") and \
        os.environ.get("PAPYRUS_PREFECT_SERVER", "resident") != "temporary"


def idle_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("PAPYRUS_PREFECT_IDLE_SECONDS", IDLE_SECONDS)))
    except ValueError:
        return IDLE_SECONDS


def _info_file(folder: Path) -> Path:
    return folder / "server.json"


@contextlib.contextmanager
def _flock(path: Path, mode: int, blocking: bool = True):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def read_info(folder: Path | None = None) -> dict | None:
    """The running server's record, or None (no record, or its process is gone)."""
    folder = folder or server_dir()
    try:
        info = json.loads(_info_file(folder).read_text())
    except (OSError, ValueError):
        return None
    server = info.get("server") or {}
    if not server.get("pid") or not is_same_process(int(server["pid"]), server.get("start")):
        return None
    return info


def _healthy(api_url: str) -> bool:
    """Does the server answer its health check? Asked on every CLI call (`http_ok`: no TLS
    context for a loopback URL)."""
    return http_ok(f"{api_url}/health")


def _start(folder: Path, timeout: float) -> dict:
    port = _free_port()
    api_url = f"http://{HOST}:{port}/api"
    log = folder / "server.log"
    seed(folder / "home" / "prefect.db")  # a new folder's database: migrated, not migrating
    server = _spawn(
        [_prefect_exe(), "server", "start", "--host", HOST, "--port", str(port),
         "--analytics-off"],
        base_env(PREFECT_HOME=str(folder / "home"), PREFECT_SERVER_API_HOST=HOST,
                 PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=api_url,
                 PREFECT_SERVER_LOGGING_LEVEL="WARNING"),
        log)
    info = {"api_url": api_url, "ui_url": f"http://{HOST}:{port}", "port": port,
            "server": {"pid": server.pid, "start": start_time(server.pid)},
            "idle_seconds": idle_seconds(), "log": str(log)}
    _info_file(folder).write_text(json.dumps(info, indent=2) + "\n")
    try:
        _wait_http(f"{api_url}/health", server, log, timeout, "prefect server")
    except BaseException:
        stop_tree(server.pid, info["server"]["start"])
        _info_file(folder).unlink(missing_ok=True)
        raise
    watcher = subprocess.Popen(
        [sys.executable, "-m", "papyrus_ops.prefect_local.resident", "watch", str(folder)],
        env={**os.environ, "PAPYRUS_PREFECT_IDLE_SECONDS": str(info["idle_seconds"])},
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(folder / "watcher.log", "ab"), start_new_session=True)  # noqa: SIM115
    info["watcher"] = {"pid": watcher.pid, "start": start_time(watcher.pid)}
    _info_file(folder).write_text(json.dumps(info, indent=2) + "\n")
    return info


@contextlib.contextmanager
def using(timeout: float = 120):
    """The API URL of this checkout's server (started if needed), held in use while inside."""
    folder = server_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with _flock(folder / "start.lock", fcntl.LOCK_EX):
        info = read_info(folder)
        if info is not None and not _healthy(info["api_url"]):
            stop(folder)  # alive but not answering: replace it
            info = None
        if info is None:
            info = _start(folder, timeout)
        use = os.open(folder / "use.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(use, fcntl.LOCK_SH)
        os.utime(folder / "use.lock")  # the watcher's idle clock
    try:
        yield info["api_url"]
    finally:
        os.utime(folder / "use.lock")
        os.close(use)


def stop(folder: Path | None = None) -> list[int]:
    """Stop the server and its watcher (whatever uses it); returns the pids stopped."""
    folder = folder or server_dir()
    try:
        info = json.loads(_info_file(folder).read_text())
    except (OSError, ValueError):
        return []
    stopped: list[int] = []
    for name in ("watcher", "server"):
        proc = info.get(name) or {}
        if proc.get("pid") and int(proc["pid"]) != os.getpid():
            stopped += stop_tree(int(proc["pid"]), proc.get("start"))
    _info_file(folder).unlink(missing_ok=True)
    return stopped


def watch(folder: Path) -> None:
    """Retire the server once idle (no call in use for `idle_seconds`), or when it died."""
    idle = idle_seconds()
    while True:
        time.sleep(WATCH_SECONDS)
        with _flock(folder / "start.lock", fcntl.LOCK_EX):
            info = read_info(folder)
            if info is None or (info.get("watcher") or {}).get("pid") not in (None, os.getpid()):
                if info is None:
                    _info_file(folder).unlink(missing_ok=True)
                return  # the server is gone, or another watcher owns it
            try:
                quiet = time.time() - (folder / "use.lock").stat().st_mtime
            except OSError:
                quiet = idle
            if quiet < idle:
                continue
            with _flock(folder / "use.lock", fcntl.LOCK_EX, blocking=False) as unused:
                if unused:
                    server = info["server"]
                    stop_tree(int(server["pid"]), server.get("start"))
                    _info_file(folder).unlink(missing_ok=True)
                    return


if __name__ == "__main__":  # pragma: no cover - the watcher process
    if sys.argv[1:2] == ["watch"] and len(sys.argv) == 3:
        watch(Path(sys.argv[2]))
