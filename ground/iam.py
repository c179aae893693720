"""Least privilege as files: each principal's trust and permission policy, `deployments/<env>/iam/`.

`principals(settings, variables)` renders them (`${name}` via `render_template`, like the task
definition) for whoever needs them: the sandbox creates the roles from them and enforces them;
a reviewer or Terraform reads the same files. `variables(...)` is what the templates need.
`allows(policy, action, resource)` is the plain evaluation used where no AWS answers (the
sandbox's ECS runtime acting with the execution role; tests of a policy document).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ground.render import render_template
from ground.settings import Settings

# principal -> its role name (the task roles' names come from config.toml [ecs]).
CI_DEPLOY_ROLE = "papyrus-deploy-oidc"
FLOW_RUN_ROLE = "papyrus-ops-flow-run"
FLOW_RUN_EXECUTION_ROLE = "papyrus-ops-execution"
WORKER_ROLE = "papyrus-prefect-worker"
FLOW_RUN_LOG_GROUP = "/ecs/papyrus-ops"
FLOW_RUN_REPOSITORY = "papyrus-ops"  # the flow-run image (docs/prefect.md)
# The role ECS moves listener rules with in a blue/green deployment ([ecs] infrastructure_role;
# ECS Developer Guide, "Amazon ECS infrastructure IAM role for load balancers").
INFRASTRUCTURE_ROLE = "papyrusEcsInfrastructureRole"
PRINCIPALS = ("ci-deploy", "flow-run", "worker", "task", "execution", "flow-run-execution")


@dataclass(frozen=True)
class Principal:
    key: str  # "flow-run", ... (the file name's stem)
    role: str  # the IAM role name
    trust: dict
    policy: dict

    def arn(self, account_id: str) -> str:
        return f"arn:aws:iam::{account_id}:role/{self.role}"


def role_names(settings: Settings) -> dict[str, str]:
    return {"ci-deploy": CI_DEPLOY_ROLE, "flow-run": FLOW_RUN_ROLE, "worker": WORKER_ROLE,
            "task": settings.task_role, "execution": settings.execution_role,
            "flow-run-execution": FLOW_RUN_EXECUTION_ROLE}


def iam_dir(settings: Settings) -> Path:
    return settings.folder / "iam"


def variables(settings: Settings, account_id: str, *, rds_security_group_id: str,
              alb_log_bucket: str, github_repo: str,
              evidence_kms_key_arn: str | None = None,
              evidence_signing_key_arn: str | None = None) -> dict[str, Any]:
    """What the templates substitute. The ids AWS assigns (the RDS security group, the evidence
    bucket's KMS key, the manifest signing key) and the GitHub repository are the caller's:
    Terraform outputs in production, the sandbox's own seeding locally."""
    return {
        "account_id": account_id, "region": settings.region,
        "cluster": settings.cluster, "service": settings.service, "family": settings.family,
        "log_group": settings.log_group, "ecr_repository": settings.ecr_repository,
        "db_secret_id": settings.db_secret_id, "token_secret_id": settings.token_secret_id,
        "rds_instance": settings.rds_instance, "parameter_group": settings.parameter_group,
        "rds_security_group_id": rds_security_group_id,
        "evidence_bucket": settings.evidence_bucket, "alb_log_bucket": alb_log_bucket,
        "evidence_kms_key_arn": evidence_kms_key_arn
        or f"arn:aws:kms:{settings.region}:{account_id}:key/*",
        "evidence_signing_key_arn": evidence_signing_key_arn
        or f"arn:aws:kms:{settings.region}:{account_id}:key/*",
        "task_role": settings.task_role, "execution_role": settings.execution_role,
        "infrastructure_role": settings.infrastructure_role or INFRASTRUCTURE_ROLE,
        "flow_run_role": FLOW_RUN_ROLE, "flow_run_execution_role": FLOW_RUN_EXECUTION_ROLE,
        "worker_role": WORKER_ROLE, "ci_role": CI_DEPLOY_ROLE,
        "flow_run_log_group": FLOW_RUN_LOG_GROUP, "github_repo": github_repo,
        "flow_run_repository": FLOW_RUN_REPOSITORY,
    }


def principals(settings: Settings, variables: dict[str, Any]) -> dict[str, Principal]:
    folder, names = iam_dir(settings), role_names(settings)
    return {key: Principal(key, names[key],
                           render_template(folder / f"{key}.trust.json", variables),
                           render_template(folder / f"{key}.policy.json", variables))
            for key in PRINCIPALS}


# -- evaluation ---------------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern:
    """IAM's wildcards: `*` any run of characters, `?` exactly one; the rest is literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern), re.DOTALL)


def matches(pattern: str, value: str) -> bool:
    # Action names are case-insensitive in IAM; resource ARNs are not.
    return _glob(pattern).fullmatch(value) is not None


def _listed(element: Any) -> list[str]:
    return [element] if isinstance(element, str) else list(element or [])


def allows(policy: dict, action: str, resource: str) -> bool:
    """Identity-policy evaluation without conditions: an explicit Deny wins, else any Allow.
    (Conditions are not evaluated: callers that need them say so.)"""
    allowed = False
    for st in _listed_statements(policy):
        acts = st.get("Action")
        hit = (any(matches(a.lower(), action.lower()) for a in _listed(acts)) if acts is not None
               else not any(matches(a.lower(), action.lower())
                            for a in _listed(st.get("NotAction"))))
        if not hit:
            continue
        res = st.get("Resource")
        rhit = (any(matches(r, resource) for r in _listed(res)) if res is not None
                else not any(matches(r, resource) for r in _listed(st.get("NotResource"))))
        if not rhit:
            continue
        if st.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def _listed_statements(policy: dict) -> list[dict]:
    st = policy.get("Statement", [])
    return [st] if isinstance(st, dict) else list(st)


def actions(policy: dict) -> set[str]:
    """Every action a policy names (as written)."""
    return {a for st in _listed_statements(policy) for a in _listed(st.get("Action"))}


def without_action(policy: dict, action: str) -> dict:
    """`policy` with `action` taken out of every statement (a statement left empty goes)."""
    out = []
    for st in _listed_statements(policy):
        acts = [a for a in _listed(st.get("Action")) if a != action]
        if acts:
            out.append({**st, "Action": acts})
    return {**policy, "Statement": out}
