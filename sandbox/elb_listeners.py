"""ALB listeners that really listen: each listener of an application load balancer is an HTTP
server on 127.0.0.1:<its Port> that routes every request as the ALB would.

`ElbListeners.install()` wraps moto's ELBv2 CreateListener, ModifyListener, DeleteListener and
DeleteLoadBalancer (one account and region). The routing itself is read from moto's listener
and rules at each request, so CreateRule / ModifyRule / DeleteRule / SetRulePriorities and a
ModifyListener's new default actions take effect for the next request.

- Rules are evaluated in priority order, the default rule last; conditions `path-pattern` and
  `host-header` (`Values` or `PathPatternConfig` / `HostHeaderConfig`, `*` and `?` wildcards,
  host case-insensitive). A rule matches when every condition does (one value of each).
- `forward` with `TargetGroupArn`, or `ForwardConfig.TargetGroups` with weights: a group is
  picked in proportion to its weight (weight 0 never); then round-robin over its `healthy`
  targets (sandbox.elb_targets). `fixed-response` is answered as given. Other actions
  (redirect, authenticate-*) are not modelled: 503.
- No healthy target: 503 "503 Service Temporarily Unavailable"; a target that refuses the
  connection (or resets it): 502 "502 Bad Gateway"; no answer within the idle timeout: 504.
- The request goes on with its method, path, query, body and headers (Host kept) plus
  X-Forwarded-For (appended), X-Forwarded-Proto and X-Forwarded-Port, as the ALB adds them.
- HTTPS listeners are served as plain HTTP (the sandbox has no certificates): documented as a
  deviation in docs/sandbox.md.
- A port that another listener of the same load balancer has, or that 127.0.0.1 cannot bind
  (another sandbox listener of any load balancer, or any other process), makes CreateListener
  / ModifyListener fail with `DuplicateListener` ("A listener with the specified port already
  exists."), what AWS answers for a duplicate port; nothing is created then.

AWS: Application Load Balancers guide, "Listeners for your Application Load Balancers"
(listener rules, priority, default rule), "Listener rule conditions" (path-pattern,
host-header), "Forward actions" (weighted target groups), "HTTP headers and Application Load
Balancers" (X-Forwarded-*), "Troubleshoot your Application Load Balancers" (HTTP 502, 503, 504);
Elastic Load Balancing API Reference, CreateListener (DuplicateListener).
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import itertools
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from moto.elbv2.exceptions import ELBClientError
from moto.elbv2.models import ELBv2Backend, elbv2_backends

from .patches import Patches

_INSTALLED: dict[tuple[str, str], ElbListeners] = {}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade"}
PAGES = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable",
         504: "504 Gateway Time-out"}
TARGET_TIMEOUT = 60.0  # the ALB's default idle timeout (idle_timeout.timeout_seconds)


class DuplicateListener(ELBClientError):
    def __init__(self, detail: str = "") -> None:
        super().__init__("DuplicateListener",
                         "A listener with the specified port already exists." + detail)


def _page(status: int) -> bytes:
    # The ALB's own error pages are small HTML documents.
    title = PAGES.get(status, str(status))
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n").encode()


def _values(cond: dict, config_key: str) -> list[str]:
    return list(cond.get("Values") or (cond.get(config_key) or {}).get("Values") or [])


def matches(conditions: list[dict], host: str, path: str) -> bool:
    """Every condition holds (each with one of its values); an unknown field never does."""
    for cond in conditions or []:
        field = cond.get("Field")
        if field == "path-pattern":
            ok = any(fnmatch.fnmatchcase(path, v) for v in _values(cond, "PathPatternConfig"))
        elif field == "host-header":
            name = host.rsplit(":", 1)[0].lower() if host else ""
            ok = any(fnmatch.fnmatchcase(name, v.lower())
                     for v in _values(cond, "HostHeaderConfig"))
        else:
            ok = False
        if not ok:
            return False
    return True


def ordered_rules(listener: Any) -> list[Any]:
    """Non-default rules by priority (lowest first), then the default rule."""
    rules = list(listener.rules.values())
    others = sorted((r for r in rules if not r.is_default), key=lambda r: int(r.priority))
    return [*others, *(r for r in rules if r.is_default)]


def forward_groups(action: dict) -> list[tuple[str, int]]:
    """(target group ARN, weight) of a forward action."""
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
    if groups:
        return [(g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups]
    if action.get("TargetGroupArn"):
        return [(action["TargetGroupArn"], 1)]
    return []


class ElbListeners:
    """One account and region's listener servers."""

    def __init__(self, region: str, account_id: str, targets: Any) -> None:
        self.region = region
        self.account_id = account_id
        self.targets = targets  # sandbox.elb_targets.ElbTargets: healthy_targets(arn)
        self.lock = threading.RLock()
        self._servers: dict[str, tuple[int, ThreadingHTTPServer, threading.Thread]] = {}
        self._rr: dict[str, itertools.count] = {}

    def install(self) -> ElbListeners:
        key = (self.account_id, self.region)
        if key in _INSTALLED and _INSTALLED[key] is not self:
            raise RuntimeError(f"ELB listeners are already installed for {key}")
        if not _INSTALLED:
            _PATCHES.install()
        _INSTALLED[key] = self
        return self

    def uninstall(self) -> None:
        with self.lock:
            for arn in list(self._servers):
                self.close(arn)
        key = (self.account_id, self.region)
        if _INSTALLED.get(key) is self:
            del _INSTALLED[key]
        if not _INSTALLED:
            _PATCHES.uninstall()

    def backend(self) -> Any:
        return elbv2_backends[self.account_id][self.region]

    def ports(self) -> dict[str, int]:
        with self.lock:
            return {arn: port for arn, (port, _, _) in self._servers.items()}

    # -- servers ------------------------------------------------------------------------------
    def bind(self, port: int) -> ThreadingHTTPServer:
        """Bind 127.0.0.1:port now (so a taken port fails the API call, not a later request)."""
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self), False)
            server.daemon_threads = True
            server.server_bind()
            server.server_activate()
        except OSError as exc:
            with contextlib.suppress(Exception):
                server.server_close()
            raise DuplicateListener(f" (sandbox: 127.0.0.1:{port} cannot be bound: "
                                    f"{exc.strerror or exc})") from None
        return server

    def serve(self, arn: str, port: int, server: ThreadingHTTPServer) -> None:
        server.listener_arn = arn
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name=f"elb-listener-{port}", daemon=True)
        thread.start()
        with self.lock:
            self._servers[arn] = (port, server, thread)

    def close(self, arn: str) -> None:
        with self.lock:
            entry = self._servers.pop(arn, None)
            self._rr.pop(arn, None)
        if entry is not None:
            _, server, thread = entry
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # -- routing ------------------------------------------------------------------------------
    def listener(self, arn: str) -> Any:
        for lb in list(self.backend().load_balancers.values()):
            found = lb.listeners.get(arn)
            if found is not None:
                return found
        return None

    def route(self, arn: str, host: str, path: str) -> tuple[str, Any]:
        """("forward", (host, port)) | ("fixed", action) | ("error", status)."""
        listener = self.listener(arn)
        if listener is None:
            return "error", 503
        path_only = path.split("?", 1)[0]
        rule = next((r for r in ordered_rules(listener)
                     if r.is_default or matches(r.conditions, host, path_only)), None)
        actions = sorted((a.data for a in (rule.actions if rule else [])),
                         key=lambda a: int(a.get("Order", 0) or 0))
        action = next((a for a in actions if a.get("Type") in ("forward", "fixed-response")),
                      None)
        if action is None:
            return "error", 503
        if action["Type"] == "fixed-response":
            return "fixed", action.get("FixedResponseConfig") or {}
        groups = [(g, w) for g, w in forward_groups(action) if w > 0]
        if not groups:
            return "error", 503
        tg = random.choices([g for g, _ in groups], weights=[w for _, w in groups])[0]
        healthy = sorted(self.targets.healthy_targets(tg))
        if not healthy:
            return "error", 503
        with self.lock:
            counter = self._rr.setdefault(f"{arn} {tg}", itertools.count())
            n = next(counter)
        return "forward", healthy[n % len(healthy)]


