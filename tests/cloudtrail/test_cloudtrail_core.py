"""The archive's core without Prefect or HTTP: limiter, dedupe, streaming, checkpoint/resume."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import time
import zlib

import pytest

from ground.settings import load_env
from sandbox import cloudtrail as ct
from tasks.cloudtrail.checkpoint import prepare_archive
from tasks.cloudtrail.pacing import RateLimiter
from tasks.cloudtrail.papyrus_filter import PapyrusFilter, PapyrusNames, names_from_settings
from tasks.cloudtrail.records import BoundaryDedupe, event_record
from tasks.cloudtrail.slices import archive_slice_core
from tasks.cloudtrail.store import WorkDir
from tasks.cloudtrail.window import resolve_window
from tests.support.cloudtrail import EXTRA_NAMES, FakeCloudTrail, ids_of, papyrus_names, read_lines
from tests.support.waiting import wait_until

SETTINGS = load_env("local")
NAMES = names_from_settings(SETTINGS, EXTRA_NAMES)
NOW = int(time.time()) - 60


def history(n: int, days: float = 3, seed: int = 3) -> ct.EventStore:
    store = ct.EventStore()
    store.add_events(ct.generate_history(n, days=days, now=NOW, seed=seed,
                                         names=papyrus_names(SETTINGS)))
    return store


def window(days: float = 3.0):
    until = dt.datetime.fromtimestamp(NOW + 1, dt.UTC)
    return resolve_window(since=until - dt.timedelta(days=days), until=until)


def run_archive(root, client, *, slice_seconds=86400.0, checkpoint_every=2, w=None,
                names: PapyrusNames = NAMES) -> dict:
    cp = prepare_archive.fn(str(root), "local", w or window(), names.to_dict(), slice_seconds)
    work = WorkDir(root)
    for i in range(len(cp["slices"])):
        archive_slice_core(client, work, i, PapyrusFilter(names), RateLimiter(1e9),
                           checkpoint_every=checkpoint_every)
    return work.load()


# -- rate limiter ---------------------------------------------------------------------------
def test_rate_limiter_spacing_with_a_fake_clock():
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    lim = RateLimiter(2.0, clock=lambda: now[0], sleep=sleep)
    starts = []
    for _ in range(10):
        lim.acquire()
        starts.append(now[0])
    assert [round(b - a, 9) for a, b in zip(starts, starts[1:], strict=False)] == [0.5] * 9
    now[0] += 10  # idle time does not build a burst
    lim.acquire()
    t = now[0]
    lim.acquire()
    assert now[0] - t == pytest.approx(0.5)


def test_rate_limiter_holds_across_threads():
    lim = RateLimiter(50.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            lim.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 40 and stamps[-1] - stamps[0] >= 39 / 50 - 0.01
    # Any 21 consecutive calls span at least 20 intervals (minus scheduling slack).
    assert min(b - a for a, b in zip(stamps, stamps[20:], strict=False)) >= 20 / 50 - 0.1


# -- dedupe ---------------------------------------------------------------------------------
def test_boundary_dedupe():
    d = BoundaryDedupe(recent_size=3)
    assert not d.seen("a", 10) and not d.seen("b", 10)
    assert d.seen("a", 10)  # same second, repeated at a page boundary
    assert not d.seen("c", 9) and d.seen("b", 10)  # out of order but recent
    assert d.time == 9 and d.ids == {"c"}
    for i in range(5):
        d.seen(f"x{i}", 8 - i)
    assert len(d.recent) == 3 and len(d.ids) == 1  # bounded
    # Resumed from a cursor: ids at the frontier second are known.
    d = BoundaryDedupe(5.0, {"p", "q"})
    assert d.seen("p", 5.0) and not d.seen("r", 5.0) and not d.seen("s", 4.0)


def test_event_record_shape():
    store = history(5)
    api = store.lookup(max_results=1)["Events"][0]
    api["EventTime"] = dt.datetime.fromtimestamp(api["EventTime"], dt.UTC)
    rec = event_record(api)
    assert rec["EventTime"].endswith("Z") and isinstance(rec["CloudTrailEvent"], dict)
    assert rec["CloudTrailEvent"]["eventID"] == rec["EventId"]
    assert set(rec) >= {"EventId", "EventName", "EventSource", "Resources", "CloudTrailEvent"}


# -- streaming, dedupe at page boundaries ---------------------------------------------------
def test_archive_counts_and_page_boundary_duplicates(tmp_path):
    store = history(700)
    client = FakeCloudTrail(store, repeat_last=True)
    cp = run_archive(tmp_path / "w", client)
    work = WorkDir(tmp_path / "w")
    ids = ids_of(work.events_path)
    assert len(ids) == 700 == len(set(ids)) == cp["totals"]["events"]
    assert cp["totals"]["duplicates"] > 0  # the repeated events were seen and dropped
    flt = PapyrusFilter(NAMES)
    assert ids_of(work.papyrus_path) == [r["EventId"] for r in read_lines(work.events_path)
                                         if flt(r)]
    assert cp["totals"]["papyrus"] == 70


def test_slices_are_half_open(tmp_path):
    """An event exactly on a slice boundary is archived once (by the later slice)."""
    store = history(200)
    w = window()
    boundary = (w.since + dt.timedelta(days=1)).timestamp()
    extra = ct.generate_history(3, days=1, now=NOW, seed=9, names=papyrus_names(SETTINGS))
    store.add_events(e._replace(event_time=int(boundary)) for e in extra)
    cp = run_archive(tmp_path / "w", FakeCloudTrail(store), w=w)
    ids = ids_of(WorkDir(tmp_path / "w").events_path)
    assert len(ids) == 203 == len(set(ids))
    assert cp["completed"][1]["first_event_time"] == cp["completed"][1]["since"]
    assert cp["totals"]["out_of_window"] >= 3  # seen by slice 0 at its (exclusive) end


# -- interruption and resume ----------------------------------------------------------------
@pytest.mark.parametrize("fail_after", [1, 3, 4, 7, 12])
def test_resume_after_a_crash_yields_the_same_content(tmp_path, fail_after):
    store = history(600)
    reference = run_archive(tmp_path / "ref", FakeCloudTrail(store))
    ref_ids = ids_of(WorkDir(tmp_path / "ref").events_path)

    root = tmp_path / "w"
    with pytest.raises(RuntimeError, match="injected"):
        run_archive(root, FakeCloudTrail(store, fail_after=fail_after))
    work = WorkDir(root)
    cp = work.load()
    # A killed process leaves half a gzip member after the checkpointed offsets.
    half = gzip.compress(b'{"EventId":"torn"}\n' * 50)[:37]
    for p in (work.events_path, work.papyrus_path):
        with open(p, "ab") as f:
            f.write(half)
    with pytest.raises((EOFError, OSError, zlib.error)):
        read_lines(work.events_path)
    resumed = run_archive(root, FakeCloudTrail(store))
    assert resumed["attempts"] == 2 and cp["offsets"]["events"] <= resumed["offsets"]["events"]
    ids = ids_of(work.events_path)
    assert sorted(ids) == sorted(ref_ids) and len(ids) == len(set(ids)) == 600
    assert resumed["totals"]["events"] == reference["totals"]["events"] == 600
    assert resumed["totals"]["papyrus"] == reference["totals"]["papyrus"]
    assert sorted(ids_of(work.papyrus_path)) == sorted(
        ids_of(WorkDir(tmp_path / "ref").papyrus_path))


def test_expired_next_token_restarts_at_the_frontier(tmp_path):
    store = history(500, days=1)
    cp = run_archive(tmp_path / "w", FakeCloudTrail(store, expire_token_at=3),
                     w=window(1.0))
    ids = ids_of(WorkDir(tmp_path / "w").events_path)
    assert len(ids) == len(set(ids)) == 500 == cp["totals"]["events"]


def test_other_request_discards_the_checkpoint(tmp_path):
    store = history(300)
    root = tmp_path / "w"
    with pytest.raises(RuntimeError):
        run_archive(root, FakeCloudTrail(store, fail_after=3))
    cp = prepare_archive.fn(str(root), "local", window(2.0), NAMES.to_dict(), 86400.0)
    assert not cp["resumed"] and "other parameters" in cp["discarded"]
    assert cp["completed"] == [] and WorkDir(root).events_path.stat().st_size == 0


# --- prefetch_pages: the next LookupEvents page in flight while this one is written ---------
def test_prefetch_pages_keeps_order_stats_and_hands_errors_over_in_order():
    from tasks.cloudtrail.paging import prefetch_pages

    threads = set()

    def produce(own):
        for i in range(5):
            threads.add(threading.current_thread().name)
            own["calls"] = own.get("calls", 0) + 1
            yield i
        raise RuntimeError("page 6 failed")

    stats = {"calls": 10}
    got = []
    with pytest.raises(RuntimeError, match="page 6 failed"):
        for page in prefetch_pages(produce, stats):
            got.append((page, stats["calls"]))
    # Every page arrives in order, with the counters of the requests that fetched it merged
    # on the consumer's thread; the error comes after the last good page.
    assert got == [(0, 11), (1, 12), (2, 13), (3, 14), (4, 15)]
    assert threads == {"cloudtrail-prefetch"}


def test_prefetch_pages_stops_the_producer_when_the_consumer_stops():
    from tasks.cloudtrail.paging import prefetch_pages

    produced = []

    def produce(own):
        for i in range(1000):
            produced.append(i)
            yield i

    for page in prefetch_pages(produce, {}, depth=2):
        if page == 3:
            break
    time.sleep(0.5)
    # At most `depth` pages (plus the one being put) beyond what was consumed, then it exits.
    assert len(produced) <= 3 + 1 + 2 + 1


def test_lookahead_fetches_the_next_query_while_this_one_ends_and_only_in_order():
    """`Lookahead`: one thread runs the queries in a row, so the next query's first page is
    fetched before its consumer asks; each query's pages and counters reach its own
    consumer; only the next query can be taken, and a failed one closes it for the rest."""
    from tasks.cloudtrail.paging import Lookahead

    started = {}

    def query(key, n, fail=False):
        def produce(own):
            started[key] = threading.Event()
            started[key].set()
            for i in range(n):
                own["calls"] = own.get("calls", 0) + 1
                yield f"{key}{i}"
            if fail:
                raise RuntimeError(f"{key} failed")
        return key, produce

    ahead = Lookahead([query("a", 2), query("b", 3), query("c", 1, fail=True), query("d", 1)])
    assert not ahead.takes("b") and ahead.takes("a")
    stats_a = {}
    assert list(ahead.pages("a", stats_a)) == ["a0", "a1"] and stats_a == {"calls": 2}
    # "a" is done: "b" is already under way before anyone asks for it.
    wait_until(lambda: "b" in started, timeout=5, what="the next query's first request")
    with pytest.raises(RuntimeError, match="does not hold"):
        next(ahead.pages("c", {}))
    stats_b = {}
    assert list(ahead.pages("b", stats_b)) == ["b0", "b1", "b2"] and stats_b == {"calls": 3}
    with pytest.raises(RuntimeError, match="c failed"):
        list(ahead.pages("c", {}))
    assert not ahead.takes("d")  # closed: whoever archives "d" runs its own query
    assert "d" not in started


def test_lookahead_closes_when_a_consumer_stops_early():
    from tasks.cloudtrail.paging import Lookahead

    produced = []

    def produce(own):
        for i in range(1000):
            produced.append(i)
            yield i

    ahead = Lookahead([("x", produce), ("y", produce)], depth=2)
    for page in ahead.pages("x", {}):
        if page == 3:
            break
    assert not ahead.takes("y")
    time.sleep(0.5)
    assert len(produced) <= 3 + 1 + 2 + 1


def test_event_time_as_sent_or_as_a_datetime_gives_the_same_line():
    """The flow's client leaves EventTime as sent (epoch seconds, `raw_timestamps`); botocore's
    default is a datetime in the local zone. Both give the same archived line, and the line
    is the record."""
    from dateutil.tz import tzlocal

    from tasks.cloudtrail.records import event_line

    for api in history(30).lookup(max_results=30)["Events"]:
        assert isinstance(api["EventTime"], int | float)
        as_datetime = {**api, "EventTime": dt.datetime.fromtimestamp(api["EventTime"],
                                                                     tzlocal())}
        rec, line = event_line(api)
        assert event_line(as_datetime) == (rec, line)
        assert json.loads(line) == rec == event_record(api)
        assert rec["EventTime"] == dt.datetime.fromtimestamp(
            api["EventTime"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_documents_parse_as_json_would_for_every_input():
    """`records._loads` (orjson first) gives json.loads's answer, including what orjson alone
    refuses — but for integers beyond 64 bits, which come back as equal floats; what json
    refuses too stays a string in the record, as before."""
    from tasks.cloudtrail.records import _loads, _parsed, event_line

    docs = [json.dumps(e["CloudTrailEvent"]) if not isinstance(e["CloudTrailEvent"], str)
            else e["CloudTrailEvent"] for e in history(20).lookup(max_results=20)["Events"]]
    docs += ['{"a": NaN, "b": Infinity, "c": -Infinity}', '{"big": 9223372036854775807}',
             '{"s": "\\ud800 lone"}', '{"dup": 1, "dup": 2}', '{"f": 1e400, "g": 0.1}',
             '{"u": "\\u00e9t\\u00e9 \u65e5\u672c"}', '[1, 2, {"x": null}]', '"text"', '7']
    for doc in docs:
        expected = json.loads(doc)
        got = _loads(doc)
        assert type(got) is type(expected)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True), doc
    huge = '{"big": 123456789012345678901234567890, "name": "papyrus-db"}'
    assert _loads(huge) == {"big": float(json.loads(huge)["big"]), "name": "papyrus-db"}
    for bad in ('{"a": 1', "not json", '{"a": 1} trailing', "{'a': 1}", ""):
        assert _parsed(bad) == bad
        api = {"EventId": "x", "EventTime": 1.7e9, "CloudTrailEvent": bad}
        rec, line = event_line(api)
        assert rec["CloudTrailEvent"] == bad and json.loads(line)["CloudTrailEvent"] == bad


def test_progress_reports_every_n_pages_at_most_once_a_second_across_slices(monkeypatch):
    """A report (log line + artifact) every `every` pages, but not within `min_seconds` of the
    run's last one — a slice's new Progress included; a forced report always goes out."""
    from tasks.cloudtrail import progress as prog

    now = [100.0]
    sent = []
    monkeypatch.setattr("artifacts.prefect_artifacts.progress",
                        lambda key, frac, line: sent.append(line))
    cp = {"window": {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}}

    def make():
        return prog.Progress(cp, 5, started=1.0, base_events=0, base_fraction=0.0,
                             clock=lambda: now[0])

    first = make()
    reports = [bool(first.update(n, n * 50, 0, 3600.0, "s1")) for n in range(1, 11)]
    assert reports == [False] * 4 + [True] + [False] * 5  # page 10: 0 s after the one at 5
    now[0] += 1.0
    second = make()  # the next slice's task
    assert not second.update(11, 550, 0, 3600.0, "s2")
    assert second.update(15, 750, 0, 3600.0, "s2")
    now[0] += 0.5
    assert not second.update(20, 1000, 0, 3600.0, "s2")
    assert second.update(20, 1000, 0, 3600.0, "s2", force=True)
    assert len(sent) == 3
    other = prog.Progress(cp, 5, started=2.0, base_events=0, base_fraction=0.0,
                          clock=lambda: now[0])  # another run: its own clock of reports
    assert other.update(5, 250, 0, 3600.0, "r2")
