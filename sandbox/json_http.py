"""The base of the sandbox's small loopback JSON endpoints (the task metadata endpoint, the
standalone tasks' credentials endpoint): a quiet handler and one way to answer."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    def reply(self, doc: Any) -> None:
        """200 with `doc` as JSON, or 404 when there is none."""
        if doc is None:
            self.send_error(404)
            return
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # no request lines on stderr
        pass
