"""A local Prefect (server + `papyrus-local` process worker) for the sandbox, by pid.

`up()` starts `prefect server start` on 127.0.0.1 and a process worker whose environment
carries the sandbox env file's variables (AWS_ENDPOINT_URL and the sandbox credentials), so
the flow runs it starts reach the sandbox exactly like the CLI does. Both run in their own
session; their pids (and start times, so a recycled pid is never touched) go into
`<state>/prefect.json`. `down()` stops each recorded process and every descendant it has,
including flow-run processes that Prefect starts in sessions of their own. `register()`
creates the work pool if it is missing and runs `prefect deploy --all` on prefect.yaml.

Telemetry is off in every process started here; everything listens on loopback only.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from ground.envfile import read_env_file
from ground.settings import ROOT

DEFAULT_STATE = Path(os.environ.get("PAPYRUS_PREFECT_DIR", ROOT / ".prefect"))
POOL = "papyrus-local"
WORKER_NAME = "papyrus-local-worker"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
PREFECT_FILE = ROOT / "prefect.yaml"
# The server's database. PostgreSQL by default: with SQLite, a UI request that writes while
# flow runs write (task states, events, logs) gets "database is locked" -> 503, which the
# Python client retries but the UI shows as "Oops. Something went wrong." (measured here).
DATABASES = ("postgres", "sqlite")
PROCESSES = ("worker", "server", "postgres")  # the order `down` stops them in

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}
# Never let a sandbox worker pick up a real AWS identity from the caller's shell.
_AWS_IDENTITY = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


class PrefectLocalError(RuntimeError):
    """A local Prefect process could not be started, reached or registered."""


class RegisterError(PrefectLocalError):
    """`up --register`: the stack is up, the deployments did not register."""


# -- processes -------------------------------------------------------------------------------
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
    if not is_same_process(pid, started):
        return []
    tree = [(pid, started or start_time(pid)), *descendants(pid)]
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


# -- environment -----------------------------------------------------------------------------
def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(TELEMETRY_OFF)
    env.update(extra)
    return env


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


# -- state -----------------------------------------------------------------------------------
def state_file(state: Path = DEFAULT_STATE) -> Path:
    return Path(state) / "prefect.json"


def read_state(state: Path = DEFAULT_STATE) -> dict | None:
    path = state_file(state)
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    for name in PROCESSES:
        if name == "postgres" and not info.get(name):
            continue
        proc = info[name] = info.get(name) or {}
        proc["running"] = bool(proc.get("pid")) and is_same_process(int(proc["pid"]),
                                                                    proc.get("start"))
    return info


def _write_state(state: Path, info: dict) -> None:
    clean = {k: ({kk: vv for kk, vv in v.items() if kk != "running"}
                 if isinstance(v, dict) else v) for k, v in info.items()}
    state_file(state).write_text(json.dumps(clean, indent=2) + "\n")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrefectLocalError(f"{what} exited with code {proc.returncode}; see {log}:\n"
                                    + _tail(log))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise PrefectLocalError(f"{what} did not answer {url} within {timeout:.0f}s; see {log}:\n"
                            + _tail(log))


def _wait_worker(api_url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
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
            r = httpx.post(f"{api_url}/work_pools/{POOL}/workers/filter", json={}, timeout=5)
            if r.status_code == 200 and any(
                    w.get("name") == WORKER_NAME and w.get("last_heartbeat_time")
                    and datetime.fromisoformat(w["last_heartbeat_time"]) >= since
                    for w in r.json()):
                return
        time.sleep(0.5)
    raise PrefectLocalError(f"worker did not join pool {POOL!r} within {timeout:.0f}s; "
                            f"see {log}:\n" + _tail(log))


def _postgres(state: Path, password: str | None = None):
    """The server's PostgreSQL in `<state>/postgres` (SSL, a password role `prefect`); a
    cluster from an earlier `up` keeps its port, so its history survives `down`/`up`."""
    from sandbox.postgres import LocalPostgres

    base = Path(state) / "postgres"
    conf = base / "data" / "postgresql.conf"
    ports = re.findall(r"^port = (\d+)", conf.read_text(), re.M) if conf.exists() else []
    return LocalPostgres(base_dir=base, port=int(ports[-1]) if ports else 0, dbname="prefect",
                         app_user="prefect",
                         app_password=password or secrets.token_urlsafe(24))


def _start_postgres(state: Path) -> tuple[dict, str]:
    """Start it; returns its state record and the server's connection URL (never stored)."""
    pg = _postgres(state)
    if not pg.is_running() and (pg.data_dir / "PG_VERSION").exists() and _port_in_use(pg.port):
        raise PrefectLocalError(f"port {pg.port} of the Prefect database ({pg.base_dir}) is "
                                "taken by another process: free it, or remove that folder")
    try:
        pg.start()  # the role's password is (re)set on every start
    except (subprocess.CalledProcessError, RuntimeError) as e:
        raise PrefectLocalError(f"PostgreSQL for the Prefect server did not start ({e}); "
                                f"see {pg.log_file}, or use --db sqlite") from None
    pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    url = (f"postgresql+asyncpg://{pg.app_user}:{quote(pg.app_password, safe='')}"
           f"@{HOST}:{pg.port}/{pg.dbname}?ssl=require")
    return {"pid": pid, "start": start_time(pid), "port": pg.port,
            "base_dir": str(pg.base_dir)}, url


