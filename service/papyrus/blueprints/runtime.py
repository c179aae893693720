"""/runtime: what this task runs, reported by the task itself — the deploy's URL-map evidence.

The URL map is the running app's own (`url_map.iter_rules()`, sorted), not a checkout's. The
image digest and task ARN come from the ECS task metadata endpoint v4, which Fargate injects as
`ECS_CONTAINER_METADATA_URI_V4` (`GET $URI`: the container, `Image`/`ImageID`; `GET $URI/task`:
`TaskARN`, `Family`, `Revision`). It needs the probe token: it names the image and the task.
Only the fields below leave the process: no environment, no config value, no secret.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from flask import Blueprint, current_app, jsonify

from ..probe_auth import check_token

bp = Blueprint("runtime", __name__)
METADATA_TIMEOUT = 2.0


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=METADATA_TIMEOUT) as r:  # noqa: S310 - ECS's URI
        doc = json.load(r)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def task_metadata(uri: str | None) -> tuple[dict, dict, str | None]:
    """(container metadata, task metadata, error or None)."""
    if not uri:
        return {}, {}, "ECS_CONTAINER_METADATA_URI_V4 not set (not an ECS task)"
    try:
        return _get(uri), _get(uri.rstrip("/") + "/task"), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # The class only: the URI and the body stay out of the answer.
        return {}, {}, f"task metadata endpoint unavailable ({type(exc).__name__})"


@bp.get("/runtime")
def runtime():
    denied = check_token("runtime")
    if denied is not None:
        return denied
    container, task, error = task_metadata(current_app.config.get("METADATA_URI"))
    family, revision = task.get("Family"), task.get("Revision")
    response = jsonify(
        url_map=sorted(r.rule for r in current_app.url_map.iter_rules()),
        version=current_app.config["VERSION"],
        image=container.get("Image") or current_app.config.get("IMAGE"),
        image_digest=container.get("ImageID") or None,
        task_arn=task.get("TaskARN"),
        task_definition=f"{family}:{revision}" if family and revision else None,
        metadata_error=error,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
