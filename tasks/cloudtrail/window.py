"""The CloudTrail archive's window: parsing, validation and slicing (pure, no I/O).

Windows are half-open, ``[since, until)``: consecutive windows tile time exactly, so an
incremental archive that starts where the last one ended neither repeats nor misses an event.
Slices are half-open too, so every event belongs to exactly one slice.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

MAX_DAYS = 90  # LookupEvents only returns the last 90 days of management events
# A window asked as "the last 90 days" is computed a moment before it is checked.
GRACE_SECONDS = 60
UTC = dt.UTC
_ZERO = dt.timedelta(0)


class ArchiveInputError(ValueError):
    """Bad input: a one-line message, raised before anything is written."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def parse_utc(value: Any, what: str = "time") -> dt.datetime:
    """An aware UTC datetime from an ISO-8601 string (``Z``, an offset, or none = UTC), a date
    (``2025-09-10`` = midnight UTC), or a datetime. Anything else is an ArchiveInputError."""
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            d = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ArchiveInputError(
                f"{what}: {value!r} is not an ISO-8601 UTC time (e.g. 2025-09-10T00:00:00Z)"
            ) from None
    else:
        raise ArchiveInputError(
            f"{what}: {value!r} is not an ISO-8601 UTC time (e.g. 2025-09-10T00:00:00Z)")
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    try:
        return d.astimezone(UTC)
    except OverflowError:  # an offset at the edge of the calendar
        raise ArchiveInputError(f"{what}: {value!r} is out of range") from None


def fmt(d: dt.datetime | float | None) -> str | None:
    """``2025-09-10T12:34:56Z`` (microseconds only when present)."""
    if d is None:
        return None
    if not isinstance(d, dt.datetime):
        d = dt.datetime.fromtimestamp(d, UTC)
    elif d.utcoffset() != _ZERO:
        d = d.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if d.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return d.strftime(spec)


def epoch(value: Any) -> float:
    """Seconds since the epoch of a datetime (naive = UTC), a number, or an ISO-8601 string."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def stamp(d: dt.datetime) -> str:
    """``20250910T123456Z``: the <UTC> part of the archive's file names."""
    return d.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class Window:
    since: dt.datetime
    until: dt.datetime
    mode: str  # "full" | "incremental"
    asked: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # Incremental with an overlap: the last archive's covered end. [since, previous_until)
    # is read again for events delivered late; those already archived are skipped.
    previous_until: dt.datetime | None = None

    @property
    def seconds(self) -> float:
        return max(0.0, (self.until - self.since).total_seconds())

    @property
    def empty(self) -> bool:
        """Nothing new: no time after the last archive's end (the overlap alone is not a
        reason to run; a late event in it is archived by the next run)."""
        return self.until <= (self.previous_until or self.since)

    def to_dict(self) -> dict[str, Any]:
        return {"since": fmt(self.since), "until": fmt(self.until)}


def _days(days: Any) -> float:
    if isinstance(days, bool) or not isinstance(days, int | float) or math.isnan(days):
        raise ArchiveInputError(f"days: {days!r} is not a number")
    if not 0 < days <= MAX_DAYS:
        raise ArchiveInputError(
            f"days: {days:g} is outside 1..{MAX_DAYS} (CloudTrail LookupEvents keeps {MAX_DAYS} "
            f"days of events)")
    return float(days)


