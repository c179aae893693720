"""The sandbox's local ECS runtime: moto's ECS, but services really run.

moto 5.2.5 keeps ECS services as records only: no task is ever started and a rollout never
changes state. `EcsRuntime.install()` patches moto's ECS backend (in this process; the
`ThreadedMotoServer` shares it) so that one region's services behave like ECS/Fargate with the
rolling-update scheduler:

- `create_service` keeps `enableExecuteCommand` and `deploymentConfiguration` (moto drops them)
  and starts a first deployment; `update_service` with a new task definition, network
  configuration or `forceNewDeployment` starts a new PRIMARY deployment (`ecs-svc/<digits>`).
- every task is the Papyrus service as a local process group (gunicorn), with the task
  definition's `environment`, its `secrets` resolved from moto's Secrets Manager / SSM, its
  image checked against moto's ECR (else `CannotPullContainerError`), a free loopback port
  (`PAPYRUS_BIND`) and `PGHOSTADDR` standing in for the VPC route to RDS, the task metadata
  endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`, sandbox.ecs_metadata), and the code of the
  image it pulled (the build context its push kept, sandbox.image). PENDING until
  `/healthz` answers 200, RUNNING after, STOPPED with the real exit code when it dies.
- the scheduler (`sandbox.ecs_scheduler`) completes rollouts, replaces failed tasks, trips the
  deployment circuit breaker and rolls back, and writes ECS's service events.
- a Fargate `RunTask` starts standalone tasks that run their container's command, with the
  task role's credentials on the container credentials endpoint (`sandbox.ecs_standalone`).

Everything else in moto's ECS is untouched. Task output goes to `<workdir>/tasks/<task-id>.log`;
never to our stdout, since the child's environment holds the secret.
"""

from __future__ import annotations

import atexit
import copy
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.core.responses import ActionResult
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse

from . import ecs_blue_green, ecs_elb
from .ecs_metadata import MetadataEndpoint
from .ecs_scheduler import DEFAULT_DEPLOYMENT_CONFIGURATION, ServiceScheduler
from .ecs_standalone import Standalone
from .ecs_tasks import LocalTask, probe

ROOT = Path(__file__).resolve().parent.parent
PAPYRUS_COMMAND = (sys.executable, "-m", "gunicorn", "--config", "python:papyrus.gunicorn_conf",
                   "papyrus.wsgi:app")
# Sandbox sizing, under the task definition's own environment (which wins). One worker also
# makes a boot failure exit deterministically with gunicorn's 3: with two workers failing at
# once, gunicorn 27's arbiter sometimes dies in its own halt() and exits 1 instead.
DEFAULT_TASK_ENV = {"PAPYRUS_WORKERS": "1"}
# create_service parameters moto 5.2.5 accepts but drops (request name -> attribute name).
_KEPT_CREATE_PARAMS = {
    "enableExecuteCommand": "enable_execute_command",
    "deploymentConfiguration": "deployment_configuration",
    "healthCheckGracePeriodSeconds": "health_check_grace_period_seconds",
    "enableECSManagedTags": "enable_ecs_managed_tags",
    "placementConstraints": "placement_constraints",
    "placementStrategy": "placement_strategy",
    "capacityProviderStrategy": "capacity_provider_strategy",
}


@dataclass
class RuntimeTiming:
    """Knobs, in seconds unless named otherwise. Mutable at run time (fault injection)."""

    poll_interval: float = 0.1  # monitor tick and /healthz poll of PENDING tasks
    health_request_timeout: float = 0.5  # one /healthz request
    health_timeout: float = 30.0  # a PENDING task must answer /healthz within this
    running_health_interval: float = 1.0  # /healthz of RUNNING tasks
    unhealthy_threshold: int = 3  # consecutive failed probes -> UNHEALTHY, replaced
    relaunch_delay: float = 0.3  # before replacing a failed task
    max_relaunch_delay: float = 10.0  # backoff cap once failures exceed the threshold
    failure_threshold: int = 3  # circuit breaker: max(this, min(200, ceil(desired / 2)))
    start_delay: float = 0.0  # extra PROVISIONING time per task ("slow rollout")
    steady_state_delay: float = 0.3  # "deployment completed" -> "has reached a steady state"
    rollback_min_duration: float = 2.0  # a rollback stays IN_PROGRESS (FAILED visible) this long
    stop_timeout: float = 5.0  # SIGTERM -> SIGKILL
    elb_reaction_delay: float = 2.0  # target unhealthy -> ECS stops the task
    stopped_task_retention: int = 50  # STOPPED tasks kept per service for describe/list


