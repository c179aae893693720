"""Monitoring tests run on the session sandbox (moto behind the recording/fault layer).

The sandbox is shared with the other suites, so each test module starts from an account without
any monitoring resource (and leaves none behind): "the first plan creates everything" holds
whatever ran before.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests/` is on sys.path (rootdir conftest, no __init__.py) and `tests/artifacts/` would then be
# imported as a namespace package shadowing the real `artifacts` (the editable install's finder
# comes after the path finder). Put the repository first.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("artifacts"), "__file__", "") is None:
    del sys.modules["artifacts"]

from tests.sandbox_cleanup import forget_monitoring  # noqa: E402 - after the path fix above


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
