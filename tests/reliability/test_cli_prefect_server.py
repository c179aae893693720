"""The checkout's resident Prefect server (papyrus_ops/prefect_local/resident.py): CLI calls
without PREFECT_API_URL share one server that the first starts, two calls at once still start
one, every run is in its history, and it stops itself once idle. Each test has its own server
folder (PAPYRUS_PREFECT_CLI_DIR) and stops what it started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from papyrus_ops.prefect_local import resident
from papyrus_ops.prefect_local.processes import is_same_process
from tests.support.cli import ROOT, cli_env
from tests.support.waiting import wait_until


@pytest.fixture
def server_dir(tmp_path, sandbox, monkeypatch):
    folder = tmp_path / "cli-prefect"
    monkeypatch.setenv("PAPYRUS_PREFECT_CLI_DIR", str(folder))
    yield folder
    resident.stop(folder)
    assert resident.read_info(folder) is None


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = cli_env(PAPYRUS_PREFECT_CLI_DIR=str(folder))
    env.pop("PREFECT_API_URL", None)
    env.pop("PAPYRUS_PREFECT_SERVER", None)
    return {**env, **extra}


def _preflight(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "papyrus_ops.cli", "preflight", "--env",
                             "local", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def _finish(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    return json.loads(out)


def _run_of(res: dict) -> set[str]:
    """The flow run a result came from: its evidence folder ends with the run id's first 8."""
    return {Path(res["evidence"]["folder"]).name.rsplit("_", 1)[-1]}


def _flow_run_prefixes(api_url: str) -> set[str]:
    import httpx

    r = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 50}, timeout=10)
    r.raise_for_status()
    return {run["id"][:8] for run in r.json()}


def test_calls_share_one_server_that_the_first_starts_even_at_once(server_dir):
    results = [_finish(p) for p in [_preflight(_env(server_dir)) for _ in range(2)]]
    info = resident.read_info(server_dir)
    assert info is not None, "the first calls left no server for the next"
    # One server was started: one `prefect server start` process with this folder's home.
    servers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and _cmdline_has(p, "server", "start") and _environ_has(p, str(server_dir))]
    assert len(servers) == 1, servers
    results.append(_finish(_preflight(_env(server_dir))))
    assert resident.read_info(server_dir)["server"] == info["server"]  # the same process
    # Every run is in that server's history (its UI shows them).
    runs = set().union(*(_run_of(r) for r in results))
    assert len(runs) == 3 and runs <= _flow_run_prefixes(info["api_url"])


def test_an_idle_server_stops_itself(server_dir):
    _finish(_preflight(_env(server_dir, PAPYRUS_PREFECT_IDLE_SECONDS="3")))
    info = resident.read_info(server_dir)
    assert info is not None
    server = info["server"]
    wait_until(lambda: not is_same_process(server["pid"], server["start"]), timeout=60)
    wait_until(lambda: not (server_dir / "server.json").exists(), timeout=10)
    watcher = info["watcher"]
    wait_until(lambda: not is_same_process(watcher["pid"], watcher["start"]), timeout=10)


def test_an_api_given_or_prefects_own_mode_asked_for_uses_no_resident_server(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PAPYRUS_PREFECT_SERVER", raising=False)
    assert resident.enabled()
    monkeypatch.setenv("PAPYRUS_PREFECT_SERVER", "temporary")
    assert not resident.enabled()
    monkeypatch.delenv("PAPYRUS_PREFECT_SERVER")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert not resident.enabled()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_the_health_check_is_a_200_from_the_servers_health_route(status, healthy):
    """A server answering anything but 200 on /health, or not answering (a closed port, a
    connection dropped without a reply), is replaced by the next call (`using`)."""
    import http.server
    import threading

    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server hook's name
            paths.append(self.path)
            if status is None:
                self.close_connection = True
                return
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert resident._healthy(f"http://127.0.0.1:{srv.server_port}/api") is healthy
        assert paths == ["/api/health"]
    finally:
        srv.shutdown()
        srv.server_close()
    assert resident._healthy(f"http://127.0.0.1:{srv.server_port}/api") is False


def _cmdline_has(proc: Path, *words: str) -> bool:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return all(w.encode() in argv for w in words) and any(a.endswith(b"prefect") for a in argv)


def _environ_has(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "environ").read_bytes()
    except OSError:
        return False
