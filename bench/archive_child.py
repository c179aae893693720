"""The archive's core, alone in a process (so its peak RSS is its own):

    python -m bench.archive_child --since ISO --until ISO --work DIR [--max-rps N]

The same task bodies the `cloudtrail_archive` flow runs (`resolve_papyrus_names`,
`prepare_archive`, then `archive_slice` for every slice, oldest first), called as `.fn` so no
Prefect engine or API is involved; progress reporting is off (log_every huge). The sandbox is
reached through AWS_ENDPOINT_URL like everything else. Prints one JSON line, then exits the
way `papyrus-ops` does (`papyrus_ops/quick_exit.py`: no CPython teardown after the answer).
"""

from __future__ import annotations

import argparse
import json
import time

# First, as in papyrus_ops.cli: its exit handler must run after every other one.
from papyrus_ops import quick_exit


def _hwm_mb() -> float:
    """This process's peak RSS so far (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _apply_before(settings, resolve_papyrus_names):
    """Undo, in this process only, the benchmark-driven changes to tasks/cloudtrail/, so the
    archive as it was before them is measured in the same run (one-day slices are
    `--slice-hours 24`; botocore's datetimes for EventTime and the interpreter's teardown at
    exit are kept by `main` when `--before`):
    1. no prefetch: pages are fetched on the writing thread, one after the other;
    2. gzip level 6 instead of 1 for the two work files.
    Returns the filter names."""
    import tasks.cloudtrail.slices as tc

    def inline(produce, stats, depth=2):
        yield from produce(stats)

    tc.prefetch_pages = inline
    tc.archive_slice_core.__kwdefaults__["compresslevel"] = 6
    # 3. the prefilter scanning every line for every name, not only the shortest covering ones
    full_init = tc.PapyrusFilter.__init__

    def every_needle(self, names):
        full_init(self, names)
        self._needles = tuple(sorted({n.lower() for n in (*names.names, *names.secrets)}))

    tc.PapyrusFilter.__init__ = every_needle
    from ground.aws import client

    return resolve_papyrus_names.fn(settings, client("ec2", settings.region))


def main() -> None:
    t_start = time.monotonic()
    p = argparse.ArgumentParser()
    p.add_argument("--since", required=True)
    p.add_argument("--until", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--max-rps", type=float, default=None)
    p.add_argument("--slice-hours", type=float, default=168.0)
    p.add_argument("--before", action="store_true",
                   help="the archive before the benchmark-driven change (patched here only)")
    a = p.parse_args()

    from ground.aws import client
    from ground.settings import load_env
    from tasks.cloudtrail.checkpoint import prepare_archive
    from tasks.cloudtrail.names import resolve_papyrus_names
    from tasks.cloudtrail.slices import archive_slice, lookahead_for
    from tasks.cloudtrail.window import resolve_window

    t_imported = time.monotonic()
    hwm_import = _hwm_mb()
    settings = load_env("local")
    window = resolve_window(None, a.since, a.until)
    if a.before:
        names = _apply_before(settings, resolve_papyrus_names)
    else:
        names = resolve_papyrus_names.fn(settings, client("ec2", settings.region))
    cp = prepare_archive.fn(a.work, "local", window, names, a.slice_hours * 3600, resume=False)
    ct = client("cloudtrail", settings.region, raw_timestamps=not a.before)
    hwm_setup = _hwm_mb()
    t_first = time.monotonic()
    t_first_wall = time.time()
    # As the flow runs them: one prefetch thread across the slices (not in the before variant).
    ahead = None if a.before else lookahead_for(cp, {s[2]: ct for s in cp["slices"]}, a.max_rps)
    entries = [archive_slice.fn(ct, a.work, i, names, max_rps=a.max_rps, log_every=10**9,
                                region=settings.region, run_started=time.time(),
                                lookahead=ahead)
               for i in range(len(cp["slices"]))]
    t_end = time.monotonic()
    print(json.dumps({
        "events": sum(e["events"] for e in entries),
        "papyrus": sum(e["papyrus"] for e in entries),
        "pages": sum(e["pages"] for e in entries),
        "slices": len(entries),
        "import_s": round(t_imported - t_start, 3),
        "setup_s": round(t_first - t_imported, 3),
        "archive_s": round(t_end - t_first, 3),
        "archive_started_epoch": t_first_wall,
        "total_s": round(t_end - t_start, 3),
        "before": a.before,
        "hwm_mb": {"after_import": hwm_import, "after_setup": hwm_setup, "end": _hwm_mb()},
    }), flush=True)
    if not a.before:
        quick_exit.exit_with(0)


if __name__ == "__main__":
    main()
