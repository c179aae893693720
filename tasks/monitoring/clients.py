"""The AWS clients monitoring talks to, and the retry rule of its Prefect tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError
from prefect.cache_policies import NO_CACHE

from ground.aws import client


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
