"""Preflight checks on the DB secret and the RDS instance (the 2025-10-08 incident).

- `check_secret_vs_rds`: the secret's host/port/dbname against the instance's endpoint
  address/port and DB name; username and password only as present/missing. The app may log in
  as a dedicated role: a username other than the master user is **not** drift, and who the
  secret logs in as is proven by the next check, not by comparing names.
- `check_secret_authenticates`: the secret's username/password open a session on the real
  instance (its endpoint, port and DB name), over SSL. Optional.

Secret shapes read: ``{host, port, username, password, dbname, engine?}`` (what the service
reads), ``database`` as an alias of ``dbname``, and the shape Secrets Manager writes for an RDS
database (``username, password, engine, host, port, dbInstanceIdentifier``, no ``dbname``):
then the database is the instance's DBName (``postgres`` when the instance has none), the one
the RDS truth names anyway. Any other missing key is one line naming it.
- `check_rds_endpoint_unchanged`: the endpoint against the last recorded deploy (tasks.state).
- `check_force_ssl`: `rds.force_ssl=1` in the instance's parameter group.

The password never leaves this module: it is registered with the redactor when read, it is
reported as ``present``/``missing`` and never compared in any output.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from botocore.exceptions import ClientError
from prefect import get_run_logger, task

from ground.log_redaction import REDACTOR  # the process-wide one, log patching armed
from ground.settings import Settings
from tasks import state
from tasks.check_result import AWS_CHECK_OPTS, FAIL, PASS, SECRET_FIELDS, SKIP, result
from tasks.db import (
    DbConnectError,
    DbSecret,
    DbSecretError,
    connect,
    dbname_key,
    parse_db_secret,
    ssl_status,
)


class RdsNotFound(LookupError):
    """The configured RDS instance does not exist (or is not visible)."""


def _logger():
    try:
        return get_run_logger()
    except Exception:  # outside a run (task.fn in unit tests)
        import logging

        return logging.getLogger("papyrus.preflight")


# -- the RDS truth ----------------------------------------------------------------------------
def describe_rds(rds, settings: Settings) -> dict[str, Any]:
    """The instance as plain data: endpoint address/port, master username, DB name, groups."""
    try:
        inst = rds.describe_db_instances(
            DBInstanceIdentifier=settings.rds_instance)["DBInstances"][0]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            raise RdsNotFound(f"RDS instance {settings.rds_instance!r} not found") from None
        raise
    endpoint = inst.get("Endpoint") or {}
    return {
        "identifier": inst["DBInstanceIdentifier"],
        "status": inst.get("DBInstanceStatus"),
        "address": endpoint.get("Address"),
        "port": endpoint.get("Port"),
        "username": inst.get("MasterUsername"),
        # An RDS PostgreSQL instance created without DBName has only the default database.
        "dbname": inst.get("DBName") or "postgres",
        "dbname_from_api": inst.get("DBName"),
        "parameter_groups": [
            {"name": g["DBParameterGroupName"], "apply_status": g.get("ParameterApplyStatus")}
            for g in inst.get("DBParameterGroups", [])
        ],
        "security_groups": [g["VpcSecurityGroupId"] for g in inst.get("VpcSecurityGroups", [])],
    }


# -- the secret -------------------------------------------------------------------------------
def read_secret_fields(sm, secret_id: str, default_dbname: str | None = None
                       ) -> tuple[DbSecret | None, dict[str, Any], str]:
    """(parsed secret or None, lenient view of its fields, problem or "").

    The password is registered with the redactor before anything else; the lenient view has
    ``password`` replaced by ``present``/``missing`` so a malformed secret can still be compared
    field by field, ``dbname`` read through its alias ``database`` and ``dbname_key`` naming the
    key it came from (None: not in the secret). `default_dbname` (the RDS DBName) stands in for
    a secret without one.
    """
    try:
        text = sm.get_secret_value(SecretId=secret_id).get("SecretString")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure",
                    "InvalidRequestException"):
            return None, {}, f"secret {secret_id}: cannot be read ({code})"
        raise
    if text is None:
        return None, {}, f"secret {secret_id}: has no SecretString"
    REDACTOR.add_secret_json(text)
    lenient: dict[str, Any] = {}
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            lenient = {k: doc.get(k) for k in SECRET_FIELDS}
            key = dbname_key(doc)
            lenient["dbname"] = doc[key] if key else None
            lenient["dbname_key"] = key
            lenient["password"] = "present" if doc.get("password") else "missing"
    except ValueError:
        pass
    try:
        return parse_db_secret(text, secret_id, default_dbname), lenient, ""
    except DbSecretError as e:
        return None, lenient, str(e)


def _same(field: str, secret_value: Any, rds_value: Any) -> bool:
    if secret_value is None or rds_value is None:
        return False
    if field == "port":
        try:
            return int(str(secret_value).strip()) == int(rds_value)
        except ValueError:
            return False
    if field == "host":
        return str(secret_value).strip().rstrip(".").lower() == \
            str(rds_value).strip().rstrip(".").lower()
    return str(secret_value) == str(rds_value)


def secret_diff(secret: DbSecret | None, lenient: dict[str, Any],
                truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows {field, stored (in the secret), rds, match, rule}; the password as present/missing.

    host/port/dbname are compared with the instance; a dbname absent from the secret is the
    instance's (rule ``from RDS``); the username is only required to be there (rule
    ``present``), the RDS master username (``master``) is shown for information.
    (`stored`, not `secret`: keys named like "secret" are masked whole by the redactor.)"""
    values = {f: lenient.get(f) for f in SECRET_FIELDS}
    if secret:
        values.update(host=secret.host, port=secret.port, username=secret.username)
    rows = []
    for f in SECRET_FIELDS:
        sv, rv = values.get(f), truth.get("address" if f == "host" else f)
        if f == "username":
            rows.append({"field": f, "stored": sv, "rds": f"not compared (master user {rv})",
                         "master": rv, "rule": "present",
                         "match": isinstance(sv, str) and bool(sv.strip())})
        elif f == "dbname" and sv is None and "dbname_key" in lenient:  # an object without one
            rows.append({"field": f, "stored": None, "rds": rv, "rule": "from RDS",
                         "match": rv is not None})
        else:
            rows.append({"field": f, "stored": sv, "rds": rv, "rule": "equal",
                         "match": _same(f, sv, rv)})
    present = bool(secret.password) if secret else lenient.get("password") == "present"
    rows.append({"field": "password", "stored": "present" if present else "missing",
                 "rds": "(not readable from RDS)", "rule": "present", "match": present})
    return rows


