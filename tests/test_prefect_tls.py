"""`ground.prefect_tls`: Prefect's clients share one verified TLS context per CA file; the
insecure setting still gets a context of its own; a replaced bundle is read again; the
events client's version check shares it too."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import certifi

SCRIPT = r"""
import json, os, sys, time
import flows  # installs it, as in every process that runs a flow
from prefect.client.orchestration import get_client
from prefect.settings import (PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
                              PREFECT_API_URL, temporary_settings)

def ctx(sync):
    c = get_client(sync_client=sync)
    return c._client._transport._pool._ssl_context

bundle = sys.argv[1]
out = {}
with temporary_settings({PREFECT_API_URL: "https://127.0.0.1:1/api",
                         PREFECT_API_SSL_CERT_FILE: bundle}):
    a, b, c = ctx(True), ctx(True), ctx(False)
    out["shared"] = a is b is c
    out["verifies"] = a.verify_mode == __import__("ssl").CERT_REQUIRED and a.check_hostname
    out["certs"] = len(a.get_ca_certs())
    # The events client's server-version check makes the same call (its module's `ssl`).
    from prefect._internal import version_checking
    out["version_check"] = version_checking.ssl.create_default_context(cafile=bundle) is a
    os.utime(bundle, (time.time() + 5, time.time() + 5))
    out["reread"] = ctx(True) is not a
with temporary_settings({PREFECT_API_URL: "https://127.0.0.1:1/api",
                         PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
    d, e = ctx(True), ctx(True)
    out["insecure_own"] = d is not e and d is not a
    out["insecure"] = d.verify_mode == __import__("ssl").CERT_NONE
print(json.dumps(out))
"""


def test_clients_share_the_verified_context_and_only_that(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    # A process of its own: the setting is process-wide, and the suite's process has it already.
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(bundle)], capture_output=True,
                         text=True, timeout=120, env=os.environ | {"PREFECT_API_URL": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"shared": True, "verifies": True,
                   "certs": len(ssl.create_default_context(cafile=certifi.where())
                                .get_ca_certs()),
                   "reread": True, "insecure_own": True, "insecure": True,
                   "version_check": True}, out


PRIME = r"""
import flows
from ground import prefect_tls
from prefect.client.orchestration import get_client
prefect_tls.prime()
primed = list(prefect_tls._CONTEXTS.values())
client = get_client(sync_client=True)
print(len(primed) == 1 and client._client._transport._pool._ssl_context is primed[0])
"""


def test_prime_builds_the_context_the_client_then_uses(tmp_path):
    """What the warm interpreter does before it forks: the file Prefect's client reads
    (certifi's bundle, or SSL_CERT_FILE, which sets PREFECT_API_SSL_CERT_FILE) is the one
    primed."""
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    for extra in ({}, {"SSL_CERT_FILE": str(bundle)}):
        env = {k: v for k, v in os.environ.items() if k not in (
            "SSL_CERT_FILE", "PREFECT_API_SSL_CERT_FILE")}
        run = subprocess.run([sys.executable, "-c", PRIME], capture_output=True, text=True,
                             timeout=120,
                             env=env | extra | {"PREFECT_API_URL": "https://127.0.0.1:1/api"})
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.strip().splitlines()[-1] == "True", (extra, run.stdout)