def _handler_for(listeners: ElbListeners) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            return  # no request lines on the sandbox's stderr

        def _close_after(self) -> None:
            # One request per connection: a kept-alive connection would outlive a
            # DeleteListener (the server stops accepting, not serving open connections).
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()

        def _reply(self, status: int, body: bytes, ctype: str = "text/html") -> None:
            self.send_response(status)
            self.send_header("Server", "awselb/2.0")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self._close_after()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            kind, what = listeners.route(self.server.listener_arn,
                                         self.headers.get("Host", ""), self.path)
            if kind == "error":
                self._reply(what, _page(what))
                return
            if kind == "fixed":
                self._reply(int(what.get("StatusCode", 200)),
                            str(what.get("MessageBody", "")).encode(),
                            what.get("ContentType", "text/plain"))
                return
            host, port = what
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
            client = self.client_address[0]
            xff = self.headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{xff}, {client}" if xff else client
            headers["X-Forwarded-Proto"] = "http"
            headers["X-Forwarded-Port"] = str(self.server.server_address[1])
            if body is not None:
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(host, port, timeout=TARGET_TIMEOUT)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:
                self._reply(504, _page(504))
                return
            except (OSError, http.client.HTTPException):
                self._reply(502, _page(502))  # refused, reset, or not HTTP
                return
            finally:
                conn.close()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self._close_after()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy

    return Handler


