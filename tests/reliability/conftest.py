"""Fixtures for the reliability matrix (tests/reliability): the session sandbox, put back as it
was after every test, a place where every test's captured output is kept, and the canary sweep
over everything the session produced (tests/support/sweep.py), run when the session ends.

`sb` is the session sandbox (tests/conftest.py): the DB password and the /dbcheck token are the
canaries. After each test: every fault rule cleared, PostgreSQL running, no deploy lease left,
the local ECS runtime's timing knobs as found, boto3 clients rebuilt (a test may have changed the
retry settings), and the test's stdout/stderr written to the capture folder.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.support.canaries import SESSION_CANARIES
from tests.support.sweep import sweep
from tests.support.workers import group_of

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def capture_dir(tmp_root):
    folder = tmp_root / "reliability-captures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def canary_sweep(request, sandbox, prefect_server, capture_dir):
    """Armed by the first reliability test (through `sb`); the sweep runs at this fixture's
    teardown. It depends on the sandbox and the Prefect server, so pytest tears it down before
    them, and session fixtures are torn down only after the session's last test: the sweep sees
    everything every test wrote, in whatever order they ran. A hit (or a sweep that searched too
    little) fails the teardown, which fails the run ("ERROR at teardown of <the last test>")."""
    assert (sandbox.db_password, sandbox.token) == SESSION_CANARIES, \
        "the session sandbox must carry the canaries, or the sweep proves nothing"
    yield SESSION_CANARIES
    # Strict about how much it must have read only when the whole matrix ran in this session.
    ran = {Path(item.path).resolve() for item in request.session.items}
    full = set(HERE.glob("test_*.py")) <= ran
    report = sweep(sandbox, SESSION_CANARIES, capture_dir, full=full)
    assert report["hits"] == [], f"canary sweep: {len(report['hits'])} hits: {report['hits']}"


@pytest.fixture(autouse=True)
def sweep_free_guard(request):
    """A file that runs apart from the matrix (tests/support/workers.ON_THEIR_OWN, maybe on
    another xdist worker) must not write what the sweep searches: the sweep of the worker that
    runs the matrix would never see it."""
    path = request.node.nodeid.split("::", 1)[0]
    used = {"sb", "capture_dir"} & set(request.fixturenames)
    if used and group_of(request.node.nodeid) != "tests/reliability":
        pytest.fail(f"{path} uses {sorted(used)}: it feeds the canary sweep, so it must stay "
                    "with the matrix (remove it from tests/support/workers.ON_THEIR_OWN)")


@pytest.fixture
def sb(sandbox, prefect_server, main_schema, canary_sweep, capture_dir, capfd, request,
       monkeypatch):
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
    # A deploy that could not release its lease (the test broke the bucket) leaves it to expire
    # after its TTL, as it should; the next test must not wait for that.
    from tasks.lease import lease_key

    sandbox.client("s3").delete_object(Bucket=sandbox.settings.evidence_bucket,
                                       Key=lease_key(sandbox.settings))
    aws._cached.cache_clear()
    out, err = capfd.readouterr()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    (capture_dir / f"test-{name}.txt").write_text(f"--- stdout\n{out}\n--- stderr\n{err}\n")
