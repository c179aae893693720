"""Local fixtures for tests/schema."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _postgres_can_traverse_tmp_root(tmp_root):
    # As root, the sandbox runs initdb as `postgres`, which must traverse the session's tmp
    # root (mkdtemp makes it 0700). Harmless when the sandbox is already up or fixed upstream.
    os.chmod(tmp_root, 0o755)  # noqa: S103 - a test-only temporary folder
    yield
