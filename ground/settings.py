"""Environment settings: one folder per environment under `deployments/`, ecspresso-style.

`load_env("local")` reads `deployments/local/config.toml` into a frozen `Settings`; every
missing or mistyped key is a `ConfigError` naming the file and the key. The JSON templates
beside it are rendered by `ground.render`.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ground import envfile

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = Path(os.environ.get("PAPYRUS_DEPLOYMENTS_DIR", ROOT / "deployments"))
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# The key's ARN, not an alias: S3 reports the key ARN (SSEKMSKeyId) and a bucket policy that
# requires a key compares the header with the ARN it names.
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
# The manifest signing key: an alias (the env folder names it, as it names buckets) or a key ARN.
_SIGNING_KEY = re.compile(r"^(alias/[A-Za-z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:"
                          r"(key|alias)/[A-Za-z0-9/_-]+)$")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A bad or missing setting; the message names the file and the key."""


@dataclass(frozen=True)
class Settings:
    env: str
    folder: Path
    region: str
    env_file: str
    cluster: str
    service: str
    family: str
    container: str
    container_port: int
    task_definition: str
    service_definition: str
    task_role: str
    execution_role: str
    log_group: str
    target_group: str
    ecr_repository: str
    db_secret_id: str
    rds_instance: str
    parameter_group: str
    db_ssl_root_cert: str
    db_hostaddr: str
    vpc_name: str
    rds_security_group: str
    task_security_group: str
    subnets: tuple[str, ...]
    evidence_bucket: str
    evidence_root: Path
    evidence_kms_key: str
    evidence_signing_key: str
    evidence_retention_days: int
    probe_mode: str
    probe_base_url: str
    token_secret_id: str
    deploy_timeout_seconds: int
    deploy_poll_seconds: float
    lease_ttl_seconds: float = 120.0
    lease_wait_seconds: float = 600.0
    # A folder of build contexts keyed by image digest (`<store>/<hex>/`): where the code of a
    # pinned image can be read before it runs. Empty: only the running task can say.
    image_code_store: str = ""
    # Approval between the dry run / plan and the apply (tasks/approval.py): whether a run
    # started from the UI pauses for a person, how long it waits, how often it looks.
    approval_required: bool = False
    approval_timeout_seconds: int = 3600
    approval_poll_seconds: float = 10.0
    # Blue/green (service-definition.json's deploymentConfiguration.strategy BLUE_GREEN): the
    # second target group, the role ECS uses to move the listener rules, and the load balancer
    # whose production and test listeners carry the traffic (tasks/blue_green.py).
    alternate_target_group: str = ""
    infrastructure_role: str = ""
    alb_name: str = ""
    alb_production_port: int = 0
    alb_test_port: int = 0
    alb_scheme: str = "https"
    # Where the load balancer's DNS name is reached from here (the sandbox: 127.0.0.1, its
    # listeners really listen there); empty: the DNS name itself.
    alb_hostaddr: str = ""

    def template_path(self, which: str) -> Path:
        return self.folder / (self.task_definition if which == "task" else self.service_definition)


