"""Session-wide real things: one Prefect server, one sandbox (moto over HTTP, PostgreSQL with SSL,
the local ECS runtime). Both start once per test session, lazily, on 127.0.0.1 only.

The DB password and the probe token are canaries, so any test can search what it captured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.canaries import CANARY_PASSWORD, CANARY_TOKEN

_TMP = Path(tempfile.mkdtemp(prefix="papyrus-tests-"))
# Before anything imports Prefect: a private PREFECT_HOME, no telemetry, evidence in a tmp root.
os.environ.update({
    "PREFECT_HOME": str(_TMP / "prefect-home"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PAPYRUS_EVIDENCE_ROOT": str(_TMP / "evidence"),
})


def pytest_collection_modifyitems(items):
    # tests/schema owns the sandbox DB's schema lifecycle (it proves the tables are absent
    # before apply), so it runs first; everything else keeps its order.
    items.sort(key=lambda item: 0 if "/tests/schema/" in str(item.path) else 1)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _TMP


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect API for the whole session; subprocesses reach it through PREFECT_API_URL."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        yield url
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def sandbox(tmp_root):
    """The embedded default, in this process; the environment points boto3 at it."""
    from sandbox.server import IDENTITY_VARIABLES, Sandbox

    sb = Sandbox(tmp_root / "sandbox", db_password=CANARY_PASSWORD, token=CANARY_TOKEN).start()
    saved = {k: os.environ.get(k) for k in (*sb.env(), *IDENTITY_VARIABLES)}
    for k in IDENTITY_VARIABLES:  # keys in the environment would win over the flow-run profile
        os.environ.pop(k, None)
    os.environ.update(sb.env())
    yield sb
    sb.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def settings(sandbox):
    return sandbox.settings
