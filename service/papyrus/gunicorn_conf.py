"""gunicorn settings, from PAPYRUS_* environment variables.

Command: gunicorn --config python:papyrus.gunicorn_conf papyrus.wsgi:app
"""

import os
import sys

bind = os.environ.get("PAPYRUS_BIND", "0.0.0.0:5000")
workers = int(os.environ.get("PAPYRUS_WORKERS", "2"))
threads = int(os.environ.get("PAPYRUS_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
accesslog = "-"  # stdout, for the awslogs driver
# No request headers and no %(u)s (gunicorn decodes Basic credentials for it): whatever a
# client puts in Authorization never reaches the log.
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("PAPYRUS_LOG_LEVEL", "info")
# gunicorn >= 25 opens a control socket under $HOME; one task, no operator: not wanted.
control_socket_disable = True


def worker_exit(server, worker):
    # Close pooled connections so the database sees a clean goodbye, not a dropped socket.
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from papyrus import db

        db.dispose_engine(app)


def on_starting(server):
    # The startup check runs once here, in the master, before any worker forks: a secret the
    # database rejects then exits 3 whatever the worker count (when two workers fail to boot at
    # once, gunicorn's arbiter sometimes dies in its own halt() and exits 1 instead).
    if os.environ.get("PAPYRUS_DB_STARTUP_CHECK") != "1":
        return
    from papyrus import create_app, db

    app = create_app()
    app.logger.handlers = server.log.error_log.handlers  # our lines in gunicorn's stream
    app.logger.setLevel(server.log.error_log.level)
    try:
        db.startup_check(app)
    except db.DatabaseRejected as exc:
        server.log.error("%s", exc)
        sys.exit(3)
    os.environ["PAPYRUS_DB_STARTUP_CHECKED"] = "1"  # the workers need not repeat it
