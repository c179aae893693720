"""Papyrus monitoring as desired state: `deployments/<env>/monitoring.toml` → plan → apply.

The resources (all named `papyrus-…`), in the order they are applied:

| resource | what |
|---|---|
| `sns_topic` | the topic alarms and the rule notify, with a policy letting EventBridge publish |
| `s3_bucket` | the ALB access-log bucket: private, SSE-S3, ELB log delivery allowed |
| `target_group` | `ip` target group, HTTP on the container port, health check `/healthz` → 200 |
| `lb_access_logs` | the ALB's `access_logs.s3.*` attributes (only with a configured ALB) |
| `cloudwatch_alarm` | ECS CPU/memory; ALB 5xx and TargetResponseTime (only with an ALB) |
| `event_rule` | ECS Task State Change: STOPPED with exit code ≠ 0, or failed to start |
| `event_target` | the rule → the SNS topic |

`read_actual` reads (Describe/List/Get/Head only), `desired_state` is pure, `plan` diffs the two
into items `{resource, name, action, changes: {field: (actual, desired)}, desired}` with
`action` one of `create`, `update`, `unchanged` or `blocked` (a difference that cannot be applied
in place, or a prerequisite that is missing: `reason` says which), and `apply_item` converges one
item. A value only known once an earlier item is applied (the new target group's ARN in the ALB
alarms' dimensions) is a `{"$ref": name}` in the plan, shown as "(known after apply)" and
resolved from the earlier items' results at apply time.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.aws import client
from ground.settings import ConfigError, Settings
from tasks import accesslogs, alarms, eventrules, notifications, targets

ACTIONS = ("create", "update", "unchanged", "blocked")
ORDER = (notifications.RESOURCE, accesslogs.BUCKET, targets.RESOURCE, accesslogs.LB_ATTRIBUTES,
         alarms.RESOURCE, eventrules.RULE, eventrules.TARGET)
KNOWN_AFTER_APPLY = "(known after apply)"
PREFIX = "papyrus-"
TAGS = {"Project": "papyrus", "ManagedBy": "papyrus-ops/monitoring"}

# Which dimensions an alarm gets, by namespace.
DIMENSIONS = {
    "AWS/ECS": ("ClusterName", "ServiceName"),
    "AWS/ApplicationELB": ("LoadBalancer", "TargetGroup"),
}
_COMPARISONS = ("GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold",
                "LessThanOrEqualToThreshold")
_MISSING_DATA = ("breaching", "notBreaching", "ignore", "missing")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100)$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")


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


def _expand(value: str, where: str) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if os.environ.get(name):
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _VAR.sub(sub, value)


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
    if statistic not in alarms.SIMPLE_STATISTICS and not _PERCENTILE.match(statistic):
        raise ConfigError(f"{r.where('statistic')}: {statistic!r} is neither one of "
                          f"{list(alarms.SIMPLE_STATISTICS)} nor a percentile like 'p95'")
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
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
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


# -- clients ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clients:
    """The boto3 clients monitoring talks to (all with botocore retries, via ground.aws)."""

    cloudwatch: Any
    events: Any
    sns: Any
    elbv2: Any
    s3: Any
    ec2: Any
    sts: Any

    @classmethod
    def for_region(cls, region: str) -> Clients:
        return cls(**{name: client(name, region) for name in cls.__dataclass_fields__})


def _transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry network trouble, throttling and 5xx, nothing else."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, ConnectionError | BotoCoreError) and not isinstance(exc, ClientError):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or "Throttl" in err.get("Code", "") or err.get("Code") in (
            "RequestLimitExceeded", "SlowDown", "TooManyRequestsException")
    return False


_RETRY = {"retries": 2, "retry_delay_seconds": [1, 4], "retry_condition_fn": _transient,
          "cache_policy": NO_CACHE}


# -- actual state -----------------------------------------------------------------------------
def _vpc_id(ec2, vpc_name: str) -> str | None:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [vpc_name]}])["Vpcs"]
    return vpcs[0]["VpcId"] if len(vpcs) == 1 else None


@task(name="monitoring-read-actual", **_RETRY)
def read_actual(clients: Clients, settings: Settings, cfg: MonitoringConfig) -> dict[str, Any]:
    """What exists now: `{context, resources: {"<resource>/<name>": fields | None}, problems}`.

    Only Describe/List/Get/Head calls (and STS GetCallerIdentity)."""
    c = clients
    account = c.sts.get_caller_identity()["Account"]
    problems: list[str] = []
    ctx: dict[str, Any] = {"account": account, "region": settings.region}
    ctx["topic_arn"] = notifications.topic_arn(settings.region, account, cfg.topic)
    ctx["rule_arn"] = eventrules.rule_arn(settings.region, account, cfg.rule)
    ctx["cluster_arn"] = eventrules.cluster_arn(settings.region, account, settings.cluster)
    ctx["vpc_id"] = _vpc_id(c.ec2, settings.vpc_name)
    if ctx["vpc_id"] is None:
        problems.append(f"VPC {settings.vpc_name!r} (settings vpc_name) not found, or not unique")

    res: dict[str, Any] = {}
    res[f"{notifications.RESOURCE}/{cfg.topic}"] = notifications.read(c.sns, ctx["topic_arn"])
    try:
        res[f"{accesslogs.BUCKET}/{cfg.log_bucket}"] = accesslogs.read_bucket(c.s3, cfg.log_bucket)
    except PermissionError as e:
        problems.append(str(e))
        res[f"{accesslogs.BUCKET}/{cfg.log_bucket}"] = {"blocked": str(e)}
    tg_fields, tg_arn, tg_lbs = targets.read(c.elbv2, cfg.target_group)
    res[f"{targets.RESOURCE}/{cfg.target_group}"] = tg_fields
    ctx["target_group_arn"] = tg_arn
    ctx["target_group_suffix"] = targets.arn_suffix(tg_arn) if tg_arn else None
    ctx["target_group_load_balancers"] = tg_lbs

    ctx["load_balancer"] = None
    if cfg.load_balancer:
        lb = targets.read_load_balancer(c.elbv2, cfg.load_balancer)
        if lb is None:
            problems.append(f"load balancer {cfg.load_balancer!r} ({cfg.path} [load_balancer] "
                            "name) not found")
        else:
            ctx["load_balancer"] = lb
            res[f"{accesslogs.LB_ATTRIBUTES}/{cfg.load_balancer}"] = \
                accesslogs.read_lb_attributes(c.elbv2, lb["arn"])

    res.update({f"{alarms.RESOURCE}/{name}": fields for name, fields in
                alarms.read(c.cloudwatch, [a.name for a in cfg.alarms]).items()})
    res[f"{eventrules.RULE}/{cfg.rule}"] = eventrules.read_rule(c.events, cfg.rule)
    res[f"{eventrules.TARGET}/{cfg.rule}/{eventrules.TARGET_ID}"] = \
        eventrules.read_target(c.events, cfg.rule, eventrules.TARGET_ID)
    return {"context": ctx, "resources": res, "problems": problems}


# -- desired state ----------------------------------------------------------------------------
def _ref(ctx: dict[str, Any], key: str) -> Any:
    return ctx[key] if ctx.get(key) else {"$ref": key}


@task(name="monitoring-desired-state", cache_policy=NO_CACHE)
def desired_state(settings: Settings, cfg: MonitoringConfig,
                  context: dict[str, Any]) -> dict[str, Any]:
    """The desired resources, in apply order, and notes on what is deliberately left out."""
    ctx, items, notes = context, [], []

    def add(resource: str, name: str, fields: dict[str, Any], **extra: Any) -> None:
        items.append({"resource": resource, "name": name, "desired": fields, **extra})

    add(notifications.RESOURCE, cfg.topic,
        notifications.desired_fields(ctx["topic_arn"], ctx["account"], ctx["rule_arn"]))
    add(accesslogs.BUCKET, cfg.log_bucket,
        accesslogs.desired_bucket(cfg.log_bucket, cfg.log_prefix, ctx["account"],
                                  settings.region))
    add(targets.RESOURCE, cfg.target_group, targets.desired_fields(
        vpc_id=ctx.get("vpc_id") or "", port=settings.container_port,
        health_check_path=cfg.health_check_path, matcher=cfg.matcher,
        interval=cfg.hc_interval, timeout=cfg.hc_timeout, healthy=cfg.healthy_threshold,
        unhealthy=cfg.unhealthy_threshold),
        tags={"papyrus:container": settings.container,
              "papyrus:containerPort": str(settings.container_port)})
    lb = ctx.get("load_balancer")
    if lb:
        add(accesslogs.LB_ATTRIBUTES, cfg.load_balancer,
            accesslogs.desired_lb_attributes(cfg.log_bucket, cfg.log_prefix))
    for a in cfg.alarms:
        if a.needs_load_balancer and not lb:
            notes.append(f"{a.name}: skipped, no load balancer configured "
                         f"({cfg.path.name} [load_balancer] name)" if not cfg.load_balancer else
                         f"{a.name}: skipped, load balancer {cfg.load_balancer!r} not found")
            continue
        dims = ({"ClusterName": settings.cluster, "ServiceName": settings.service}
                if a.namespace == "AWS/ECS" else
                {"LoadBalancer": lb["arn_suffix"],
                 "TargetGroup": _ref(ctx, "target_group_suffix")})
        add(alarms.RESOURCE, a.name, alarms.desired_fields(
            name=a.name, description=a.description, namespace=a.namespace, metric=a.metric,
            dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
            statistic=a.statistic, period=a.period, evaluation_periods=a.evaluation_periods,
            datapoints_to_alarm=a.datapoints_to_alarm, threshold=a.threshold,
            comparison=a.comparison, treat_missing_data=a.treat_missing_data, unit=a.unit,
            topic_arn=ctx["topic_arn"], notify_ok=cfg.notify_ok))
    pattern = eventrules.task_failure_pattern(ctx["cluster_arn"], settings.service,
                                              list(cfg.start_failure_reasons))
    add(eventrules.RULE, cfg.rule, eventrules.desired_rule(
        pattern, f"Papyrus: {settings.service} tasks in {settings.cluster} that stop with a "
                 "non-zero exit code or fail to start"))
    add(eventrules.TARGET, f"{cfg.rule}/{eventrules.TARGET_ID}",
        eventrules.desired_target(ctx["topic_arn"]))
    if lb and ctx.get("target_group_load_balancers") == []:
        notes.append(f"{cfg.target_group}: not yet attached to {cfg.load_balancer!r} (needs a "
                     "listener rule) nor registered by the ECS service (service definition "
                     f"loadBalancers: containerName={settings.container}, "
                     f"containerPort={settings.container_port})")
    return {"items": items, "notes": notes}


# -- plan ------------------------------------------------------------------------------------
def _has_ref(value: Any) -> bool:
    if isinstance(value, dict):
        return "$ref" in value or any(_has_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_ref(v) for v in value)
    return False


def resolve(value: Any, refs: dict[str, Any]) -> Any:
    """Replace `{"$ref": key}` by `refs[key]`; a missing ref is an error."""
    if isinstance(value, dict):
        if "$ref" in value:
            if not refs.get(value["$ref"]):
                raise KeyError(f"{value['$ref']} is not known yet")
            return refs[value["$ref"]]
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def display(value: Any) -> Any:
    """A value for people: refs become "(known after apply)"."""
    if isinstance(value, dict):
        if "$ref" in value:
            return KNOWN_AFTER_APPLY
        return {k: display(v) for k, v in value.items()}
    if isinstance(value, list):
        return [display(v) for v in value]
    return value


def _diff(actual: dict[str, Any], desired: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (actual.get(k), v) for k, v in desired.items()
            if _has_ref(v) or actual.get(k) != v}


@task(name="monitoring-plan", cache_policy=NO_CACHE)
def plan(desired: dict[str, Any], actual: dict[str, Any]) -> list[dict[str, Any]]:
    """One item per desired resource: create, update, unchanged or blocked (with `reason`)."""
    items = []
    ctx, resources = actual["context"], actual["resources"]
    for d in desired["items"]:
        key = f"{d['resource']}/{d['name']}"
        current = resources.get(key)
        item = {"resource": d["resource"], "name": d["name"], **{
            k: v for k, v in d.items() if k not in ("resource", "name")}}
        if isinstance(current, dict) and "blocked" in current:
            item.update(action="blocked", changes={}, reason=current["blocked"])
        elif current is None:
            item.update(action="create", changes={
                k: (None, v) for k, v in d["desired"].items() if v not in (None, [], "")})
        else:
            changes = _diff(current, d["desired"])
            item.update(action="update" if changes else "unchanged", changes=changes)
        if d["resource"] == targets.RESOURCE:
            if not ctx.get("vpc_id"):
                item.update(action="blocked", reason="the VPC to create it in was not found")
            elif item["action"] == "update":
                fixed = sorted(set(item["changes"]) & set(targets.IMMUTABLE))
                if fixed:
                    item.update(action="blocked", reason=(
                        f"{', '.join(fixed)} cannot be changed in place: replace the target "
                        "group by hand (detach it from listeners and the service first)"))
        items.append(item)
    order = {r: i for i, r in enumerate(ORDER)}
    items.sort(key=lambda i: order[i["resource"]])  # stable: config order within a resource
    return items


def counts(items: list[dict[str, Any]]) -> dict[str, int]:
    return {a: sum(1 for i in items if i["action"] == a) for a in ACTIONS}


def converged(items: list[dict[str, Any]]) -> bool:
    return all(i["action"] == "unchanged" for i in items)


# -- apply -----------------------------------------------------------------------------------
@task(name="monitoring-apply-item", task_run_name="apply {item[resource]} {item[name]}",
      **_RETRY)
def apply_item(clients: Clients, item: dict[str, Any], refs: dict[str, Any],
               region: str) -> dict[str, Any]:
    """Converge one plan item (idempotent: every call is a create-or-adopt or a whole put).

    Returns `{resource, name, action, result, refs}`; `refs` carries what later items need
    (the target group's ARN suffix for the ALB alarms)."""
    action, resource, name = item["action"], item["resource"], item["name"]
    out = {"resource": resource, "name": name, "action": action, "result": None, "refs": {}}
    if action in ("unchanged", "blocked"):
        return out
    fields = resolve(item["desired"], refs)
    changes = item.get("changes", {})
    tags = {**TAGS, **item.get("tags", {})}
    c = clients
    if resource == notifications.RESOURCE:
        result = notifications.apply(c.sns, name, fields, tags)
    elif resource == accesslogs.BUCKET:
        result = accesslogs.apply_bucket(c.s3, action, name, region, fields, changes, tags)
    elif resource == targets.RESOURCE:
        result = targets.apply(c.elbv2, action, name, fields, changes, tags)
        out["refs"] = {"target_group_arn": result["target_group_arn"],
                       "target_group_suffix": result["target_group_suffix"]}
    elif resource == accesslogs.LB_ATTRIBUTES:
        result = accesslogs.apply_lb_attributes(c.elbv2, refs["load_balancer"]["arn"], fields)
    elif resource == alarms.RESOURCE:
        result = alarms.put(c.cloudwatch, name, fields, tags)
    elif resource == eventrules.RULE:
        result = eventrules.put_rule(c.events, name, fields, tags)
    elif resource == eventrules.TARGET:
        rule, target_id = name.split("/", 1)
        result = eventrules.put_target(c.events, rule, target_id, fields)
    else:  # pragma: no cover - the plan only produces the kinds above
        raise ValueError(f"unknown resource kind {resource!r}")
    out["result"] = result
    return out


# -- showing a plan ---------------------------------------------------------------------------
def _short(value: Any, width: int = 60) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(display(value), sort_keys=True,
                                                           default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def plan_rows(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows for a table: resource, name, action, and what changes (field: actual → desired)."""
    rows = []
    for i in items:
        if i["action"] == "create":
            detail = ", ".join(sorted(i["changes"]))
        elif i["action"] == "update":
            detail = "; ".join(f"{k}: {_short(a, 40)} → {_short(d, 40)}"
                               for k, (a, d) in sorted(i["changes"].items()))
        elif i["action"] == "blocked":
            detail = i.get("reason", "")
        else:
            detail = ""
        rows.append({"resource": i["resource"], "name": i["name"], "action": i["action"],
                     "changes": detail})
    return rows


def render_plan(items: list[dict[str, Any]], title: str = "monitoring plan") -> str:
    """The plan as a plain-text table (what the console and the flow log show)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("resource", "name", "action", "changes"):
        table.add_column(col, overflow="fold")
    for r in plan_rows(items):
        table.add_row(r["resource"], r["name"], r["action"], r["changes"])
    buf = StringIO()
    Console(file=buf, width=160, color_system=None, force_terminal=False).print(table)
    c = counts(items)
    buf.write(f"{c['create']} to create, {c['update']} to update, {c['unchanged']} unchanged, "
              f"{c['blocked']} blocked\n")
    return buf.getvalue()


def for_evidence(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plan items as plain JSON: changes as {field: {actual, desired}}, refs shown as such."""
    out = []
    for i in items:
        row = {k: display(v) for k, v in i.items() if k not in ("changes", "desired")}
        row["changes"] = {k: {"actual": display(a), "desired": display(d)}
                          for k, (a, d) in i.get("changes", {}).items()}
        row["desired"] = display(i.get("desired"))
        out.append(row)
    return out
