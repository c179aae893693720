"""The session service as a blue/green service behind an ALB, as Terraform would leave it, and a
copy of the local env folder that declares it so (tests/deploy/test_blue_green.py, the UI
approval test).

`blue_green_env` attaches the service to the two target groups of `alb.create_blue_green` with
`deploymentConfiguration.strategy` BLUE_GREEN, waits until production serves it, and writes the
env-folder copy: `[ecs] target_group`/`alternate_target_group`, `[alb]` (the load balancer and
its two listener ports on 127.0.0.1), and a service-definition.json with the blue/green
`advancedConfiguration`, a bake time and a PAUSE hook after the test traffic shift. At the end
the service is put back as it was (rolling, no load balancer) and the ALB deleted. The
sandbox's minutes are one second long meanwhile (PAPYRUS_SANDBOX_SECONDS_PER_MINUTE)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from sandbox.ecs_blue_green import SECONDS_PER_MINUTE_ENV
from tests.support import alb as alb_support
from tests.support.sandbox_state import service
from tests.support.waiting import wait_until

INFRASTRUCTURE_ROLE = "papyrusEcsInfrastructureRole"
HOOK = {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"}}


@dataclass
class BlueGreenEnv:
    alb: alb_support.BlueGreenAlb
    deployments: Path  # the env-folder copy (PAPYRUS_DEPLOYMENTS_DIR for a subprocess)
    name: str


def settled(sb, name: str | None = None) -> dict | None:
    """The service (`name`, default the environment's) when it has one COMPLETED deployment
    running its desired count; else None."""
    svc = service(sb) if name is None else sb.client("ecs").describe_services(
        cluster=sb.settings.cluster, services=[name])["services"][0]
    deps = svc["deployments"]
    ok = (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
          and svc["runningCount"] == svc["desiredCount"])
    return svc if ok else None


def _infrastructure_role(sb) -> str:
    """The role ECS moves the listener rules with (Terraform's; the managed policy
    AmazonECSInfrastructureRolePolicyForLoadBalancers in AWS)."""
    iam = sb.client("iam")
    try:
        return iam.get_role(RoleName=INFRASTRUCTURE_ROLE)["Role"]["Arn"]
    except ClientError:
        return iam.create_role(RoleName=INFRASTRUCTURE_ROLE, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]


def _env_copy(sb, root: Path, made: alb_support.BlueGreenAlb, name: str) -> Path:
    copy = root / "deployments"
    shutil.copytree(sb.settings.folder.parent, copy)
    config = copy / "local" / "config.toml"
    text = config.read_text()
    for old, new in (('target_group = ""\n', f'target_group = "{name}-b"\n'),
                     ('alternate_target_group = ""\n', f'alternate_target_group = "{name}-g"\n'),
                     ('load_balancer = ""\n', f'load_balancer = "{name}-lb"\n'),
                     ("production_listener_port = 0\n",
                      f"production_listener_port = {made.prod_port}\n"),
                     ("test_listener_port = 0\n", f"test_listener_port = {made.test_port}\n")):
        assert old in text, f"deployments/local/config.toml no longer has {old.strip()!r}"
        text = text.replace(old, new, 1)
    config.write_text(text)
    path = copy / "local" / "service-definition.json"
    doc = json.loads(path.read_text())
    doc["loadBalancers"] = [{
        "targetGroupArn": "${target_group_arn}", "containerName": "${container}",
        "containerPort": "${container_port}", "advancedConfiguration": {
            "alternateTargetGroupArn": "${alternate_target_group_arn}",
            "productionListenerRule": "${production_listener_rule_arn}",
            "testListenerRule": "${test_listener_rule_arn}",
            "roleArn": "${infrastructure_role_arn}"}}]
    doc["healthCheckGracePeriodSeconds"] = 0
    doc["deploymentConfiguration"] |= {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 2,
                                       "lifecycleHooks": [HOOK]}
    path.write_text(json.dumps(doc, indent=2))
    return copy


@contextlib.contextmanager
def blue_green_env(sb, root: Path, name: str = "papyrus-bgd") -> Iterator[BlueGreenEnv]:
    saved = os.environ.get(SECONDS_PER_MINUTE_ENV)
    os.environ[SECONDS_PER_MINUTE_ENV] = "1"
    ecs, s = sb.client("ecs"), sb.settings
    before = wait_until(lambda: settled(sb), 90, what="the service settled")
    made = alb_support.create_blue_green(sb, name)
    try:
        role = _infrastructure_role(sb)
        # Terraform's blue/green service: attached to both groups, no hook of its own yet.
        ecs.update_service(cluster=s.cluster, service=s.service,
                           loadBalancers=made.load_balancers(role_arn=role),
                           healthCheckGracePeriodSeconds=0,
                           deploymentConfiguration=before["deploymentConfiguration"]
                           | {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0})
        wait_until(lambda: settled(sb) and alb_support.image_behind(made.prod_port), 120,
                   what="production serving the blue/green service")
        yield BlueGreenEnv(made, _env_copy(sb, root, made, name), name)
    finally:
        # Back as it was: rolling, no load balancer (then Terraform destroys the ALB).
        with contextlib.suppress(ClientError):
            wait_until(lambda: settled(sb), 120, what="the service settled before restoring")
            # Exactly the configuration it had (no `strategy` key if it had none: a later
            # deploy would otherwise find one its env folder does not declare).
            ecs.update_service(cluster=s.cluster, service=s.service, loadBalancers=[],
                               deploymentConfiguration=before["deploymentConfiguration"],
                               healthCheckGracePeriodSeconds=before.get(
                                   "healthCheckGracePeriodSeconds", 0))
            wait_until(lambda: settled(sb), 120, what="the service rolling again")
        alb_support.delete_blue_green(sb, made)
        if saved is None:
            os.environ.pop(SECONDS_PER_MINUTE_ENV, None)
        else:
            os.environ[SECONDS_PER_MINUTE_ENV] = saved


class Recorder:
    """Polls a listener for as long as it runs and keeps what answered each time: the image
    (the task's PAPYRUS_IMAGE, from /healthz) or None when the ALB itself answered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.seen.append(alb_support.image_behind(self.port))

    def served(self, digest: str) -> bool:
        return any(img and digest in img for img in self.seen)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
