"""The Papyrus filter's identifiers for one environment (the `resolve_papyrus_names` task)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.logs import run_logger
from ground.retry import transient_only
from ground.settings import cloudtrail_extra_names
from tasks.cloudtrail import LOGGER
from tasks.cloudtrail.papyrus_filter import names_from_settings


def _logger():
    return run_logger(LOGGER)


@task(name="cloudtrail-papyrus-names", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=transient_only)
def resolve_papyrus_names(settings: Any, ec2: Any, extra: list[str] | None = None
                          ) -> dict[str, Any]:
    """The filter's identifiers from settings, plus the security groups' ids when EC2 knows
    them (events often name a group only by id). EC2 failing is a warning, not an error."""
    sg_ids: list[str] = []
    wanted = [n for n in (settings.rds_security_group, settings.task_security_group) if n]
    if wanted:
        try:
            resp = ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": wanted}])
            sg_ids = sorted({g["GroupId"] for g in resp.get("SecurityGroups", [])})
        except Exception as exc:
            _logger().warning("cloudtrail: could not resolve security group ids (%s: %s); "
                              "matching on names only", type(exc).__name__, exc)
    return names_from_settings(settings, [*cloudtrail_extra_names(settings), *(extra or ())],
                               sg_ids).to_dict()
