"""boto3 clients, all through botocore's retry configuration.

No sandbox branch here: boto3 itself honours the standard `AWS_ENDPOINT_URL` (and the
per-service `AWS_ENDPOINT_URL_<SERVICE>`) variables, which is how the sandbox is reached.
"""

from __future__ import annotations

import os
from functools import lru_cache

import boto3
from botocore.config import Config

# Adaptive mode adds client-side rate limiting on throttling on top of standard retries.
RETRY_MODE = os.environ.get("PAPYRUS_AWS_RETRY_MODE", "adaptive")
MAX_ATTEMPTS = int(os.environ.get("PAPYRUS_AWS_MAX_ATTEMPTS", "8"))


def client_config(**overrides) -> Config:
    return Config(
        retries={"mode": RETRY_MODE, "max_attempts": MAX_ATTEMPTS},
        connect_timeout=5,
        read_timeout=30,
        **overrides,
    )


@lru_cache(maxsize=64)
def _cached(service: str, region: str, endpoint: str | None):
    # The endpoint is part of the key so a sandbox restarted on another port gets new clients.
    return boto3.session.Session().client(service, region_name=region, config=client_config())


def client(service: str, region: str):
    """A (cached, thread-safe) boto3 client for `service` in `region`."""
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL"))