_RDS_NAME = {"host": "endpoint address", "port": "endpoint port", "dbname": "DB name"}


def _row_check(row: dict[str, Any], problem: str, settings: Settings) -> dict[str, Any]:
    f = row["field"]
    listed = re.search(r"missing key\(s\) (.+)$", problem)
    missing_key = bool(listed) and f in listed.group(1).split(", ")
    if f == "username":
        expected = "present (the login is proven by secret.password_authenticates)"
        if row["match"]:
            role = ("the RDS master user" if row["stored"] == row["master"]
                    else f"a dedicated role, not the master user {row['master']}: not drift")
            detail = f"secret username {row['stored']} is {role}"
        else:
            detail = "secret has no usable username" + (f" ({problem})" if problem else "")
        return result("secret.username", expected, row["stored"],
                      PASS if row["match"] else FAIL, detail)
    if row["rule"] == "from RDS":
        detail = (f"secret has no dbname (RDS-shaped secret): the RDS {settings.rds_instance} "
                  f"DB name {row['rds']} is used")
    elif row["match"]:
        detail = f"secret {f} matches the RDS {_RDS_NAME[f]}"
    elif row["stored"] is None or missing_key:
        detail = problem if missing_key else f"secret has no usable {f}" + (
            f" ({problem})" if problem else "")
    else:
        detail = (f"secret {settings.db_secret_id} {f} differs from RDS "
                  f"{settings.rds_instance} {_RDS_NAME[f]}: "
                  "repair with `papyrus-ops repair secret`")
    return result(f"secret.{f}", row["rds"], row["stored"], PASS if row["match"] else FAIL,
                  detail)


@task(name="check-secret-vs-rds", **AWS_CHECK_OPTS)
def check_secret_vs_rds(sm, rds, settings: Settings) -> list[dict[str, Any]]:
    """secret.host/port/dbname vs the instance; secret.username and .password present."""
    truth = describe_rds(rds, settings)
    secret, lenient, problem = read_secret_fields(sm, settings.db_secret_id, truth["dbname"])
    rows = secret_diff(secret, lenient, truth)
    checks = [_row_check(row, problem, settings) for row in rows[:-1]]
    pw = rows[-1]
    pw_detail = "password present (never compared or shown)" if pw["match"] else \
        "secret has no password" + (f" ({problem})" if problem else "")
    checks.append(result("secret.password", "present", pw["stored"],
                         PASS if pw["match"] else FAIL, pw_detail,
                         evidence={"db_connection_vs_rds": {
                             "secret_id": settings.db_secret_id,
                             "rds_instance": settings.rds_instance,
                             "dbname_key": lenient.get("dbname_key"),
                             "problem": problem, "rows": rows}}))
    bad = [c["check"] for c in checks if c["verdict"] != PASS]
    _logger().info("secret %s vs RDS %s: %s", settings.db_secret_id, settings.rds_instance,
                   f"drift in {', '.join(bad)}" if bad else "in sync")
    return checks


