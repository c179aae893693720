"""Which CloudTrail events are "Papyrus-related": one pure rule, documented in docs/cloudtrail.md.

The rule is applied to an archived record (one NDJSON line of the full archive, see
`tasks.cloudtrail.records.event_record`): an event is Papyrus-related when one of the Papyrus
identifiers appears *as a whole token* in one of the fields that name resources or principals:

* the envelope: ``Resources[].ResourceName`` / ``ResourceType`` and ``Username``;
* the CloudTrail document: ``requestParameters``, ``responseElements``, ``resources``,
  ``userIdentity``, ``additionalEventData``, ``serviceEventDetails``, ``errorMessage``
  (every string value at any depth; keys are not searched).

Fields that never name a resource (``userAgent``, ``sourceIPAddress``, ``tlsDetails``,
``eventSource``, ids, ...) are not searched, so a user agent or host name can never make an
event Papyrus-related.

The identifiers come from the environment's settings, never from this file: ECS cluster,
service, task family, log group, task and execution roles, ECR repository, DB secret id, RDS
instance, DB parameter group, the two security groups (names, plus their ids when they can be
resolved), the evidence bucket, and any extra names the caller passes.

"Whole token" means: the identifier (case-insensitively) is neither preceded by one of
``A-Z a-z 0-9 _ . -`` nor followed by one of ``A-Z a-z 0-9 _ -`` or by a ``.`` that continues
with a letter or digit. So ``papyrus-ecs-prd`` matches in
``arn:aws:ecs:...:cluster/papyrus-ecs-prd`` and ``papyrus-task`` in ``papyrus-task:39``, but
``papyrus-evidence-prd`` does not match the bucket ``papyrus-evidence-prd-old``. A secret
id also matches when followed by the ``-XXXXXX`` suffix Secrets Manager appends in ARNs
(``secret:papyrus/prd/db-AbCdEf``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# Settings fields whose values are identifiers of Papyrus resources (bare names).
NAME_FIELDS = (
    "cluster", "service", "family", "log_group", "task_role", "execution_role",
    "ecr_repository", "rds_instance", "parameter_group", "rds_security_group",
    "task_security_group", "evidence_bucket",
)
# Settings fields holding Secrets Manager ids (their ARNs carry a -XXXXXX suffix).
SECRET_FIELDS = ("db_secret_id", "token_secret_id")

ENVELOPE_FIELDS = ("Resources", "Username")
DOCUMENT_FIELDS = (
    "requestParameters", "responseElements", "resources", "userIdentity",
    "additionalEventData", "serviceEventDetails", "errorMessage",
)

_BEFORE = r"(?<![A-Za-z0-9_.\-])"
_AFTER = r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9])"
_SECRET_SUFFIX = r"(?:-[A-Za-z0-9]{6})?"


@dataclass(frozen=True)
class PapyrusNames:
    """The identifiers the rule looks for (plain data: JSON-able, hashable)."""

    names: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "secrets": list(self.secrets),
                "sources": dict(self.sources)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PapyrusNames:
        return cls(tuple(data.get("names", ())), tuple(data.get("secrets", ())),
                   dict(data.get("sources", {})))

    def fingerprint(self) -> str:
        """Stable identity of the rule's inputs (a resumed run must use the same names)."""
        import hashlib

        raw = json.dumps([sorted(n.lower() for n in self.names),
                          sorted(s.lower() for s in self.secrets)])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def names_from_settings(settings: Any, extra: Iterable[str] = (),
                        security_group_ids: Iterable[str] = ()) -> PapyrusNames:
    """The Papyrus identifiers of an environment (`ground.settings.Settings`)."""
    names: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for f in NAME_FIELDS:
        value = getattr(settings, f, "") or ""
        if value.strip():
            names.setdefault(value.strip(), f)
    for f in SECRET_FIELDS:
        value = getattr(settings, f, "") or ""
        if value.strip():
            secrets.setdefault(value.strip(), f)
    for value in security_group_ids:
        if value and value.strip():
            names.setdefault(value.strip(), "security_group_id")
    for value in extra:
        if value and value.strip():
            names.setdefault(value.strip(), "extra")
    return PapyrusNames(tuple(sorted(names)), tuple(sorted(secrets)), {**names, **secrets})


@lru_cache(maxsize=32)
def _compile(names: tuple[str, ...], secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    alts = [re.escape(s) + _SECRET_SUFFIX for s in sorted(secrets, key=len, reverse=True)]
    alts += [re.escape(n) for n in sorted(names, key=len, reverse=True)]
    if not alts:
        return None
    # ASCII case folding only: then a match implies the lower-cased name is a substring of the
    # lower-cased text, which is the cheap prefilter in PapyrusFilter._search.
    return re.compile(_BEFORE + "(?:" + "|".join(alts) + ")" + _AFTER,
                      re.IGNORECASE | re.ASCII)


def _strings(node: Any) -> Iterator[str]:
    """Every string value at any depth (dict keys excluded)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, str):
            yield n
        elif isinstance(n, Mapping):
            stack.extend(n.values())
        elif isinstance(n, list | tuple):
            stack.extend(n)


def searched_values(record: Mapping[str, Any]) -> Iterator[str]:
    """The strings of `record` the rule searches (see the module docstring)."""
    for f in ENVELOPE_FIELDS:
        if f in record:
            yield from _strings(record[f])
    doc = record.get("CloudTrailEvent")
    if isinstance(doc, str):  # an unparsable document is searched as text
        yield doc
    elif isinstance(doc, Mapping):
        for f in DOCUMENT_FIELDS:
            if f in doc:
                yield from _strings(doc[f])


class PapyrusFilter:
    """`PapyrusFilter(names)(record) -> bool`; pure and reusable."""

    def __init__(self, names: PapyrusNames):
        self.names = names
        self._pattern = _compile(tuple(names.names), tuple(names.secrets))
        needles = {n.lower() for n in (*names.names, *names.secrets)}
        # A needle holding another one adds nothing to "any needle is in the text" (if it is
        # there, so is the shorter one): ``papyrus`` stands for every ``papyrus-…`` name, so
        # the prefilter scans each line 3 times instead of 17.
        self._needles = tuple(sorted(n for n in needles
                                     if not any(m != n and m in n for m in needles)))

    def _search(self, text: str) -> bool:
        # Substring prefilter (C speed), then the token-boundary regex.
        low = text.lower()
        if not any(n in low for n in self._needles):
            return False
        return self._pattern.search(text) is not None

    def __call__(self, record: Mapping[str, Any]) -> bool:
        if self._pattern is None:
            return False
        return any(self._search(s) for s in searched_values(record))

    def check(self, record: Mapping[str, Any], text: str | None = None) -> bool:
        """`self(record)`, faster when `text` is the record's JSON serialisation: when that
        text holds no escape (no backslash), every searched string appears in it verbatim
        between quotes (which are boundaries), so no match in the text means no match in any
        field and the walk is skipped. Same answer as `self(record)` (tested)."""
        if self._pattern is None:
            return False
        if text is not None and "\\" not in text and not self._search(text):
            return False
        return self(record)

    def matches(self, record: Mapping[str, Any]) -> list[str]:
        """The identifiers found in `record` (for explanations and tests)."""
        if self._pattern is None:
            return []
        found = {m.group(0) for s in searched_values(record) for m in self._pattern.finditer(s)}
        return sorted(found)


def is_papyrus(record: Mapping[str, Any], names: PapyrusNames) -> bool:
    """The rule as one pure function (the compiled pattern is cached per set of names)."""
    return PapyrusFilter(names)(record)
