"""Peak memory of the archive does not grow with the number of events (not a timing test).

The archive runs (prepare + every slice, with the Papyrus filter, gzip and checkpoints)
against an in-process fake client, so tracemalloc sees our allocations and not a server's;
the history itself is allocated before tracing starts.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
import tracemalloc

from ground.settings import load_env
from sandbox import cloudtrail as ct
from tasks.cloudtrail.checkpoint import prepare_archive
from tasks.cloudtrail.pacing import RateLimiter
from tasks.cloudtrail.papyrus_filter import PapyrusFilter, names_from_settings
from tasks.cloudtrail.slices import archive_slice_core
from tasks.cloudtrail.store import WorkDir
from tasks.cloudtrail.window import resolve_window
from tests.support.cloudtrail import EXTRA_NAMES, FakeCloudTrail, papyrus_names

SETTINGS = load_env("local")
NAMES = names_from_settings(SETTINGS, EXTRA_NAMES)


def peak_for(n: int, root) -> tuple[int, int]:
    now = int(time.time()) - 60
    store = ct.EventStore()
    store.add_events(ct.generate_history(n, days=4, now=now, seed=n,
                                         names=papyrus_names(SETTINGS)))
    until = dt.datetime.fromtimestamp(now + 1, dt.UTC)
    w = resolve_window(since=until - dt.timedelta(days=4), until=until)
    client = FakeCloudTrail(store)
    flt = PapyrusFilter(NAMES)
    gc.collect()
    tracemalloc.start()
    try:
        cp = prepare_archive.fn(str(root), "local", w, NAMES.to_dict(), 86400.0)
        work = WorkDir(root)
        for i in range(len(cp["slices"])):
            archive_slice_core(client, work, i, flt, RateLimiter(1e9), checkpoint_every=20,
                               compresslevel=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, WorkDir(root).load()["totals"]["events"]


def test_peak_memory_is_flat(tmp_path):
    small, n_small = peak_for(800, tmp_path / "small")
    large, n_large = peak_for(8_000, tmp_path / "large")
    assert (n_small, n_large) == (800, 8_000)
    print(f"peak traced memory: {small / 1e6:.2f} MB for 800 events, "
          f"{large / 1e6:.2f} MB for 8k events")
    assert large < 1.5 * small, (small, large)
