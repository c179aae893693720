"""gunicorn entry point: `gunicorn --config python:papyrus.gunicorn_conf papyrus.wsgi:app`."""

import logging
import os

from . import create_app, db

app = create_app()

# Under gunicorn, log through its handlers so our lines land in the same stream and level.
_gunicorn_log = logging.getLogger("gunicorn.error")
if _gunicorn_log.handlers:
    app.logger.handlers = _gunicorn_log.handlers
    app.logger.setLevel(_gunicorn_log.level)

if (os.environ.get("PAPYRUS_DB_STARTUP_CHECK") == "1"
        and os.environ.get("PAPYRUS_DB_STARTUP_CHECKED") != "1"):
    # A secret the database rejects raises here: the worker fails to boot and gunicorn
    # exits 3 (WORKER_BOOT_ERROR), so ECS sees a crash instead of a task serving 503s.
    # An unreachable database only logs a warning: an outage is not a misconfiguration.
    # Under papyrus.gunicorn_conf the master already did this check (on_starting).
    db.startup_check(app)
