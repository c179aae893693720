"""Fixtures for the CloudTrail archive tests.

* `ct_server` (module): moto in server mode, in this process, with the CloudTrail LookupEvents
  stand-in (`sandbox.cloudtrail`) answering from a private registry and the sandbox's fault
  layer (`sandbox.faults`) in front, so throttling can be injected per call.
* `ct_env` (function): boto3 pointed at it, a private evidence root, an empty evidence bucket,
  an empty history and a high client-side rate (the real 2 req/s is tested separately).
* helpers (`FakeCloudTrail`, readers) live in tests/support/cloudtrail.py.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from sandbox import cloudtrail as ct
from sandbox.faults import Faults
from tests.support.cloudtrail import papyrus_names

REGION = "us-west-2"
CREDS = {"AWS_ACCESS_KEY_ID": "AKIACLOUDTRAILTEST00", "AWS_SECRET_ACCESS_KEY": "ct-test-secret"}


class _FaultyServer(ThreadedMotoServer):
    def __init__(self, faults: Faults) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.faults = faults

    def _server_entry(self) -> None:
        app = self.faults.wrap(DomainDispatcherApplication(create_backend_app))
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class CtServer:
    endpoint: str
    faults: Faults
    registry: ct.StoreRegistry
    sg_ids: dict[str, str]  # Papyrus security group name -> id, as EC2 knows them


def _security_groups(endpoint: str) -> dict[str, str]:
    """The two Papyrus security groups in moto's EC2 (the flow resolves their ids). This is
    also the first EC2 call of the process, which costs moto seconds: paid here, once."""
    from ground.settings import load_env

    s = load_env("local")
    ec2 = boto3.Session().client("ec2", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    names = [s.rds_security_group, s.task_security_group]
    found = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": names}])["SecurityGroups"]}
    if len(found) < 2:
        vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
        for name in names:
            if name not in found:
                found[name] = ec2.create_security_group(
                    GroupName=name, Description="Papyrus (cloudtrail tests)",
                    VpcId=vpc)["GroupId"]
    return found


@pytest.fixture(scope="module")
def ct_server(sandbox):
    """A second moto server in this process. moto's backends are process-wide, so it serves
    the session sandbox's account: the sandbox is started first (it seeds the evidence bucket
    and the Papyrus security groups, which these tests then use) — asked for here, not left to
    which test module happens to run first."""
    faults = Faults()
    registry = ct.StoreRegistry()
    previous = ct.installed_registry()
    ct.install(registry)
    server = _FaultyServer(faults)
    server.start()
    try:  # the registry is process-wide: put the sandbox's back even if set-up fails
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        yield CtServer(endpoint, faults, registry, _security_groups(endpoint))
    finally:
        server.stop()
        if previous is not None:
            ct.install(previous)
        else:
            ct.uninstall()


@dataclass
class CtEnv:
    sg_ids: dict[str, str]
    settings: Any
    store: ct.EventStore
    faults: Faults
    s3: Any
    endpoint: str
    root: Path

    def seed(self, n: int, days: float = 89, now: Any = None, seed: int = 1) -> list:
        events = ct.generate_history(n, days=days, now=now, seed=seed,
                                     names=papyrus_names(self.settings))
        self.store.add_events(events)
        return events


@pytest.fixture
def ct_env(ct_server, monkeypatch, tmp_path) -> CtEnv:
    from ground.settings import load_env

    env = {"AWS_ENDPOINT_URL": ct_server.endpoint, "AWS_DEFAULT_REGION": REGION,
           "AWS_REGION": REGION, **CREDS,
           "PAPYRUS_EVIDENCE_ROOT": str(tmp_path / "evidence"),
           "PAPYRUS_CLOUDTRAIL_MAX_RPS": "2000"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ct_server.registry.clear()
    ct_server.registry.set_rate_limit(None)
    ct_server.faults.clear()
    ct_server.faults.reset_calls()
    settings = load_env("local")
    s3 = boto3.Session().client("s3", endpoint_url=ct_server.endpoint, region_name=REGION)
    bucket = settings.evidence_bucket
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": REGION})
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    store = ct_server.registry.get(ct.DEFAULT_ACCOUNT_ID, REGION)
    return CtEnv(ct_server.sg_ids, settings, store, ct_server.faults, s3, ct_server.endpoint,
                 tmp_path / "evidence")
