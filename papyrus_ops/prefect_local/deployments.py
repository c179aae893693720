"""Registering one environment's deployments of prefect.yaml and listing them.

Each deployment in prefect.yaml is named `<what>-<env>` (`deploy-local`, `deploy-prd`, …), so an
environment is a name pattern: `prefect deploy -n '*/*-prd'`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ground.settings import ROOT
from papyrus_ops.prefect_local.automations import AutomationsError, register_automations
from papyrus_ops.prefect_local.ecs_pool import ECS_POOL, work_pool_exists
from papyrus_ops.prefect_local.processes import PrefectLocalError, _prefect_exe, base_env
from papyrus_ops.prefect_local.state import DEFAULT_STATE
from papyrus_ops.prefect_local.worker import ensure_work_pool

PREFECT_FILE = ROOT / "prefect.yaml"


class RegisterError(PrefectLocalError):
    """`up --register`: the stack is up, the deployments did not register."""


def register(api_url: str, prefect_file: Path = PREFECT_FILE, state: Path = DEFAULT_STATE,
             timeout: float = 600, env: str = "local") -> dict:
    """`prefect deploy -n '*/*-<env>'`; returns the registered deployments. For `local` the
    process work pool is created first if missing; another environment's ECS pool must exist
    (`papyrus-ops prefect pool`): `prefect deploy` refuses a missing pool when not interactive.

    PAPYRUS_OPS_HOME is left out of `prefect deploy`'s environment on purpose: Prefect
    resolves `{{ $VAR }}` at deploy time when the variable is set, and we want the pull step
    to keep its placeholder, resolved by each worker from its own environment at run time.
    """
    if env == "local":
        created = ensure_work_pool(api_url)
    else:
        created = False
        if not work_pool_exists(api_url, ECS_POOL):
            raise PrefectLocalError(
                f"work pool {ECS_POOL!r} does not exist on {api_url}: create it first with "
                f"`papyrus-ops prefect pool --env {env} --image <flow-run image@sha256:…>`")
    penv = base_env(PREFECT_API_URL=api_url, PREFECT_HOME=str(Path(state) / "cli-home"))
    penv.pop("PAPYRUS_OPS_HOME", None)
    home = Path(prefect_file).resolve().parent
    proc = subprocess.run(
        [_prefect_exe(), "deploy", "-n", f"*/*-{env}", "--no-prompt", "--prefect-file",
         str(prefect_file)],
        env=penv, cwd=home, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PrefectLocalError(f"prefect deploy -n '*/*-{env}' failed (exit "
                                f"{proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    # The automations go with the deployments (deployments/<env>/automations.toml).
    try:
        automations = register_automations(api_url, env)
    except AutomationsError as e:
        raise PrefectLocalError(f"automations not registered: {e}") from None
    return {"work_pool_created": created, "deployments": list_deployments(api_url),
            "automations": automations, "output": proc.stdout}


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
