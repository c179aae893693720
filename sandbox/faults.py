"""A WSGI layer in front of moto: it records every call the sandbox serves and injects faults.

It sits outside moto, so it sees every service the same way: the service from the SigV4
credential scope, the operation from `X-Amz-Target` (JSON and CBOR protocols), `Action=`
(query protocols) or the method and path (S3). Faults are answered in each protocol's own error
format so botocore classifies them exactly as it would classify AWS's.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
# Operations that change nothing: what "no mutating call" means for our tests.
# STS AssumeRole issues credentials (boto3 does it by itself for the flow-run profile, see
# sandbox/iam.py); it changes no resource.
READ_PREFIXES = ("Describe", "List", "Get", "Lookup", "BatchGet", "Head", "Search", "Check",
                 "AssumeRole")
# KMS Sign / Verify (the evidence manifest's signature) compute with a key and change none;
# exact names, since e.g. SES's VerifyEmailIdentity does change something.
READ_OPERATIONS = frozenset({"Sign", "Verify"})

# botocore signing name -> the name we use in rules (the boto3 client name).
_SIGNING_TO_CLIENT = {"monitoring": "cloudwatch", "elasticloadbalancing": "elbv2"}


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    status: int
    at: float

    @property
    def mutating(self) -> bool:
        return not (self.operation.startswith(READ_PREFIXES)
                    or self.operation in READ_OPERATIONS)


@dataclass
class Rule:
    service: str  # boto3 client name, e.g. "ecs"; "*" for all
    operation: str  # e.g. "UpdateService"; "*" for all
    kind: str  # "throttle" | "unavailable" | "lost" | "error"
    remaining: int | None  # None: until cleared
    every: int = 1  # fire on every Nth matching call
    seen: int = 0
    code: str = ""  # kind "error": the AWS error code and HTTP status answered
    status: int = 400


@dataclass
class Faults:
    calls: list[Call] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- rules ------------------------------------------------------------------------------
    def throttle(self, service: str, operation: str = "*", times: int | None = 1,
                 every: int = 1) -> Rule:
        """Answer the next `times` matching calls (every `every`-th one) with throttling."""
        return self._add(Rule(service, operation, "throttle", times, every))

    def unavailable(self, service: str, operation: str = "*", times: int | None = None) -> Rule:
        """Answer matching calls with 503 until cleared (or `times` calls)."""
        return self._add(Rule(service, operation, "unavailable", times))

    def error(self, service: str, operation: str, code: str, status: int = 400,
              times: int | None = None) -> Rule:
        """Answer matching calls with this AWS error (e.g. ExpiredTokenException, 400: what a
        call made with expired temporary credentials gets) until cleared (or `times` calls)."""
        return self._add(Rule(service, operation, "error", times, code=code, status=status))

    def lose_response(self, service: str, operation: str, times: int | None = 1) -> Rule:
        """Serve the next `times` matching calls, then drop the connection before the body: the
        change is made, the caller never hears of it (what a client sees when a network path
        fails after AWS committed a request). The client sees a closed connection."""
        return self._add(Rule(service, operation, "lost", times))

    def _add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def served(self, service: str | None = None, mutating: bool | None = None) -> list[Call]:
        with self.lock:
            calls = list(self.calls)
        return [
            c for c in calls
            if (service is None or c.service == service)
            and (mutating is None or c.mutating == mutating)
        ]

    def _match(self, service: str, operation: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.service not in ("*", service) or rule.operation not in ("*", operation):
                    continue
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                rule.seen += 1
                if rule.seen % rule.every:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    # -- WSGI -------------------------------------------------------------------------------
    def wrap(self, app: Callable) -> Callable:
        def middleware(environ: dict, start_response: Callable) -> Iterable[bytes]:
            service, operation, protocol = _identify(environ)
            rule = self._match(service, operation) if service else None
            kind = rule.kind if rule else None
            status_holder: list[int] = [0]

            def recording_start(status: str, headers: list, exc_info=None):
                status_holder[0] = int(status.split()[0])
                return start_response(status, headers, exc_info)

            if kind == "lost":
                result = _lost(app, environ, recording_start)
            elif kind:
                status, headers, body = _error(kind, protocol, rule)
                recording_start(status, headers)
                result: Iterable[bytes] = [body]
            else:
                result = app(environ, recording_start)
            if service:
                with self.lock:
                    self.calls.append(Call(service, operation, status_holder[0], time.time()))
            return result

        return middleware


class ResponseLost(ConnectionError):
    """Raised by the WSGI layer after the headers went out: the server closes the connection."""


def _lost(app: Callable, environ: dict, start_response: Callable) -> Iterable[bytes]:
    # moto serves the request in full (the change is made); then the connection is shut before a
    # byte of the answer goes out, as when a network path fails after AWS committed a request.
    # The client sees the connection closed without a response (botocore: ConnectionClosedError).
    held: list = []
    for _chunk in app(environ, lambda status, headers, exc_info=None: held.append(status)):
        pass
    start_response(held[0] if held else "200 OK", [])
    return _drop(environ.get("werkzeug.socket"))


def _drop(sock) -> Iterable[bytes]:
    # A generator: runs when the server starts sending, after the middleware recorded the call.
    if sock is None:
        raise ResponseLost("sandbox fault: no socket to drop")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    yield from ()


def _identify(environ: dict) -> tuple[str, str, str]:
    m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not m:
        return "", "", ""
    signing = m.group(2)
    service = _SIGNING_TO_CLIENT.get(signing, signing)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.split(".")[-1], "json"
    path = environ.get("PATH_INFO", "")
    if "/operation/" in path and environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor":
        return service, path.rsplit("/", 1)[-1], "cbor"
    if service == "s3":
        method = environ.get("REQUEST_METHOD", "GET")
        op = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
              "DELETE": "DeleteObject", "POST": "PostObject"}.get(method, method)
        return service, op, "s3"
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [""])[0]
    if not action and environ.get("CONTENT_TYPE", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        # Peek at the form body without consuming it for moto.
        stream = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = stream.read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    return service, action, "ec2" if service == "ec2" else "query"


_REASONS = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _cbor_text(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    head = bytes([0x60 | n]) if n < 24 else bytes([0x78, n]) if n < 256 else bytes([0x79]) + \
        n.to_bytes(2, "big")
    return head + b


def _error(kind: str, protocol: str, rule: Rule | None = None) -> tuple[str, list, bytes]:
    rid = str(uuid.uuid4())
    if kind == "error" and rule is not None:
        code, msg, status = rule.code, f"{rule.code} (sandbox fault)", rule.status
    elif kind == "unavailable":
        code, msg, status = "ServiceUnavailable", "Service is unavailable (sandbox fault)", 503
    else:
        code, msg, status = "ThrottlingException", "Rate exceeded", 400
        if protocol == "ec2":
            code = "RequestLimitExceeded"
        elif protocol == "query":
            code = "Throttling"
        elif protocol == "s3":
            code, msg, status = "SlowDown", "Please reduce your request rate.", 503
    line = f"{status} {_REASONS.get(status, 'Error')}"
    hdrs = [("x-amzn-RequestId", rid)]
    if protocol == "json":
        body = json.dumps({"__type": code, "message": msg}).encode()
        hdrs.append(("Content-Type", "application/x-amz-json-1.1"))
    elif protocol == "cbor":
        body = bytes([0xA2]) + _cbor_text("__type") + _cbor_text(code) + _cbor_text("message") + \
            _cbor_text(msg)
        hdrs += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
    elif protocol == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{msg}</Message></Error>"
                f"</Errors><RequestID>{rid}</RequestID></Response>").encode()
        hdrs.append(("Content-Type", "text/xml"))
    elif protocol == "s3":
        body = (f"<Error><Code>{code}</Code><Message>{msg}</Message>"
                f"<RequestId>{rid}</RequestId></Error>").encode()
        hdrs.append(("Content-Type", "application/xml"))
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
                f"<Message>{msg}</Message></Error><RequestId>{rid}</RequestId>"
                "</ErrorResponse>").encode()
        hdrs.append(("Content-Type", "text/xml"))
    hdrs.append(("Content-Length", str(len(body))))
    return line, hdrs, body
