"""Fixtures for the evidence library: a moto S3 server over HTTP (in this process, loopback,
ephemeral port), a fresh versioned SSE-KMS bucket per test, settings pointing at a temporary
evidence root, and S3 endpoints that really fail (a closed port).

Import-path note: pytest's default "prepend" import mode puts `tests/` on sys.path (for
tests/conftest.py), and the repo root is not on it (the project is an editable install served by
a meta-path finder). `tests/artifacts/` (no __init__.py) then makes `import artifacts` resolve
to a *namespace* package spanning tests/artifacts and the real folder, so `artifacts/__init__.py`
never runs and `from artifacts import EvidenceBundle` fails. A regular package found anywhere on
sys.path beats namespace portions, so the repo root on sys.path fixes it: pyproject's
`pythonpath = ["."]` does; this guard keeps these tests right if that setting ever goes.
"""

from __future__ import annotations

import dataclasses
import importlib
import socket
import sys
import uuid
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
if getattr(sys.modules.get("artifacts"), "__file__", "x") is None:  # a namespace stand-in
    del sys.modules["artifacts"]
importlib.invalidate_caches()

import pytest  # noqa: E402 - after the sys.path fix above
from evidence_testlib import CANARY, REGION, make_s3  # noqa: E402


@pytest.fixture(scope="session")
def canary() -> str:
    from ground.redact import REDACTOR

    REDACTOR.add(CANARY)
    return CANARY


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
    """Settings with a temporary evidence root and no bucket: bundles stay local."""
    return dataclasses.replace(base_settings, evidence_root=tmp_path / "evidence",
                               evidence_bucket="")


@pytest.fixture
def evidence_settings(local_settings, bucket):
    """Settings with a temporary evidence root and a fresh versioned SSE-KMS bucket."""
    return dataclasses.replace(local_settings, evidence_bucket=bucket)
