"""The warm interpreter (papyrus_ops.warm): a later CLI call is a child forked from a process
that imported the CLI once, and it behaves as the cold call would — same output and exit code,
signals reach it, it dies with its caller, it serves only calls that would import the same
code the same way, and it stops when idle. Each test has its own warm folder and server."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from papyrus_ops import warm
from papyrus_ops.warm import server as warm_server
from tests.support.canaries import CANARY_PASSWORD
from tests.support.cli import ROOT, cli_env
from tests.support.waiting import wait_until

BAD = ["preflight", "--env", "no-such-env", "--json"]


@pytest.fixture
def warm_dir(tmp_path):
    # Deeper than an AF_UNIX address may be (107 bytes) on purpose, as a deep checkout can be:
    # the socket is then bound and reached through the folder's fd (warm.short_path).
    where = tmp_path / ("warm-" + "d" * 100)
    assert len(str(warm.socket_path(where, "0" * 64))) > 107
    yield where
    warm_server.stop(where)


def _call(env, *args, cold=False, **kw):
    module = "papyrus_ops.cli" if cold else "papyrus_ops"
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT, **kw)


def _log(where: Path) -> str:
    return (where / "server.log").read_text() if (where / "server.log").exists() else ""


def _served(where: Path) -> int:
    return _log(where).count(" warm: call ")


def _server_pid(where: Path) -> int:
    (pidfile,) = where.glob("*.pid")
    return json.loads(pidfile.read_text())["pid"]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _warmed(where: Path, env: dict) -> None:
    """The first call runs cold and starts the server; wait until it serves."""
    _call(env, *BAD)
    wait_until(lambda: " warm: serving " in _log(where), timeout=120, what="the warm server")


def test_a_later_call_is_served_warm_and_answers_as_a_cold_one(warm_dir):
    env = cli_env(PAPYRUS_CLI_WARM_DIR=str(warm_dir), PAPYRUS_DB_PASSWORD=CANARY_PASSWORD)
    cold = _call(env, *BAD, cold=True)
    _warmed(warm_dir, env)
    before = _served(warm_dir)
    got = _call(env, *BAD)
    assert _served(warm_dir) == before + 1, _log(warm_dir)
    assert (got.returncode, got.stdout, got.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert got.returncode == 2 and json.loads(got.stdout)["verdict"] == "bad_input"
    # The request carried the whole environment; the server keeps none of it.
    assert CANARY_PASSWORD not in _log(warm_dir)
    assert oct(warm_dir.stat().st_mode & 0o777) == "0o700"
    (sock,) = warm_dir.glob("*.sock")
    assert oct(sock.stat().st_mode & 0o777) == "0o600"


def test_a_call_from_elsewhere_with_other_run_time_variables_is_served_too(warm_dir, tmp_path):
    """Another working folder and other run-time variables (AWS_*, PAPYRUS_* read per call)
    are the same key: the call is served warm, and it answers for its own arguments."""
    env = cli_env(PAPYRUS_CLI_WARM_DIR=str(warm_dir))
    _warmed(warm_dir, env)
    before = _served(warm_dir)
    r = subprocess.run([sys.executable, "-m", "papyrus_ops", "preflight", "--env", "elsewhere"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**env, "PAPYRUS_EVIDENCE_ROOT": str(tmp_path), "AWS_REGION": "x"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("papyrus-ops: error: unknown environment 'elsewhere'"), r.stderr
    assert _served(warm_dir) == before + 1, _log(warm_dir)


def _blackhole() -> socket.socket:
    """A TCP port that accepts connections and never answers: an AWS call there hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


# Starts argv[2:] with SIGHUP set as argv[1] says, whatever this process has (under nohup, as
# CI may run the suite, it is ignored; a shell in a terminal has the default).
_WITH_SIGHUP = ("import os, signal, sys; signal.signal(signal.SIGHUP, getattr(signal, "
                "sys.argv[1])); os.execv(sys.argv[2], sys.argv[2:])")


def _hanging_call(env, sighup: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WITH_SIGHUP, sighup, sys.executable, "-m",
                             "papyrus_ops", "preflight", "--env", "local", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)