@task(name="check-secret-authenticates", **AWS_CHECK_OPTS)
def check_secret_authenticates(sm, rds, settings: Settings, enabled: bool = True
                               ) -> dict[str, Any]:
    """The secret's username/password open an SSL session on the instance's real endpoint."""
    name, expected = "secret.password_authenticates", "authenticates over SSL"
    if not enabled:
        return result(name, expected, "not checked", SKIP, "disabled (--no-db-auth)")
    truth = describe_rds(rds, settings)
    secret, _, problem = read_secret_fields(sm, settings.db_secret_id, truth["dbname"])
    if secret is None:
        return result(name, expected, "not checked", FAIL, problem or "secret unreadable")
    # The RDS truth for where to connect; the secret only for who we are.
    target = dataclasses.replace(secret, host=truth["address"], port=int(truth["port"]),
                                 dbname=truth["dbname"])
    try:
        conn = connect(target, settings, connect_timeout=5, application_name="papyrus-preflight")
    except DbConnectError as e:
        return result(name, expected, "rejected", FAIL, str(e))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            user = cur.fetchone()[0]
            tls = ssl_status(cur)
    finally:
        conn.close()
    if not tls["ssl"]:
        return result(name, expected, "authenticates without SSL", FAIL,
                      f"session as {user} is not encrypted")
    return result(name, expected, expected, PASS,
                  f"authenticated as {user} on {truth['address']}:{truth['port']}/"
                  f"{truth['dbname']} ({tls['ssl_version']})")


# -- the endpoint against the last recorded deploy -----------------------------------------
@task(name="check-rds-endpoint-unchanged", **AWS_CHECK_OPTS)
def check_rds_endpoint_unchanged(rds, s3, settings: Settings) -> dict[str, Any]:
    name = "rds.endpoint_unchanged"
    truth = describe_rds(rds, settings)
    actual = f"{truth['address']}:{truth['port']}"
    try:
        last = state.read_last_deploy(s3, settings)
    except state.StateError as e:
        return result(name, "a readable last-deploy record", actual, FAIL, str(e))
    if last is None:
        return result(name, actual, actual, PASS, "no previous deploy recorded")
    if not last.get("rds_endpoint_address"):
        return result(name, actual, actual, PASS,
                      f"the deploy recorded at {last.get('at', '?')} has no RDS endpoint")
    expected = f"{last.get('rds_endpoint_address')}:{last.get('rds_endpoint_port')}"
    same = _same("host", last.get("rds_endpoint_address"), truth["address"]) and \
        _same("port", last.get("rds_endpoint_port"), truth["port"])
    when = last.get("at", "?")
    detail = (f"same endpoint as the deploy recorded at {when}" if same else
              f"RDS endpoint changed since the deploy recorded at {when} "
              f"({last.get('task_definition_arn') or 'unknown task definition'}): "
              "check the secret and the task before deploying")
    return result(name, expected, actual, PASS if same else FAIL, detail)


# -- rds.force_ssl ------------------------------------------------------------------------------
def parameter(rds, group: str, name: str) -> dict[str, Any] | None:
    """One parameter of a DB parameter group (paginated), or None when not listed."""
    for page in rds.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group):
        for p in page.get("Parameters", []):
            if p.get("ParameterName") == name:
                return p
    return None


@task(name="check-rds-force-ssl", **AWS_CHECK_OPTS)
def check_force_ssl(rds, settings: Settings) -> dict[str, Any]:
    name = "rds.force_ssl"
    truth = describe_rds(rds, settings)
    groups = truth["parameter_groups"]
    if not groups:
        return result(name, "1", "no parameter group", FAIL,
                      f"instance {settings.rds_instance} has no DB parameter group")
    group = groups[0]
    p = parameter(rds, group["name"], "rds.force_ssl")
    value = (p or {}).get("ParameterValue")
    notes = []
    if group["name"] != settings.parameter_group:
        notes.append(f"instance uses {group['name']}, config says {settings.parameter_group}")
    apply_type = (p or {}).get("ApplyType")
    notes.append(f"ApplyType={apply_type or 'not reported'}")
    pending = group.get("apply_status") == "pending-reboot" and apply_type == "static"
    if pending:
        notes.append("pending reboot: not in effect yet")
    ok = value == "1" and not pending
    detail = f"parameter group {group['name']}: rds.force_ssl=" \
             f"{value if value is not None else 'not set'}; " + "; ".join(notes)
    return result(name, "1", value if value is not None else "not set", PASS if ok else FAIL,
                  detail)
