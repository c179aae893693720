"""The probes' one TLS context per process (`tasks.probes._tls`): an https service is still
verified against httpx's own default trust (SSL_CERT_FILE when set), a certificate nobody
trusts still fails the probe, and a changed SSL_CERT_FILE gets a context of its own."""

from __future__ import annotations

import http.server
import ssl
import threading

import httpx
import pytest
import trustme

from tasks import probes


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_service(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"https://127.0.0.1:{server.server_port}", ca_file
    server.shutdown()
    server.server_close()


def test_an_https_probe_is_verified_with_one_context_per_trust_setting(https_service,
                                                                       monkeypatch):
    url, ca_file = https_service
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        probes._get(f"{url}/healthz")  # certifi's bundle does not hold the test CA
    default = probes._tls(None, None)

    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert probes._get(f"{url}/healthz")["body"] == {"status": "ok"}
    assert probes._get(f"{url}/healthz")["status"] == 200
    trusted = probes._tls(str(ca_file), None)
    assert trusted is not default
    assert probes._tls(str(ca_file), None) is trusted  # made once, not per probe
    assert trusted.verify_mode == ssl.CERT_REQUIRED and trusted.check_hostname
