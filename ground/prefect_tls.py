"""One verified TLS context per CA file for every Prefect client of a process.

Each `get_client()` — every flow run's engine, each task's concurrency release, every poll a
caller makes — builds its TLS context anew: `ssl.create_default_context(cafile=…)` loads and
parses the whole CA bundle (certifi's, or PREFECT_API_SSL_CERT_FILE): 20 ms of CPU per
client with it, 0.6 ms without, even when the API is plain http:// and TLS is never used. In
the suite it was 58 s of the four workers' py-spy samples, the largest single leaf
(docs/benchmarks.md §8). An SSLContext is made to be shared by many connections, and Prefect
never changes the verified one after making it; httpcore sets the ALPN protocols on it before
each TLS connect, the same list for every client of a process (PREFECT_API_ENABLE_HTTP2 is one
setting).

Only that call is shared: `create_default_context` with nothing but `cafile` (the verified
path), keyed by the file's path and modification time so a replaced bundle is read again. The
insecure path (PREFECT_API_TLS_INSECURE_SKIP_VERIFY) calls it without arguments and then
changes the context, so it still gets its own. Two Prefect modules make that call: the client
(`prefect.client.orchestration`, every `get_client()`) and the events client's server-version
check (`prefect._internal.version_checking`, once per events worker — 26 ms of each CLI call,
docs/benchmarks.md §2); nothing else is touched.
"""

from __future__ import annotations

import os
import ssl
import threading

_CONTEXTS: dict[tuple[str, float], ssl.SSLContext] = {}
_LOCK = threading.Lock()


def _verified_context(cafile: str) -> ssl.SSLContext:
    try:
        mtime = os.stat(cafile).st_mtime
    except OSError:
        return ssl.create_default_context(cafile=cafile)  # its own error, as before
    key = (cafile, mtime)
    with _LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            ctx = _CONTEXTS[key] = ssl.create_default_context(cafile=cafile)
        return ctx


class _SSL:
    """The `ssl` module as Prefect's client module sees it: itself, but for that one call."""

    def __getattr__(self, name: str):
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(purpose=ssl.Purpose.SERVER_AUTH, *, cafile=None, capath=None,
                               cadata=None) -> ssl.SSLContext:
        if cafile and capath is None and cadata is None and purpose == ssl.Purpose.SERVER_AUTH:
            return _verified_context(os.fspath(cafile))
        return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)


MODULES = ("prefect.client.orchestration", "prefect._internal.version_checking")


def share_api_tls_context() -> None:
    """Install it in the Prefect modules that build the verified context (idempotent)."""
    import importlib

    for name in MODULES:
        module = importlib.import_module(name)
        if not isinstance(module.ssl, _SSL):
            module.ssl = _SSL()


def prime() -> None:
    """Build the verified context now, from the file Prefect's client would read
    (PREFECT_API_SSL_CERT_FILE, which SSL_CERT_FILE also sets, else certifi's bundle): a
    process that forks workers (`papyrus_ops.warm.server`) gives every child the one it read."""
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    _verified_context(os.fspath(PREFECT_API_SSL_CERT_FILE.value() or certifi.where()))
