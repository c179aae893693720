"""IAM enforcement for the sandbox's moto server: its requests are authorised like AWS would.

moto has the machinery (`moto.core.authorization.ActionAuthenticatorMixin`: SigV4 check, the
caller's identity policies, AssumeRole trust) but switches it on for the whole process
(`settings.INITIAL_NO_AUTH_ACTION_COUNT`), which would also authorise every other moto server
and `mock_aws` in the same process (the tests run several). Here it is switched on per server:
`Enforcer.wrap(app)` marks the requests that server serves (thread-local; werkzeug serves each
request on its own thread) and only those are authorised. On top of moto's own check:

* **Action names as IAM spells them.** moto builds the action from the SigV4 signing name and
  the operation: CloudWatch signs as `monitoring` (IAM: `cloudwatch:`), and S3 sub-resources it
  does not map become `ListBucket`/`CreateBucket`. `_s3_action` gives the names of the Service
  Authorization Reference ("Actions defined by Amazon S3"; HeadBucket needs s3:ListBucket).
* **Resources.** moto passes the request's resource ARN only for S3 (bucket/key), IAM (the role)
  and STS AssumeRole (the role); for everything else it passes "*", which a scoped `Resource`
  never matches — a least-privilege policy would deny everything. `_resource` resolves the ARN
  for Secrets Manager (the secret's full ARN), ECR (the repository) and ECS DescribeServices /
  UpdateService (the service); anything else stays "unknown" and a scoped Resource is taken to
  match it (only the action is enforced there: documented in docs/sandbox.md).
* **IAM wildcards.** moto turns `*` into a regex and leaves `?` (and `.`) as regex syntax; an
  ARN pattern like `secret:papyrus/prd/db-??????` is matched with IAM's glob instead.
* **Errors as AWS answers them** (the code botocore will show, the message naming the action):
  JSON services `AccessDeniedException`, query services `AccessDenied`, EC2
  `UnauthorizedOperation`, S3 `AccessDenied` — each "User: <arn> is not authorized to perform:
  <action> on resource: <arn> because no identity-based policy allows the <action> action".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ground.iam import matches

_local = threading.local()
_lock = threading.Lock()
_originals: dict[str, Any] = {}

_SERVICE_PREFIX = {"monitoring": "cloudwatch"}  # SigV4 signing name -> IAM service prefix
_JSON_SERVICES = {"ecs", "ecr", "secretsmanager", "cloudtrail", "events", "logs", "ssm",
                  "kms", "cloudwatch", "sqs"}


_ECS_ARN_PARAMS = {"DescribeServiceDeployments": "serviceDeploymentArns",
                   "DescribeServiceRevisions": "serviceRevisionArns",
                   "StopServiceDeployment": "serviceDeploymentArn",
                   "ContinueServiceDeployment": "serviceDeploymentArn"}


def _s3_action(method: str, action: str, query: dict) -> str:
    """moto's S3 action -> the IAM action (what AWS checks for that request)."""
    if "encryption" in query:
        return "GetEncryptionConfiguration" if method == "GET" else "PutEncryptionConfiguration"
    if "ownershipControls" in query:
        return ("GetBucketOwnershipControls" if method == "GET"
                else "PutBucketOwnershipControls")
    if action == "DeleteObject" and "versionId" in query:
        # Deleting a version (not adding a delete marker) is its own action in IAM.
        return "DeleteObjectVersion"
    return {"HeadBucket": "ListBucket", "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
            "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
            "DeletePublicAccessBlock": "PutBucketPublicAccessBlock"}.get(action, action)


def _json_body(resp: Any) -> dict:
    body = resp.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _resource(resp: Any, service: str, operation: str, resource: str) -> str:
    """The request's resource ARN where moto passes "*" and we can tell; else "*"."""
    if resource not in ("*", None):
        return resource
    region, account = resp.region, resp.current_account
    try:
        if service == "secretsmanager":
            sid = _json_body(resp).get("SecretId")
            if sid:
                from moto.secretsmanager.models import secretsmanager_backends

                backend = secretsmanager_backends[account][region]
                for secret in backend.secrets.values():
                    if sid in (secret.arn, secret.name):
                        return secret.arn
                return f"arn:aws:secretsmanager:{region}:{account}:secret:{sid}"
        if service == "ecr":
            body = _json_body(resp)
            names = body.get("repositoryNames") or [body.get("repositoryName")]
            if len(names) == 1 and names[0]:
                return f"arn:aws:ecr:{region}:{account}:repository/{names[0]}"
        if service == "ecs" and operation in ("DescribeServices", "UpdateService"):
            body = _json_body(resp)
            cluster = str(body.get("cluster") or "default").rsplit("/", 1)[-1]
            names = body.get("services") or [body.get("service")]
            if len(names) == 1 and names[0]:
                name = str(names[0]).rsplit("/", 1)[-1]
                return f"arn:aws:ecs:{region}:{account}:service/{cluster}/{name}"
        if service == "ecs" and operation == "ListServiceDeployments":
            body = _json_body(resp)
            cluster = str(body.get("cluster") or "default").rsplit("/", 1)[-1]
            name = str(body.get("service") or "").rsplit("/", 1)[-1]
            return f"arn:aws:ecs:{region}:{account}:service/{cluster}/{name}"
        if service == "ecs" and operation in _ECS_ARN_PARAMS:
            # service-deployment/... and service-revision/... ARNs, as IAM checks them (ECS
            # Developer Guide, "Permissions required for viewing Amazon ECS service deployments").
            arns = _json_body(resp).get(_ECS_ARN_PARAMS[operation])
            arns = [arns] if isinstance(arns, str) else list(arns or [])
            if len(arns) == 1 and isinstance(arns[0], str) and arns[0]:
                return arns[0]
    except Exception:  # noqa: BLE001 - an unreadable request stays "unknown resource"
        return "*"
    return "*"


