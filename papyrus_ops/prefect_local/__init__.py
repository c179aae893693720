"""A local Prefect (server + `papyrus-local` process worker) for the sandbox, by pid.

`up()` starts `prefect server start` on 127.0.0.1 and a process worker whose environment
carries the sandbox env file's variables (AWS_ENDPOINT_URL and the sandbox credentials), so
the flow runs it starts reach the sandbox exactly like the CLI does. Both run in their own
session; their pids (and start times, so a recycled pid is never touched) go into
`<state>/prefect.json`. `down()` stops each recorded process and every descendant it has,
including flow-run processes that Prefect starts in sessions of their own. `register()`
creates the work pool if it is missing and runs `prefect deploy --all` on prefect.yaml.

Telemetry is off in every process started here; everything listens on loopback only.

Modules: `processes` (pids, process trees, ports, the base environment), `state`
(`prefect.json`), `database` (the server's PostgreSQL), `worker` (the work pool and the process
worker), `deployments` (`register`), `stack` (`up` / `down`), `temporary` (`TemporaryServer`).
The names below are the package's API (the CLI and the end-to-end tests use them).
"""

from papyrus_ops.prefect_local.database import DATABASES
from papyrus_ops.prefect_local.deployments import (
    PREFECT_FILE,
    RegisterError,
    list_deployments,
    register,
)
from papyrus_ops.prefect_local.ecs import ECS_POOL, ECS_WORKER_NAME, base_job_template
from papyrus_ops.prefect_local.processes import (
    HOST,
    TELEMETRY_OFF,
    PrefectLocalError,
    _port_in_use,
    _prefect_exe,
    base_env,
    descendants,
    is_same_process,
    start_time,
    stop_tree,
)
from papyrus_ops.prefect_local.stack import DEFAULT_PORT, down, up
from papyrus_ops.prefect_local.state import (
    DEFAULT_STATE,
    PROCESSES,
    api_url_of,
    read_state,
    state_file,
)
from papyrus_ops.prefect_local.temporary import TemporaryServer
from papyrus_ops.prefect_local.worker import POOL, WORKER_NAME, ensure_work_pool, worker_env

__all__ = [
    "DATABASES", "DEFAULT_PORT", "DEFAULT_STATE", "ECS_POOL", "ECS_WORKER_NAME", "HOST", "POOL",
    "PREFECT_FILE", "PROCESSES",
    "TELEMETRY_OFF", "WORKER_NAME", "PrefectLocalError", "RegisterError", "TemporaryServer",
    "_port_in_use", "_prefect_exe", "api_url_of", "base_env", "base_job_template",
    "descendants", "down",
    "ensure_work_pool", "is_same_process", "list_deployments", "read_state", "register",
    "start_time", "state_file", "stop_tree", "up", "worker_env",
]
