"""The ALB's side of the sandbox: target registrations that are really health-checked.

moto 5.2.5 keeps a target group's targets keyed by `Id` alone (AWS keys an `ip` target by Id
*and* Port: one address may be registered on several ports) and answers DescribeTargetHealth
with a fixed state, never sending a health check. `ElbTargets.install()` replaces
RegisterTargets, DeregisterTargets and DescribeTargetHealth of moto's ELBv2 backend (one
account and region) with this registry:

- a registered target is `initial` (`Elb.RegistrationInProgress`), then health-checked for real:
  an HTTP GET of the group's `HealthCheckPath` on `Id:Port` (or `HealthCheckPort`), every
  `HealthCheckIntervalSeconds`, each with `HealthCheckTimeoutSeconds`, judged by `Matcher`.
  `HealthyThresholdCount` consecutive successes make it `healthy`, `UnhealthyThresholdCount`
  consecutive failures `unhealthy` (`Target.ResponseCodeMismatch` "Health checks failed with
  these codes: [404]", `Target.Timeout` "Request timed out", `Target.FailedHealthChecks`).
  Only loopback addresses are reachable here; any other address times out.
- a target group that no load balancer uses (`LoadBalancerArns` empty) is never checked: its
  targets are `unused`, `Target.NotInUse`.
- DeregisterTargets makes a target `draining` (`Target.DeregistrationInProgress`) for the
  group's `deregistration_delay.timeout_seconds`, after which it is gone (`unused`,
  `Target.NotRegistered` when asked for by name).

AWS: Elastic Load Balancing API Reference, TargetHealth (states and reason codes),
TargetGroup / CreateTargetGroup (health check settings); Application Load Balancers guide,
"Health checks for Application Load Balancer target groups". The local ECS runtime registers
and deregisters service tasks through the same backend methods (`sandbox.ecs_scheduler`), and
a later piece (listeners on 127.0.0.1 that route to healthy targets) reads `healthy_targets`.

`unreachable_from_now()` is a fault: the ALB cannot reach the targets registered after the call
(what a task security group that does not admit the ALB does to new tasks); their checks time
out. `clear_faults()` ends it for targets registered afterwards.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from moto.elbv2.exceptions import InvalidTargetError, TargetGroupNotFoundError
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, elbv2_backends

from .patches import Patches

_REGISTRIES: dict[tuple[str, str], ElbTargets] = {}


@dataclass
class Target:
    id: str
    port: int
    state: str = "initial"
    reason: str | None = "Elb.RegistrationInProgress"
    description: str | None = "Target registration is in progress"
    successes: int = 0
    failures: int = 0
    next_check: float = 0.0
    checking: bool = False
    drain_until: float | None = None
    registered_at: float = field(default_factory=time.monotonic)


def _matches(code: int, matcher: str) -> bool:
    """ALB matcher syntax: "200", "200,202", "200-299"."""
    for part in (matcher or "200").split(","):
        lo, _, hi = part.strip().partition("-")
        if lo and int(lo) <= code <= int(hi or lo):
            return True
    return False


def check_once(host: str, port: int, path: str, timeout: float,
               matcher: str) -> tuple[bool, str | None, str | None]:
    """One health check: (passed, reason, description) as the ALB reports a failure."""
    if not host.startswith("127."):
        return False, "Target.Timeout", "Request timed out"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except TimeoutError:
        return False, "Target.Timeout", "Request timed out"
    except (urllib.error.URLError, OSError, ValueError) as e:
        if isinstance(getattr(e, "reason", None), TimeoutError):
            return False, "Target.Timeout", "Request timed out"
        return False, "Target.FailedHealthChecks", "Health checks failed"
    if _matches(code, matcher):
        return True, None, None
    return False, "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{code}]"


class ElbTargets:
    """One account and region's target registrations and their health checks."""

    def __init__(self, region: str, account_id: str = "123456789012", *, tick: float = 0.1):
        self.region = region
        self.account_id = account_id
        self.tick = tick
        self.lock = threading.RLock()
        self._groups: dict[str, dict[tuple[str, int], Target]] = {}
        self._block_new = False
        self._unreachable: set[tuple[str, str, int]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def install(self) -> ElbTargets:
        key = (self.account_id, self.region)
        if key in _REGISTRIES and _REGISTRIES[key] is not self:
            raise RuntimeError(f"ELB targets are already installed for {key}")
        if not _REGISTRIES:
            _PATCHES.install()
        _REGISTRIES[key] = self
        self._stop.clear()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="elb-health")
        self._thread = threading.Thread(target=self._run, name="elb-health", daemon=True)
        self._thread.start()
        return self

    def uninstall(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        key = (self.account_id, self.region)
        if _REGISTRIES.get(key) is self:
            del _REGISTRIES[key]
        if not _REGISTRIES:
            _PATCHES.uninstall()

    # -- faults -------------------------------------------------------------------------------
    def unreachable_from_now(self) -> None:
        """Targets registered from now on cannot be reached by the ALB: their checks time out."""
        with self.lock:
            self._block_new = True

    def clear_faults(self) -> None:
        with self.lock:
            self._block_new = False

    # -- what ECS (the local runtime) and later listeners ask --------------------------------
    def backend(self) -> Any:
        return elbv2_backends[self.account_id][self.region]

    def healthy_targets(self, tg_arn: str) -> list[tuple[str, int]]:
        with self.lock:
            return [(t.id, t.port) for t in self._groups.get(tg_arn, {}).values()
                    if t.state == "healthy"]

    # -- the backend methods ------------------------------------------------------------------
    def register(self, tg: Any, targets: list[dict]) -> None:
        now = time.monotonic()
        with self.lock:
            group = self._groups.setdefault(tg.arn, {})
            for spec in targets:
                key = (spec["Id"], int(spec.get("Port") or tg.port))
                t = group.get(key)
                if t is not None and t.state != "draining":
                    continue  # registering a registered target again changes nothing
                group[key] = Target(key[0], key[1], next_check=now)
                if self._block_new:
                    self._unreachable.add((tg.arn, *key))

    def deregister(self, tg: Any, targets: list[dict]) -> None:
        now = time.monotonic()
        delay = float(tg.attributes.get("deregistration_delay.timeout_seconds", 300))
        with self.lock:
            group = self._groups.setdefault(tg.arn, {})
            for spec in targets:
                key = (spec["Id"], int(spec.get("Port") or tg.port))
                t = group.get(key)
                if t is None:
                    raise InvalidTargetError()
                if t.state != "draining":
                    t.state, t.reason = "draining", "Target.DeregistrationInProgress"
                    t.description = "Target deregistration is in progress"
                    t.drain_until = now + delay

    def describe(self, tg: Any, targets: list[dict]) -> list[FakeHealthStatus]:
        with self.lock:
            group = self._groups.get(tg.arn, {})
            keys = ([(t["Id"], int(t.get("Port") or tg.port)) for t in targets] if targets
                    else list(group))
            out = []
            for key in keys:
                t = group.get(key)
                hc_port = tg.health_check_port
                if t is None:
                    out.append(FakeHealthStatus(key[0], key[1], hc_port, "unused",
                                                "Target.NotRegistered",
                                                "Target is not registered to the target group"))
                elif not tg.load_balancer_arns and t.state != "draining":
                    out.append(FakeHealthStatus(
                        t.id, t.port, hc_port, "unused", "Target.NotInUse",
                        "Target group is not configured to receive traffic from the load "
                        "balancer"))
                else:
                    out.append(FakeHealthStatus(t.id, t.port, hc_port, t.state, t.reason,
                                                t.description))
            return out

    # -- the health checker -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            # A group that vanished mid-sweep must not stop the checker.
            with contextlib.suppress(Exception):
                self._sweep(time.monotonic())

    def _sweep(self, now: float) -> None:
        backend = self.backend()
        with self.lock:
            for arn in list(self._groups):
                tg = backend.target_groups.get(arn)
                group = self._groups[arn]
                if tg is None:
                    del self._groups[arn]
                    continue
                for key, t in list(group.items()):
                    if t.state == "draining":
                        if t.drain_until is not None and now >= t.drain_until:
                            del group[key]
                        continue
                    if (t.checking or now < t.next_check or not tg.load_balancer_arns
                            or not tg.health_check_enabled):
                        continue
                    t.checking = True
                    self._pool.submit(self._check, tg, t)

    def _check(self, tg: Any, t: Target) -> None:
        port = t.port
        if str(tg.health_check_port or "traffic-port") != "traffic-port":
            port = int(tg.health_check_port)
        timeout = float(tg.health_check_timeout_seconds or 5)
        with self.lock:
            blocked = (tg.arn, t.id, t.port) in self._unreachable
        if blocked:
            time.sleep(min(timeout, 0.2))  # the sandbox does not wait the whole timeout
            ok, reason, desc = False, "Target.Timeout", "Request timed out"
        else:
            ok, reason, desc = check_once(t.id, port, tg.health_check_path or "/", timeout,
                                          (tg.matcher or {}).get("HttpCode", "200"))
        with self.lock:
            t.checking = False
            t.next_check = time.monotonic() + float(tg.health_check_interval_seconds or 30)
            if t.state == "draining":
                return
            if ok:
                t.successes, t.failures = t.successes + 1, 0
                if t.successes >= int(tg.healthy_threshold_count or 5):
                    t.state, t.reason, t.description = "healthy", None, None
                elif t.state == "initial":
                    t.reason = "Elb.InitialHealthChecking"
                    t.description = "Initial health checks in progress"
            else:
                t.failures, t.successes = t.failures + 1, 0
                if t.failures >= int(tg.unhealthy_threshold_count or 2):
                    t.state, t.reason, t.description = "unhealthy", reason, desc
                elif t.state == "initial":
                    t.reason = "Elb.InitialHealthChecking"
                    t.description = "Initial health checks in progress"


def registry(account_id: str, region: str) -> ElbTargets | None:
    return _REGISTRIES.get((account_id, region))


def _group(backend: Any, arn: str) -> Any:
    tg = backend.target_groups.get(arn)
    if tg is None:
        raise TargetGroupNotFoundError()
    return tg


def _register_targets(self, target_group_arn: str, instances: list[Any]) -> None:
    reg = registry(self.account_id, self.region_name)
    tg = _group(self, target_group_arn)
    if reg is None:
        return tg.register(instances)
    reg.register(tg, instances)
    return None


def _deregister_targets(self, target_group_arn: str, instances: list[dict]) -> None:
    reg = registry(self.account_id, self.region_name)
    tg = _group(self, target_group_arn)
    if reg is None:
        return tg.deregister(instances)
    reg.deregister(tg, instances)
    return None


def _describe_target_health(self, target_group_arn: str, targets: list[dict]) -> list:
    reg = registry(self.account_id, self.region_name)
    tg = _group(self, target_group_arn)
    if reg is None:
        return [tg.health_for(t, self.ec2_backend)
                for t in (targets or list(tg.targets.values()))]
    return reg.describe(tg, targets)


_PATCHES = Patches(
    (ELBv2Backend, "register_targets", _register_targets),
    (ELBv2Backend, "deregister_targets", _deregister_targets),
    (ELBv2Backend, "describe_target_health", _describe_target_health),
)