# (section, key, field, type, required)
_SCHEMA: list[tuple[str, str, str, type, bool]] = [
    ("aws", "region", "region", str, True),
    ("aws", "env_file", "env_file", str, False),
    ("ecs", "cluster", "cluster", str, True),
    ("ecs", "service", "service", str, True),
    ("ecs", "family", "family", str, True),
    ("ecs", "container", "container", str, True),
    ("ecs", "container_port", "container_port", int, True),
    ("ecs", "task_definition", "task_definition", str, True),
    ("ecs", "service_definition", "service_definition", str, True),
    ("ecs", "task_role", "task_role", str, True),
    ("ecs", "execution_role", "execution_role", str, True),
    ("ecs", "log_group", "log_group", str, True),
    # The ALB target group the service is attached to (service-definition.json's
    # loadBalancers name it as ${target_group_arn}); empty: no load balancer.
    ("ecs", "target_group", "target_group", str, False),
    ("ecs", "alternate_target_group", "alternate_target_group", str, False),
    ("ecs", "infrastructure_role", "infrastructure_role", str, False),
    ("alb", "load_balancer", "alb_name", str, False),
    ("alb", "production_listener_port", "alb_production_port", int, False),
    ("alb", "test_listener_port", "alb_test_port", int, False),
    ("alb", "scheme", "alb_scheme", str, False),
    ("alb", "hostaddr", "alb_hostaddr", str, False),
    ("ecr", "repository", "ecr_repository", str, True),
    ("ecr", "code_store", "image_code_store", str, False),
    ("db", "secret_id", "db_secret_id", str, True),
    ("db", "rds_instance", "rds_instance", str, True),
    ("db", "parameter_group", "parameter_group", str, True),
    ("db", "ssl_root_cert", "db_ssl_root_cert", str, False),
    ("db", "hostaddr", "db_hostaddr", str, False),
    ("network", "vpc_name", "vpc_name", str, True),
    ("network", "rds_security_group", "rds_security_group", str, True),
    ("network", "task_security_group", "task_security_group", str, True),
    ("network", "subnets", "subnets", list, False),
    ("evidence", "bucket", "evidence_bucket", str, True),
    ("evidence", "root", "evidence_root", str, True),
    ("evidence", "kms_key_id", "evidence_kms_key", str, False),
    ("evidence", "signing_key", "evidence_signing_key", str, False),
    ("evidence", "retention_days", "evidence_retention_days", int, False),
    ("probe", "mode", "probe_mode", str, True),
    ("probe", "base_url", "probe_base_url", str, False),
    ("probe", "token_secret_id", "token_secret_id", str, True),
    ("deploy", "timeout_seconds", "deploy_timeout_seconds", int, True),
    ("deploy", "poll_seconds", "deploy_poll_seconds", float, True),
    # The deploy lease in the evidence bucket (tasks/lease.py): how long it lives without a
    # renewal, and how long a deploy waits for another one's lease before it refuses.
    ("deploy", "lease_ttl_seconds", "lease_ttl_seconds", float, False),
    ("deploy", "lease_wait_seconds", "lease_wait_seconds", float, False),
    # Approval between stages (tasks/approval.py): prd requires it, the sandbox does not.
    ("approval", "required", "approval_required", bool, False),
    ("approval", "timeout_seconds", "approval_timeout_seconds", int, False),
    ("approval", "poll_seconds", "approval_poll_seconds", float, False),
]
_DEFAULTS = {str: "", list: (), int: 0, bool: False}
_FIELD_DEFAULTS = {"lease_ttl_seconds": 120.0, "lease_wait_seconds": 600.0, "alb_scheme": "https",
                   "approval_timeout_seconds": 3600, "approval_poll_seconds": 10.0}


def _expand(value: str, where: str) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ and os.environ[name] != "":
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return VAR.sub(sub, value)


def available_envs() -> list[str]:
    return sorted(p.parent.name for p in DEPLOYMENTS.glob("*/config.toml"))


# A flow's `env` parameter: the run form offers the environment folders as a choice (an `enum`
# in the parameter schema, which `enforce_parameter_schema` checks on the server). Python-side
# it stays a str, so a direct call with another name still reaches the flow's own one-line
# bad input instead of a validation traceback.
EnvName = Annotated[str, Field(json_schema_extra={"enum": available_envs()})]


