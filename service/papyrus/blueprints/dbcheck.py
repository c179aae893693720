"""/dbcheck: prove the app can write to PostgreSQL over SSL (the seed's "SKU-APP" evidence).

GET and POST both insert one row (POST is the honest verb; GET is kept because probes and
the runbook use plain curl). It is a write, so it needs `Authorization: Bearer <token>`
matching PAPYRUS_DBCHECK_TOKEN. Nothing from the request reaches SQL: the SKU is made here.
"""

from __future__ import annotations

import datetime as dt
import secrets

from flask import Blueprint, jsonify

from .. import db
from ..probe_auth import check_token

bp = Blueprint("dbcheck", __name__)


def new_sku() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"SKU-APP-{stamp}-{secrets.token_hex(6)}"


@bp.route("/dbcheck", methods=["GET", "POST"])
def dbcheck():
    denied = check_token("dbcheck")
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
