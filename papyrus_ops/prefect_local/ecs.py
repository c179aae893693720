"""The production path on the sandbox: the `papyrus-ecs-sandbox` ECS work pool and the real
prefect-aws ECS worker (`prefect worker start --type ecs`), as the `papyrus-worker` role.

The pool's base job template is prefect-aws's default one with the job variables' defaults from
`deployments/local/ecs-pool.json`, rendered with the sandbox's env file (the flow-run image, its
two roles, the VPC's subnets and task security group: the variables prefect.yaml's `ecs` anchor
names). The worker submits each flow run as an ECS task (RegisterTaskDefinition, RunTask) to
the sandbox, whose ECS runtime starts the task's command — the worker's `prefect flow-run
execute` — as a local process with the flow-run role's credentials (sandbox.ecs_standalone).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ground.iam import FLOW_RUN_LOG_GROUP
from ground.render import render_template
from ground.settings import DEPLOYMENTS, ROOT, load_env
from papyrus_ops.prefect_local.processes import PrefectLocalError, _prefect_exe, _spawn
from papyrus_ops.prefect_local.worker import worker_env

ECS_POOL = "papyrus-ecs-sandbox"
ECS_WORKER_NAME = "papyrus-ecs-sandbox-worker"
POOL_FILE = DEPLOYMENTS / "local" / "ecs-pool.json"
WORKER_PROFILE = "papyrus-worker"  # role papyrus-prefect-worker (deployments/local/iam/worker.*)
# What the pool needs from the sandbox's env file (sandbox.server.Sandbox.ecs_pool_env).
POOL_VARIABLES = ("PAPYRUS_OPS_IMAGE", "PAPYRUS_FLOW_RUN_ROLE_ARN",
                  "PAPYRUS_FLOW_RUN_EXECUTION_ROLE_ARN", "PAPYRUS_VPC_ID", "PAPYRUS_SUBNET_A",
                  "PAPYRUS_SUBNET_B", "PAPYRUS_TASK_SG_ID")


def pool_variables(sandbox_env: dict[str, str], state: Path) -> dict[str, str]:
    """The rendered job-variable defaults of the sandbox's ECS pool."""
    missing = [k for k in POOL_VARIABLES if not sandbox_env.get(k)]
    if missing:
        raise PrefectLocalError(f"the sandbox env has no {', '.join(missing)}: restart the "
                                "sandbox (`papyrus-ops sandbox down && papyrus-ops sandbox up`)")
    values = {**{k: sandbox_env[k] for k in POOL_VARIABLES},
              "cluster": load_env("local").cluster, "flow_run_log_group": FLOW_RUN_LOG_GROUP,
              "PAPYRUS_OPS_HOME": str(ROOT),
              "PAPYRUS_EVIDENCE_ROOT": str(Path(state).resolve() / "ecs-evidence"),
              "PAPYRUS_EVIDENCE_KMS_KEY": sandbox_env.get("PAPYRUS_EVIDENCE_KMS_KEY", "")}
    return render_template(POOL_FILE, values)["variables"]


def base_job_template(sandbox_env: dict[str, str], state: Path) -> dict:
    """prefect-aws's default ECS template, with the sandbox's values as variable defaults."""
    from prefect_aws.workers.ecs_worker import ECSWorker

    template = ECSWorker.get_default_base_job_template()
    props = template["variables"]["properties"]
    for name, value in pool_variables(sandbox_env, state).items():
        if name not in props:
            raise PrefectLocalError(f"{POOL_FILE}: prefect-aws's ECS template has no job "
                                    f"variable {name!r}")
        props[name]["default"] = value
    return template


def ensure_ecs_pool(api_url: str, template: dict, name: str = ECS_POOL) -> bool:
    """Create the ECS pool, or give an existing one this template; True when created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        try:
            c.read_work_pool(name)
        except ObjectNotFound:
            try:
                c.create_work_pool(WorkPoolCreate(
                    name=name, type="ecs", base_job_template=template,
                    description="Papyrus Ops on the sandbox's ECS (prefect-aws ECS worker): "
                                "each flow run is an ECS task in papyrus-ecs-prd."))
                return True
            except ObjectAlreadyExists:
                pass
        c.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        return False


def ecs_worker_env(api_url: str, home: Path, sandbox_env: dict[str, str]) -> dict[str, str]:
    """The process worker's environment, but as the worker role: its flow runs do not inherit
    it (they are ECS tasks, with the task role's credentials)."""
    env = worker_env(api_url, home, sandbox_env)
    env["AWS_PROFILE"] = WORKER_PROFILE
    return env


def spawn_ecs_worker(state: Path, api_url: str,
                     sandbox_env: dict[str, str]) -> subprocess.Popen:
    return _spawn([_prefect_exe(), "worker", "start", "--pool", ECS_POOL, "--type", "ecs",
                   "--name", ECS_WORKER_NAME, "--install-policy", "never"],
                  ecs_worker_env(api_url, Path(state) / "ecs-worker-home", sandbox_env),
                  Path(state) / "ecs-worker.log")
