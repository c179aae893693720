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
from moto.backends import list_of_moto_modules
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from ground import iam as iam_files
from ground.aws import botocore_session, share_data_loaders
from ground.envfile import write_atomically, write_env_file
from ground.render import task_definition_vars
from ground.settings import Settings, load_env
from sandbox import iam, image, s3_conditional, s3_policy, seed
from sandbox.faults import Faults, ResponseLost
from sandbox.postgres import LocalPostgres, free_port

# Only until the admin user exists (moto does not check keys while IAM is not enforced).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIASANDBOXSANDBOX00",
    "AWS_SECRET_ACCESS_KEY": "sandbox-secret-access-key",
}
# The principals a process can be: the profile names in the sandbox's AWS config file.
FLOW_RUN_PROFILE = "papyrus-flow-run"
CI_DEPLOY_PROFILE = "papyrus-ci-deploy"
OPERATOR_PROFILE = "papyrus-operator"
# Set in a shell, these would win over AWS_PROFILE (botocore's chain reads the environment
# first): whoever applies `env()` unsets them (tests/conftest.py, the CLI's runner).
IDENTITY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                      "AWS_SECURITY_TOKEN")
GITHUB_REPO = "example-org/papyrus-ops"  # the sandbox's stand-in for the ${github_repo} variable


class _QuietLostResponses(logging.Filter):
    """A response the fault layer drops on purpose is not a server error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ResponseLost)


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, with the backend of a Host header looked up once: moto lists its own
    package folder (an os.listdir and a stat per entry, ~150) and then tries every backend's URL
    patterns on each request, and the answer for a host never changes while the server runs
    (py-spy on the suite's four workers: 25 s of their samples; docs/benchmarks.md §8)."""

    def __init__(self, create_app) -> None:
        super().__init__(create_app)
        self._modules = frozenset(list_of_moto_modules())
        self._backends: dict[str, object] = {}

    def get_backend_for_host(self, host):
        if host is None or host == "moto_api" or host in self._modules:
            return host
        if host not in self._backends:  # called under the dispatcher's own lock
            self._backends[host] = next(
                (backend for backend, pattern in self.backend_url_patterns
                 if pattern.match(f"http://{host}")), None)
        return self._backends[host]