# -- moto patches -------------------------------------------------------------------------------
def _of(backend: Any) -> ElbListeners | None:
    return _INSTALLED.get((backend.account_id, backend.region_name))


def _application(backend: Any, lb_arn: str) -> bool:
    lb = backend.load_balancers.get(lb_arn)
    return lb is not None and (getattr(lb, "type", "application") or "application") == "application"


def _create_listener(self, load_balancer_arn, protocol, port, *args, **kwargs):
    original = _PATCHES.original(ELBv2Backend, "create_listener")
    mine = _of(self)
    if mine is None or not _application(self, load_balancer_arn) or port is None:
        return original(self, load_balancer_arn, protocol, port, *args, **kwargs)
    lb = self.load_balancers[load_balancer_arn]
    # moto keys a balancer's listeners by ARN, so its own duplicate-port check never fires.
    if any(int(li.port) == int(port) for li in lb.listeners.values()):
        raise DuplicateListener()
    server = mine.bind(int(port))
    try:
        listener = original(self, load_balancer_arn, protocol, port, *args, **kwargs)
    except Exception:
        server.server_close()
        raise
    mine.serve(listener.arn, int(port), server)
    return listener


def _modify_listener(self, arn, port=None, *args, **kwargs):
    original = _PATCHES.original(ELBv2Backend, "modify_listener")
    mine = _of(self)
    if mine is None or port is None or mine.ports().get(arn) in (None, int(port)):
        return original(self, arn, port, *args, **kwargs)
    listener = mine.listener(arn)
    if listener is not None and any(int(li.port) == int(port) and li.arn != arn for li in
                                    self.load_balancers[listener.load_balancer_arn]
                                    .listeners.values()):
        raise DuplicateListener()
    server = mine.bind(int(port))
    try:
        result = original(self, arn, port, *args, **kwargs)
    except Exception:
        server.server_close()
        raise
    mine.close(arn)
    mine.serve(arn, int(port), server)
    return result


def _delete_listener(self, listener_arn):
    listener = _PATCHES.original(ELBv2Backend, "delete_listener")(self, listener_arn)
    mine = _of(self)
    if mine is not None:
        mine.close(listener_arn)
    return listener


def _delete_load_balancer(self, arn):
    lb = self.load_balancers.get(arn)
    arns = list(lb.listeners) if lb is not None else []
    _PATCHES.original(ELBv2Backend, "delete_load_balancer")(self, arn)
    mine = _of(self)
    if mine is not None:
        for listener_arn in arns:  # the balancer's listeners go with it
            mine.close(listener_arn)


_PATCHES = Patches(
    (ELBv2Backend, "create_listener", _create_listener),
    (ELBv2Backend, "modify_listener", _modify_listener),
    (ELBv2Backend, "delete_listener", _delete_listener),
    (ELBv2Backend, "delete_load_balancer", _delete_load_balancer),
)


def installed(account_id: str, region: str) -> ElbListeners | None:
    return _INSTALLED.get((account_id, region))
