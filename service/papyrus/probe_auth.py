"""The probe token: `Authorization: Bearer <PAPYRUS_DBCHECK_TOKEN>` guards every route that
probes write to or ask about the running task (/dbcheck, /runtime)."""

from __future__ import annotations

import hmac

from flask import current_app, jsonify, request


def _deny(status: int, error: str, challenge: str | None = None):
    response = jsonify(error=error)
    response.status_code = status
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


def check_token(route: str):
    """None when authorized, else the error response (`route` names what is switched off)."""
    expected = (current_app.config.get("DBCHECK_TOKEN") or "").strip()
    if not expected:
        # No token configured means the endpoint is switched off, not open.
        return _deny(403, f"{route} disabled: no token configured")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        return _deny(401, "bearer token required", 'Bearer realm="papyrus"')
    # Constant time, on bytes: compare_digest refuses non-ASCII str with a TypeError (a 500).
    if not hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        return _deny(401, "invalid token", 'Bearer realm="papyrus", error="invalid_token"')
    return None
