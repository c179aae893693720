"""`up()` / `down()`: the local server, its database and the worker, as one stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ground.envfile import read_env_file
from papyrus_ops.prefect_local.database import DATABASES, _start_postgres, _stop_postgres
from papyrus_ops.prefect_local.deployments import RegisterError, register
from papyrus_ops.prefect_local.ecs import (
    ECS_POOL,
    ECS_WORKER_NAME,
    base_job_template,
    ensure_ecs_pool,
    spawn_ecs_worker,
)
from papyrus_ops.prefect_local.processes import (
    HOST,
    PrefectLocalError,
    _free_port,
    _port_in_use,
    _prefect_exe,
    _spawn,
    _wait_http,
    base_env,
    start_time,
    stop_tree,
    stop_trees,
)
from papyrus_ops.prefect_local.seed import seed
from papyrus_ops.prefect_local.state import (
    DEFAULT_STATE,
    PROCESSES,
    _write_state,
    read_state,
    state_file,
)
from papyrus_ops.prefect_local.worker import POOL, _spawn_worker, _wait_worker

ECS_WAIT = {"pool": ECS_POOL, "name": ECS_WORKER_NAME}
WORKERS = ("ecs_worker", "worker")
WORKER_GRACE = 5.0

DEFAULT_PORT = 4200


def _restart_worker(state: Path, info: dict, sandbox_env: dict[str, str],
                    env_file: Path | None, timeout: float) -> None:
    old = info["worker"]
    stop_tree(int(old["pid"]), old.get("start"))
    worker = _spawn_worker(state, info["api_url"], sandbox_env)
    info["worker"] = {"pid": worker.pid, "start": start_time(worker.pid), "running": True}
    ecs_worker = None
    if info.get("ecs_worker"):
        old = info["ecs_worker"]
        stop_tree(int(old["pid"]), old.get("start"))
        ensure_ecs_pool(info["api_url"], base_job_template(sandbox_env, state))
        ecs_worker = spawn_ecs_worker(state, info["api_url"], sandbox_env)
        info["ecs_worker"] = {"pid": ecs_worker.pid, "start": start_time(ecs_worker.pid),
                              "running": True}
    info.update(sandbox_endpoint=sandbox_env.get("AWS_ENDPOINT_URL"),
                env_file=str(env_file) if env_file else None, worker_restarted=True)
    _write_state(state, info)
    try:
        _wait_worker(info["api_url"], worker, state / "worker.log", timeout)
        if ecs_worker is not None:
            _wait_worker(info["api_url"], ecs_worker, state / "ecs-worker.log", timeout,
                         **ECS_WAIT)
    except BaseException:
        down(state)
        raise


def up(state: Path = DEFAULT_STATE, port: int = DEFAULT_PORT,
       sandbox_env: dict[str, str] | None = None, env_file: Path | None = None,
       timeout: float = 180, register_file: Path | None = None, db: str = "postgres",
       ecs: bool = False) -> dict:
    """Start server and worker (or return what is already running). `port=0`: a free one.
    `db`: the server's database, "postgres" (default) or "sqlite". With `register_file`,
    register its deployments while the worker starts (result under `registered`). With `ecs`,
    also the `papyrus-ecs-sandbox` ECS pool and the prefect-aws ECS worker for it."""
    if db not in DATABASES:
        raise PrefectLocalError(f"unknown database {db!r}: expected one of {DATABASES}")
    state = Path(state)
    if sandbox_env is None:
        sandbox_env = read_env_file(env_file) if env_file else {}
    info = read_state(state)
    if info and all(info[n]["running"] for n in PROCESSES if n in info) \
            and (not ecs or info.get("ecs_worker")):
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
    else:
        seed(server_home / "prefect.db")
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
        ecs_worker = None
        if ecs:
            template = base_job_template(sandbox_env, state)
            info["ecs_pool_created"] = ensure_ecs_pool(api_url, template)
            ecs_worker = spawn_ecs_worker(state, api_url, sandbox_env)
            info["ecs_worker"] = {"pid": ecs_worker.pid, "start": start_time(ecs_worker.pid)}
            info["ecs_pool"] = ECS_POOL
            info["logs"]["ecs_worker"] = str(state / "ecs-worker.log")
            _write_state(state, info)
        registered, register_error = None, None
        if register_file:
            try:
                registered = register(api_url, register_file, state)
            except (PrefectLocalError, subprocess.TimeoutExpired) as e:
                register_error = e  # the stack stays up: fix prefect.yaml, register again
        _wait_worker(api_url, worker, worker_log, timeout)
        if ecs_worker is not None:
            _wait_worker(api_url, ecs_worker, state / "ecs-worker.log", timeout, **ECS_WAIT)
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
    # The workers together, then the server, then its database. A worker's first SIGTERM only
    # stops it taking runs: it then waits for the runs it watches (its flow-run processes,
    # signalled with it, or an ECS task), which `down` ends anyway; hence a short grace.
    running = {n: info[n] for n in PROCESSES if (info.get(n) or {}).get("pid")}
    stopped = stop_trees([(int(p["pid"]), p.get("start")) for n, p in running.items()
                          if n in WORKERS], timeout=WORKER_GRACE)
    if "server" in running:
        stopped += stop_tree(int(running["server"]["pid"]), running["server"].get("start"))
    if "postgres" in running:
        stopped += _stop_postgres(running["postgres"])
    state_file(state).unlink(missing_ok=True)
    return stopped
