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


def client_config(retries: bool = True, **overrides) -> Config:
    # botocore's `max_attempts` counts retries after the first call; `total_max_attempts` counts
    # every call, so 1 means "never resend".
    return Config(
        retries={"mode": RETRY_MODE, "max_attempts": MAX_ATTEMPTS} if retries
        else {"mode": RETRY_MODE, "total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=30,
        **overrides,
    )


@lru_cache(maxsize=64)
def _cached(service: str, region: str, endpoint: str | None, retries: bool = True):
    # The endpoint is part of the key so a sandbox restarted on another port gets new clients.
    return boto3.session.Session().client(service, region_name=region,
                                          config=client_config(retries))


def client(service: str, region: str, retries: bool = True):
    """A (cached, thread-safe) boto3 client for `service` in `region`.

    `retries=False` is for calls that are not idempotent (UpdateService, RegisterTaskDefinition):
    botocore would resend one whose response was lost and so make the change twice. Their task
    retries instead, after checking whether the first call took effect."""
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL"), retries)
