"""Pacing LookupEvents: a monotonic-clock rate limiter shared by every call in the process.

LookupEvents allows 2 requests/s per account and region; `shared_limiter(region)` is the one
limiter of a region (and endpoint) in this process. botocore's adaptive retries sit under it
and back off further when AWS throttles anyway.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

DEFAULT_MAX_RPS = 2.0  # LookupEvents: 2 requests per second per account and region


def env_max_rps() -> float:
    """The client-side rate: PAPYRUS_CLOUDTRAIL_MAX_RPS, default 2 requests/s."""
    raw = os.environ.get("PAPYRUS_CLOUDTRAIL_MAX_RPS", "")
    try:
        value = float(raw) if raw else DEFAULT_MAX_RPS
    except ValueError:
        value = DEFAULT_MAX_RPS
    return value if value > 0 else DEFAULT_MAX_RPS


class RateLimiter:
    """At most `rate` acquisitions per second, evenly spaced (no burst), thread-safe.

    Each caller reserves the next free slot under the lock and sleeps outside it, so
    concurrent callers queue up fairly and the spacing holds across threads.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self.set_rate(rate)
        self.acquired = 0
        self.waited = 0.0

    def set_rate(self, rate: float) -> None:
        if not rate or rate <= 0 or math.isnan(rate):
            raise ValueError(f"rate must be positive, got {rate!r}")
        with self._lock:
            self.rate = float(rate)
            self.interval = 1.0 / self.rate

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
            self.acquired += 1
        wait = at - now
        if wait > 0:
            self._sleep(wait)
            self.waited += wait
        return max(0.0, wait)


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(region: str, rate: float | None = None) -> RateLimiter:
    """The process-wide limiter of `region` (and endpoint), created or re-rated on demand."""
    rate = rate or env_max_rps()
    key = (region, os.environ.get("AWS_ENDPOINT_URL", ""))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(rate)
        elif limiter.rate != rate:
            limiter.set_rate(rate)
        return limiter