def _stop_postgres(record: dict) -> list[int]:
    from sandbox.postgres import LocalPostgres

    pid, started = int(record["pid"]), record.get("start")
    if not is_same_process(pid, started):
        return []
    tree = [pid, *(p for p, _ in descendants(pid))]
    LocalPostgres(base_dir=Path(record["base_dir"]), port=int(record["port"])).stop("fast")
    stop_tree(pid, started, timeout=10)  # whatever pg_ctl left
    return tree


def _spawn_worker(state: Path, api_url: str, sandbox_env: dict[str, str]) -> subprocess.Popen:
    return _spawn([_prefect_exe(), "worker", "start", "--pool", POOL, "--type", "process",
                   "--name", WORKER_NAME, "--install-policy", "never"],
                  worker_env(api_url, state / "worker-home", sandbox_env), state / "worker.log")


def _restart_worker(state: Path, info: dict, sandbox_env: dict[str, str],
                    env_file: Path | None, timeout: float) -> None:
    old = info["worker"]
    stop_tree(int(old["pid"]), old.get("start"))
    worker = _spawn_worker(state, info["api_url"], sandbox_env)
    info["worker"] = {"pid": worker.pid, "start": start_time(worker.pid), "running": True}
    info.update(sandbox_endpoint=sandbox_env.get("AWS_ENDPOINT_URL"),
                env_file=str(env_file) if env_file else None, worker_restarted=True)
    _write_state(state, info)
    try:
        _wait_worker(info["api_url"], worker, state / "worker.log", timeout)
    except BaseException:
        down(state)
        raise