def _denied(service: str, principal: str, action: str, resource: str) -> Exception:
    from moto.core.exceptions import JsonRESTError, _RESTError

    on = f" on resource: {resource}" if resource not in ("*", None) else ""
    msg = (f"User: {principal} is not authorized to perform: {action}{on} because no "
           f"identity-based policy allows the {action} action")
    if service == "s3":
        from moto.s3.exceptions import S3ClientError

        return S3ClientError("AccessDenied", msg)
    if service == "ec2":
        err = _RESTError("UnauthorizedOperation", f"You are not authorized to perform this "
                                                 f"operation. {msg}")
        err.code = 403
        return err
    if service in _JSON_SERVICES:
        err = JsonRESTError("AccessDeniedException", msg)
        err.code = 400
        return err
    err = _RESTError("AccessDenied", msg)
    err.code = 403
    return err


def _authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    """`ActionAuthenticatorMixin._authenticate_and_authorize_action` for enforced requests."""
    if not getattr(_local, "enforcing", False):
        return _originals["authorize"](self, iam_request_cls, resource)
    from moto.core.authorization import ActionAuthenticatorMixin

    if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return None
    path = self.raw_path
    query = urlparse(self.uri).query
    if query:
        path += "?" + query
    operation = self._get_action()
    req = iam_request_cls(account_id=self.current_account, method=self.method, path=path,
                          data=self.data, body=self.raw_body, headers=self.headers,
                          action=operation)
    req.check_signature()
    service = req._service
    op = operation[0] if isinstance(operation, list) else operation
    if service == "s3":
        op = _s3_action(self.method, op, getattr(self, "querystring", {}) or {})
    req._action = f"{_SERVICE_PREFIX.get(service, service)}:{op}"
    resource = _resource(self, service, op, resource)

    def raise_denied() -> None:
        raise _denied(_SERVICE_PREFIX.get(service, service), req._access_key.arn, req._action,
                      resource)

    req._raise_access_denied = raise_denied
    _local.unknown_resource = resource in ("*", None)
    try:
        req.check_action_permitted(resource)
        if service == "s3" and self.headers.get(
                "x-amz-bypass-governance-retention", "").lower() == "true":
            # S3 checks a second action for a request that bypasses governance-mode Object
            # Lock (S3 User Guide, "Bypassing governance mode"); moto checks none.
            req._action = "s3:BypassGovernanceRetention"
            req.check_action_permitted(resource)
    finally:
        _local.unknown_resource = False
    return None


def _check_element_matches(self: Any, element: str, value: str) -> bool:
    if not getattr(_local, "enforcing", False):
        return _originals["element"](self, element, value)
    if element == "Resource" and getattr(_local, "unknown_resource", False):
        return True  # moto does not know this request's resource: only the action counts
    patterns = self._statement[element]
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if element.endswith("Action"):
        return any(matches(p.lower(), value.lower()) for p in patterns)
    return any(matches(p, value) for p in patterns)


def install() -> None:
    """Patch moto (idempotent); requests outside `Enforcer.wrap` behave exactly as before."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMPolicyStatement

    with _lock:
        if _originals:
            return
        _originals["authorize"] = ActionAuthenticatorMixin._authenticate_and_authorize_action
        _originals["element"] = IAMPolicyStatement._check_element_matches
        ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize
        IAMPolicyStatement._check_element_matches = _check_element_matches


class Enforcer:
    """On/off switch for one server's requests (off until the sandbox has seeded)."""

    def __init__(self) -> None:
        self.enabled = False

    def wrap(self, app: Callable) -> Callable:
        def enforced(environ, start_response):
            _local.enforcing = self.enabled
            try:
                yield from app(environ, start_response)
            finally:
                _local.enforcing = False

        return enforced


def role_allows(account_id: str, role_arn: str, action: str, resource: str) -> bool:
    """Whether the role's identity policies (inline and attached, as stored in moto's IAM)
    allow `action` on `resource` — for what AWS does with a role outside an API request (ECS
    pulling secrets and the image with the task's execution role). Conditions not evaluated."""
    from moto.iam.models import iam_backends

    from ground.iam import allows

    backend = iam_backends[account_id]["aws"]
    name = role_arn.rsplit("/", 1)[-1]
    try:
        role = backend.get_role(name)
    except Exception:  # noqa: BLE001 - no such role: nothing is allowed
        return False
    docs = [json.loads(doc) if isinstance(doc, str) else doc
            for doc in role.policies.values()]
    for policy in role.managed_policies.values():
        version = next((v for v in policy.versions if v.is_default), None)
        if version is not None:
            docs.append(json.loads(version.document) if isinstance(version.document, str)
                        else version.document)
    denied = any(_explicit_deny(d, action, resource) for d in docs)
    return not denied and any(allows(d, action, resource) for d in docs)


def _explicit_deny(policy: dict, action: str, resource: str) -> bool:
    from ground.iam import allows

    deny_only = {"Statement": [{**s, "Effect": "Allow"} for s in
                               ([policy["Statement"]] if isinstance(policy.get("Statement"), dict)
                                else policy.get("Statement", []))
                               if s.get("Effect") == "Deny"]}
    return allows(deny_only, action, resource)
