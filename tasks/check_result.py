"""Preflight checks: the shape every check returns, and the list of checks in runbook order.

Each check is a Prefect task in its concern's module (`tasks.secrets_rds`,
`tasks.security_groups`, `tasks.ecs_checks`, `tasks.service_code`) and returns plain data::

    {"check": "secret.dbname", "expected": "papyrus", "actual": "papyrus_old",
     "verdict": "fail", "detail": "one line for humans",
     "evidence": {"name": <obj or text>}}     # optional: files the flow writes into the bundle

Verdicts: ``pass``, ``fail``, ``skip`` (not run on purpose, e.g. the password-authenticates
check when disabled). A check that cannot be run (AWS error after retries, missing resource) is
a ``fail`` whose detail says why. Nothing secret is ever in a check: the password shows up only
as ``present``/``missing`` and every string goes through the redactor.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from ground.redact import REDACTOR
from ground.retry import is_deterministic

PASS, FAIL, SKIP = "pass", "fail", "skip"
OK_VERDICTS = (PASS, SKIP)

# Check names, in runbook order (docs/runbook.md; the deploy gate, docs/architecture.md).
SECRET_FIELDS = ("host", "port", "username", "dbname")
CHECK_NAMES = (
    *(f"secret.{f}" for f in SECRET_FIELDS),
    "secret.password",
    "secret.password_authenticates",
    "rds.endpoint_unchanged",
    "rds.force_ssl",
    "rds_sg.5432_only_from_task_sg",
    "ecs.exec_enabled",
    "service.url_map",
    "taskdef.pgsslmode",
)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def result(check: str, expected: Any, actual: Any, verdict: str, detail: str = "",
           evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """One check's plain-data result, redacted."""
    if verdict not in (PASS, FAIL, SKIP):
        raise ValueError(f"unknown verdict {verdict!r}")
    out = {
        "check": check,
        "expected": _plain(expected),
        "actual": _plain(actual),
        "verdict": verdict,
        "detail": " ".join(str(detail).split()),
    }
    out = REDACTOR.redact_obj(out)
    if evidence:
        out["evidence"] = REDACTOR.redact_obj(_plain(evidence))
    return out


def error_result(check: str, expected: Any, exc: BaseException) -> dict[str, Any]:
    """A check that could not be run: a failure naming the error (one line, redacted)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return result(check, expected, "error", FAIL,
                  f"could not check: {type(exc).__name__}{': ' + text if text else ''}")


def _retry_transient(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry AWS/network trouble, not a resource that is missing."""
    try:
        state.result()
    except (LookupError, ValueError):
        return False
    except Exception as exc:  # noqa: BLE001
        return not is_deterministic(exc)  # a denied action fails the same way every time
    return False


# Options for check tasks that talk to AWS: retried with backoff unless the thing is missing.
# No caching (the inputs are boto3 clients) and no persisted results.
AWS_CHECK_OPTS = {"retries": 2, "retry_delay_seconds": [1, 3],
                  "retry_condition_fn": _retry_transient, "cache_policy": NO_CACHE,
                  "persist_result": False}


def overall(checks: list[dict[str, Any]]) -> str:
    """'success' when every check passed (or was skipped on purpose), else 'failed'."""
    return "success" if checks and all(c["verdict"] in OK_VERDICTS for c in checks) \
        else "failed"


def failed(checks: list[dict[str, Any]]) -> list[str]:
    return [c["check"] for c in checks if c["verdict"] not in OK_VERDICTS]


def public(check: dict[str, Any]) -> dict[str, Any]:
    """A check without its evidence payload (for tables, JSON output, artifacts)."""
    return {k: v for k, v in check.items() if k != "evidence"}
