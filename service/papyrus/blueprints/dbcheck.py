"""/dbcheck: prove the app can write to PostgreSQL over SSL (the seed's "SKU-APP" evidence).

GET and POST both insert one row (POST is the honest verb; GET is kept because probes and
the runbook use plain curl). It is a write, so it needs `Authorization: Bearer <token>`
matching PAPYRUS_DBCHECK_TOKEN. Nothing from the request reaches SQL: the SKU is made here.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

from flask import Blueprint, current_app, jsonify, request

from .. import db

bp = Blueprint("dbcheck", __name__)


def new_sku() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"SKU-APP-{stamp}-{secrets.token_hex(6)}"


def _deny(status: int, error: str, challenge: str | None = None):
    response = jsonify(error=error)
    response.status_code = status
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


def _check_token():
    """None when authorized, else the error response."""
    expected = (current_app.config.get("DBCHECK_TOKEN") or "").strip()
    if not expected:
        # No token configured means the endpoint is switched off, not open.
        return _deny(403, "dbcheck disabled: no token configured")
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


@bp.route("/dbcheck", methods=["GET", "POST"])
def dbcheck():
    denied = _check_token()
    if denied is not None:
        return denied
    try:
        body = db.insert_sku(new_sku(), name="dbcheck", source="app")
    except db.DatabaseUnavailable as exc:
        response = jsonify(error="database unavailable", reason=exc.reason)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(body)


@bp.after_request
def no_store(response):
    # Each answer is evidence of one insert; no proxy may replay it.
    response.headers["Cache-Control"] = "no-store"
    return response
