"""`generate_history`: a realistic, deterministic synthetic history in which an exact share of
the events concern Papyrus resources and the rest never mention "papyrus"."""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

from sandbox.cloudtrail.events import (
    _KEY,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    StoredEvent,
    _epoch,
    _no_gc,
)
from sandbox.cloudtrail.history_blocks import _Gen, _Kind
from sandbox.cloudtrail.history_kinds import _OTHER_APPS, _app_kinds, _app_names, _generic_kinds

PAPYRUS_NAMES: dict[str, str] = {
    "cluster": "papyrus-ecs-prd",
    "service": "papyrus-task-service",
    "task_family": "papyrus-task",
    "secret": "papyrus/prd/db",
    "db_instance": "papyrus-prd",
    "db_parameter_group": "papyrus-prd-pg15",
    "rds_security_group": "papyrus-rds-sg",
    "task_security_group": "papyrus-ecs-task-sg",
    "ecr_repository": "papyrus",
    "evidence_bucket": "papyrus-evidence-prd",
    "task_role": "papyrusTaskRole",
    "task_execution_role": "papyrusTaskExecutionRole",
    "deploy_role": "papyrus-deploy-oidc",
    "github_repository": "example-org/papyrus",
}
_HUMANS = ("alice", "bob", "carol", "ops-automation")


def _cumulative(kinds: list[_Kind]) -> list[float]:
    out, total = [], 0.0
    for k in kinds:
        total += k.weight
        out.append(total)
    return out


def generate_history(
    n: int,
    days: float = 90,
    now: Any = None,
    papyrus_share: float = 0.1,
    seed: int = 7237093586,
    *,
    names: Mapping[str, str] | None = None,
    account_id: str = DEFAULT_ACCOUNT_ID,
    region: str = DEFAULT_REGION,
) -> list[StoredEvent]:
    """`n` synthetic CloudTrail events spread uniformly over the `days` days before `now`.

    Exactly ``round(n * papyrus_share)`` events concern the Papyrus workload (`names`, merged
    over :data:`PAPYRUS_NAMES`); their CloudTrailEvent names a Papyrus resource in
    requestParameters (and often Resources). The others come from unrelated workloads and
    account-wide activity and never contain "papyrus" (any case) in any field, as long as
    the names passed in contain it and the other workloads' names do not.

    Event times are whole seconds in ``(now - days, now]``. The result is sorted ascending by
    (EventTime, EventId), ready for :meth:`EventStore.add_events`. The same (n, days, now,
    share, seed, names, account, region) always gives the same events; `now` defaults to the
    current time (truncated to the second).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0 <= papyrus_share <= 1:
        raise ValueError("papyrus_share must be within [0, 1]")
    now_s = int(time.time()) if now is None else int(_epoch(now))
    span = max(1, int(days * 86400))
    rng = random.Random(seed)
    gen = _Gen(rng, account_id, region)
    humans = [gen.iam_user(h) for h in _HUMANS]
    papyrus = _app_kinds(gen, {**PAPYRUS_NAMES, **(names or {})}, humans)
    others = [k for app in _OTHER_APPS for k in _app_kinds(gen, _app_names(app), humans)]
    others += _generic_kinds(gen, humans)
    n_papyrus = round(n * papyrus_share)

    with _no_gc():
        return _generate(n, n_papyrus, papyrus, others, rng, now_s - span + 1, span)


def _generate(n: int, n_papyrus: int, papyrus: list[_Kind], others: list[_Kind],
              rng: random.Random, first: int, span: int) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    append = out.append
    rand, getrandbits = rng.random, rng.getrandbits
    gmtime, strftime = time.gmtime, time.strftime
    for kinds, count in ((papyrus, n_papyrus), (others, n - n_papyrus)):
        cum = _cumulative(kinds)
        total, last = cum[-1], len(kinds) - 1
        for _ in range(count):
            kind = kinds[min(bisect_right(cum, rand() * total), last)]
            variant = kind.variants[int(rand() * len(kind.variants))]
            ident = kind.identities[int(rand() * len(kind.identities))]
            t = first + int(rand() * span)
            ts = strftime("%Y-%m-%dT%H:%M:%SZ", gmtime(t))
            h = f"{getrandbits(128):032x}"
            eid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
            h = f"{getrandbits(128):032x}"
            rid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-b{h[17:20]}-{h[20:32]}"
            ui = ident.head if ident.tail is None else f"{ident.head}{ts}{ident.tail}"
            doc = (f'{{"eventVersion":"1.09","userIdentity":{ui},"eventTime":"{ts}",'
                   f'{kind.head}"sourceIPAddress":"{ident.ip}","userAgent":{ident.user_agent}'
                   f'{variant.params},"requestID":"{rid}","eventID":"{eid}",{variant.tail}')
            append(StoredEvent(t, eid, kind.name, kind.source, ident.username,
                               variant.read_only, ident.access_key_id, variant.resources, doc))
    out.sort(key=_KEY)
    return out