class _FaultyMotoServer(ThreadedMotoServer):
    """moto's threaded server with our recording/fault WSGI layer in front."""

    def __init__(self, faults: Faults, port: int, enforcer: iam.Enforcer | None = None) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.faults = faults
        self.enforcer = enforcer or iam.Enforcer()  # a restart passes the sandbox's own

    def _server_entry(self) -> None:
        app = self.faults.wrap(self.enforcer.wrap(s3_policy.wrap(
            s3_conditional.wrap(_Dispatcher(create_backend_app)))))
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
    elb: object | None = None  # sandbox.elb_targets.ElbTargets: target health, really checked
    listeners: object | None = None  # sandbox.elb_listeners.ElbListeners: 127.0.0.1:<Port>
    cloudtrail: object | None = None  # sandbox.cloudtrail.StoreRegistry once seeded
    evidence_kms_key: str = ""  # the evidence bucket's customer-managed key, once seeded
    evidence_signing_key_arn: str = ""  # the manifest signing key (its alias is in config)
    enforce_iam: bool = True  # False: moto's default (no authorisation), e.g. for a bench
    iam: iam.Enforcer = field(default_factory=iam.Enforcer)
    principals: dict = field(default_factory=dict)  # key -> ground.iam.Principal (as created)
    _admin: dict[str, str] = field(default_factory=lambda: dict(CREDENTIALS))
    _admin_session: tuple | None = None
    _admin_clients: dict = field(default_factory=dict)  # (service, keys, endpoint) -> client
    _operator: dict[str, str] = field(default_factory=dict)
    ops_image_uri: str = ""  # the flow-run image (`papyrus-ops`, this checkout), repo@sha256:
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- clients ----------------------------------------------------------------------------
    def client(self, service: str):
        """A management client (seeding, tests arranging a scenario): the sandbox's admin user,
        allowed everything. Flows never get these credentials. One per service while the admin
        keys stay the same, as boto3's clients are made to be shared between threads: the
        tests' helpers ask for one on every poll, and building it (its service model, the
        endpoint resolution, the copy of the session's event hooks) cost more CPU than the
        call it makes (docs/benchmarks.md §8). Whoever registers handlers on one unregisters
        them (tests/monitoring does so on the flows' own cached clients)."""
        key = (service, tuple(sorted(self._admin.items())), self.endpoint)
        with self._lock:
            if key not in self._admin_clients:
                self._admin_clients[key] = self._new_client(service)
            return self._admin_clients[key]

    def _new_client(self, service: str):
        if self._admin_session is None or self._admin_session[0] != self._admin:
            # Its own botocore session, blind to AWS_PROFILE / AWS_CONFIG_FILE (which point at
            # the flow-run role once `env()` is applied) and to a shell's keys.
            isolated = botocore_session({
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None)})
            self._admin_session = (dict(self._admin), boto3.session.Session(
                aws_access_key_id=self._admin["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=self._admin["AWS_SECRET_ACCESS_KEY"],
                botocore_session=isolated))
        return self._admin_session[1].client(
            service, endpoint_url=self.endpoint, region_name=self.settings.region,
            config=Config(retries={"mode": "standard", "max_attempts": 5}))

    def env(self, profile: str = FLOW_RUN_PROFILE) -> dict[str, str]:
        """What a process needs to reach the sandbox as `profile` (default: the flow-run role,
        assumed through STS by boto3 itself from the config file; no key in here)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.settings.region,
            "AWS_REGION": self.settings.region,
            "AWS_CONFIG_FILE": str(self.state_dir / "aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.state_dir / "aws" / "credentials"),
            "AWS_PROFILE": profile,
            **({"PAPYRUS_EVIDENCE_KMS_KEY": self.evidence_kms_key}
               if self.evidence_kms_key else {}),
            # The images' code by digest (deployments/local `[ecr] code_store`).
            **({"PAPYRUS_IMAGE_CODE_STORE": str(self.image_store)}
               if getattr(self, "image_store", None) else {}),
            **self.ecs_pool_env(),
        }

    def ecs_pool_env(self) -> dict[str, str]:
        """The account-specific values of an ECS pool for flow runs (what
        `deployments/local/ecs-pool.json` is rendered with, papyrus_ops.prefect_local.ecs):
        the flow-run image, its two roles, the VPC, its subnets and the task security group.
        Empty until seeded."""
        if self.seeded is None or not self.ops_image_uri:
            return {}
        sd = self.seeded
        return {"PAPYRUS_OPS_IMAGE": self.ops_image_uri,
                "PAPYRUS_FLOW_RUN_ROLE_ARN": self.role_arn("flow-run"),
                "PAPYRUS_FLOW_RUN_EXECUTION_ROLE_ARN": self.role_arn("flow-run-execution"),
                "PAPYRUS_VPC_ID": sd.vpc_id, "PAPYRUS_SUBNET_A": sd.subnets[0],
                "PAPYRUS_SUBNET_B": sd.subnets[-1], "PAPYRUS_TASK_SG_ID": sd.task_sg_id}

    def assume_role(self, role_arn: str, session_name: str) -> dict:
        """STS AssumeRole as the operator (who stands in for `ecs-tasks.amazonaws.com` in the
        sandbox's trust policies): what ECS does for a task's role. Returns `Credentials`."""
        session = boto3.session.Session(
            aws_access_key_id=self._operator["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self._operator["AWS_SECRET_ACCESS_KEY"],
            botocore_session=botocore_session({
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None)}))
        sts = session.client("sts", endpoint_url=self.endpoint,
                             region_name=self.settings.region)
        return sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64],
                               DurationSeconds=3600)["Credentials"]

    def role_arn(self, key: str) -> str:
        """The ARN of the role made from `deployments/<env>/iam/<key>.*.json`."""
        return self.principals[key].arn(seed.ACCOUNT_ID)

    def put_policy(self, key: str, policy: dict) -> None:
        """Replace principal `key`'s permission policy (tests: take an action away)."""
        self.client("iam").put_role_policy(RoleName=self.principals[key].role,
                                           PolicyName=f"{key}-policy",
                                           PolicyDocument=json.dumps(policy))

    def restore_policy(self, key: str) -> None:
        self.put_policy(key, self.principals[key].policy)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Sandbox:
        self.state_dir = Path(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings = load_env(self.env_name)
        # Every image pushed while the sandbox runs keeps its code here, keyed by digest: the
        # ECS runtime runs what a task pulled (sandbox.image.snapshot / code_dir).
        self.image_store = self.state_dir / "images"
        shutil.rmtree(self.image_store, ignore_errors=True)
        image.register_store(self.image_store)
        # Nothing here launches instances: skip loading moto's default AMI catalogue, which
        # is most of EC2's first-request cost (~1 s of the sandbox's start).
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        iam.install()
        share_data_loaders()  # moto's sessions, the seeding's and the tests' arranging clients
        self._moto = _FaultyMotoServer(self.faults, free_port(), self.iam)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._admin = seed.create_admin(self.client)
        self._seed()
        if self.enforce_iam:
            self.iam.enabled = True
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
        # Before the roles: their policies name the signing key by ARN (least privilege).
        self.evidence_signing_key_arn = seed.create_signing_key(c, s) or ""
        self.principals = iam_files.principals(s, iam_files.variables(
            s, seed.ACCOUNT_ID, rds_security_group_id=rds_sg,
            alb_log_bucket=seed.alb_log_bucket(s), github_repo=GITHUB_REPO,
            evidence_signing_key_arn=self.evidence_signing_key_arn or None))
        roles = self._create_principals()
        self.evidence_kms_key = seed.create_bucket(c, s)
        # The key exists only now: the settings carry it as the env folder would read it.
        self.settings = s = dataclasses.replace(s, evidence_kms_key=self.evidence_kms_key)
        image_uri = seed.push_image(c, s)
        self.ops_image_uri = seed.push_ops_image(c, s)
        variables = task_definition_vars(s, image_uri, roles, db_arn, token_arn, task_sg,
                                              subnets)
        self._install_extensions()
        if self.enforce_iam:
            self._runtime.execution_role_allows = (
                lambda role, action, resource: iam.role_allows(seed.ACCOUNT_ID, role, action,
                                                               resource))
        td_arn = seed.create_service(c, s, variables)
        self.seeded = seed.Seeded(vpc, subnets, rds_sg, task_sg, db_arn, token_arn, image_uri,
                                  td_arn)
        self._seed_cloudtrail()
        self._wait_service_stable()

    def _create_principals(self) -> dict[str, str]:
        """The roles of `deployments/<env>/iam/`, with plain IAM calls (as Terraform would), and
        the operator user that stands in for what assumes them in AWS (ECS for the task roles,
        GitHub's OIDC provider for CI): moto evaluates only `AWS` principals in a trust policy,
        so the sandbox's trust policy names the operator instead of the file's service or
        federated principal. The operator may do nothing but sts:AssumeRole on those roles.
        Writes the AWS config + credentials files that `env()` points at."""
        operator, profiles = seed.create_operator(self.client, [
            p.arn(seed.ACCOUNT_ID) for p in self.principals.values()])
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": operator["Arn"]},
            "Action": "sts:AssumeRole"}]})
        iam_client = self.client("iam")
        arns = {}
        for key, p in self.principals.items():
            arns[p.role] = iam_client.create_role(
                RoleName=p.role, AssumeRolePolicyDocument=trust,
                Description=f"Papyrus {key} (deployments/{self.env_name}/iam/{key}.*.json)",
            )["Role"]["Arn"]
            iam_client.put_role_policy(RoleName=p.role, PolicyName=f"{key}-policy",
                                       PolicyDocument=json.dumps(p.policy))
        aws_dir = self.state_dir / "aws"
        aws_dir.mkdir(parents=True, exist_ok=True)
        region = self.settings.region
        config = [f"[profile {OPERATOR_PROFILE}]", f"region = {region}", ""]
        for profile, key in ((FLOW_RUN_PROFILE, "flow-run"), (CI_DEPLOY_PROFILE, "ci-deploy"),
                             *((f"papyrus-{k}", k) for k in ("worker", "task", "execution"))):
            config += [f"[profile {profile}]", f"role_arn = {self.role_arn(key)}",
                       f"source_profile = {OPERATOR_PROFILE}",
                       f"role_session_name = {profile}", f"region = {region}", ""]
        (aws_dir / "config").write_text("\n".join(config))
        creds = aws_dir / "credentials"
        creds.write_text(f"[{OPERATOR_PROFILE}]\naws_access_key_id = {profiles['AccessKeyId']}\n"
                         f"aws_secret_access_key = {profiles['SecretAccessKey']}\n")
        creds.chmod(0o600)
        self._operator = {"AWS_ACCESS_KEY_ID": profiles["AccessKeyId"],
                          "AWS_SECRET_ACCESS_KEY": profiles["SecretAccessKey"]}
        return arns

    def _install_extensions(self) -> None:
        """The local ECS runtime: services really run (see sandbox.ecs_runtime); SNS's tag
        check on CreateTopic (sandbox.sns); ECR's image-index rules (sandbox.ecr); KMS
        Sign/Verify of digests (sandbox.kms); Object Lock retention (sandbox.s3_lock); RDS
        parameters and events (sandbox.rds)."""
        from sandbox import ecr, ecs_blue_green, ecs_service_deployments, kms, rds, s3_lock, sns
        from sandbox.ecs_runtime import EcsRuntime, RuntimeTiming

        ecs_service_deployments.install()
        ecs_blue_green.install()
        sns.install()
        ecr.install()
        kms.install()
        s3_lock.install()
        rds.install()
        s3_policy.install()
        from sandbox.elb_listeners import ElbListeners
        from sandbox.elb_targets import ElbTargets

        self.elb = ElbTargets(self.settings.region, seed.ACCOUNT_ID).install()
        # Listeners serve HTTP on 127.0.0.1:<Port>, routing to the healthy targets above.
        self.listeners = ElbListeners(self.settings.region, seed.ACCOUNT_ID, self.elb).install()
        self._runtime = EcsRuntime(self.settings.region, seed.ACCOUNT_ID,
                                   workdir=self.state_dir / "ecs",
                                   hostaddr=self.settings.db_hostaddr or None,
                                   timing=RuntimeTiming(),
                                   image_store=self.image_store).install()
        self._runtime.endpoint = self.endpoint
        self._runtime.assume_role = self.assume_role

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
        # Each event goes to the store of the region CloudTrail records it in: IAM and the
        # global STS endpoint's events are in us-east-1 only, not in the configured region.
        self.cloudtrail.add_by_region(
            cloudtrail.generate_history(self.cloudtrail_events, names=names,
                                        account_id=seed.ACCOUNT_ID, region=s.region),
            seed.ACCOUNT_ID, s.region)

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
        if getattr(self, "image_store", None) is not None:
            image.unregister_store(self.image_store)
        if self._runtime is not None:
            self._runtime.stop_all()
            self._runtime.uninstall()
            self._runtime = None
        if self.listeners is not None:
            self.listeners.uninstall()
            self.listeners = None
        if self.elb is not None:
            self.elb.uninstall()
            self.elb = None
        if self.cloudtrail is not None:
            from sandbox import cloudtrail

            cloudtrail.uninstall()
            self.cloudtrail = None
        from sandbox import ecr, ecs_blue_green, ecs_service_deployments, kms, rds, s3_lock, sns

        ecs_blue_green.uninstall()
        ecs_service_deployments.uninstall()
        sns.uninstall()
        ecr.uninstall()
        kms.uninstall()
        s3_lock.uninstall()
        rds.uninstall()
        s3_policy.uninstall()
        if self.pg is not None:
            self.pg.stop("immediate")
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def write_env_file(self) -> Path:
        path = write_env_file(self.state_dir / "env", self.env())
        # Atomically, as the env file: `sandbox serve` rewrites both every second, and an `up`
        # or `down` that read a half-written sandbox.json took the sandbox for stopped (a
        # second one started beside it; `down` left it running).
        write_atomically(self.state_dir / "sandbox.json", json.dumps({
            "endpoint": self.endpoint, "pid": os.getpid(), "postgres_port": self.pg.port,
            "rds_endpoint": self.rds_endpoint, "image": self.seeded.image_uri,
            "children": self.child_pids(),
        }, indent=2))
        return path
