"""The task metadata endpoint version 4, as Fargate serves it to each container.

"Beginning with Fargate platform version 1.4.0, an environment variable named
ECS_CONTAINER_METADATA_URI_V4 is injected into each container in a task" (ECS Developer Guide,
task-metadata-endpoint-v4-fargate.html): `GET ${ECS_CONTAINER_METADATA_URI_V4}` returns the
container's metadata, `GET ${ECS_CONTAINER_METADATA_URI_V4}/task` the task's (with its
`Containers`). The shapes follow the guide's Fargate examples (task-metadata-endpoint-v4-fargate-
examples.html): `DockerId`, `Name`, `DockerName`, `Image`, `ImageID`, `Labels`
(`com.amazonaws.ecs.cluster`, `…container-name`, `…task-arn`, `…task-definition-family`,
`…task-definition-version`), `DesiredStatus`, `KnownStatus`, `CreatedAt`, `StartedAt`, `Type`,
`ContainerARN`; the task: `Cluster`, `TaskARN`, `Family`, `Revision`, `DesiredStatus`,
`KnownStatus`, `Containers`, `LaunchType`, `AvailabilityZone`. On Fargate 1.4.0 `ImageID` is
the image's *digest* (aws/containers-roadmap#1310: "returns the image digest in Fargate 1.4.0"),
here the digest the task resolved its image to (`containers[].imageDigest`).

Fargate answers on the link-local 169.254.170.2 (`/v4/<id>`); here a loopback server, and the
id is unguessable (another task on the host cannot read this one's). Nothing secret is in it:
no environment, no secrets, as on Fargate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .json_http import JsonHandler

PATH = "/v4/"


def _iso(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return None


class MetadataEndpoint:
    """One loopback server for every task of a runtime; `uri_for(task)` is the task's
    `ECS_CONTAINER_METADATA_URI_V4`. Entries go when the task has stopped."""

    def __init__(self, lock: threading.RLock):
        self._lock = lock  # the runtime's: task attributes are read under it
        self._tasks: dict[str, Any] = {}
        self._server: ThreadingHTTPServer | None = None
        self._server_lock = threading.Lock()

    def uri_for(self, task: Any) -> str:
        key = f"{task.id}-{secrets.token_hex(8)}"
        with self._lock:
            self._tasks = {k: t for k, t in self._tasks.items() if t.last_status != "STOPPED"}
            self._tasks[key] = task
        return f"{self._base()}{PATH}{key}"

    def _base(self) -> str:
        with self._server_lock:
            if self._server is None:
                self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
                self._server.daemon_threads = True
                threading.Thread(target=self._server.serve_forever, name="ecs-metadata",
                                 daemon=True).start()
            host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def document(self, path: str) -> dict | None:
        """The JSON for a request path, or None (404)."""
        if not path.startswith(PATH):
            return None
        key, _, rest = path[len(PATH):].partition("/")
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                return None
            if task.last_status == "STOPPED":
                self._tasks.pop(key, None)
                return None
            if rest == "":
                return container_metadata(task)
            if rest == "task":
                return task_metadata(task)
        return None

    def stop(self) -> None:
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()


def _family_revision(task: Any) -> tuple[str, str]:
    family_rev = task.task_definition_arn.rsplit("/", 1)[-1]
    family, _, revision = family_rev.rpartition(":")
    return family, revision


def container_metadata(task: Any) -> dict:
    c = task.container
    family, revision = _family_revision(task)
    return {
        "DockerId": c.get("runtimeId") or task.id,
        "Name": c.get("name"),
        "DockerName": c.get("name"),
        "Image": c.get("image"),
        "ImageID": c.get("imageDigest") or "",
        "Labels": {
            "com.amazonaws.ecs.cluster": task.cluster_arn,
            "com.amazonaws.ecs.container-name": c.get("name"),
            "com.amazonaws.ecs.task-arn": task.task_arn,
            "com.amazonaws.ecs.task-definition-family": family,
            "com.amazonaws.ecs.task-definition-version": revision,
        },
        "DesiredStatus": task.desired_status,
        "KnownStatus": c.get("lastStatus"),
        "CreatedAt": _iso(task.created_at),
        "StartedAt": _iso(task.started_at),
        "Type": "NORMAL",
        "ContainerARN": c.get("containerArn"),
    }


def task_metadata(task: Any) -> dict:
    family, revision = _family_revision(task)
    return {
        "Cluster": task.cluster_arn,
        "TaskARN": task.task_arn,
        "Family": family,
        "Revision": revision,
        "DesiredStatus": task.desired_status,
        "KnownStatus": task.last_status,
        "Containers": [container_metadata(task)],
        "PullStartedAt": _iso(task.pull_started_at),
        "PullStoppedAt": _iso(task.pull_stopped_at),
        "AvailabilityZone": task.availability_zone,
        "LaunchType": "FARGATE",
    }


def _handler(endpoint: MetadataEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.reply(endpoint.document(self.path.rstrip("/") if self.path != PATH
                                         else self.path))

    return Handler