def _signal_mask(pid: int, field: str) -> int:
    """SigIgn (ignored) or SigCgt (caught) of a process, as a bit mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} for {pid}")


def _has(mask: int, sig: int) -> bool:
    return bool(mask >> (sig - 1) & 1)


def test_signals_reach_the_call_and_it_dies_with_its_caller(warm_dir, sandbox, prefect_server):
    env = cli_env(PAPYRUS_CLI_WARM_DIR=str(warm_dir))
    _warmed(warm_dir, env)
    zygote = _server_pid(warm_dir)
    holes, held = [], []

    def call_inside_the_flow(sighup: str) -> tuple[subprocess.Popen, int]:
        # A black hole of its own per call: a call may open several connections, and one
        # still queued from an earlier call must not pass for this call's first request.
        hole = _blackhole()
        hole.settimeout(120)
        holes.append(hole)
        proc = _hanging_call({**env, "AWS_ENDPOINT_URL":
                              f"http://127.0.0.1:{hole.getsockname()[1]}"}, sighup)
        held.append(hole.accept()[0])  # its first AWS request: it is in the flow, waiting
        (child,) = _children(zygote)
        return proc, child

    try:
        # A signal to the caller reaches the call (SIGHUP: the terminal closed; neither Python
        # nor Prefect handles it, so a cold call dies of it at once), and the caller ends as
        # the call did: killed by the same signal.
        proc, child = call_inside_the_flow("SIG_DFL")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == -signal.SIGHUP
        wait_until(lambda: not Path(f"/proc/{child}").exists(), timeout=30, what="child gone")

        # A caller that ignores SIGHUP (nohup) neither relays it nor lets its call take it:
        # the call ignores it as a cold process would have inherited. Then, killed outright,
        # the caller does not leave its call behind.
        proc, child = call_inside_the_flow("SIG_IGN")
        assert _has(_signal_mask(proc.pid, "SigIgn"), signal.SIGHUP)
        assert not _has(_signal_mask(proc.pid, "SigCgt"), signal.SIGHUP)
        assert _has(_signal_mask(child, "SigIgn"), signal.SIGHUP)
        assert not _has(_signal_mask(child, "SigIgn"), signal.SIGTERM)
        proc.kill()
        proc.wait(timeout=30)
        wait_until(lambda: not Path(f"/proc/{child}").exists(), timeout=30, what="child gone")
        assert not _children(zygote)
        assert _log(warm_dir).count("(preflight): signal 9") == 1  # the server's view of it
    finally:
        for conn in held + holes:
            conn.close()


def test_it_serves_only_calls_that_import_the_same_way(monkeypatch, tmp_path):
    env = cli_env()
    base = warm.key(env)
    assert warm.key({**env, "AWS_ACCESS_KEY_ID": "other", "PAPYRUS_EVIDENCE_ROOT": "/x"}) == base
    assert warm.key({**env, "PREFECT_HOME": str(tmp_path)}) != base
    assert warm.key({**env, "PAPYRUS_DEPLOYMENTS_DIR": str(tmp_path)}) != base
    # An edited source file: another key, so a fresh interpreter.
    (tmp_path / "flows").mkdir()
    module = tmp_path / "flows" / "x.py"
    module.write_text("A = 1\n")
    monkeypatch.setattr(warm, "ROOT", tmp_path)
    first = warm.key(env)
    module.write_text("A = 22\n")
    assert warm.key(env) != first


def test_every_import_time_environment_read_is_keyed():
    """A module that reads a variable when it is imported would keep the warm server's value:
    every such variable of ours must be part of the key (`warm.IMPORT_TIME`, or not run-time)."""
    read = set()
    for top in warm.PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for stmt in tree.body:  # module level only; function bodies run per call
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                for node in ast.walk(stmt):
                    name = _env_name(node)
                    if name:
                        read.add((name, str(path.relative_to(ROOT))))
    assert read, "the scan found no import-time read at all: it is broken"
    unkeyed = {(n, p) for n, p in read if n not in warm.keyed_env({n: "x"})}
    assert not unkeyed, f"read at import but not in papyrus_ops.warm.IMPORT_TIME: {unkeyed}"


def _env_name(node) -> str | None:
    """"X" of os.environ.get("X"...), os.environ["X"], os.getenv("X"...)."""
    def is_environ(n):
        return isinstance(n, ast.Attribute) and n.attr == "environ"
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr in ("get", "setdefault")
                and is_environ(f.value)) or (isinstance(f, ast.Attribute) and f.attr == "getenv"):
            return node.args[0].value
    if isinstance(node, ast.Subscript) and is_environ(node.value) \
            and isinstance(node.slice, ast.Constant):
        return node.slice.value
    return None


def test_it_stops_when_idle_and_a_stale_socket_is_replaced(warm_dir):
    env = cli_env(PAPYRUS_CLI_WARM_DIR=str(warm_dir), PAPYRUS_CLI_WARM_IDLE_SECONDS="2")
    _warmed(warm_dir, env)
    key, pid = re.search(r" warm: serving (\w+) \(pid (\d+)\)", _log(warm_dir)).groups()
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or
               Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z",
               timeout=30, what="the idle server's exit")
    assert not list(warm_dir.glob("*.sock")) and not list(warm_dir.glob("*.pid"))
    assert "idle: stopped" in _log(warm_dir)
    # A socket left by a server that was killed: the next call runs cold and a new one serves.
    (warm_dir / f"{key}.sock").touch()
    assert _call(env, *BAD).returncode == 2
    wait_until(lambda: _log(warm_dir).count(" warm: serving ") == 2, timeout=120,
               what="a new server in the stale socket's place")


def test_a_new_server_waits_for_the_call_that_started_it(warm_dir):
    """The first call runs cold, often while it starts the resident Prefect server: the server
    it starts neither binds nor imports until that call has ended, so it takes no core from it."""
    env = cli_env(PAPYRUS_CLI_WARM_DIR=str(warm_dir))
    warm_dir.mkdir(mode=0o700)
    # The key as a call computes it (this process's sys.path is pytest's, not a call's).
    key = subprocess.run([sys.executable, "-c", "from papyrus_ops import warm; print(warm.key())"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    caller = subprocess.Popen(["sleep", "120"])  # stands in for the call: ends when we say
    with (warm_dir / "server.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "papyrus_ops.warm.server", str(warm_dir), key.strip(),
             str(caller.pid)], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_until(lambda: any("pidfd" in _link(fd) for fd in Path(f"/proc/{server.pid}/fd")
                               .iterdir()), timeout=60, what="the server waiting on the call")
        assert not list(warm_dir.glob("*.sock")) and not list(warm_dir.glob("*.lock"))
        assert "prefect" not in Path(f"/proc/{server.pid}/maps").read_text()  # nothing imported
        caller.kill()
        caller.wait()
        wait_until(lambda: " warm: serving " in _log(warm_dir), timeout=120,
                   what="the server once the call ended")
    finally:
        caller.kill()
        caller.wait()
        warm_server.stop(warm_dir)
        server.wait(timeout=30)


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


_RELOAD = r"""
import json, logging, os, sys
from papyrus_ops.warm import prefect_reload, server
server.preload()
from prefect.logging import configuration
loads = []
own = configuration.load_logging_config
configuration.load_logging_config = lambda path: loads.append(path) or own(path)
prefect_reload.reload()  # a call with the server's own inputs: its configuration, not loaded
first = {"loads": len(loads), "level": logging.getLogger("prefect").level}
os.chdir(sys.argv[1])  # a call from a folder whose prefect.toml sets the level
prefect_reload.reload()
print(json.dumps({"first": first, "there": {"loads": len(loads),
                                            "level": logging.getLogger("prefect").level}}))
"""


def test_a_call_reuses_the_servers_logging_configuration_only_when_loaded_the_same(tmp_path):
    """`prefect_reload.reload` configures logging for each call; it skips loading the configuration
    (every setting rendered into Prefect's template) only when the call's settings, file and
    PREFECT_LOGGING_* variables are the server's: a folder's prefect.toml is still obeyed."""
    (tmp_path / "prefect.toml").write_text('[logging]\nlevel = "WARNING"\n')
    r = subprocess.run([sys.executable, "-c", _RELOAD, str(tmp_path)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT,
                       env={k: v for k, v in cli_env().items() if k != "PREFECT_LOGGING_LEVEL"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"first": {"loads": 0, "level": 20}, "there": {"loads": 1, "level": 30}}, out
