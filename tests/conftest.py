"""Session-wide real things: one Prefect server, one sandbox (moto over HTTP, PostgreSQL with SSL,
the local ECS runtime). Both start once per test session, lazily, on 127.0.0.1 only.

The DB password and the probe token are canaries (tests/support/canaries.py), so any test can
search what it captured. Nothing here depends on the order tests run in: what a test needs of the
shared sandbox it asks for with a fixture (e.g. `main_schema`), and tests/reliability's canary
sweep runs when the session's fixtures are torn down, after every test.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest

from tests.support.canaries import CANARY_PASSWORD, CANARY_TOKEN

_TMP = Path(tempfile.mkdtemp(prefix="papyrus-tests-"))
# Before anything imports Prefect: a private PREFECT_HOME, no telemetry, evidence in a tmp root.
os.environ.update({
    "PREFECT_HOME": str(_TMP / "prefect-home"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    # Logs reach the API in Prefect's own batches (every 2 s; the tests that read them drain
    # the log worker first): batches of 0.3 s were 23 s of the suite's CPU, each a request and
    # a transaction on the session's server (docs/benchmarks.md §8).
    "PAPYRUS_EVIDENCE_ROOT": str(_TMP / "evidence"),
    # A CLI call without PREFECT_API_URL starts the checkout's resident Prefect server: the
    # session's own, in its tmp root, stopped when the session ends (`_stop_cli_server`).
    "PAPYRUS_PREFECT_CLI_DIR": str(_TMP / "cli-prefect"),
    # and forks its child from the session's warm interpreter (papyrus_ops.warm), also stopped
    # when the session ends.
    "PAPYRUS_CLI_WARM_DIR": str(_TMP / "cli-warm"),
})


def pytest_collection_finish(session):
    # What collection imported (Prefect, moto, botocore's models, the flows: most of a worker's
    # ~800k objects) lives to the end of the session: frozen, out of the collector's sight, so
    # neither a full collection during the run nor the two pytest makes as each worker's
    # session ends walks it again. Garbage made later is collected as before.
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    from tests.support.workers import order_items

    order_items(config, items)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: `-p no:xdist` must still run the suite
def pytest_xdist_make_scheduler(config, log):
    from tests.support.workers import make_scheduler

    return make_scheduler(config, log)


@pytest.fixture(scope="session", autouse=True)
def _stop_cli_server():
    yield
    from papyrus_ops.prefect_local import resident
    from papyrus_ops.warm import server as warm_server

    warm_server.stop(_TMP / "cli-warm")
    resident.stop()


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    # As root, the sandbox runs PostgreSQL as `postgres`, which must traverse the session's tmp
    # root (mkdtemp makes it 0700; sandbox/postgres.py also opens the parents of its own folder).
    os.chmod(_TMP, 0o755)  # noqa: S103 - a test-only temporary folder
    return _TMP


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect API for the whole session; subprocesses reach it through PREFECT_API_URL.
    Prefect's own test harness, on a database seeded migrated (papyrus_ops.prefect_local.seed):
    the harness names its database `prefect-test.db` in a folder it makes with `mkdtemp`, so
    it is handed a folder that holds one already."""
    from prefect.testing import utilities

    from papyrus_ops.prefect_local.seed import seed

    folder = tempfile.mkdtemp(prefix="prefect-harness-")  # removed by the harness at exit
    seed(Path(folder) / "prefect-test.db", build=True)
    with contextlib.ExitStack() as stack:
        with mock.patch.object(utilities, "mkdtemp", return_value=folder):
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout=180))
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


@pytest.fixture(scope="session")
def main_schema(sandbox, prefect_server) -> dict:
    """The sandbox's main database (`papyrus`) has the schema: applied by the schema_init flow,
    a no-op when it is there already. Every test that needs the tables asks for this; none
    relies on another test module having applied it. (tests/schema proves the apply path on
    databases of its own, so it needs no particular state of the main one.)"""
    from flows.schema_init import schema_init
    from papyrus_ops.runner import run_flow

    result = run_flow(schema_init, env="local", apply=True)
    assert result["verdict"] == "success", result
    return result
