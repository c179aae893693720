"""Fixtures for the reliability matrix (tests/reliability): the session sandbox, put back as it
was after every test, and a place where every test's captured output is kept for the canary
sweep (test_zz_canary_sweep.py runs last and searches it).

`sb` is the session sandbox (tests/conftest.py): the DB password and the /dbcheck token are the
canaries. After each test: every fault rule cleared, PostgreSQL running, the local ECS runtime's
timing knobs as found, boto3 clients rebuilt (a test may have changed the retry settings), and the
test's stdout/stderr written to the capture folder.
"""

from __future__ import annotations

import dataclasses
import re

import pytest


@pytest.fixture(scope="session")
def capture_dir(tmp_root):
    folder = tmp_root / "reliability-captures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def schema_ready(sandbox, prefect_server):
    """The main database has the schema (tests/schema applies it first in a full run; this
    makes tests/reliability runnable on its own). A no-op when it is there already."""
    from flows.schema_init import schema_init
    from papyrus_ops.runner import run_flow

    result = run_flow(schema_init, env="local", apply=True)
    assert result["verdict"] == "success", result
    return result


@pytest.fixture
def sb(sandbox, prefect_server, schema_ready, capture_dir, capfd, request, monkeypatch):
    from ground import aws

    # `prepare()` loads <PAPYRUS_SANDBOX_DIR>/env: never a developer's running sandbox here.
    monkeypatch.setenv("PAPYRUS_SANDBOX_DIR", str(capture_dir / "no-sandbox"))
    timing = dataclasses.asdict(sandbox.runtime.timing)
    sandbox.faults.clear()
    yield sandbox
    sandbox.faults.clear()
    for key, value in timing.items():
        setattr(sandbox.runtime.timing, key, value)
    if not sandbox.pg.is_running():
        sandbox.pg.start()
    aws._cached.cache_clear()
    out, err = capfd.readouterr()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    (capture_dir / f"test-{name}.txt").write_text(f"--- stdout\n{out}\n--- stderr\n{err}\n")
