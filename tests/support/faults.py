"""Fault injection where the flow is, not by the clock: wrappers around the callable a flow calls
next (`After`, `Before`), a watcher thread that acts once a condition holds, and restarting the
session sandbox's AWS endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class After:
    """Wrap a callable (a Prefect task or a function a flow calls by module attribute): call it,
    then run `action(result)` once (the first time `when(result)` holds)."""

    def __init__(self, fn: Callable, action: Callable[[Any], None],
                 when: Callable[[Any], bool] = lambda _r: True) -> None:
        self.fn, self.action, self.when = fn, action, when
        self.fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fn(*args, **kwargs)
        if not self.fired and self.when(result):
            self.fired = True
            self.action(result)
        return result


class Before:
    """Wrap a callable: run `action()` once before the first call."""

    def __init__(self, fn: Callable, action: Callable[[], None]) -> None:
        self.fn, self.action = fn, action
        self.fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired:
            self.fired = True
            self.action()
        return self.fn(*args, **kwargs)


class Watcher(threading.Thread):
    """Poll `condition()` in the background; run `action()` once it holds."""

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None],
                 timeout: float = 240, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.condition, self.action = condition, action
        self.timeout, self.interval = timeout, interval
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and not self._stop_event.is_set():
            try:
                if self.condition():
                    self.action()
                    self.fired.set()
                    return
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.error = e
                return
            time.sleep(self.interval)

    def cancel(self) -> None:
        self._stop_event.set()


def restart_endpoint(sb, down_seconds: float) -> tuple[float, float]:
    """The sandbox's AWS endpoint goes away for `down_seconds` and comes back on the same port,
    like a restarted server: the listening socket is closed (new connections are refused) and
    requests on connections that were already open get 503 until it is back. moto's backends
    live in this process, so the state survives, as it would behind a real endpoint.

    Returns (down, up): from `down` every request is refused or answered 503, until `up`."""
    from sandbox.server import _FaultyMotoServer

    _host, port = sb._moto.get_host_and_port()
    rule = sb.faults.unavailable("*", "*", times=None)
    old = sb._moto
    try:
        old.stop()
        old._server.server_close()
        down = time.time()
        time.sleep(down_seconds)
    finally:
        up = time.time()
        new = _FaultyMotoServer(sb.faults, port, sb.iam)
        new.start()
        sb._moto = new
        with sb.faults.lock:
            sb.faults.rules[:] = [r for r in sb.faults.rules if r is not rule]
    return down, up