def read_toml(path: Path) -> dict[str, Any]:
    """An env-folder TOML file; a syntax error is a ConfigError naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def load_env(env: str) -> Settings:
    if not isinstance(env, str) or not _ENV_NAME.match(env):
        raise ConfigError(f"unknown environment {env!r}: expected one of {available_envs()}")
    folder = DEPLOYMENTS / env
    path = folder / "config.toml"
    if not path.is_file():
        raise ConfigError(f"unknown environment {env!r}: expected one of {available_envs()}")
    raw = read_toml(path)
    values: dict[str, Any] = {"env": env, "folder": folder}
    for section, key, field, typ, required in _SCHEMA:
        where = f"{path} [{section}] {key}"
        sect = raw.get(section, {})
        if not isinstance(sect, dict):
            raise ConfigError(f"{path} [{section}]: expected a table, got {type(sect).__name__}")
        if key not in sect:
            if required:
                raise ConfigError(f"{where}: missing")
            values[field] = _FIELD_DEFAULTS.get(field, _DEFAULTS.get(typ))
            continue
        val = sect[key]
        if typ in (int, float) and isinstance(val, str) and VAR.search(val):
            # A number may come from the environment ("${VAR:-120}"), e.g. short test TTLs.
            text = _expand(val, where)
            try:
                val = typ(text)
            except ValueError:
                raise ConfigError(f"{where}: expected {typ.__name__}, got {text!r}") from None
        if typ is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if typ is bool and isinstance(val, str) and VAR.search(val):
            text = _expand(val, where).strip().lower()
            if text not in ("true", "false"):
                raise ConfigError(f"{where}: expected true or false, got {text!r}")
            val = text == "true"
        if typ is bool:
            if not isinstance(val, bool):
                raise ConfigError(f"{where}: expected true or false, got {type(val).__name__}")
        elif not isinstance(val, typ) or isinstance(val, bool):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {type(val).__name__}")
        if typ is str:
            val = _expand(val, where)
            if required and not val.strip():
                raise ConfigError(f"{where}: empty")
        if typ is list:
            if not all(isinstance(v, str) for v in val):
                raise ConfigError(f"{where}: expected a list of strings")
            val = tuple(val)
        values[field] = val
    if values["probe_mode"] not in ("task-ip", "url"):
        raise ConfigError(f"{path} [probe] mode: expected 'task-ip' or 'url'")
    if values["probe_mode"] == "url" and not values["probe_base_url"]:
        raise ConfigError(f"{path} [probe] base_url: required when mode = 'url'")
    if values["container_port"] <= 0 or values["container_port"] > 65535:
        raise ConfigError(f"{path} [ecs] container_port: out of range")
    if not all(math.isfinite(values[k]) and values[k] > 0
               for k in ("deploy_poll_seconds", "deploy_timeout_seconds", "lease_ttl_seconds")):
        raise ConfigError(f"{path} [deploy]: timeout_seconds, poll_seconds and "
                          "lease_ttl_seconds must be positive")
    if values["approval_timeout_seconds"] <= 0 or not (
            math.isfinite(values["approval_poll_seconds"]) and values["approval_poll_seconds"] > 0):
        raise ConfigError(f"{path} [approval]: timeout_seconds and poll_seconds must be positive")
    if values["alb_scheme"] not in ("http", "https"):
        raise ConfigError(f"{path} [alb] scheme: expected 'http' or 'https'")
    if values["alternate_target_group"]:
        missing = [k for k, f in (("[ecs] target_group", "target_group"),
                                  ("[ecs] infrastructure_role", "infrastructure_role"),
                                  ("[alb] load_balancer", "alb_name"))
                   if not values[f]]
        missing += [k for k, f in (("[alb] production_listener_port", "alb_production_port"),
                                   ("[alb] test_listener_port", "alb_test_port"))
                    if not 0 < values[f] <= 65535]
        if missing:
            raise ConfigError(f"{path} [ecs] alternate_target_group (blue/green): also needs "
                              + ", ".join(missing))
    if not (math.isfinite(values["lease_wait_seconds"]) and values["lease_wait_seconds"] >= 0):
        raise ConfigError(f"{path} [deploy] lease_wait_seconds: must be 0 or more")
    if values["env_file"] and not Path(values["env_file"]).is_absolute():
        values["env_file"] = str(ROOT / values["env_file"])
    key = values["evidence_kms_key"]
    if key and not _KMS_KEY_ARN.match(key):
        raise ConfigError(f"{path} [evidence] kms_key_id: expected a KMS key ARN "
                          f"(arn:aws:kms:<region>:<account>:key/<id>), got {key!r}")
    signing = values["evidence_signing_key"]
    if signing and not _SIGNING_KEY.match(signing):
        raise ConfigError(f"{path} [evidence] signing_key: expected a KMS alias (alias/<name>) "
                          f"or key ARN, got {signing!r}")
    if values["evidence_retention_days"] < 0:
        raise ConfigError(f"{path} [evidence] retention_days: must be 0 (no Object Lock) or more")
    root = Path(values["evidence_root"])
    values["evidence_root"] = root if root.is_absolute() else ROOT / root
    for name in ("task_definition", "service_definition"):
        if not (folder / values[name]).is_file():
            raise ConfigError(f"{path} [ecs] {name}: file {folder / values[name]} not found")
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})


def cloudtrail_extra_names(settings: Settings) -> list[str]:
    """``[cloudtrail] extra_names`` of the environment's config.toml (identifiers Settings
    does not carry, e.g. the CI deploy role); [] when absent."""
    folder = getattr(settings, "folder", None)
    if folder is None:
        return []
    try:
        raw = tomllib.loads((Path(folder) / "config.toml").read_text())
    except (OSError, ValueError):
        return []
    values = raw.get("cloudtrail", {}).get("extra_names", [])
    return [v for v in values if isinstance(v, str) and v.strip()] \
        if isinstance(values, list) else []


def apply_env_file(settings: Settings) -> dict[str, str]:
    """Load the environment's env file (if it has one) into os.environ; never overrides."""
    return envfile.apply_env_file(settings.env_file or None)


ALLOW_ENDPOINT = "PAPYRUS_ALLOW_ENDPOINT_URL"


def endpoint_refusal(settings: Settings, environ=None) -> str | None:
    """Why this environment must not run here, or None.

    boto3 sends every call to `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) when one is
    set — for the sandbox that is the point, but an environment that runs on AWS (no env file)
    would then silently run against whatever that variable names (a sandbox left exported in
    the shell, a proxy). Refused unless PAPYRUS_ALLOW_ENDPOINT_URL=1 says it is meant."""
    env = os.environ if environ is None else environ
    if settings.env_file or env.get(ALLOW_ENDPOINT) == "1":
        return None
    names = sorted(k for k, v in env.items()
                   if v and (k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_")))
    if not names:
        return None
    return (f"environment {settings.env!r} runs on AWS, but {', '.join(names)} is set: boto3 "
            f"would send its calls there; unset it, or set {ALLOW_ENDPOINT}=1 if that is meant")
