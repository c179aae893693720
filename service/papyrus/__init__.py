"""Papyrus: a small Flask service keeping SKU records in PostgreSQL."""

from __future__ import annotations

import os
from importlib import metadata

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from . import db, routes, schema
from .blueprints import dbcheck, runtime


def _package_version() -> str:
    try:
        return metadata.version("papyrus")
    except metadata.PackageNotFoundError:
        return "unknown"


def create_app(config: dict | None = None) -> Flask:
    """Build the app. Needs no database: the engine is created on first use."""
    app = Flask(__name__, static_folder=None)  # no static files: the URL map is the API
    app.config.from_mapping(
        # The ECS task definition injects these; `config` overrides them (tests).
        DBCHECK_TOKEN=os.environ.get("PAPYRUS_DBCHECK_TOKEN"),
        DB_SECRET=os.environ.get("PAPYRUS_DB_SECRET"),
        DATABASE=None,
        DB_CONNECT_TIMEOUT=3,
        VERSION=os.environ.get("PAPYRUS_VERSION") or _package_version(),
        IMAGE=os.environ.get("PAPYRUS_IMAGE"),
        # Set by Fargate (platform 1.4.0+) in every container; /runtime reads it.
        METADATA_URI=os.environ.get("ECS_CONTAINER_METADATA_URI_V4"),
    )
    if config:
        app.config.from_mapping(config)

    db.init_app(app)
    app.cli.add_command(schema.init_db_command)
    app.register_blueprint(routes.bp)
    app.register_blueprint(dbcheck.bp)
    app.register_blueprint(runtime.bp)
    app.register_error_handler(HTTPException, _json_error)
    return app


def _json_error(exc: HTTPException):
    # JSON for every error, including 500: no HTML debug page, no stack trace to clients.
    response = exc.get_response()
    response.data = jsonify(error=exc.name).get_data()
    response.content_type = "application/json"
    return response
