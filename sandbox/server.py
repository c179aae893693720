"""The embedded default: moto (server mode) + a real PostgreSQL + the local ECS runtime.

`Sandbox(state_dir).start()` brings everything up on loopback and seeds it from
`deployments/local/`; `env()` is what a process needs to reach it (the standard
`AWS_ENDPOINT_URL` and friends — flows have no sandbox branch). Tests use it in-process (one per
test session) and reach moto's backends and the fault layer directly; `papyrus-ops sandbox up`
runs the same object in a background process that writes `state_dir/env`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from ground.envfile import write_env_file
from ground.render import task_definition_vars
from ground.settings import Settings, load_env
from sandbox import s3_policy, seed
from sandbox.faults import Faults, ResponseLost
from sandbox.postgres import LocalPostgres, free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIASANDBOXSANDBOX00",
    "AWS_SECRET_ACCESS_KEY": "sandbox-secret-access-key",
}


class _QuietLostResponses(logging.Filter):
    """A response the fault layer drops on purpose is not a server error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ResponseLost)


class _FaultyMotoServer(ThreadedMotoServer):
    """moto's threaded server with our recording/fault WSGI layer in front."""

    def __init__(self, faults: Faults, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.faults = faults

    def _server_entry(self) -> None:
        app = self.faults.wrap(s3_policy.wrap(DomainDispatcherApplication(create_backend_app)))
        werkzeug_log = logging.getLogger("werkzeug")
        werkzeug_log.setLevel(logging.ERROR)  # no request lines on stderr
        if not any(isinstance(f, _QuietLostResponses) for f in werkzeug_log.filters):
            werkzeug_log.addFilter(_QuietLostResponses())
        self._server = make_server(self._ip_address, self._port, app, True)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class Sandbox:
    state_dir: Path
    env_name: str = "local"
    db_password: str | None = None  # a canary in tests; random otherwise
    token: str | None = None  # the /dbcheck bearer token; random otherwise
    cloudtrail_events: int = 3000
    faults: Faults = field(default_factory=Faults)
    settings: Settings | None = None
    pg: LocalPostgres | None = None
    seeded: seed.Seeded | None = None
    endpoint: str = ""
    rds_endpoint: str = ""
    _moto: _FaultyMotoServer | None = None
    _runtime: object | None = None
    cloudtrail: object | None = None  # sandbox.cloudtrail.StoreRegistry once seeded
    evidence_kms_key: str = ""  # the evidence bucket's customer-managed key, once seeded
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- clients ----------------------------------------------------------------------------
    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.settings.region,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"mode": "standard", "max_attempts": 5}))

    def env(self) -> dict[str, str]:
        """What a process needs to reach the sandbox (and nothing secret)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.settings.region,
            "AWS_REGION": self.settings.region,
            **CREDENTIALS,
            **({"PAPYRUS_EVIDENCE_KMS_KEY": self.evidence_kms_key}
               if self.evidence_kms_key else {}),
        }

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Sandbox:
        self.state_dir = Path(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings = load_env(self.env_name)
        # Nothing here launches instances: skip loading moto's default AMI catalogue, which
        # is most of EC2's first-request cost (~1 s of the sandbox's start).
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        self._moto = _FaultyMotoServer(self.faults, free_port())
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._seed()
        return self

    def _seed(self) -> None:
        s, c = self.settings, self.client
        vpc, subnets, rds_sg, task_sg = seed.create_network(c, s)
        pg_port = free_port()
        kwargs = {"app_password": self.db_password} if self.db_password else {}
        # The RDS instance is created first: its endpoint name goes into the server certificate,
        # so `verify-full` against the RDS name really verifies.
        self.rds_endpoint = seed.create_rds(c, s, pg_port, "papyrus_app", "papyrus", rds_sg)
        pg_dir = self.state_dir / "postgres"
        shutil.rmtree(pg_dir, ignore_errors=True)
        self.pg = LocalPostgres(base_dir=pg_dir, port=pg_port, hostnames=[self.rds_endpoint],
                                **kwargs).start()
        self.token = self.token or secrets.token_urlsafe(24)
        db_arn, token_arn = seed.create_secrets(
            c, s, self.pg.secret_dict(host=self.rds_endpoint) | {"engine": "postgres"}, self.token)
        roles = seed.create_roles(c, s)
        self.evidence_kms_key = seed.create_bucket(c, s)
        # The key exists only now: the settings carry it as the env folder would read it.
        self.settings = s = dataclasses.replace(s, evidence_kms_key=self.evidence_kms_key)
        image_uri = seed.push_image(c, s)
        variables = task_definition_vars(s, image_uri, roles, db_arn, token_arn, task_sg,
                                              subnets)
        self._install_extensions()
        td_arn = seed.create_service(c, s, variables)
        self.seeded = seed.Seeded(vpc, subnets, rds_sg, task_sg, db_arn, token_arn, image_uri,
                                  td_arn)
        self._seed_cloudtrail()
        self._wait_service_stable()

    def _install_extensions(self) -> None:
        """The local ECS runtime: services really run (see sandbox.ecs_runtime); SNS's tag
        check on CreateTopic (sandbox.sns)."""
        from sandbox import sns
        from sandbox.ecs_runtime import EcsRuntime, RuntimeTiming

        sns.install()
        s3_policy.install()
        self._runtime = EcsRuntime(self.settings.region, seed.ACCOUNT_ID,
                                   workdir=self.state_dir / "ecs",
                                   hostaddr=self.settings.db_hostaddr or None,
                                   timing=RuntimeTiming()).install()

    @property
    def runtime(self):
        return self._runtime

    def cloudtrail_names(self) -> dict[str, str]:
        """The environment's resource names, as `cloudtrail.generate_history` wants them."""
        s = self.settings
        return {"cluster": s.cluster, "service": s.service, "task_family": s.family,
                "secret": s.db_secret_id, "db_instance": s.rds_instance,
                "db_parameter_group": s.parameter_group,
                "rds_security_group": s.rds_security_group,
                "task_security_group": s.task_security_group,
                "ecr_repository": s.ecr_repository, "evidence_bucket": s.evidence_bucket,
                "task_role": s.task_role, "task_execution_role": s.execution_role}

    def _seed_cloudtrail(self) -> None:
        """A realistic 90-day history (some of it Papyrus's) behind LookupEvents."""
        from sandbox import cloudtrail

        s = self.settings
        self.cloudtrail = cloudtrail.install()
        names = self.cloudtrail_names()
        store = self.cloudtrail.get(seed.ACCOUNT_ID, s.region)
        store.add_events(cloudtrail.generate_history(self.cloudtrail_events, names=names,
                                                     account_id=seed.ACCOUNT_ID,
                                                     region=s.region))

    def _wait_service_stable(self, timeout: float = 60) -> None:
        """The seeded service is up (its first deployment COMPLETED) before anyone uses it."""
        ecs = self.client("ecs")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            svc = ecs.describe_services(cluster=self.settings.cluster,
                                        services=[self.settings.service])["services"][0]
            deps = svc["deployments"]
            if (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
                    and svc["runningCount"] == svc["desiredCount"]):
                return
            time.sleep(0.2)
        raise RuntimeError(f"seeded service did not become stable in {timeout:.0f}s "
                           f"(task logs: {self.state_dir / 'ecs' / 'tasks'})")

    def child_pids(self) -> list[int]:
        pids = list(self._runtime.live_pids()) if self._runtime else []
        pid_file = self.pg.data_dir / "postmaster.pid" if self.pg else None
        if pid_file and pid_file.exists():
            pids.append(int(pid_file.read_text().split()[0]))
        return pids

    def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.stop_all()
            self._runtime.uninstall()
            self._runtime = None
        if self.cloudtrail is not None:
            from sandbox import cloudtrail

            cloudtrail.uninstall()
            self.cloudtrail = None
        from sandbox import sns

        sns.uninstall()
        s3_policy.uninstall()
        if self.pg is not None:
            self.pg.stop("immediate")
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def write_env_file(self) -> Path:
        path = write_env_file(self.state_dir / "env", self.env())
        (self.state_dir / "sandbox.json").write_text(json.dumps({
            "endpoint": self.endpoint, "pid": os.getpid(), "postgres_port": self.pg.port,
            "rds_endpoint": self.rds_endpoint, "image": self.seeded.image_uri,
            "children": self.child_pids(),
        }, indent=2))
        return path
