"""Processes of the local Prefect, by pid: started in their own session with telemetry off,
recognised by their start time (a recycled pid is never touched), stopped as a whole tree."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ground.settings import ROOT

HOST = "127.0.0.1"

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}


class PrefectLocalError(RuntimeError):
    """A local Prefect process could not be started, reached or registered."""


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a live, non-zombie process; None otherwise."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        return None
    return int(fields[1]), int(fields[19])


def start_time(pid: int) -> int | None:
    st = _stat(pid)
    return st[1] if st else None


def is_same_process(pid: int, started: int | None) -> bool:
    """The process is alive and is the one we recorded (not a recycled pid)."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of `pid` as (pid, start time), parents before children."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st:
            children.setdefault(st[0], []).append((int(entry.name), st[1]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child[0])
    return out


def stop_tree(pid: int, started: int | None, timeout: float = 20) -> list[int]:
    """SIGTERM the process and all its descendants, SIGKILL what is left after `timeout`.
    Only processes whose start time still matches are signalled. Returns the pids stopped."""
    return stop_trees([(pid, started)], timeout)


def stop_trees(roots: list[tuple[int, int | None]], timeout: float = 20) -> list[int]:
    """`stop_tree` for several processes at once: one grace period for all of them, not one
    after the other. A Prefect worker's first SIGTERM only stops it taking new runs and waits
    for those it watches; stopped in turn, the stack's two workers cost `down` two whole grace
    periods (41 s of the e2e suite's last test)."""
    tree = []
    for pid, started in roots:
        if is_same_process(pid, started):
            tree += [(pid, started or start_time(pid)), *descendants(pid)]
    for p, st in tree:
        if is_same_process(p, st):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_same_process(p, st) for p, st in tree):
        time.sleep(0.1)
    for p, st in tree:
        # Whatever ignored SIGTERM, and anything it started meanwhile.
        for q, qst in [*descendants(p), (p, st)]:
            if is_same_process(q, qst):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(q, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(is_same_process(p, st) for p, st in tree):
        time.sleep(0.05)
    return [p for p, _ in tree]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    """Something listens there (connections in TIME_WAIT do not count, as for uvicorn)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _prefect_exe() -> str:
    exe = Path(sys.executable).parent / "prefect"
    return str(exe) if exe.exists() else "prefect"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(TELEMETRY_OFF)
    env.update(extra)
    return env


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def http_ok(url: str, timeout: float = 2) -> bool:
    """Does this plain-http loopback URL answer 200? Asked with the standard library: an httpx
    call builds a TLS context from certifi's bundle first (even for an http:// URL), 20 ms of
    CPU each time — 0.1 s of a CLI call on 2 busy cores, and seconds of polling a server's
    start (docs/benchmarks.md §8)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrefectLocalError(f"{what} exited with code {proc.returncode}; see {log}:\n"
                                    + _tail(log))
        if http_ok(url, timeout=5):
            return
        time.sleep(0.5)
    raise PrefectLocalError(f"{what} did not answer {url} within {timeout:.0f}s; see {log}:\n"
                            + _tail(log))