_RUNTIMES: dict[tuple[str, str], EcsRuntime] = {}
_ORIGINALS: dict[str, Any] = {}
_PATCH_LOCK = threading.Lock()


def _rt(backend: Any) -> EcsRuntime | None:
    return _RUNTIMES.get((backend.account_id, backend.region_name))


class EcsRuntime:
    """Runs one region's ECS services as local processes. `install()` / `uninstall()`."""

    def __init__(self, region: str, account_id: str = "123456789012", *, workdir: Path,
                 hostaddr: str | None = "127.0.0.1", timing: RuntimeTiming | None = None,
                 command: Sequence[str] = PAPYRUS_COMMAND, bind_env: str = "PAPYRUS_BIND",
                 health_path: str = "/healthz", extra_env: dict[str, str] | None = None,
                 service_dir: Path | None = ROOT / "service", image_store: Path | None = None):
        self.region = region
        self.account_id = account_id
        self.workdir = Path(workdir)
        self.log_dir = self.workdir / "tasks"
        self.task_cwd = self.workdir / "tasks"
        self.hostaddr = hostaddr
        self.timing = timing or RuntimeTiming()
        self.command = list(command)
        self.bind_env = bind_env
        self.health_path = health_path
        self.extra_env = dict(DEFAULT_TASK_ENV if extra_env is None else extra_env)
        self.service_dir = service_dir
        # Build contexts keyed by image digest (sandbox.image.snapshot): a service task runs the
        # code of the image it pulled; `service_dir` only for an image pushed without a store.
        self.image_store = Path(image_store) if image_store else None
        # (execution role ARN, action, resource) -> allowed; None: not checked (see ecs_tasks)
        self.execution_role_allows = None
        # Standalone tasks (RunTask): the AWS endpoint they reach (the VPC's route to AWS) and
        # `assume_role(role_arn, session_name) -> STS Credentials` for their task role.
        self.endpoint: str | None = None
        self.assume_role = None
        self.standalone = Standalone(self)
        self.lock = threading.RLock()
        self.metadata = MetadataEndpoint(self.lock)
        self._schedulers: dict[str, ServiceScheduler] = {}
        self._retired: list[ServiceScheduler] = []
        self._spawned: list[LocalTask] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def install(self) -> EcsRuntime:
        key = (self.account_id, self.region)
        with _PATCH_LOCK:
            if key in _RUNTIMES and _RUNTIMES[key] is not self:
                raise RuntimeError(f"an ECS runtime is already installed for {key}")
            if not _ORIGINALS:
                _patch()
            _RUNTIMES[key] = self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "home").mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="ecs-runtime", daemon=True)
        self._thread.start()
        atexit.register(self.stop_all)
        self.wake()
        return self

    def uninstall(self) -> None:
        """Stop every task and give moto its own ECS back."""
        self.stop_all()
        with _PATCH_LOCK:
            if _RUNTIMES.get((self.account_id, self.region)) is self:
                del _RUNTIMES[(self.account_id, self.region)]
            if not _RUNTIMES and _ORIGINALS:
                _unpatch()
        self.standalone.stop()
        self.metadata.stop()
        atexit.unregister(self.stop_all)

    def stop_all(self) -> None:
        """Stop the monitor and every process this runtime started (SIGTERM, then SIGKILL)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        now = time.monotonic()
        with self.lock:
            tasks = [t for t in self._spawned if t.pid is not None]
            for t in tasks:
                t.request_stop("ServiceSchedulerInitiated", "Sandbox ECS runtime stopped",
                               self.timing.stop_timeout, now)
        deadline = now + self.timing.stop_timeout
        for t in tasks:
            t.kill_now(max(0.0, deadline - time.monotonic()))
        with self.lock:
            for t in tasks:
                t.reap(time.monotonic())
            self._spawned = [t for t in self._spawned if t.last_status != "STOPPED"]
            for sched in self._schedulers.values():
                sched.project()
            self.standalone.advance(time.monotonic())

    def wake(self) -> None:
        self._wake.set()

    # -- what tests and the sandbox server may ask --------------------------------------------
    def live_pids(self) -> list[int]:
        """Process-group ids of tasks whose process has not been reaped yet."""
        with self.lock:
            return [t.pid for t in self._spawned if t.pid and t._proc.poll() is None]

    def spawned_pids(self) -> list[int]:
        with self.lock:
            return [t.pid for t in self._spawned if t.pid]

    def base_env(self) -> dict[str, str]:
        """The environment every container starts from (then the task definition's)."""
        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update({
            "HOME": str(self.workdir / "home"),
            "PYTHONUNBUFFERED": "1",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
        })
        if self.service_dir and Path(self.service_dir).is_dir():
            env["PYTHONPATH"] = str(self.service_dir)
        env.update(self.extra_env)
        return env

    def code_for(self, digest: str) -> Path | None:
        """Where the code of image `digest` is (its pushed build context), if kept."""
        from sandbox.image import code_dir

        return code_dir(self.image_store, digest)

    def register_spawn(self, task: LocalTask) -> None:
        self._spawned.append(task)

    # -- services -----------------------------------------------------------------------------
    @staticmethod
    def _eligible(svc: Any) -> bool:
        controller = (getattr(svc, "deployment_controller", None) or {}).get("type", "ECS")
        return svc.status == "ACTIVE" and bool(svc.task_definition) and controller == "ECS"

    def adopt(self, backend: Any, svc: Any) -> ServiceScheduler | None:
        """Start scheduling `svc` (a fresh first deployment), retiring a replaced one."""
        key = f"{svc.cluster_name}:{svc.name}"
        old = self._schedulers.pop(key, None)
        if old is not None:
            old.retired = True
            self._retired.append(old)
        if not self._eligible(svc):
            return None
        if not getattr(svc, "deployment_configuration", None):
            svc.deployment_configuration = _default_deployment_configuration()
        svc.enable_execute_command = bool(getattr(svc, "enable_execute_command", False))
        sched = ServiceScheduler(self, backend, svc, time.monotonic())
        self._schedulers[key] = sched
        sched.project()
        self.wake()
        return sched

    def _discover(self) -> None:
        backend = ecs_backends[self.account_id][self.region]
        for key, sched in list(self._schedulers.items()):
            if backend.services.get(key) is not sched.service:
                sched.retired = True
                self._retired.append(self._schedulers.pop(key))
        for key, svc in list(backend.services.items()):
            if key not in self._schedulers and self._eligible(svc):
                self.adopt(backend, svc)

    # -- the monitor --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - keep the runtime alive, keep the evidence
                self._log_error()
            self._wake.wait(self.timing.poll_interval)
            self._wake.clear()

    def _log_error(self) -> None:
        # Tracebacks carry no locals, so no secret value reaches this file.
        with open(self.workdir / "runtime-errors.log", "a") as f:
            f.write(traceback.format_exc())

    def _tick(self) -> None:
        now = time.monotonic()
        to_probe = []
        with self.lock:
            self._discover()
            everyone = [*self._schedulers.values(), *self._retired]
            for sched in everyone:
                try:
                    to_probe += sched.advance(now)
                except Exception:  # noqa: BLE001 - one broken service must not stop the others
                    self._log_error()
            try:
                self.standalone.advance(now)
            except Exception:  # noqa: BLE001
                self._log_error()
        t = self.timing
        results = [(task, probe(task.port, self.health_path, t.health_request_timeout))
                   for task in to_probe if not self._stopping.is_set()]
        now = time.monotonic()
        with self.lock:
            if self._stopping.is_set():
                return
            for sched in everyone:
                try:
                    sched.apply_probes(results, now)
                    sched.schedule(now)
                    sched.project()
                except Exception:  # noqa: BLE001
                    self._log_error()
            self._retired = [s for s in self._retired
                             if any(t.last_status != "STOPPED" for t in s.all_tasks())]
            self._spawned = [t for t in self._spawned if t.last_status != "STOPPED"]


def _default_deployment_configuration() -> dict:
    return copy.deepcopy(DEFAULT_DEPLOYMENT_CONFIGURATION)


# -- moto patches -------------------------------------------------------------------------------
def _find_local(backend: Any, cluster_str: str, task_str: str) -> LocalTask | None:
    cluster = backend._get_cluster(cluster_str)
    task_id = (task_str or "").split("/")[-1]
    for arn, task in backend.tasks.get(cluster.name, {}).items():
        if isinstance(task, LocalTask) and task_id and arn.endswith(task_id):
            return task
    return None


def _create_service(self, cluster_str, service_name, *args, **kwargs):
    rt = _rt(self)
    if rt is None:
        return _ORIGINALS["create_service"](self, cluster_str, service_name, *args, **kwargs)
    with rt.lock:
        load_balancers = kwargs.get("load_balancers", args[2] if len(args) > 2 else None)
        td_str = kwargs.get("task_definition_str", args[1] if len(args) > 1 else None)
        ecs_elb.validate(self.account_id, self.region_name, load_balancers,
                         self.describe_task_definition(td_str) if td_str else None)
        svc = _ORIGINALS["create_service"](self, cluster_str, service_name, *args, **kwargs)
        rt.adopt(self, svc)
        return svc


def _update_service(self, service_properties):
    rt = _rt(self)
    if rt is None:
        return _ORIGINALS["update_service"](self, service_properties)
    with rt.lock:
        props = dict(service_properties)
        force = bool(props.pop("force_new_deployment", False))
        td_str = props.get("task_definition")
        network = props.get("network_configuration")
        platform = props.get("platform_version")
        cluster = self._get_cluster(props.get("cluster", "default"))
        load_balancers = props.get("load_balancers")
        current = self._get_service(props.get("cluster", "default"),
                                    props["service"].split("/")[-1])
        ecs_blue_green.validate(
            self.account_id, self.region_name,
            props.get("deployment_configuration") or getattr(
                current, "deployment_configuration", None),
            load_balancers if load_balancers is not None else current.load_balancers)
        if load_balancers is not None:
            td = self.describe_task_definition(td_str or current.task_definition)
            ecs_elb.validate(self.account_id, self.region_name, load_balancers, td)
        svc = _ORIGINALS["update_service"](self, props)
        if td_str:
            svc.task_definition = self.describe_task_definition(td_str).arn
        sched = rt._schedulers.get(f"{cluster.name}:{svc.name}")
        if sched is None or sched.service is not svc:
            rt.adopt(self, svc)
            return svc
        primary = sched.primary
        if (force or svc.task_definition != primary.task_definition
                or (network is not None and network != primary.network_configuration)
                or (platform is not None and platform != primary.platform_version)
                or load_balancers is not None):
            sched.start_deployment(time.monotonic())
        sched.project()
        rt.wake()
        return svc


def _delete_service(self, cluster_name, service_name, force):
    rt = _rt(self)
    if rt is None:
        return _ORIGINALS["delete_service"](self, cluster_name, service_name, force)
    with rt.lock:
        svc = _ORIGINALS["delete_service"](self, cluster_name, service_name, force)
        sched = rt._schedulers.pop(f"{svc.cluster_name}:{svc.name}", None)
        if sched is not None:
            sched.retired = True
            rt._retired.append(sched)
        svc.deployments = []
        svc.running_count = 0
        rt.wake()
        return svc


def _describe_tasks(self, cluster_str, tasks):
    rt = _rt(self)
    if rt is None:
        return _ORIGINALS["describe_tasks"](self, cluster_str, tasks)
    with rt.lock:
        found = _ORIGINALS["describe_tasks"](self, cluster_str, tasks)
        return [t.snapshot() if isinstance(t, LocalTask) else t for t in found]


def _list_tasks(self, cluster_str=None, container_instance=None, family=None, started_by=None,
                service_name=None, desiredStatus=None):  # noqa: N803 - moto's name
    rt = _rt(self)
    orig = _ORIGINALS["list_tasks"]
    if rt is None:
        return orig(self, cluster_str, container_instance, family, started_by, service_name,
                    desiredStatus)
    with rt.lock:
        found = orig(self, cluster_str, container_instance, family, started_by, None,
                     desiredStatus)
        if service_name:
            group = f"service:{service_name.split('/')[-1]}"
            found = [t for t in found if getattr(t, "group", None) == group]
        if not desiredStatus:  # ECS lists desiredStatus RUNNING unless asked otherwise
            found = [t for t in found
                     if not isinstance(t, LocalTask) or t.desired_status == "RUNNING"]
        return found


def _run_task(self, cluster_str, task_definition_str, count, overrides, started_by, tags,
              launch_type, networking_configuration=None, group=None, platform_version=None,
              capacity_provider_strategy=None):
    rt = _rt(self)
    fargate = launch_type == "FARGATE" or (not launch_type and any(
        s.get("capacityProvider") in ("FARGATE", "FARGATE_SPOT")
        for s in capacity_provider_strategy or []))
    if rt is None or not fargate:
        return _ORIGINALS["run_task"](self, cluster_str, task_definition_str, count, overrides,
                                      started_by, tags, launch_type, networking_configuration,
                                      group, platform_version, capacity_provider_strategy)
    with rt.lock:
        tasks = rt.standalone.run_task(self, cluster_str, task_definition_str, count, overrides,
                                       started_by, tags, launch_type or "FARGATE",
                                       networking_configuration, group, platform_version)
        return [t.snapshot() for t in tasks]


def _stop_task(self, cluster_str, task_str, reason):
    rt = _rt(self)
    if rt is not None:
        with rt.lock:
            task = _find_local(self, cluster_str, task_str)
            if task is not None:
                task.request_stop("UserInitiated", reason or "Task stopped by user",
                                  rt.timing.stop_timeout, time.monotonic())
                rt.wake()
                return task.snapshot()
    return _ORIGINALS["stop_task"](self, cluster_str, task_str, reason)


def _create_service_response(self):
    rt = _RUNTIMES.get((self.current_account, self.region))
    if rt is None:
        return _ORIGINALS["response.create_service"](self)
    with rt.lock:
        ecs_blue_green.validate(self.current_account, self.region,
                                self._get_param("deploymentConfiguration"),
                                self._get_param("loadBalancers"))
        result = _ORIGINALS["response.create_service"](self)
        svc = self.ecs_backend._get_service(self._get_param("cluster", "default"),
                                            self._get_param("serviceName"))
        for param, attr in _KEPT_CREATE_PARAMS.items():
            value = self._get_param(param)
            if value is not None:
                setattr(svc, attr, value)
        conf = _default_deployment_configuration()
        conf.update(getattr(svc, "deployment_configuration", None) or {})
        svc.deployment_configuration = conf
        svc.enable_execute_command = bool(getattr(svc, "enable_execute_command", False))
        return result


def _list_task_definitions_response(self):
    """ListTaskDefinitions as AWS answers it: `sort` ASC (default) or DESC by family and
    revision, `maxResults` (at most 100) with a `nextToken` for the rest. moto ignores both and
    returns every ARN in insertion order, so "the family's latest" (sort=DESC, maxResults=1)
    came back as its first revision. AWS: ECS API Reference, ListTaskDefinitions ("sort",
    "maxResults", "nextToken")."""
    arns = self.ecs_backend.list_task_definitions(self._get_param("familyPrefix"),
                                                  self._get_param("status", "ACTIVE"))

    def key(arn: str) -> tuple[str, int]:
        family, _, rev = arn.rsplit("/", 1)[-1].rpartition(":")
        return family, int(rev)

    arns = sorted(arns, key=key, reverse=self._get_param("sort", "ASC") == "DESC")
    start = int(self._get_param("nextToken") or 0)
    size = min(int(self._get_param("maxResults") or 100), 100)
    page = {"taskDefinitionArns": arns[start:start + size]}
    if start + size < len(arns):
        page["nextToken"] = str(start + size)
    return ActionResult(page)


_BACKEND_PATCHES = {
    "create_service": _create_service,
    "update_service": _update_service,
    "delete_service": _delete_service,
    "describe_tasks": _describe_tasks,
    "list_tasks": _list_tasks,
    "stop_task": _stop_task,
    "run_task": _run_task,
}


def _patch() -> None:
    for name, fn in _BACKEND_PATCHES.items():
        _ORIGINALS[name] = getattr(EC2ContainerServiceBackend, name)
        setattr(EC2ContainerServiceBackend, name, fn)
    _ORIGINALS["response.create_service"] = EC2ContainerServiceResponse.create_service
    EC2ContainerServiceResponse.create_service = _create_service_response
    _ORIGINALS["response.list_task_definitions"] = \
        EC2ContainerServiceResponse.list_task_definitions
    EC2ContainerServiceResponse.list_task_definitions = _list_task_definitions_response


def _unpatch() -> None:
    for name in _BACKEND_PATCHES:
        setattr(EC2ContainerServiceBackend, name, _ORIGINALS.pop(name))
    EC2ContainerServiceResponse.create_service = _ORIGINALS.pop("response.create_service")
    EC2ContainerServiceResponse.list_task_definitions = _ORIGINALS.pop(
        "response.list_task_definitions")