def resolve_window(
    days: float | None = None,
    since: Any = None,
    until: Any = None,
    *,
    incremental: bool = False,
    state_until: Any = None,
    now: dt.datetime | None = None,
    settle_seconds: float = 0.0,
    overlap_seconds: float = 0.0,
    overlap_floor: Any = None,
) -> Window:
    """The window to archive, or an ArchiveInputError naming what is wrong.

    * ``days`` (default 90) counts back from ``until`` when it is given, else from now;
      ``since``/``until`` are explicit.
    * ``until`` defaults to ``now - settle_seconds`` (CloudTrail delivers events some minutes
      late; an incremental archive must not claim a period it cannot see yet) and is clamped
      to now.
    * incremental: ``since`` is the last archive's covered end (``state_until``); without a
      state the ``days`` window is used. A state older than 90 days is clamped (the gap is
      reported in ``notes``): a nightly job must not fail forever because it missed a run.
    * incremental with ``overlap_seconds``: ``since`` goes back that far before the state's
      end (events delivered late), but never before ``overlap_floor``, the oldest time whose
      archived event ids the state records (without them the overlap could not be deduped:
      no floor, no overlap). ``previous_until`` is the state's end.
    * a window starting more than 90 days ago is an error; so is ``since >= until`` when both
      were given explicitly. An incremental window with nothing new is returned empty.
    """
    now = (now or utcnow()).astimezone(UTC).replace(microsecond=0)
    asked: dict[str, Any] = {"days": days, "since": since, "until": until,
                             "incremental": bool(incremental)}
    if days is not None and since is not None:
        raise ArchiveInputError("give either days or since/until, not both")
    if incremental and since is not None:
        raise ArchiveInputError("incremental mode starts at the last archive's end: "
                                "do not give since")
    n_days = _days(days) if days is not None else float(MAX_DAYS)
    if settle_seconds < 0:
        raise ArchiveInputError("settle time must not be negative")
    if overlap_seconds < 0:
        raise ArchiveInputError("overlap must not be negative")
    oldest = now - dt.timedelta(days=MAX_DAYS)
    notes: list[str] = []
    previous: dt.datetime | None = None

    if until is not None:
        end = parse_utc(until, "until")
        if end > now:
            notes.append(f"until {fmt(end)} is in the future: clamped to {fmt(now)}")
            end = now
    else:
        end = now - dt.timedelta(seconds=settle_seconds)

    if since is not None:
        start = parse_utc(since, "since")
        if until is not None and start >= parse_utc(until, "until"):
            raise ArchiveInputError(f"since {fmt(start)} is not before until {fmt(end)}")
    elif incremental and state_until is not None:
        start = previous = parse_utc(state_until, "state covered_until")
        if overlap_seconds > 0:
            floor = None if overlap_floor is None else parse_utc(overlap_floor, "state tail")
            if floor is None:
                notes.append("the last archive recorded no event ids: no overlap this time")
            else:
                want = previous - dt.timedelta(seconds=overlap_seconds)
                start = max(want, min(floor, previous))
                if start > want:
                    notes.append(f"overlap starts {fmt(start)}, the oldest time the last "
                                 "archive recorded event ids for")
        if start < oldest:
            notes.append(f"last archive ended {fmt(start)}, more than {MAX_DAYS} days ago: "
                         f"events before {fmt(oldest)} are no longer available (gap)")
            start = oldest
    elif until is not None:
        start = end - dt.timedelta(days=n_days)
    else:
        start = now - dt.timedelta(days=n_days)

    if start < oldest - dt.timedelta(seconds=GRACE_SECONDS):
        raise ArchiveInputError(
            f"window starts {fmt(start)}, more than {MAX_DAYS} days ago: CloudTrail "
            f"LookupEvents only keeps events since {fmt(oldest)}")
    start = max(start, oldest)
    if start >= end and not incremental:
        raise ArchiveInputError(f"since {fmt(start)} is not before until {fmt(end)}")
    mode = "incremental" if incremental else "full"
    if previous is not None and previous < oldest:
        previous = oldest
    return Window(start, max(start, end), mode, asked, tuple(notes), previous)


def plan_slices(since: dt.datetime, until: dt.datetime,
                slice_seconds: float) -> list[tuple[dt.datetime, dt.datetime]]:
    """Half-open slices of at most `slice_seconds`, oldest first."""
    if slice_seconds <= 0:
        raise ArchiveInputError("slice length must be positive")
    out: list[tuple[dt.datetime, dt.datetime]] = []
    step = dt.timedelta(seconds=slice_seconds)
    cur = since
    while cur < until:
        nxt = min(until, cur + step)
        out.append((cur, nxt))
        cur = nxt
    return out
