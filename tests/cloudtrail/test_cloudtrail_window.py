"""Window parsing and validation (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from tasks.cloudtrail.window import ArchiveInputError, parse_utc, plan_slices, resolve_window

NOW = dt.datetime(2025, 9, 10, 12, 0, 0, tzinfo=dt.UTC)


def test_defaults_and_days():
    w = resolve_window(now=NOW)
    assert (w.since, w.until) == (NOW - dt.timedelta(days=90), NOW)
    w = resolve_window(7, now=NOW, settle_seconds=900)
    assert w.since == NOW - dt.timedelta(days=7)
    assert w.until == NOW - dt.timedelta(minutes=15)
    w = resolve_window(2, until="2025-09-01T00:00:00Z", now=NOW)
    assert (w.since, w.until) == (parse_utc("2025-08-30"), parse_utc("2025-09-01"))


def test_explicit_times():
    w = resolve_window(since="2025-09-01", until="2025-09-02T00:00:00+00:00", now=NOW)
    assert w.to_dict() == {"since": "2025-09-01T00:00:00Z", "until": "2025-09-02T00:00:00Z"}
    # An offset is converted; a future until is clamped to now (and noted).
    w = resolve_window(since="2025-09-10T09:00:00+09:00", until="2026-01-01", now=NOW)
    assert w.since == dt.datetime(2025, 9, 10, 0, 0, tzinfo=dt.UTC) and w.until == NOW
    assert w.notes


@pytest.mark.parametrize("kwargs, message", [
    ({"days": 91}, "outside 1..90"),
    ({"days": 0}, "outside 1..90"),
    ({"days": -3}, "outside 1..90"),
    ({"since": "2025-05-01T00:00:00Z"}, "more than 90 days ago"),
    ({"since": "2025-09-05", "until": "2025-09-01"}, "is not before"),
    ({"since": "2025-09-05", "until": "2025-09-05"}, "is not before"),
    ({"since": "yesterday"}, "not an ISO-8601 UTC time"),
    ({"until": "2025-13-40"}, "not an ISO-8601 UTC time"),
    ({"days": 3, "since": "2025-09-05"}, "either days or since"),
    ({"incremental": True, "since": "2025-09-05"}, "incremental"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ArchiveInputError, match=message) as err:
        resolve_window(now=NOW, **kwargs)
    assert "\n" not in str(err.value)


def test_incremental():
    w = resolve_window(incremental=True, state_until="2025-09-09T00:00:00Z", now=NOW)
    assert w.mode == "incremental" and w.since == parse_utc("2025-09-09") and w.until == NOW
    # Nothing new: an empty window, not an error.
    assert resolve_window(incremental=True, state_until=NOW.isoformat(), now=NOW).empty
    # A state older than 90 days is clamped and the gap reported.
    w = resolve_window(incremental=True, state_until="2025-01-01T00:00:00Z", now=NOW)
    assert w.since == NOW - dt.timedelta(days=90) and "gap" in w.notes[0]
    # No state: the days window.
    assert resolve_window(5, incremental=True, now=NOW).since == NOW - dt.timedelta(days=5)


def test_slices_tile_the_window():
    since, until = parse_utc("2025-09-01"), parse_utc("2025-09-03T06:00:00Z")
    slices = plan_slices(since, until, 86400)
    assert slices[0][0] == since and slices[-1][1] == until
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
    assert len(slices) == 3
