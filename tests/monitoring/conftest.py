"""Monitoring tests run on the session sandbox (moto behind the recording/fault layer).

The sandbox is shared with the other suites, so each test module starts from an account without
any monitoring resource (and leaves none behind): "the first plan creates everything" holds
whatever ran before.
"""

from __future__ import annotations

import pytest

from tests.support.cleanup import forget_monitoring


@pytest.fixture(scope="module")
def mon(sandbox, monkeypatch_module):
    """The session sandbox with no monitoring resource in it, and no ALB configured."""
    monkeypatch_module.delenv("PAPYRUS_ALB_NAME", raising=False)
    sandbox.faults.clear()
    forget_monitoring(sandbox)
    yield sandbox
    sandbox.faults.clear()
    forget_monitoring(sandbox)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def clients(mon):
    from tasks.monitoring.clients import Clients

    return Clients(**{name: mon.client(name) for name in Clients.__dataclass_fields__})
