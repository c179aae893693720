"""The bare Flask hello-world that /healthz is compared with: same JSON shape, no extensions,
served by the same gunicorn settings (`--config python:papyrus.gunicorn_conf`)."""

from flask import Flask, jsonify

app = Flask(__name__, static_folder=None)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", version="1.0.0", image=None)
