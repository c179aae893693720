"""The production path on the sandbox: the `papyrus-ecs-sandbox` ECS work pool and the real
prefect-aws ECS worker (`prefect worker start --type ecs`), as the `papyrus-worker` role.

The pool's base job template is `deployments/local/ecs-pool.json` — production's template
(`deployments/prd/ecs-pool.json`: prefect-aws's own, with Papyrus's defaults) rendered by the same
code (`tasks.ecs_pool`), with the sandbox's values (the flow-run image, its two roles, the VPC's
subnets and task security group) from the sandbox's env file. The worker submits each flow
run as an ECS task (RegisterTaskDefinition, RunTask) to the sandbox, whose ECS runtime starts
the task's command — the worker's `prefect flow-run execute` — as a local process with the
flow-run role's credentials (sandbox.ecs_standalone).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from ground.iam import FLOW_RUN_LOG_GROUP
from ground.settings import ROOT, load_env
from papyrus_ops.prefect_local.ecs_pool import apply_ecs_pool
from papyrus_ops.prefect_local.processes import PrefectLocalError, _prefect_exe, _spawn
from papyrus_ops.prefect_local.worker import worker_env
from tasks.ecs_pool import check_ops_image, render_pool_template

ECS_POOL = "papyrus-ecs-sandbox"
ECS_WORKER_NAME = "papyrus-ecs-sandbox-worker"
WORKER_PROFILE = "papyrus-worker"  # role papyrus-prefect-worker (deployments/local/iam/worker.*)
# What the pool needs from the sandbox's env file (sandbox.server.Sandbox.ecs_pool_env).
POOL_VARIABLES = ("PAPYRUS_OPS_IMAGE", "PAPYRUS_FLOW_RUN_ROLE_ARN",
                  "PAPYRUS_FLOW_RUN_EXECUTION_ROLE_ARN", "PAPYRUS_VPC_ID", "PAPYRUS_SUBNET_A",
                  "PAPYRUS_SUBNET_B", "PAPYRUS_TASK_SG_ID")


def pool_variables(sandbox_env: dict[str, str], state: Path) -> dict[str, Any]:
    """What `deployments/local/ecs-pool.json` substitutes, from the sandbox's env file: the
    values `papyrus-ops prefect pool` looks up in AWS for production (tasks.ecs_pool), plus
    where this checkout and the flow-run tasks' evidence are."""
    missing = [k for k in POOL_VARIABLES if not sandbox_env.get(k)]
    if missing:
        raise PrefectLocalError(f"the sandbox env has no {', '.join(missing)}: restart the "
                                "sandbox (`papyrus-ops sandbox down && papyrus-ops sandbox up`)")
    settings = load_env("local")
    role_arn = sandbox_env["PAPYRUS_FLOW_RUN_ROLE_ARN"]
    return {
        "account_id": role_arn.split(":")[4], "region": settings.region,
        "cluster": settings.cluster,
        "ops_image": check_ops_image(sandbox_env["PAPYRUS_OPS_IMAGE"]),
        "flow_run_role": role_arn.rsplit("/", 1)[-1],
        "flow_run_execution_role":
            sandbox_env["PAPYRUS_FLOW_RUN_EXECUTION_ROLE_ARN"].rsplit("/", 1)[-1],
        "flow_run_log_group": FLOW_RUN_LOG_GROUP, "vpc_id": sandbox_env["PAPYRUS_VPC_ID"],
        "subnet_ids": list(dict.fromkeys([sandbox_env["PAPYRUS_SUBNET_A"],
                                          sandbox_env["PAPYRUS_SUBNET_B"]])),
        "task_security_group_id": sandbox_env["PAPYRUS_TASK_SG_ID"],
        "checkout": str(ROOT),
        "evidence_root": str(Path(state).resolve() / "ecs-evidence"),
        "evidence_kms_key": sandbox_env.get("PAPYRUS_EVIDENCE_KMS_KEY", ""),
    }


def base_job_template(sandbox_env: dict[str, str], state: Path) -> dict:
    """deployments/local/ecs-pool.json rendered: the same template as production's."""
    return render_pool_template(load_env("local"), pool_variables(sandbox_env, state))


def ensure_ecs_pool(api_url: str, template: dict, name: str = ECS_POOL) -> bool:
    """Create the ECS pool, or give an existing one this template; True when created."""
    return apply_ecs_pool(api_url, template, name) == "created"


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
