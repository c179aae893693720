"""`install` / `uninstall`: patch ``moto.cloudtrail.responses.CloudTrailResponse`` so
``LookupEvents`` is answered from a `StoreRegistry` (moto reads the response class on every
request, so the patch is seen by a server that is already running)."""

from __future__ import annotations

import json
import threading
from typing import Any

from sandbox.cloudtrail.events import LookupEventsError, _err
from sandbox.cloudtrail.registry import StoreRegistry, default_registry

_MISSING = object()
_patch_lock = threading.Lock()
_installed: list[StoreRegistry] = []  # a stack: nested installs restore the outer one
_original: Any = _MISSING


def _lookup_events(self: Any) -> str:
    """CloudTrailResponse.lookup_events: answered from the installed registry."""
    from moto.core.exceptions import JsonRESTError

    registry = _installed[-1] if _installed else default_registry
    store = registry.get(self.current_account, self.region)
    try:
        body = self.body
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        try:
            request = json.loads(body) if body else {}
        except ValueError as exc:
            raise _err("SerializationException", "The request body is not JSON") from exc
        result = store.handle(request)
    except LookupEventsError as exc:
        raise JsonRESTError(exc.error_type, exc.message) from None
    return json.dumps(result)


def install(registry: StoreRegistry | None = None) -> StoreRegistry:
    """Answer moto's CloudTrail LookupEvents from `registry` (default: `default_registry`).

    Patches ``CloudTrailResponse.lookup_events``; running servers see it on their next
    request. Installs nest: each :func:`uninstall` undoes the latest install, and the last one
    restores moto's class as it was.
    """
    from moto.cloudtrail.responses import CloudTrailResponse

    global _original
    with _patch_lock:
        if _original is _MISSING:
            _original = CloudTrailResponse.__dict__.get("lookup_events")
            CloudTrailResponse.lookup_events = _lookup_events  # type: ignore[attr-defined]
        _installed.append(registry or default_registry)
        return _installed[-1]


def uninstall() -> None:
    """Undo the latest :func:`install`; after the last one moto answers 500 again."""
    from moto.cloudtrail.responses import CloudTrailResponse

    global _original
    with _patch_lock:
        if _installed:
            _installed.pop()
        if _installed or _original is _MISSING:
            return
        if _original is None:
            if "lookup_events" in CloudTrailResponse.__dict__:
                del CloudTrailResponse.lookup_events  # type: ignore[attr-defined]
        else:
            CloudTrailResponse.lookup_events = _original  # type: ignore[attr-defined]
        _original = _MISSING


def installed_registry() -> StoreRegistry | None:
    """The registry moto answers from, or None when not installed."""
    return _installed[-1] if _installed else None
