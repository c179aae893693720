"""Guarded repairs for the drifts preflight finds: plan first, apply only when asked.

Three repairs, each a pair of Prefect tasks (``.fn`` for unit tests):

- ``secret``: rewrite host/port/dbname of the DB secret from the RDS truth with
  ``put_secret_value`` (``dbname`` under the key the secret uses: ``dbname`` or its alias
  ``database``; a secret without either keeps reading the RDS DBName and gets none). It never
  writes ``username`` or ``password``: the app may log in as a dedicated role, and the
  password belongs to whoever the username is; every other key is kept as it is.
- ``sg``: on the security groups attached to the RDS instance (never another group): on the
  configured RDS group, authorize ``tcp 5432`` from the ECS task SG when it is missing, then
  revoke the open (CIDR / prefix list), foreign-SG, duplicate and too-wide rules that cover 5432;
  on every other attached group, revoke the open and foreign rules covering 5432 (authorize
  first, so the service never loses its path to the database). Refused when the configured group
  is not attached: which groups the instance uses is Terraform's (modify-db-instance), not ours.
- ``exec``: ``update_service(enableExecuteCommand=True)``, no forced deployment.

A plan is plain data::

    {"repair": "sg", "target": "...", "noop": False,
     "actions": [{"action": "revoke", "rule_id": "sgr-…", "summary": "…"}, …],
     "before": {...}}                         # redacted view of the current state

`apply_*` never trusts a stale plan: it reads the current state again, recomputes the plan and
refuses (`RepairConflict`) when it differs from the one that was shown. It returns
``{"repair", "applied": [actions], "after": {...}}``. Plans and results hold no secret: the
password is ``present``/``missing`` only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.log_redaction import REDACTOR  # the process-wide one, log patching armed
from ground.settings import Settings
from tasks.check_result import SECRET_FIELDS
from tasks.db import DBNAME_KEYS, dbname_key
from tasks.ecs_checks import check_ecs_exec, describe_service
from tasks.secrets_rds import _same, check_secret_vs_rds, describe_rds
from tasks.security_groups import (
    PG_PORT,
    attached_groups,
    check_rds_sg,
    describe_rule,
    label,
    not_attached,
)

REPAIRS = ("secret", "sg", "exec")
# Reads are retried; writes are not retried by Prefect (botocore retries only what is safe).
class RepairError(RuntimeError):
    """The repair cannot be planned or applied safely; nothing was changed."""


def _retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except (RepairError, LookupError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - AWS/network trouble may be transient
        return True
    return False


READ_OPTS = {"retries": 2, "retry_delay_seconds": [1, 3], "retry_condition_fn": _retry_transient,
             "cache_policy": NO_CACHE, "persist_result": False}
WRITE_OPTS = {"cache_policy": NO_CACHE, "persist_result": False}


class RepairConflict(RepairError):
    """The state changed between plan and apply; nothing was changed. Plan again."""


def _same_actions(a: list[dict], b: list[dict]) -> bool:
    def key(x):
        return [{k: v for k, v in d.items() if k != "summary"} for d in x]

    return key(a) == key(b)


# -- secret -----------------------------------------------------------------------------------
def _read_secret_doc(sm, secret_id: str) -> tuple[dict[str, Any], str, str]:
    """(the secret's JSON object, its VersionId, its ARN); the password registered first."""
    try:
        resp = sm.get_secret_value(SecretId=secret_id)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        raise RepairError(f"secret {secret_id}: cannot be read ({code})") from None
    text = resp.get("SecretString")
    if text is None:
        raise RepairError(f"secret {secret_id}: has no SecretString")
    REDACTOR.add_secret_json(text)
    try:
        doc = json.loads(text)
    except ValueError:
        raise RepairError(f"secret {secret_id}: not JSON; refusing to rewrite it") from None
    if not isinstance(doc, dict):
        raise RepairError(f"secret {secret_id}: not a JSON object; refusing to rewrite it")
    return doc, resp.get("VersionId", ""), resp.get("ARN", secret_id)


def secret_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of the secret: its non-password fields, password present/missing."""
    key = dbname_key(doc)
    view = {f: doc.get(f) for f in SECRET_FIELDS}
    view["dbname"] = doc.get(key) if key else None
    view["dbname_key"] = key
    # `password_present`, not `password`: values under password-like keys are masked whole.
    view["password_present"] = bool(doc.get("password"))
    view["other_keys"] = sorted(k for k in doc if k not in (*SECRET_FIELDS, "password"))
    return view


NEVER_WRITTEN = ("username", "password")  # who logs in, and with what: not ours to rewrite


def _secret_actions(doc: dict[str, Any], truth: dict[str, Any]) -> list[dict[str, Any]]:
    target = {"host": truth["address"], "port": int(truth["port"])}
    db_key = dbname_key(doc)
    if db_key:  # a secret without dbname reads the RDS DBName: nothing to fix
        target[db_key] = truth["dbname"]
    actions = []
    for key, want in target.items():
        field = "dbname" if key in DBNAME_KEYS else key
        if not _same(field, doc.get(key), want):
            actions.append({"action": "set", "key": key, "from": doc.get(key), "to": want,
                            "summary": f"{key}: {doc.get(key)!r} -> {want!r} (RDS truth)"})
    return actions


@task(name="plan-repair-secret", **READ_OPTS)
def plan_secret(sm, rds, settings: Settings) -> dict[str, Any]:
    doc, version, _ = _read_secret_doc(sm, settings.db_secret_id)
    truth = describe_rds(rds, settings)
    actions = _secret_actions(doc, truth)
    note = "running tasks read the secret at start: deploy (new tasks) to use it"
    if not doc.get("password"):
        note += "; the secret has NO password and this repair does not set one"
    if not doc.get("username"):
        note += "; the secret has NO username and this repair does not set one"
    return REDACTOR.redact_obj({
        "repair": "secret", "target": f"secret {settings.db_secret_id}",
        "source": f"RDS instance {settings.rds_instance}", "noop": not actions,
        "actions": actions, "version_id": version, "before": secret_view(doc), "note": note,
    })


@task(name="apply-repair-secret", **WRITE_OPTS)
def apply_secret(sm, rds, settings: Settings, plan: dict[str, Any]) -> dict[str, Any]:
    doc, version, arn = _read_secret_doc(sm, settings.db_secret_id)
    truth = describe_rds(rds, settings)
    actions = _secret_actions(doc, truth)
    if not _same_actions(actions, plan["actions"]):
        raise RepairConflict(f"secret {settings.db_secret_id} or RDS changed since the plan; "
                             "nothing written, plan again")
    if not actions:
        return {"repair": "secret", "applied": [], "after": secret_view(doc)}
    if any(a["key"] in NEVER_WRITTEN for a in actions):  # cannot happen: belt and braces
        raise RepairError(f"secret {settings.db_secret_id}: refusing to write username/password")
    new = dict(doc)  # username, password and every other key as they are
    for a in actions:
        new[a["key"]] = a["to"]
    # Idempotent on retry: same previous version + same changes -> same request token.
    token = hashlib.sha256(json.dumps([arn, version, [(a["key"], a["to"]) for a in actions]],
                                      default=str).encode()).hexdigest()[:64]
    sm.put_secret_value(SecretId=settings.db_secret_id, SecretString=json.dumps(new),
                        ClientRequestToken=token)
    after, _, _ = _read_secret_doc(sm, settings.db_secret_id)
    return REDACTOR.redact_obj({"repair": "secret", "applied": actions,
                                "after": secret_view(after)})


# -- security group ---------------------------------------------------------------------------
def _sg_state(ec2, rds, settings: Settings) -> dict[str, Any]:
    """The groups attached to the instance (tasks.security_groups.attached_groups). Refuses
    when the configured group is not attached: this repair edits rules of attached groups only
    and never changes which groups the instance uses."""
    st = attached_groups(ec2, rds, settings)
    if not st["configured_attached"]:
        raise RepairError(f"{not_attached(st, settings)}; this repair changes rules of attached "
                          "groups only: nothing changed, attach it first")
    return st


def _sg_view(st: dict[str, Any]) -> dict[str, Any]:
    own = st["groups"][0]  # the configured group comes first
    return {"group_id": own["group_id"], "task_sg_id": st["ids"]["task_sg_id"],
            "db_instance": st["instance"], "attached_group_ids": st["attached"],
            "analysis": own["analysis"], "SecurityGroupRules": own["SecurityGroupRules"],
            "attached_groups": [{k: g[k] for k in ("group_id", "group_name", "configured",
                                                    "analysis", "SecurityGroupRules")}
                                for g in st["groups"]]}


def _sg_actions(st: dict[str, Any]) -> list[dict]:
    ids = st["ids"]
    actions: list[dict[str, Any]] = []
    for g in st["groups"]:
        a, gid = g["analysis"], g["group_id"]
        by_id = {r["SecurityGroupRuleId"]: r for r in g["SecurityGroupRules"]}
        where = label(gid, st["names"])
        if g["configured"] and a["missing"]:
            actions.append({"action": "authorize", "group_id": gid, "protocol": "tcp",
                            "port": PG_PORT, "source_group": ids["task_sg_id"],
                            "summary": f"authorize tcp {PG_PORT} from {ids['task_sg_id']} "
                                       f"on {where}"})
        for reason in ("open", "foreign", "duplicates", "wide"):
            for rid in a[reason]:
                actions.append({"action": "revoke", "group_id": gid, "rule_id": rid,
                                "reason": reason,
                                "summary": f"revoke {describe_rule(by_id[rid])} on {where} "
                                           f"({reason})"})
    return actions


@task(name="plan-repair-sg", **READ_OPTS)
def plan_sg(ec2, rds, settings: Settings) -> dict[str, Any]:
    st = _sg_state(ec2, rds, settings)
    actions = _sg_actions(st)
    others = [label(g, st["names"]) for g in st["attached"] if g != st["ids"]["rds_sg_id"]]
    target = (f"security group {settings.rds_security_group} ({st['ids']['rds_sg_id']})"
              + (f" and {', '.join(others)} (attached to {settings.rds_instance})"
                 if others else ""))
    return {"repair": "sg", "target": target, "noop": not actions, "actions": actions,
            "before": _sg_view(st)}


@task(name="apply-repair-sg", **WRITE_OPTS)
def apply_sg(ec2, rds, settings: Settings, plan: dict[str, Any]) -> dict[str, Any]:
    st = _sg_state(ec2, rds, settings)
    actions = _sg_actions(st)
    if not _same_actions(actions, plan["actions"]):
        raise RepairConflict(f"the security groups of {settings.rds_instance} changed since the "
                             "plan; nothing changed, plan again")
    attached = set(st["attached"])
    if any(a["group_id"] not in attached for a in actions):  # cannot happen: belt and braces
        raise RepairError("refusing to change a group that is not attached to the instance")
    done = []
    # Authorize first: the tasks keep their path to the database throughout.
    for act in (x for x in actions if x["action"] == "authorize"):
        ec2.authorize_security_group_ingress(GroupId=act["group_id"], IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": PG_PORT, "ToPort": PG_PORT,
            "UserIdGroupPairs": [{"GroupId": act["source_group"],
                                  "Description": "Papyrus ECS tasks"}]}])
        done.append(act)
    revoke = [x for x in actions if x["action"] == "revoke"]
    for gid in dict.fromkeys(x["group_id"] for x in revoke):
        mine = [x for x in revoke if x["group_id"] == gid]
        ec2.revoke_security_group_ingress(GroupId=gid,
                                          SecurityGroupRuleIds=[x["rule_id"] for x in mine])
        done.extend(mine)
    return {"repair": "sg", "applied": done,
            "after": _sg_view(attached_groups(ec2, rds, settings))}


# -- ECS Exec ---------------------------------------------------------------------------------
def _exec_view(svc: dict[str, Any]) -> dict[str, Any]:
    return {"service": svc.get("serviceName"), "enableExecuteCommand":
            bool(svc.get("enableExecuteCommand")), "taskDefinition": svc.get("taskDefinition"),
            "deployments": len(svc.get("deployments", []))}


def _exec_actions(settings: Settings, svc: dict[str, Any]) -> list[dict[str, Any]]:
    if svc.get("enableExecuteCommand"):
        return []
    return [{"action": "update_service", "enableExecuteCommand": True,
             "forceNewDeployment": False,
             "summary": f"update_service {settings.service}: enableExecuteCommand=true "
                        "(no forced deployment)"}]


@task(name="plan-repair-exec", **READ_OPTS)
def plan_exec(ecs, settings: Settings) -> dict[str, Any]:
    svc = describe_service(ecs, settings)
    actions = _exec_actions(settings, svc)
    return {"repair": "exec", "target": f"ECS service {settings.service} "
            f"({settings.cluster})", "noop": not actions, "actions": actions,
            "before": _exec_view(svc),
            "note": "running tasks get ECS Exec when they are replaced (the next deploy)"}


@task(name="apply-repair-exec", **WRITE_OPTS)
def apply_exec(ecs, settings: Settings, plan: dict[str, Any]) -> dict[str, Any]:
    svc = describe_service(ecs, settings)
    actions = _exec_actions(settings, svc)
    if not _same_actions(actions, plan["actions"]):
        raise RepairConflict(f"service {settings.service} changed since the plan; nothing "
                             "changed, plan again")
    if actions:
        ecs.update_service(cluster=settings.cluster, service=settings.service,
                           enableExecuteCommand=True)
    return {"repair": "exec", "applied": actions,
            "after": _exec_view(describe_service(ecs, settings))}


# -- registry ---------------------------------------------------------------------------------
# what -> plan/apply tasks, the clients they take (in order, then settings), the preflight check
# that proves the repair (same arguments), and the evidence name stem for before/after.
SPECS: dict[str, dict[str, Any]] = {
    "secret": {"plan": plan_secret, "apply": apply_secret, "check": check_secret_vs_rds,
               "clients": ("secretsmanager", "rds"), "evidence": "db_secret"},
    "sg": {"plan": plan_sg, "apply": apply_sg, "check": check_rds_sg,
           "clients": ("ec2", "rds"),
           "evidence": "rds_sg_inbound"},
    "exec": {"plan": plan_exec, "apply": apply_exec, "check": check_ecs_exec,
             "clients": ("ecs",), "evidence": "ecs_service_exec"},
}
