"""boto3 clients, all through botocore's retry configuration.

No sandbox branch here: boto3 itself honours the standard `AWS_ENDPOINT_URL` (and the
per-service `AWS_ENDPOINT_URL_<SERVICE>`) variables, which is how the sandbox is reached.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

# Adaptive mode adds client-side rate limiting on throttling on top of standard retries.
RETRY_MODE = os.environ.get("PAPYRUS_AWS_RETRY_MODE", "adaptive")
MAX_ATTEMPTS = int(os.environ.get("PAPYRUS_AWS_MAX_ATTEMPTS", "8"))


# Calls that are not idempotent: resending one whose outcome is unknown (the connection closed
# before the answer, or a 5xx after AWS may have acted) can make the change twice — a second ECS
# deployment, a duplicate task definition revision. botocore resends them like any other call;
# `_never_resend_unknown_outcome` stops that, while a throttle (AWS refused the call, nothing
# happened) is still retried. The task that makes the call retries instead, after checking
# what the first call did (tasks/rollout.update_service, tasks/taskdef.register_task_definition).
NOT_IDEMPOTENT = {
    "ecs": ("UpdateService", "RegisterTaskDefinition", "RunTask", "CreateService",
            "ContinueServiceDeployment"),
}


def _never_resend_unknown_outcome(response=None, caught_exception=None, **_kwargs):
    if caught_exception is not None:
        return False  # no answer at all: the call may have been served
    if response is not None and response[0].status_code >= 500:
        return False
    return None  # botocore's own retry handler decides (throttling is retried)


def client_config(**overrides) -> Config:
    return Config(
        retries={"mode": RETRY_MODE, "max_attempts": MAX_ATTEMPTS},
        connect_timeout=5,
        read_timeout=30,
        **overrides,
    )


def guard_not_idempotent(c) -> None:
    """Register the no-resend rule on client `c` for its non-idempotent operations."""
    service_id = c.meta.service_model.service_id.hyphenize()
    for op in NOT_IDEMPOTENT.get(c.meta.service_model.service_name, ()):
        c.meta.events.register_first(f"needs-retry.{service_id}.{op}",
                                     _never_resend_unknown_outcome,
                                     unique_id=f"papyrus-never-resend-{op}")


def _as_sent(value):
    return value


_LOADERS: dict[str | None, botocore.loaders.Loader] = {}
_LOADERS_LOCK = threading.Lock()
_CREATE_LOADER = botocore.loaders.create_loader


def _shared_loader(data_path: str | None = None) -> botocore.loaders.Loader:
    """This process's one loader for `data_path` (botocore's `create_loader`, made once)."""
    with _LOADERS_LOCK:
        loader = _LOADERS.get(data_path)
        if loader is None:
            loader = _LOADERS[data_path] = _CREATE_LOADER(data_path)
        return loader


def botocore_session(session_vars: dict | None = None) -> botocore.session.Session:
    """A new botocore session (its own profile, credentials and config, read now) that shares
    this process's data loader with every other one.

    The loader reads botocore's JSON files — endpoints.json and each service's model, paginators
    and waiters — and caches them per instance, so every new session read and decoded them all
    again: about 40 ms for the endpoints alone, and more than the request itself for a client
    made once per call (docs/benchmarks.md §6, §8). The files never change while a process runs;
    what a session resolves from its environment (profile, credentials, region) stays its own."""
    core = botocore.session.get_session(session_vars)
    core.register_component("data_loader", _shared_loader(core.get_config_variable("data_path")))
    return core


def share_data_loaders() -> None:
    """Every botocore session this process makes from now on — `boto3.Session()`, boto3's
    default session, the ones moto builds for itself — shares the loader of its data path, as
    `botocore_session` does for ours. For processes that make sessions they do not own (the
    sandbox: moto, its seeding, the tests' arranging clients): loading endpoints.json and the
    service models again per session was 35 s of the suite's four workers' samples in py-spy
    (docs/benchmarks.md §8). Idempotent."""
    botocore.session.create_loader = _shared_loader


# Assumed-role credentials, shared by every client of a process that would assume the same
# role from the same source: {context: botocore's assume-role cache}.
_ASSUMED: dict[tuple, dict] = {}


def _file_digest(path: str | None) -> str:
    try:
        with open(os.path.expanduser(path or ""), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return ""


def share_assumed_roles(core: botocore.session.Session) -> None:
    """Let `core` reuse the role credentials another session of this process assumed.

    Every client has a session of its own, and botocore's assume-role provider caches per
    session, so each client of a profile with `role_arn` called STS AssumeRole again — five for
    one archive run, each building an STS client first (docs/benchmarks.md §2). awscli shares
    them through `~/.aws/cli/cache`; this is the same cache (botocore's own expiry checks
    included), in memory only, so no credential reaches the disk. botocore keys its entries by
    the AssumeRole arguments alone, so the cache is kept per source: endpoint, profile, the
    config and credentials files' contents, and a key id from the environment."""
    profile = core.get_config_variable("profile") or "default"
    context = (os.environ.get("AWS_ENDPOINT_URL"), profile,
               _file_digest(core.get_config_variable("config_file")),
               _file_digest(core.get_config_variable("credentials_file")),
               os.environ.get("AWS_ACCESS_KEY_ID"))
    provider = core.get_component("credential_provider").get_provider("assume-role")
    if provider is not None:
        provider.cache = _ASSUMED.setdefault(context, {})


@lru_cache(maxsize=64)
def _cached(service: str, region: str, endpoint: str | None, raw_timestamps: bool = False):
    # The endpoint is part of the key so a sandbox restarted on another port gets new clients.
    core = botocore_session()
    share_assumed_roles(core)
    if raw_timestamps:
        # What awscli does: the parser factory belongs to the session, so only this client's
        # timestamps stay as sent (JSON protocols: epoch seconds) instead of becoming datetimes
        # in the local zone (dateutil's tzlocal, pure Python, per value).
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_as_sent)
    c = boto3.session.Session(botocore_session=core).client(
        service, region_name=region, config=client_config())
    guard_not_idempotent(c)
    return c


def client(service: str, region: str, *, raw_timestamps: bool = False):
    """A (cached, thread-safe) boto3 client for `service` in `region`.

    raw_timestamps: timestamps in responses are left as the service sent them (epoch seconds
    for CloudTrail's JSON protocol) — for a caller that converts them itself and handles
    many (the CloudTrail archive: `tasks.cloudtrail.window.epoch` / `fmt` take both forms).
    """
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL"), raw_timestamps)
