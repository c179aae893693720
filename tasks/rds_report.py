"""The RDS change report (the ops log's open item: "record the differences from manual work,
reboot times and parameter-group differences for the RDS instance").

Read-only, from the RDS API alone: the instance (class, engine version, endpoint, security
groups, parameter group and its apply status, pending modifications), the parameters the
group sets that differ from the engine family's defaults (`DescribeDBParameters Source=user`
beside `DescribeEngineDefaultParameters`), the last reboots and parameter changes (RDS events
of the instance and of its parameter group, the last 14 days: the most `DescribeEvents`
keeps), and what changed since the last recorded deploy (`snapshot` is stored with it,
tasks/state.py). Written by preflight as `<ts>_rds_change_report.md` + `.json`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ground.settings import Settings

EVENT_DAYS = 14  # DescribeEvents returns up to 14 days of events (RDS API Reference)
# The instance fields whose change since the last deploy an operator wants to hear about.
SNAPSHOT_FIELDS = ("instance_class", "engine_version", "endpoint", "port", "security_groups",
                   "parameter_group", "parameters")


def _pages(paginator, key: str, **kw) -> list[dict[str, Any]]:
    """Every item of a paginated RDS read (botocore's paginators follow `Marker`)."""
    out: list[dict[str, Any]] = []
    for page in paginator.paginate(**kw):
        out.extend(page.get(key) or (page.get("EngineDefaults") or {}).get(key) or [])
    return out


def snapshot(rds, settings: Settings) -> dict[str, Any]:
    """What the instance is now, in the fields the report compares over time."""
    inst = rds.describe_db_instances(DBInstanceIdentifier=settings.rds_instance)["DBInstances"][0]
    groups = inst.get("DBParameterGroups") or []
    group = groups[0]["DBParameterGroupName"] if groups else None
    user = _pages(rds.get_paginator("describe_db_parameters"), "Parameters",
                  DBParameterGroupName=group, Source="user") if group else []
    return {
        "instance": inst["DBInstanceIdentifier"],
        "instance_class": inst.get("DBInstanceClass"),
        "engine": inst.get("Engine"), "engine_version": inst.get("EngineVersion"),
        "endpoint": (inst.get("Endpoint") or {}).get("Address"),
        "port": (inst.get("Endpoint") or {}).get("Port"),
        "security_groups": sorted(g["VpcSecurityGroupId"]
                                  for g in inst.get("VpcSecurityGroups") or []),
        "parameter_group": group,
        "parameter_apply_status": groups[0].get("ParameterApplyStatus") if groups else None,
        "pending_modified_values": inst.get("PendingModifiedValues") or {},
        "parameters": {p["ParameterName"]: p.get("ParameterValue") for p in user},
        "_apply_types": {p["ParameterName"]: p.get("ApplyType") for p in user},
    }


def _family(rds, group: str | None) -> str | None:
    if not group:
        return None
    found = rds.describe_db_parameter_groups(DBParameterGroupName=group)["DBParameterGroups"]
    return found[0].get("DBParameterGroupFamily") if found else None


def _events(rds, source_type: str, source_id: str | None, now: datetime) -> list[dict]:
    if not source_id:
        return []
    events = _pages(rds.get_paginator("describe_events"), "Events", SourceType=source_type,
                    SourceIdentifier=source_id, Duration=EVENT_DAYS * 24 * 60)
    return [{"date": str(e.get("Date")), "source": e.get("SourceIdentifier"),
             "source_type": source_type, "categories": e.get("EventCategories") or [],
             "message": e.get("Message")} for e in events]


def build_report(rds, settings: Settings, last_deploy: dict[str, Any] | None,
                 now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    snap = snapshot(rds, settings)
    apply_types = snap.pop("_apply_types")
    family = _family(rds, snap["parameter_group"])
    defaults = {p["ParameterName"]: p for p in
                _pages(rds.get_paginator("describe_engine_default_parameters"), "Parameters",
                       DBParameterGroupFamily=family)} if family else {}
    differ = []
    for name, value in sorted(snap["parameters"].items()):
        default = defaults.get(name, {})
        if default.get("ParameterValue") != value:
            differ.append({"parameter": name, "value": value,
                           "engine_default": default.get("ParameterValue"),
                           "apply_type": apply_types.get(name) or default.get("ApplyType")})
    instance_events = _events(rds, "db-instance", snap["instance"], now)
    group_events = _events(rds, "db-parameter-group", snap["parameter_group"], now)
    reboots = [e for e in instance_events
               if "availability" in e["categories"] and "restart" in (e["message"] or "").lower()]
    changes = group_events + [e for e in instance_events
                              if "configuration change" in e["categories"]]
    previous = (last_deploy or {}).get("rds_snapshot")
    since = None
    if previous:
        since = [{"field": f, "at_last_deploy": previous.get(f), "now": snap.get(f)}
                 for f in SNAPSHOT_FIELDS if previous.get(f) != snap.get(f)]
    pending = snap["parameter_apply_status"] == "pending-reboot" or bool(
        snap["pending_modified_values"])
    return {
        "generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "instance": snap["instance"], "family": family,
        "endpoint": {"address": snap["endpoint"], "port": snap["port"]},
        "security_groups": snap["security_groups"],
        "parameter_group": {"name": snap["parameter_group"],
                            "expected": settings.parameter_group,
                            "apply_status": snap["parameter_apply_status"]},
        "pending_reboot": pending,
        "pending_modified_values": snap["pending_modified_values"],
        "parameters_differing_from_defaults": differ,
        "reboots": reboots,
        "parameter_changes": sorted(changes, key=lambda e: e["date"]),
        "event_window_days": EVENT_DAYS,
        "last_deploy_at": (last_deploy or {}).get("at"),
        "changed_since_last_deploy": since,
        "snapshot": {k: snap[k] for k in SNAPSHOT_FIELDS},
    }


def to_markdown(report: dict[str, Any]) -> str:
    pg = report["parameter_group"]
    lines = [
        f"# RDS change report — {report['instance']}",
        "",
        f"Generated {report['generated_at']} (events: last {report['event_window_days']} days).",
        "",
        f"- endpoint: `{report['endpoint']['address']}:{report['endpoint']['port']}`",
        f"- security groups: {', '.join(f'`{g}`' for g in report['security_groups']) or '—'}",
        f"- parameter group: `{pg['name']}` ({report['family']}), apply status "
        f"**{pg['apply_status']}**" + ("" if pg["name"] == pg["expected"]
                                       else f" — expected `{pg['expected']}`"),
        f"- pending reboot: **{'yes' if report['pending_reboot'] else 'no'}**"
        + (f" (pending: {report['pending_modified_values']})"
           if report["pending_modified_values"] else ""),
        "",
        "## Parameters that differ from the engine defaults",
        "",
    ]
    if report["parameters_differing_from_defaults"]:
        lines += ["| parameter | value | engine default | apply type |", "|---|---|---|---|"]
        lines += [f"| `{d['parameter']}` | `{d['value']}` | `{d['engine_default']}` | "
                  f"{d['apply_type']} |" for d in report["parameters_differing_from_defaults"]]
    else:
        lines.append("None: every parameter the group sets equals its engine default.")
    lines += ["", "## Reboots", ""]
    lines += [f"- {e['date']}: {e['message']}" for e in report["reboots"]] or ["None recorded."]
    lines += ["", "## Parameter changes", ""]
    lines += [f"- {e['date']} ({e['source']}): {e['message']}"
              for e in report["parameter_changes"]] or ["None recorded."]
    lines += ["", "## Since the last recorded deploy", ""]
    since = report["changed_since_last_deploy"]
    if since is None:
        lines.append("No recorded deploy with an RDS snapshot to compare with.")
    elif not since:
        lines.append(f"Nothing changed since {report['last_deploy_at']}.")
    else:
        lines += [f"- `{c['field']}`: `{c['at_last_deploy']}` → `{c['now']}`" for c in since]
    return "\n".join(lines) + "\n"
