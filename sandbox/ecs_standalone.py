"""Standalone ECS tasks in the local runtime: `RunTask`, as the Prefect ECS worker uses it.

moto 5.2.5 answers `RunTask` with a record that never runs (and `DescribeTasks` moves it to
RUNNING by itself). With the runtime installed, a Fargate `RunTask` in its region starts each
task's essential (first) container as a local process, like `sandbox.ecs_runtime` does for a
service's tasks, and `DescribeTasks` / `ListTasks` / `StopTask` see it as ECS would:

- **What runs.** The container's `command` — the task definition's, replaced by the
  `containerOverrides[].command` of the request when given (`entryPoint` first, if any) — in a
  scratch folder (`<workdir>/tasks/<task-id>/`), with this checkout's interpreter first on
  `PATH`: the images the sandbox can run are the ones in moto's ECR, and each stands for this
  checkout (`papyrus-ops`, sandbox.image.push_ops; the service image likewise stands for
  `service/`). An image moto's ECR does not have stops the task with CannotPullContainerError;
  a container without a command with CannotStartContainerError (both `TaskFailedToStart`).
- **Its environment.** What every container of the runtime starts from (region,
  `AWS_EXECUTION_ENV`), the task definition's `environment`, then the override's
  `environment` (the later wins, as in ECS), the `secrets` resolved with the execution role
  (checked against its policy like a service task's), and the VPC's part: `AWS_ENDPOINT_URL`
  (the sandbox's AWS) and `PGHOSTADDR` (the route to RDS), as for the service.
- **Its credentials.** The task role (`overrides.taskRoleArn`, else the task definition's
  `taskRoleArn`) is assumed through STS by the sandbox and served on the container credentials
  endpoint, which the SDKs read from `AWS_CONTAINER_CREDENTIALS_FULL_URI` (+
  `AWS_CONTAINER_AUTHORIZATION_TOKEN`): loopback here, `169.254.170.2` on Fargate. No key is
  ever in the task's environment; the endpoint stops answering once the task has stopped.
- **Its states.** PROVISIONING → PENDING (process started) → RUNNING (still alive on the next
  tick) → STOPPED, with `containers[].exitCode` (128+N for a signal), `stopCode`
  `EssentialContainerExited` or, after StopTask, `UserInitiated` with the request's reason
  (SIGTERM, SIGKILL after the runtime's stop timeout). `group` is `family:<family>` unless the
  request names one; `startedBy`, `tags` and `overrides` are kept as sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from moto.core.utils import utcnow

from .ecs_tasks import (
    LocalTask,
    TaskStartError,
    check_execution_role,
    resolve_image,
    resolve_secret,
)
from .json_http import JsonHandler

if TYPE_CHECKING:
    from .ecs_runtime import EcsRuntime

CREDENTIALS_PATH = "/v2/credentials/"
REFRESH_MARGIN = dt.timedelta(minutes=5)  # fetch new credentials this long before expiry


class StandaloneTask(LocalTask):
    """A task started by RunTask (no service): runs its container's command."""

    def __init__(self, *, backend: Any, cluster: Any, task_definition: Any, overrides: dict,
                 started_by: str | None, group: str, tags: list[dict], launch_type: str,
                 network: dict | None, platform_version: str | None):
        super().__init__(backend=backend, cluster=cluster, task_definition=task_definition,
                         deployment_id="", group=group, exec_enabled=False, network=network,
                         platform_version=platform_version or "1.4.0")
        self.started_by = started_by or None
        self.tags = list(tags or [])
        self.launch_type = launch_type
        name = self.container_def.get("name", "app")
        given = copy_overrides(overrides)
        given.setdefault("containerOverrides", [])
        if not any(c.get("name") == name for c in given["containerOverrides"]):
            given["containerOverrides"].insert(0, {"name": name})
        given.setdefault("inferenceAcceleratorOverrides", [])
        self.overrides = given
        if given.get("cpu"):
            self.cpu = str(given["cpu"])
        if given.get("memory"):
            self.memory = str(given["memory"])
        self.task_role_arn = given.get("taskRoleArn") or getattr(task_definition,
                                                                 "task_role_arn", None)
        self.execution_role_arn = given.get("executionRoleArn") or getattr(
            task_definition, "execution_role_arn", None)
        self._credentials_token = secrets.token_urlsafe(24)
        self._credentials_id = str(uuid.uuid4())
        self._credentials: dict | None = None

    def container_override(self) -> dict:
        name = self.container_def.get("name", "app")
        return next((c for c in self.overrides["containerOverrides"] if c.get("name") == name),
                    {})

    def launch(self, env: dict[str, str], command: list[str], cwd: Path, log: Path,
               image_digest: str) -> None:
        """Spawn the container process (PROVISIONING -> PENDING)."""
        cwd.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log
        ts = utcnow()
        self.pull_started_at = self.pull_stopped_at = ts
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(
                command, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        self.last_status = "PENDING"
        self.connectivity, self.connectivity_at = "CONNECTED", ts
        self.attachments[0]["status"] = "ATTACHED"
        self.container.update({"imageDigest": image_digest,
                               "runtimeId": f"{self.id}-{self._proc.pid}",
                               "lastStatus": "PENDING"})
        self._touch()

    def mark_started(self) -> None:
        self.last_status = "RUNNING"
        self.started_at = utcnow()
        self.container["lastStatus"] = "RUNNING"
        self._touch()


def copy_overrides(overrides: dict | None) -> dict:
    return json.loads(json.dumps(overrides or {}, default=str))


class Standalone:
    """The runtime's standalone tasks and the credentials endpoint they read."""

    def __init__(self, runtime: EcsRuntime):
        self.rt = runtime
        self.tasks: list[StandaloneTask] = []
        self._server: ThreadingHTTPServer | None = None
        self._server_lock = threading.Lock()

    # -- RunTask ------------------------------------------------------------------------------
    def run_task(self, backend: Any, cluster_str: str, task_definition_str: str, count: int,
                 overrides: dict | None, started_by: str | None, tags: list | None,
                 launch_type: str | None, network: dict | None, group: str | None,
                 platform_version: str | None) -> list[StandaloneTask]:
        cluster = backend._get_cluster(cluster_str)
        task_def = backend.describe_task_definition(task_definition_str)
        group = group or f"family:{task_def.family}"
        now = time.monotonic()
        started = []
        for _ in range(count or 1):
            task = StandaloneTask(backend=backend, cluster=cluster, task_definition=task_def,
                                  overrides=overrides or {}, started_by=started_by, group=group,
                                  tags=tags or [], launch_type=launch_type or "FARGATE",
                                  network=network, platform_version=platform_version)
            task._start_at = now + max(0.0, self.rt.timing.start_delay)
            backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
            self.tasks.append(task)
            started.append(task)
        self.rt.wake()
        return started

    # -- the monitor's tick (under the runtime's lock) ----------------------------------------
    def advance(self, now: float) -> None:
        for task in list(self.tasks):
            if task.last_status == "PROVISIONING" and not task._stop_requested:
                if now >= task._start_at:
                    self._spawn(task)
                continue
            if task.reap(now) is not None or task.last_status == "STOPPED":
                continue
            if task.last_status == "PENDING" and task._proc is not None \
                    and task._proc.poll() is None and not task._stop_requested:
                task.mark_started()
        self.tasks = [t for t in self.tasks if t.last_status != "STOPPED"]

    def _spawn(self, task: StandaloneTask) -> None:
        rt = self.rt
        try:
            container = task.container_def
            if rt.execution_role_allows is not None:
                check_execution_role(rt.execution_role_allows,
                                     SimpleNamespace(execution_role_arn=task.execution_role_arn),
                                     container, task.id, rt.account_id, rt.region)
            digest = resolve_image(task.container["image"], rt.account_id, rt.region)
            env = self.environment(task)
            command = self.command(task)
        except TaskStartError as err:
            task.fail_to_start(err)
            return
        try:
            task.launch(env, command, rt.task_cwd / task.id, rt.log_dir / f"{task.id}.log",
                        digest)
        except OSError as exc:  # the command itself cannot run
            msg = f"CannotStartContainerError: {exc.strerror or type(exc).__name__}"
            task.fail_to_start(TaskStartError(msg, msg))
            return
        rt.register_spawn(task)

    def environment(self, task: StandaloneTask) -> dict[str, str]:
        rt = self.rt
        env = rt.base_env()
        env.pop("PYTHONPATH", None)  # the flow-run image has the service installed already
        # The image's interpreter and console scripts (`python`, `prefect`): this checkout's.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        for item in task.container_def.get("environment") or []:
            env[item["name"]] = str(item.get("value", ""))
        for item in task.container_override().get("environment") or []:
            env[item["name"]] = str(item.get("value", ""))
        for item in task.container_def.get("secrets") or []:
            env[item["name"]] = resolve_secret(item["valueFrom"], rt.account_id, rt.region)
        # The VPC's part: the route to AWS (the sandbox's endpoint) and to RDS.
        if rt.endpoint:
            env["AWS_ENDPOINT_URL"] = rt.endpoint
        if rt.hostaddr:
            env["PGHOSTADDR"] = rt.hostaddr
        env["ECS_CONTAINER_METADATA_URI_V4"] = rt.metadata.uri_for(task)
        if task.task_role_arn:
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = (
                f"{self.credentials_url()}{CREDENTIALS_PATH}{task._credentials_id}")
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = task._credentials_token
        return env

    @staticmethod
    def command(task: StandaloneTask) -> list[str]:
        override = task.container_override().get("command")
        command = list(override if override else task.container_def.get("command") or [])
        command = list(task.container_def.get("entryPoint") or []) + command
        if not command:
            msg = ("CannotStartContainerError: no command: the container has neither a command "
                   "nor an override (the sandbox runs the container's command)")
            raise TaskStartError(msg, msg)
        return command

    # -- the container credentials endpoint ---------------------------------------------------
    def credentials_url(self) -> str:
        with self._server_lock:
            if self._server is None:
                self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
                self._server.daemon_threads = True
                threading.Thread(target=self._server.serve_forever, name="ecs-credentials",
                                 daemon=True).start()
            host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def credentials_for(self, credentials_id: str, token: str) -> dict | None:
        with self.rt.lock:
            task = next((t for t in self.tasks if t._credentials_id == credentials_id), None)
            if task is None or token != task._credentials_token or task.last_status == "STOPPED":
                return None
            role, cached = task.task_role_arn, task._credentials
        now = dt.datetime.now(dt.UTC)
        if cached and cached["_expires"] - REFRESH_MARGIN > now:
            return cached
        if self.rt.assume_role is None:
            return None
        creds = self.rt.assume_role(role, task.id)
        expires = creds["Expiration"]
        if isinstance(expires, str):
            expires = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
        doc = {"RoleArn": role, "AccessKeyId": creds["AccessKeyId"],
               "SecretAccessKey": creds["SecretAccessKey"], "Token": creds["SessionToken"],
               "Expiration": expires.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "_expires": expires}
        with self.rt.lock:
            task._credentials = doc
        return doc

    def stop(self) -> None:
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()


def _handler(standalone: Standalone) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            doc = None
            if self.path.startswith(CREDENTIALS_PATH):
                try:
                    doc = standalone.credentials_for(self.path[len(CREDENTIALS_PATH):],
                                                     self.headers.get("Authorization", ""))
                except Exception:  # noqa: BLE001 - an STS failure is a 500, not a dead thread
                    standalone.rt._log_error()
                    self.send_error(500)
                    return
            self.reply(None if doc is None
                       else {k: v for k, v in doc.items() if not k.startswith("_")})

    return Handler
