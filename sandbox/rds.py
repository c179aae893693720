"""RDS parameters, pending reboots and events as RDS reports them, where moto keeps none.

moto 5.2.5 stores a parameter group's modified parameters and nothing else: no engine
defaults (`DescribeEngineDefaultParameters` is not implemented), `DescribeDBParameters`
ignores `Source`, every instance's parameter group is always `in-sync`, `RebootDBInstance`
changes nothing, and neither a reboot nor a parameter change leaves an event. The RDS change
report (tasks/rds_report.py) reads exactly those, so the sandbox answers them as RDS does:

- `DescribeEngineDefaultParameters(DBParameterGroupFamily)`: the family's defaults (below, a
  subset of RDS for PostgreSQL 15's, each with its `ApplyType`); `DescribeDBParameters` returns
  those merged with the group's own (`Source`: `engine-default` / `user`) and honours the
  `Source` filter. AWS: RDS API Reference, DescribeDBParameters (`Source`: "user |
  engine-default | system") and DescribeEngineDefaultParameters.
- `ModifyDBParameterGroup` with `ApplyMethod=pending-reboot` (required for static
  parameters) leaves every instance using the group at `ParameterApplyStatus: pending-reboot`
  until it reboots; each change is an event of the parameter group ("Updated parameter X to Y
  with apply method M"). AWS: RDS User Guide, "Modifying parameters in a DB parameter group"
  (static parameters take effect after a reboot; the instance shows pending-reboot).
- `RebootDBInstance` applies pending parameters (`in-sync`) and records the instance events
  RDS-EVENT-0006 "DB instance restarted". AWS: RDS User Guide, "Amazon RDS event categories
  and event messages" (availability: RDS-EVENT-0006).
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.rds.exceptions import DBParameterGroupNotFoundError
from moto.rds.models import DBInstance, RDSBackend
from moto.rds.responses import RDSResponse

from sandbox.patches import Patches

# name: (value, ApplyType, DataType, description). RDS for PostgreSQL 15 defaults (RDS User
# Guide, "Working with parameters on your RDS for PostgreSQL DB instance"); formulas are kept
# as RDS shows them.
POSTGRES15_DEFAULTS: dict[str, tuple[str, str, str, str]] = {
    "rds.force_ssl": ("1", "dynamic", "boolean", "Force SSL connections."),
    "max_connections": ("LEAST({DBInstanceClassMemory/9531392},5000)", "static", "integer",
                        "Sets the maximum number of concurrent connections."),
    "shared_buffers": ("{DBInstanceClassMemory/32768}", "static", "integer",
                       "Sets the number of shared memory buffers used by the server."),
    "shared_preload_libraries": ("pg_stat_statements", "static", "list",
                                 "Lists shared libraries to preload into server."),
    "work_mem": ("4096", "dynamic", "integer",
                 "Sets the maximum memory to be used for query workspaces."),
    "statement_timeout": ("0", "dynamic", "integer",
                          "Sets the maximum allowed duration of any statement."),
    "log_min_duration_statement": ("-1", "dynamic", "integer",
                                   "Sets the minimum execution time above which statements "
                                   "will be logged."),
    "log_connections": ("0", "dynamic", "boolean", "Logs each successful connection."),
    "password_encryption": ("scram-sha-256", "dynamic", "string",
                            "Encrypt passwords."),
    "rds.logical_replication": ("0", "static", "boolean",
                                "Enables logical decoding."),
    "idle_in_transaction_session_timeout": ("86400000", "dynamic", "integer",
                                            "Sets the maximum allowed idle time between "
                                            "queries, when in a transaction."),
}
FAMILY_DEFAULTS = {"postgres15": POSTGRES15_DEFAULTS}

_APPLY_STATUS: dict[str, str] = {}  # instance arn -> ParameterApplyStatus


class _Event:
    """An RDS event with a message of its own (moto's Event takes messages from a fixed map)."""

    def __init__(self, resource: Any, message: str, categories: list[str], source_type: str):
        self.source_identifier = resource.resource_id
        self.source_type = source_type
        self.message = message
        self.event_categories = categories
        self.source_arn = resource.arn
        self.date = utcnow()


def engine_defaults(family: str | None) -> list[dict[str, Any]]:
    return [{"ParameterName": name, "ParameterValue": value, "Description": desc,
             "Source": "engine-default", "ApplyType": apply_type, "DataType": data_type,
             "IsModifiable": True, "ApplyMethod": "pending-reboot"
             if apply_type == "static" else "immediate"}
            for name, (value, apply_type, data_type, desc)
            in sorted(FAMILY_DEFAULTS.get(family or "", {}).items())]


def _describe_engine_default_parameters(self) -> ActionResult:
    family = self.params.get("DBParameterGroupFamily")
    return ActionResult({"EngineDefaults": {"DBParameterGroupFamily": family,
                                            "Parameters": engine_defaults(family)}})


def _describe_db_parameters(self) -> ActionResult:
    name = self.params.get("DBParameterGroupName")
    groups = self.backend.describe_db_parameter_groups({"db_parameter_group_name": name})
    if not groups:
        raise DBParameterGroupNotFoundError(name)
    group = groups[0]
    merged = {p["ParameterName"]: p for p in engine_defaults(group.family)}
    for pname, stored in group.parameters.items():
        base = merged.get(pname, {"ParameterName": pname, "ApplyType": "dynamic",
                                  "IsModifiable": True})
        merged[pname] = {**base, **{k: v for k, v in stored.items() if v is not None},
                         "Source": "user"}
    source = self.params.get("Source")
    params = [p for _, p in sorted(merged.items()) if source in (None, p.get("Source"))]
    return ActionResult({"Parameters": params})


def _modify_db_parameter_group(self, name, parameters):
    group = _PATCHES.original(RDSBackend, "modify_db_parameter_group")(
        self, name, parameters)
    pending = False
    for p in parameters:
        method = p.get("ApplyMethod") or "immediate"
        pending = pending or method == "pending-reboot"
        self.events.append(_Event(group, f"Updated parameter {p.get('ParameterName')} to "
                                  f"{p.get('ParameterValue')} with apply method {method}",
                                  ["configuration change"], "db-parameter-group"))
    if pending:
        for db in self.databases.values():
            if group.name in [g.name for g in db.db_parameter_groups()]:
                _APPLY_STATUS[db.arn] = "pending-reboot"
    return group


def _reboot_db_instance(self, db_instance_identifier):
    db = _PATCHES.original(RDSBackend, "reboot_db_instance")(self, db_instance_identifier)
    _APPLY_STATUS.pop(db.arn, None)
    self.events.append(_Event(db, "DB instance restarted", ["availability"], "db-instance"))
    return db


def _status_list(self):
    groups = self.db_parameter_groups()
    for group in groups:
        group.ParameterApplyStatus = _APPLY_STATUS.get(self.arn, "in-sync")
    return groups


_PATCHES = Patches(
    (RDSBackend, "modify_db_parameter_group", _modify_db_parameter_group),
    (RDSBackend, "reboot_db_instance", _reboot_db_instance),
    (RDSResponse, "describe_db_parameters", _describe_db_parameters),
    (RDSResponse, "describe_engine_default_parameters", _describe_engine_default_parameters),
    (DBInstance, "db_parameter_group_status_list", property(_status_list)))
install = _PATCHES.install


def uninstall() -> None:
    _PATCHES.uninstall()
    _APPLY_STATUS.clear()
