"""The CloudTrail archive tests' helpers: the generator's Papyrus names, readers of the archived
files, and a fake `lookup_events` client with injectable failures."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

from sandbox import cloudtrail as ct

# The deploy role is not in Settings: the flow takes it as an extra identifier.
EXTRA_NAMES = ["papyrus-deploy-oidc"]


def papyrus_names(settings) -> dict[str, str]:
    """The generator's Papyrus names, taken from the environment's settings."""
    s = settings
    return {"cluster": s.cluster, "service": s.service, "task_family": s.family,
            "secret": s.db_secret_id, "db_instance": s.rds_instance,
            "db_parameter_group": s.parameter_group,
            "rds_security_group": s.rds_security_group,
            "task_security_group": s.task_security_group, "ecr_repository": s.ecr_repository,
            "evidence_bucket": s.evidence_bucket, "task_role": s.task_role,
            "task_execution_role": s.execution_role}


def read_lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def ids_of(path: Path) -> list[str]:
    return [r["EventId"] for r in read_lines(path)]


class FakeCloudTrail:
    """`lookup_events` as botocore returns it (EventTime a datetime), straight from a store.

    fail_after: raise `error` on the call after that many calls (once, then it is cleared).
    expire_token_at: reject the Nth request carrying a NextToken (InvalidNextTokenException).
    repeat_last: re-send each page's last event at the head of the next page (a duplicate
    at a page boundary, as an offset-paginated API under appends would).
    """

    def __init__(self, store: ct.EventStore, *, fail_after: int | None = None,
                 error: Exception | None = None, repeat_last: bool = False,
                 expire_token_at: int | None = None):
        self.store = store
        self.calls = 0
        self.fail_after = fail_after
        self.error = error or RuntimeError("injected failure")
        self.repeat_last = repeat_last
        self._carry: dict | None = None
        self.expire_token_at = expire_token_at  # the Nth call with a NextToken is rejected
        self.token_calls = 0

    def lookup_events(self, **kw: Any) -> dict:
        if self.expire_token_at is not None and kw.get("NextToken"):
            self.token_calls += 1
            if self.token_calls == self.expire_token_at:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "InvalidNextTokenException",
                                             "Message": "expired"}}, "LookupEvents")
        if self.fail_after is not None and self.calls >= self.fail_after:
            self.fail_after = None
            raise self.error
        self.calls += 1
        page = self.store.lookup(start_time=kw.get("StartTime"), end_time=kw.get("EndTime"),
                                 max_results=kw.get("MaxResults"),
                                 next_token=kw.get("NextToken"))
        events = [dict(e, EventTime=dt.datetime.fromtimestamp(e["EventTime"], dt.UTC))
                  for e in page["Events"]]
        if self.repeat_last:
            if self._carry is not None and kw.get("NextToken"):
                events.insert(0, self._carry)
            self._carry = events[-1] if events else None
        out = {"Events": events, "ResponseMetadata": {"RetryAttempts": 0}}
        if page.get("NextToken"):
            out["NextToken"] = page["NextToken"]
        return out
