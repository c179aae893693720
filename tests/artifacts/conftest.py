"""Fixtures for the evidence library: a moto S3 server over HTTP (in this process, loopback,
ephemeral port), a fresh versioned SSE-KMS bucket per test, settings pointing at a temporary
evidence root, and S3 endpoints that really fail (a closed port).
"""

from __future__ import annotations

import dataclasses
import socket
import uuid

import pytest

from tests.support.canaries import EVIDENCE_CANARY
from tests.support.evidence import REGION, make_s3


@pytest.fixture(scope="session")
def canary() -> str:
    from ground.redact import REDACTOR

    REDACTOR.add(EVIDENCE_CANARY)
    return EVIDENCE_CANARY


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3(moto_endpoint):
    return make_s3(moto_endpoint)


@pytest.fixture
def bucket(s3) -> str:
    name = f"papyrus-evidence-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    return name


@pytest.fixture
def dead_endpoint():
    """An endpoint that refuses connections: a port held bound but never listening (Linux
    answers ECONNREFUSED at once, and nobody else can take the port meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="session")
def base_settings():
    from ground.settings import load_env

    return load_env("local")


@pytest.fixture
def local_settings(tmp_path, base_settings):
    """Settings with a temporary evidence root and no bucket: bundles stay local (and unsigned:
    this moto server has no signing key; tests/artifacts/test_evidence_verify.py signs)."""
    return dataclasses.replace(base_settings, evidence_root=tmp_path / "evidence",
                               evidence_bucket="", evidence_signing_key="")


@pytest.fixture
def evidence_settings(local_settings, bucket):
    """Settings with a temporary evidence root and a fresh versioned SSE-KMS bucket."""
    return dataclasses.replace(local_settings, evidence_bucket=bucket)
