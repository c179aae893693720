"""Bucket policies that deny uploads, enforced as S3 enforces them (moto stores them and lets
every PutObject through unless its IAM authorization is on).

Only what evidence buckets use is evaluated: `Deny` statements on `s3:PutObject` whose conditions
test the upload's encryption headers — `s3:x-amz-server-side-encryption` and
`s3:x-amz-server-side-encryption-aws-kms-key-id` with `StringEquals`, `StringNotEquals`,
`StringNotEqualsIfExists` or `Null`. A statement with any other condition key is not evaluated
(so it never denies here); docs/sandbox.md says so. AWS: S3 User Guide, "Requiring
server-side encryption" / "Specifying SSE-KMS" (bucket policy examples with these condition
keys); IAM User Guide, condition operators (`...IfExists`, `Null`). S3 checks the header as
sent: a PutObject without the key-id header fails `StringNotEquals` and is denied.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, unquote

from moto.s3.models import FakeBucket

from sandbox.patches import Patches

_HEADERS = {
    "s3:x-amz-server-side-encryption": "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION",
    "s3:x-amz-server-side-encryption-aws-kms-key-id":
        "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID",
}


def _policy(bucket: str) -> dict | None:
    from moto.s3.models import s3_backends

    for account in list(s3_backends.keys()):
        b = s3_backends[account]["global"].buckets.get(bucket)
        if b is not None and b.policy:
            raw = b.policy.decode() if isinstance(b.policy, bytes) else b.policy
            return json.loads(raw)
    return None


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(op: str, key: str, wanted, environ: dict) -> bool | None:
    """True/False for a condition we understand; None for one we do not."""
    header = _HEADERS.get(key.lower())
    if header is None:
        return None
    present = header in environ
    value = environ.get(header, "")
    wanted = [str(w) for w in _listed(wanted)]
    if op == "StringEquals":
        return present and value in wanted
    if op == "StringNotEquals":
        return not present or value not in wanted
    if op == "StringNotEqualsIfExists":
        return present and value not in wanted
    if op == "Null":
        return (not present) == (wanted[0].lower() == "true")
    return None


def denied(bucket: str, key: str, environ: dict) -> str | None:
    """The Sid (or index) of the Deny statement that refuses this upload, or None."""
    policy = _policy(bucket)
    for i, st in enumerate((policy or {}).get("Statement", [])):
        if st.get("Effect") != "Deny":
            continue
        actions = [a.lower() for a in _listed(st.get("Action", []))]
        if not any(fnmatch.fnmatch("s3:putobject", a) for a in actions):
            continue
        arn = f"arn:aws:s3:::{bucket}/{key}"
        if not any(fnmatch.fnmatch(arn, r) for r in _listed(st.get("Resource", []))):
            continue
        results = [_condition_holds(op, k, v, environ)
                   for op, keys in (st.get("Condition") or {}).items() for k, v in keys.items()]
        if results and None not in results and all(results):
            return st.get("Sid") or str(i)
    return None


def _upload_target(environ: dict) -> tuple[str, str] | None:
    """(bucket, key) of a path-style PutObject/CopyObject/CreateMultipartUpload, else None."""
    method = environ.get("REQUEST_METHOD")
    query = set(parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    sub_resources = {"uploadId", "partNumber", "tagging", "acl", "retention", "legal-hold"}
    upload = (method == "PUT" and not sub_resources & query) or (
        method == "POST" and "uploads" in query)
    if not upload:
        return None
    bucket, _, key = unquote(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
    return (bucket, key) if bucket and key else None




def _get_permission(self, action: str, resource: str):
    """moto's own bucket-policy check, on the statements without a Condition. moto evaluates
    conditions with no request values, so a conditional Deny (the evidence bucket's) refused
    every upload, the correct ones too; conditional statements are judged by `wrap` above,
    which sees the request's headers."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if self.policy is None:
        return PermissionResult.NEUTRAL
    doc = json.loads(self.policy.decode() if isinstance(self.policy, bytes) else self.policy)
    plain = [st for st in _listed(doc.get("Statement", [])) if not st.get("Condition")]
    if not plain:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**doc, "Statement": plain})).is_action_permitted(action,
                                                                                 resource)


_PATCHES = Patches((FakeBucket, "get_permission", _get_permission))
install, uninstall = _PATCHES.install, _PATCHES.uninstall


def wrap(app: Callable) -> Callable:
    def middleware(environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = _upload_target(environ) if "s3/aws4_request" in environ.get(
            "HTTP_AUTHORIZATION", "") else None
        sid = denied(*target, environ) if target else None
        if sid is None:
            return app(environ, start_response)
        body = (f"<Error><Code>AccessDenied</Code><Message>User is not authorized to perform "
                f"s3:PutObject on resource arn:aws:s3:::{target[0]}/{target[1]} with an "
                f"explicit deny in a resource-based policy ({sid})</Message></Error>").encode()
        start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    return middleware
