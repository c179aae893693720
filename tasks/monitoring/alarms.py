"""CloudWatch metric alarms: the comparable form, reading, and an idempotent put.

`put_metric_alarm` replaces the whole alarm definition, so applying the desired fields is
idempotent and safe to retry. Fields are compared in one normal form (dimensions sorted by name,
the threshold as a float, action lists sorted); a field the alarm does not set is `None` on both
sides. Tags are set when the alarm is created and are not compared (CloudWatch ignores `Tags` on
an update of an existing alarm).

moto 5.2.5: alarms are stored but never evaluated (the state stays as created); `describe_alarms`
omits `DatapointsToAlarm`, `TreatMissingData` and `Unit` when they were not set, adds an empty
`Metrics` list, and keeps the dimensions in the order they were put.
"""

from __future__ import annotations

from typing import Any

from ground.monitoring_settings import SIMPLE_STATISTICS

RESOURCE = "cloudwatch_alarm"

# Every field the alarm's definition is compared on, in display order.
FIELDS = (
    "AlarmDescription",
    "ActionsEnabled",
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "ExtendedStatistic",
    "Unit",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
)
_LISTS = ("AlarmActions", "OKActions", "InsufficientDataActions")


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """The comparable form of an alarm (from `describe_alarms` or from desired fields)."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        v = raw.get(f)
        if f in _LISTS:
            v = sorted(v or [])
        elif f == "Dimensions":
            v = sorted(({"Name": d["Name"], "Value": d["Value"]} for d in v or []),
                       key=lambda d: d["Name"])
        elif f == "Threshold" and v is not None:
            v = float(v)
        elif f in ("Period", "EvaluationPeriods", "DatapointsToAlarm") and v is not None:
            v = int(v)
        out[f] = v
    return out


def desired_fields(*, name: str, description: str, namespace: str, metric: str,
                   dimensions: list[dict[str, Any]], statistic: str, period: int,
                   evaluation_periods: int, datapoints_to_alarm: int, threshold: float,
                   comparison: str, treat_missing_data: str, unit: str | None,
                   topic_arn: str, notify_ok: bool) -> dict[str, Any]:
    extended = statistic not in SIMPLE_STATISTICS
    return normalize({
        "AlarmDescription": description or f"Papyrus: {metric} ({name})",
        "ActionsEnabled": True,
        "AlarmActions": [topic_arn],
        "OKActions": [topic_arn] if notify_ok else [],
        "InsufficientDataActions": [],
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": dimensions,
        "Statistic": None if extended else statistic,
        "ExtendedStatistic": statistic if extended else None,
        "Unit": unit or None,
        "Period": period,
        "EvaluationPeriods": evaluation_periods,
        "DatapointsToAlarm": datapoints_to_alarm,
        "Threshold": threshold,
        "ComparisonOperator": comparison,
        "TreatMissingData": treat_missing_data,
    })


def read(cw, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """The comparable form of each named alarm; `None` for an alarm that does not exist."""
    found: dict[str, dict[str, Any] | None] = {n: None for n in names}
    for i in range(0, len(names), 100):  # AlarmNames takes at most 100 names
        token = None
        while True:
            kwargs: dict[str, Any] = {"AlarmNames": names[i:i + 100], "AlarmTypes": ["MetricAlarm"]}
            if token:
                kwargs["NextToken"] = token
            page = cw.describe_alarms(**kwargs)
            for alarm in page.get("MetricAlarms", []):
                found[alarm["AlarmName"]] = normalize(alarm)
            token = page.get("NextToken")
            if not token:
                break
    return found


def put(cw, name: str, fields: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """Create or replace the alarm with exactly these fields."""
    params = {k: v for k, v in fields.items() if v is not None}
    params["AlarmName"] = name
    params["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    cw.put_metric_alarm(**params)
    return {"alarm": name}
