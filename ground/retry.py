"""Which failures a task retry can fix, and which it cannot.

A deterministic error — bad input, a missing resource, a denied action, a request AWS rejects as
invalid — fails the same way every time: retrying it only makes an operator wait (the typo'd
tag once took 7 s of back-off before its one-line answer). Every task with `retries` passes
`retry_condition_fn=transient_only`. Throttling, 5xx, timeouts and lost connections are already
retried inside botocore; what reaches a task retry is what botocore gave up on.
"""

from __future__ import annotations

import re

from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError


class BadInput(ValueError):
    """The operator's input is wrong; nothing was changed."""


# AWS error codes that mean "this request will never work as sent". Prefix/suffix matches:
# `*NotFound*`, `*NotFoundException`, `Invalid*`, `AccessDenied*`, `*ValidationException`.
_DETERMINISTIC_PARTS = ("NotFound", "AccessDenied", "Unauthorized", "ValidationError",
                        "ValidationException", "InvalidParameter", "InvalidClientTokenId",
                        "UnrecognizedClient", "AuthFailure", "OptInRequired",
                        "UnsupportedOperation", "MalformedPolicy")


def is_deterministic(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, (ValueError, TypeError, KeyError, LookupError, ParamValidationError,
                        NoCredentialsError, PermissionError)):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return any(part in code for part in _DETERMINISTIC_PARTS) or code.startswith("Invalid")
    return False


def transient_only(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry unless the failure is deterministic."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as e:  # noqa: BLE001 - a result we cannot read: let the retry decide
        exc = e
    return not (isinstance(exc, BaseException) and is_deterministic(exc))


# AWS's denial message, whatever the service's error code (AccessDenied, AccessDeniedException,
# UnauthorizedOperation): "User: <arn> is not authorized to perform: <service>:<Action> ...".
_DENIED = re.compile(r"not authorized to perform:? ([a-z0-9-]+:[A-Za-z0-9]+)")


def denied_actions(*texts: object) -> list[str]:
    """The IAM actions AWS said were denied, in the order they appear in `texts` (unique)."""
    seen: list[str] = []
    for text in texts:
        for action in _DENIED.findall(str(text or "")):
            if action not in seen:
                seen.append(action)
    return seen


def naming_denied(reason: str, *texts: object) -> str:
    """`reason`, followed by the actions denied in `texts` that it does not name yet: an action
    missing from a policy always shows in the one-line verdict."""
    missing = [a for a in denied_actions(*texts) if a not in reason]
    return f"{reason} (access denied: {', '.join(missing)})" if missing else reason
