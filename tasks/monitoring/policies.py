"""IAM-style policy documents in one comparable form.

AWS services hand back a policy as the string they were given (or re-serialised: moto's S3
re-dumps it with spaces), and a one-element list and a bare string mean the same thing, so
policies are compared parsed and canonicalised, never as text.
"""

from __future__ import annotations

from typing import Any

_LISTY = ("Action", "NotAction", "Resource", "NotResource")


def _as_sorted_list(v: Any) -> list:
    return sorted(v) if isinstance(v, list) else [v]


def canonical_policy(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    statements = doc.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    out = []
    for st in statements:
        st = dict(st)
        for key in _LISTY:
            if key in st:
                st[key] = _as_sorted_list(st[key])
        if isinstance(st.get("Principal"), dict):
            st["Principal"] = {k: _as_sorted_list(v) for k, v in sorted(st["Principal"].items())}
        out.append(st)
    out.sort(key=lambda s: (s.get("Sid", ""), repr(s)))
    canon = {k: v for k, v in doc.items() if k != "Statement"}
    canon["Statement"] = out
    return canon
