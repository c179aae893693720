"""Routes that never touch the database: they must answer while it is down."""

from flask import Blueprint, current_app, jsonify

bp = Blueprint("routes", __name__)


@bp.get("/")
def index():
    # The seed's liveness check looks for exactly this body.
    return "Welcome to Papyrus", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/healthz")
def healthz():
    # For the ALB target group and the container HEALTHCHECK: process health only. A DB
    # outage must not make ECS replace healthy tasks; /dbcheck is the DB probe.
    return jsonify(
        status="ok",
        version=current_app.config["VERSION"],
        image=current_app.config["IMAGE"],
    )
