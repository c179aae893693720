"""/runtime through the Flask test client: the running app's URL map, and the image digest and
task ARN from a stand-in ECS task metadata endpoint v4 (a real HTTP server on loopback)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from papyrus import create_app
from support.canaries import CANARY, TOKEN, auth

DIGEST = "sha256:" + "ab" * 32
TASK_ARN = "arn:aws:ecs:us-west-2:123456789012:task/papyrus-ecs-prd/0123456789abcdef"
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/papyrus@" + DIGEST


@pytest.fixture
def metadata():
    """`ECS_CONTAINER_METADATA_URI_V4` as Fargate answers it (ECS Developer Guide, "task
    metadata v4 examples for tasks on Fargate"); `requests` records the paths asked for."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            if self.path == "/v4/abc":
                doc = {"DockerId": "abc-1", "Name": "papyrus", "Image": IMAGE, "ImageID": DIGEST}
            elif self.path == "/v4/abc/task":
                doc = {"TaskARN": TASK_ARN, "Family": "papyrus-task", "Revision": "7",
                       "Cluster": "papyrus-ecs-prd"}
            else:
                self.send_error(404)
                return
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v4/abc", requests
    server.shutdown()
    server.server_close()


def _app(**config):
    return create_app({"TESTING": True, "DBCHECK_TOKEN": TOKEN,
                       "DB_SECRET": {"password": CANARY}} | config)


def test_reports_url_map_digest_and_task_from_the_metadata_endpoint(metadata):
    uri, requests = metadata
    r = _app(METADATA_URI=uri, VERSION="1.2.3").test_client().get("/runtime", headers=auth())
    body = r.get_json()
    assert r.status_code == 200, body
    assert body["url_map"] == ["/", "/dbcheck", "/healthz", "/runtime"]
    assert body["image_digest"] == DIGEST and body["image"] == IMAGE
    assert body["task_arn"] == TASK_ARN and body["task_definition"] == "papyrus-task:7"
    assert body["version"] == "1.2.3" and body["metadata_error"] is None
    assert requests == ["/v4/abc", "/v4/abc/task"]
    assert r.headers["Cache-Control"] == "no-store"
    text = r.get_data(as_text=True)
    assert CANARY not in text and TOKEN not in text


def test_reads_the_uri_fargate_injects(metadata, monkeypatch):
    uri, _ = metadata
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", uri)
    body = _app().test_client().get("/runtime", headers=auth()).get_json()
    assert body["task_arn"] == TASK_ARN


def test_url_map_is_the_running_apps_own():
    app = _app()

    @app.get("/extra")
    def extra():
        return "x"

    body = app.test_client().get("/runtime", headers=auth()).get_json()
    assert "/extra" in body["url_map"] and body["url_map"] == sorted(body["url_map"])


def test_outside_ecs_says_so_and_reports_no_digest():
    body = _app().test_client().get("/runtime", headers=auth()).get_json()
    assert body["image_digest"] is None and body["task_arn"] is None
    assert "not set" in body["metadata_error"]


def test_unreachable_endpoint_is_named_by_class_only(metadata):
    uri, _ = metadata
    bad = uri.replace("/v4/abc", "/v4/nope")
    body = _app(METADATA_URI=bad).test_client().get("/runtime", headers=auth()).get_json()
    assert body["image_digest"] is None
    assert body["metadata_error"] == "task metadata endpoint unavailable (HTTPError)"
    assert "127.0.0.1" not in json.dumps(body)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}], ids=["none", "wrong", "scheme"])
def test_needs_the_probe_token(headers, metadata):
    uri, requests = metadata
    r = _app(METADATA_URI=uri).test_client().get("/runtime", headers=headers)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert requests == []  # nothing asked of the endpoint for a refused caller


def test_no_token_configured_means_off():
    r = _app(DBCHECK_TOKEN=None).test_client().get("/runtime", headers=auth())
    assert r.status_code == 403
    assert r.get_json() == {"error": "runtime disabled: no token configured"}
