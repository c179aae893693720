"""Monitoring settings: `deployments/<env>/monitoring.toml` beside the environment's config.toml.

`load_monitoring(settings)` reads and checks the file into a frozen `MonitoringConfig`; every
missing or mistyped key is a `ConfigError` naming the file, the table and the key (`${VAR}` and
`${VAR:-default}` expand as in config.toml). What is done with it lives in `tasks.monitoring`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ground.settings import ConfigError, Settings, _expand, read_toml

PREFIX = "papyrus-"
# Which dimensions an alarm gets, by namespace.
DIMENSIONS = {
    "AWS/ECS": ("ClusterName", "ServiceName"),
    "AWS/ApplicationELB": ("LoadBalancer", "TargetGroup"),
}
_COMPARISONS = ("GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold",
                "LessThanOrEqualToThreshold")
_MISSING_DATA = ("breaching", "notBreaching", "ignore", "missing")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
# CloudWatch's statistics (anything else must be a percentile like "p95").
SIMPLE_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")


# -- desired state: the file ----------------------------------------------------------------
@dataclass(frozen=True)
class AlarmConfig:
    key: str
    name: str
    namespace: str
    metric: str
    statistic: str
    comparison: str
    threshold: float
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str
    unit: str
    description: str

    @property
    def needs_load_balancer(self) -> bool:
        return self.namespace == "AWS/ApplicationELB"


@dataclass(frozen=True)
class MonitoringConfig:
    path: Path
    topic: str
    notify_ok: bool
    load_balancer: str
    target_group: str
    health_check_path: str
    matcher: str
    hc_interval: int
    hc_timeout: int
    healthy_threshold: int
    unhealthy_threshold: int
    log_bucket: str
    log_prefix: str
    rule: str
    start_failure_reasons: tuple[str, ...]
    alarms: tuple[AlarmConfig, ...] = field(default_factory=tuple)


class _Reader:
    """Typed access to one TOML table; every error names the file, the table and the key."""

    def __init__(self, path: Path, table: dict, section: str):
        self.path, self.table, self.section = path, table, section

    def where(self, key: str) -> str:
        return f"{self.path} [{self.section}] {key}"

    def get(self, key: str, typ: type, default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise ConfigError(f"{self.where(key)}: missing")
            return default
        val = self.table[key]
        if typ is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if not isinstance(val, typ) or (isinstance(val, bool) and typ is not bool):
            raise ConfigError(f"{self.where(key)}: expected {typ.__name__}, "
                              f"got {type(val).__name__}")
        if typ is str:
            val = _expand(val, self.where(key)).strip()
        return val

    def name(self, key: str, allow_empty: bool = False) -> str:
        val = self.get(key, str, "" if allow_empty else ...)
        if not val and allow_empty:
            return ""
        if not val.startswith(PREFIX):
            raise ConfigError(f"{self.where(key)}: {val!r} must start with {PREFIX!r}")
        return val

    def positive(self, key: str, default: Any = ...) -> int:
        val = self.get(key, int, default)
        if val <= 0:
            raise ConfigError(f"{self.where(key)}: must be positive, got {val}")
        return val

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        val = self.get(key, str, default)
        if val not in choices:
            raise ConfigError(f"{self.where(key)}: {val!r} is not one of {list(choices)}")
        return val


def _section(path: Path, raw: dict, name: str) -> _Reader:
    table = raw.get(name)
    if not isinstance(table, dict):
        raise ConfigError(f"{path} [{name}]: missing")
    return _Reader(path, table, name)


def _alarm(path: Path, key: str, table: Any) -> AlarmConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{path} [alarms.{key}]: expected a table")
    r = _Reader(path, table, f"alarms.{key}")
    namespace = r.choice("namespace", tuple(DIMENSIONS))
    statistic = r.get("statistic", str)
    if statistic not in SIMPLE_STATISTICS and not _PERCENTILE.match(statistic):
        raise ConfigError(f"{r.where('statistic')}: {statistic!r} is neither one of "
                          f"{list(SIMPLE_STATISTICS)} nor a percentile like 'p95'")
    period = r.positive("period")
    if period not in (10, 20, 30) and period % 60:
        raise ConfigError(f"{r.where('period')}: must be 10, 20, 30 or a multiple of 60")
    evaluation = r.positive("evaluation_periods")
    datapoints = r.positive("datapoints_to_alarm", evaluation)
    if datapoints > evaluation:
        raise ConfigError(f"{r.where('datapoints_to_alarm')}: {datapoints} is more than "
                          f"evaluation_periods ({evaluation})")
    if period * evaluation > 7 * 24 * 3600:
        raise ConfigError(f"{r.where('evaluation_periods')}: period × evaluation_periods is "
                          "more than 7 days")
    known = {"name", "namespace", "metric", "statistic", "comparison", "threshold", "period",
             "evaluation_periods", "datapoints_to_alarm", "treat_missing_data", "unit",
             "description"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{r.where(unknown[0])}: unknown key (known: {sorted(known)})")
    return AlarmConfig(
        key=key, name=r.name("name"), namespace=namespace, metric=r.get("metric", str),
        statistic=statistic, comparison=r.choice("comparison", _COMPARISONS),
        threshold=r.get("threshold", float), period=period, evaluation_periods=evaluation,
        datapoints_to_alarm=datapoints,
        treat_missing_data=r.choice("treat_missing_data", _MISSING_DATA, "missing"),
        unit=r.get("unit", str, ""), description=r.get("description", str, ""),
    )


def load_monitoring(settings: Settings) -> MonitoringConfig:
    """Read and check `monitoring.toml` beside the environment's `config.toml`."""
    path = Path(settings.folder) / "monitoring.toml"
    if not path.is_file():
        raise ConfigError(f"{path}: missing (monitoring is not configured for {settings.env!r})")
    raw = read_toml(path)
    known = {"notification", "load_balancer", "target_group", "access_logs",
             "task_failure_rule", "alarms"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path} [{unknown[0]}]: unknown table (known: {sorted(known)})")

    n = _section(path, raw, "notification")
    lb = _section(path, raw, "load_balancer")
    tg = _section(path, raw, "target_group")
    logs = _section(path, raw, "access_logs")
    rule = _section(path, raw, "task_failure_rule")

    tg_name = tg.name("name")
    if not _TG_NAME.match(tg_name):
        raise ConfigError(f"{tg.where('name')}: {tg_name!r} is not a valid target group name "
                          "(1-32 letters, digits, hyphens)")
    hc_path = tg.get("health_check_path", str)
    if not hc_path.startswith("/"):
        raise ConfigError(f"{tg.where('health_check_path')}: must start with '/'")
    matcher = tg.get("matcher", str)
    if not re.fullmatch(r"\d{3}([,-]\d{3})*", matcher):
        raise ConfigError(f"{tg.where('matcher')}: {matcher!r} is not an HTTP code list")
    interval, timeout = tg.positive("interval_seconds"), tg.positive("timeout_seconds")
    if timeout >= interval:
        raise ConfigError(f"{tg.where('timeout_seconds')}: must be less than interval_seconds")
    bucket = logs.name("bucket")
    if not _BUCKET.match(bucket):
        raise ConfigError(f"{logs.where('bucket')}: {bucket!r} is not a valid S3 bucket name")
    reasons = rule.get("start_failure_reasons", list, [])
    if not all(isinstance(x, str) and x and "*" not in x for x in reasons):
        raise ConfigError(f"{rule.where('start_failure_reasons')}: expected a list of "
                          "non-empty strings without '*'")

    alarm_tables = raw.get("alarms", {})
    if not isinstance(alarm_tables, dict) or not alarm_tables:
        raise ConfigError(f"{path} [alarms]: missing (expected [alarms.<key>] tables)")
    parsed = tuple(_alarm(path, k, v) for k, v in alarm_tables.items())
    names = [a.name for a in parsed]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ConfigError(f"{path} [alarms]: alarm name {dup[0]!r} is used twice")

    return MonitoringConfig(
        path=path, topic=n.name("topic"), notify_ok=n.get("notify_ok", bool, True),
        load_balancer=lb.get("name", str, ""), target_group=tg_name,
        health_check_path=hc_path, matcher=matcher, hc_interval=interval, hc_timeout=timeout,
        healthy_threshold=tg.positive("healthy_threshold"),
        unhealthy_threshold=tg.positive("unhealthy_threshold"),
        log_bucket=bucket, log_prefix=logs.get("prefix", str, "").strip("/"),
        rule=rule.name("name"), start_failure_reasons=tuple(reasons), alarms=parsed,
    )