def up(state: Path = DEFAULT_STATE, port: int = DEFAULT_PORT,
       sandbox_env: dict[str, str] | None = None, env_file: Path | None = None,
       timeout: float = 180, register_file: Path | None = None, db: str = "postgres") -> dict:
    """Start server and worker (or return what is already running). `port=0`: a free one.
    `db`: the server's database, "postgres" (default) or "sqlite". With `register_file`,
    register its deployments while the worker starts (result under `registered`)."""
    if db not in DATABASES:
        raise PrefectLocalError(f"unknown database {db!r}: expected one of {DATABASES}")
    state = Path(state)
    if sandbox_env is None:
        sandbox_env = read_env_file(env_file) if env_file else {}
    info = read_state(state)
    if info and all(info[n]["running"] for n in PROCESSES if n in info):
        info["already_running"] = True
        if sandbox_env.get("AWS_ENDPOINT_URL") != info.get("sandbox_endpoint"):
            # The sandbox was restarted since: a worker with the old endpoint would send
            # every flow run to a dead port. Only the worker is replaced.
            _restart_worker(state, info, sandbox_env, env_file, timeout)
        if register_file:
            info["registered"] = register(info["api_url"], register_file, state)
        return info
    if info:
        down(state)  # half up: start over cleanly
    state.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    if _port_in_use(port):
        raise PrefectLocalError(f"port {port} on {HOST} is in use: pass --port (0 = any free)")
    api_url, ui_url = f"http://{HOST}:{port}/api", f"http://{HOST}:{port}"
    server_home = state / "server-home"
    server_log, worker_log = state / "server.log", state / "worker.log"
    info = {"api_url": api_url, "ui_url": ui_url, "port": port, "pool": POOL, "db": db,
            "env_file": str(env_file) if env_file else None,
            "sandbox_endpoint": sandbox_env.get("AWS_ENDPOINT_URL"),
            "logs": {"server": str(server_log), "worker": str(worker_log)}}
    database: dict[str, str] = {}
    if db == "postgres":
        info["postgres"], url = _start_postgres(state)
        info["logs"]["postgres"] = str(Path(info["postgres"]["base_dir"]) / "postgres.log")
        _write_state(state, info)
        database["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = url
    try:
        server = _spawn(
            [_prefect_exe(), "server", "start", "--host", HOST, "--port", str(port),
             "--analytics-off"],
            base_env(PREFECT_HOME=str(server_home), PREFECT_SERVER_API_HOST=HOST,
                 PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=api_url,
                 PREFECT_SERVER_LOGGING_LEVEL="WARNING",
                 # Scheduled runs appear within seconds of registering a schedule.
                 PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
                 # A queued deploy (concurrency limit 1, ENQUEUE) retries its slot every 5 s.
                 PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="5", **database),
            server_log)
        info["server"] = {"pid": server.pid, "start": start_time(server.pid)}
        _write_state(state, info)
        _wait_http(f"{api_url}/health", server, server_log, timeout, "prefect server")
        worker = _spawn_worker(state, api_url, sandbox_env)
        info["worker"] = {"pid": worker.pid, "start": start_time(worker.pid)}
        _write_state(state, info)
        registered, register_error = None, None
        if register_file:
            try:
                registered = register(api_url, register_file, state)
            except (PrefectLocalError, subprocess.TimeoutExpired) as e:
                register_error = e  # the stack stays up: fix prefect.yaml, register again
        _wait_worker(api_url, worker, worker_log, timeout)
    except BaseException:
        down(state)
        raise
    if register_error is not None:
        raise RegisterError(f"server and worker are up ({ui_url}), but registration "
                            f"failed: {register_error}")
    info = read_state(state) or info
    if registered is not None:
        info["registered"] = registered
    return info


def down(state: Path = DEFAULT_STATE) -> list[int]:
    """Stop the worker (and its flow runs), the server, then its database; returns every pid
    stopped. The state folder (Prefect homes, the database's files, logs) stays."""
    state = Path(state)
    info = read_state(state)
    if not info:
        return []
    stopped: list[int] = []
    for name in PROCESSES:
        proc = info.get(name) or {}
        if name == "postgres" and proc.get("pid"):
            stopped += _stop_postgres(proc)
        elif proc.get("pid"):
            stopped += stop_tree(int(proc["pid"]), proc.get("start"))
    state_file(state).unlink(missing_ok=True)
    return stopped


# -- registration ----------------------------------------------------------------------------
def api_url_of(state: Path = DEFAULT_STATE) -> str:
    info = read_state(state)
    if not info or not info["server"]["running"]:
        raise PrefectLocalError("the local Prefect server is not running: "
                                "run `papyrus-ops prefect up`")
    return info["api_url"]


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


def register(api_url: str, prefect_file: Path = PREFECT_FILE, state: Path = DEFAULT_STATE,
             timeout: float = 600) -> dict:
    """Work pool (if missing) + `prefect deploy --all`; returns the registered deployments.

    PAPYRUS_OPS_HOME is left out of `prefect deploy`'s environment on purpose: Prefect
    resolves `{{ $VAR }}` at deploy time when the variable is set, and we want the pull step
    to keep its placeholder, resolved by each worker from its own environment at run time.
    """
    created = ensure_work_pool(api_url)
    env = base_env(PREFECT_API_URL=api_url, PREFECT_HOME=str(Path(state) / "cli-home"))
    env.pop("PAPYRUS_OPS_HOME", None)
    home = Path(prefect_file).resolve().parent
    proc = subprocess.run(
        [_prefect_exe(), "deploy", "--all", "--no-prompt", "--prefect-file", str(prefect_file)],
        env=env, cwd=home, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PrefectLocalError("prefect deploy --all failed (exit "
                                f"{proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return {"work_pool_created": created, "deployments": list_deployments(api_url),
            "output": proc.stdout}


def list_deployments(api_url: str) -> list[dict]:
    import httpx

    r = httpx.post(f"{api_url}/deployments/filter", json={"sort": "NAME_ASC"}, timeout=30)
    r.raise_for_status()
    flows = {f["id"]: f["name"] for f in
             httpx.post(f"{api_url}/flows/filter", json={}, timeout=30).json()}
    return [{"name": f"{flows.get(d['flow_id'], '?')}/{d['name']}", "id": d["id"],
             "work_pool": d.get("work_pool_name"),
             "concurrency_limit": (d.get("global_concurrency_limit") or {}).get("limit")
             or d.get("concurrency_limit"),
             "collision_strategy": (d.get("concurrency_options") or {}).get("collision_strategy"),
             "schedules": [s["schedule"] for s in d.get("schedules") or []]}
            for d in r.json()]


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
