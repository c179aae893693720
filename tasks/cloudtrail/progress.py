"""Progress of an archive run: a log line and the Prefect progress artifact every N pages,
and how much of the window is archived."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from ground.logs import run_logger
from tasks.cloudtrail import LOGGER
from tasks.cloudtrail.window import epoch


def _logger():
    return run_logger(LOGGER)


PROGRESS_KEY = "cloudtrail-archive-progress"
_LAST_REPORT: dict[tuple[str, float], float] = {}  # (key, run started) -> clock of the last


class Progress:
    """A log line and the Prefect progress artifact every `every` pages, at most one per
    `min_seconds`: at the API's 2 requests/s 20 pages are 10 s, but against the sandbox (or a
    resumed run skipping ahead) they can be a tenth of a second, and each report is a log line
    and an artifact update on the API — a report a second is what a person can read. The last
    report's time is the run's (each slice's task makes its own Progress; `started` is the
    run's start, the same for all of them)."""

    def __init__(self, cp: Mapping[str, Any], every: int, *, started: float, base_events: int,
                 base_fraction: float, key: str = PROGRESS_KEY, min_seconds: float = 1.0,
                 clock=time.monotonic):
        self.every = max(1, int(every))
        self.min_seconds = min_seconds
        self.clock = clock
        self.since = epoch(cp["window"]["since"])
        self.until = epoch(cp["window"]["until"])
        self.span = max(1.0, self.until - self.since)
        self.started = started
        self.base_events = base_events
        self.base_fraction = base_fraction
        self.key = key
        self.pages = 0
        self._run = (key, started)

    @property
    def reported(self) -> float | None:
        return _LAST_REPORT.get(self._run)

    @reported.setter
    def reported(self, when: float) -> None:
        if self._run not in _LAST_REPORT:
            _LAST_REPORT.clear()  # one run at a time per process: only its entry is kept
        _LAST_REPORT[self._run] = when

    def fraction(self, done_seconds: float) -> float:
        return max(0.0, min(1.0, done_seconds / self.span))

    def update(self, pages: int, events: int, papyrus: int, done_seconds: float, label: str,
               force: bool = False) -> dict[str, Any]:
        """Report when the run's page count `pages` is a multiple of `every` and the last
        report is `min_seconds` old (or when forced)."""
        self.pages = pages
        if not force and (pages % self.every or (
                self.reported is not None and self.clock() - self.reported < self.min_seconds)):
            return {}
        self.reported = self.clock()
        frac = self.fraction(done_seconds)
        elapsed = max(1e-6, time.time() - self.started)
        rate = max(0, events - self.base_events) / elapsed
        gained = frac - self.base_fraction
        eta = elapsed * (1.0 - frac) / gained if gained > 1e-9 else None
        eta_text = "unknown" if eta is None else _duration(eta)
        line = (f"cloudtrail: {label}: {events} events ({papyrus} Papyrus), "
                f"{frac * 100:.1f}% of the window, {rate:.1f} events/s, ETA {eta_text}")
        _logger().info(line)
        with contextlib.suppress(Exception):
            from artifacts.prefect_artifacts import progress

            progress(self.key, frac, line)
        return {"fraction": frac, "rate": rate, "eta_seconds": eta}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def done_seconds(cp: Mapping[str, Any], current: tuple[float, float] | None = None,
                 frontier: float | None = None) -> float:
    """Seconds of the window archived: completed slices plus the part of the current slice
    above the frontier (the stream goes newest first inside a slice), divided by the number
    of passes (each pass covers the whole window once, in slices of its own length)."""
    total = sum(epoch(s["until"]) - epoch(s["since"]) for s in cp.get("completed", []))
    if current is not None and frontier is not None:
        start, end = current
        total += max(0.0, end - max(start, frontier))
    return total / max(1, len(cp.get("passes") or ()))
