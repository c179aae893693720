"""Preflight/repair tests: the session sandbox, drifts injected with boto3 and restored.

`drift` injects drift through plain boto3 (like an operator's console click) and puts everything
back after the test, so other test modules see a clean sandbox.
"""

from __future__ import annotations

import pytest

from tests.support.drift import Drift


@pytest.fixture(autouse=True)
def _no_developer_sandbox(monkeypatch, tmp_path):
    # `prepare()` loads <PAPYRUS_SANDBOX_DIR>/env: never a developer's running sandbox here.
    monkeypatch.setenv("PAPYRUS_SANDBOX_DIR", str(tmp_path / "no-sandbox"))


@pytest.fixture(scope="session")
def baseline(sandbox):
    """The sandbox as preflight expects it. moto's create_service drops enableExecuteCommand
    (docs/sandbox.md), so the seeded service may come up with ECS Exec off: switch it on here, in
    test setup (production code does not work around it), and remember that we had to."""
    ecs = sandbox.client("ecs")
    s = sandbox.settings
    svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
    seeded_exec = bool(svc.get("enableExecuteCommand"))
    if not seeded_exec:
        ecs.update_service(cluster=s.cluster, service=s.service, enableExecuteCommand=True)
    return {"seeded_exec": seeded_exec}


@pytest.fixture
def drift(sandbox, baseline, tmp_path):
    d = Drift(sandbox, tmp_path)
    yield d
    d.restore()


@pytest.fixture
def realism(sandbox, baseline):
    """Realism scenarios (tests.support.drift.Realism), undone after the test."""
    from tests.support.drift import Realism

    r = Realism(sandbox)
    yield r
    r.restore()
