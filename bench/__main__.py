"""`python -m bench [all|verdict|archive|service|overhead|bad_input|startup|blue_green|suite|report]`.

`make bench` runs everything (about 20 minutes on 2 cores) and writes docs/benchmarks.md; one
name runs that benchmark only and regenerates the report from it and the earlier results in
bench/out/results/. `--quick` is for developing the harness: tiny sizes, results and report
under bench/out/ only (docs/benchmarks.md untouched). `suite` (three fresh-clone `make test`
runs) runs only when named.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from bench import common
from bench.common import OUT, ROOT, TMP, log

BENCHES = ("verdict", "archive", "service", "overhead", "bad_input", "startup", "blue_green")
# Run only by name: three fresh-clone `make test` runs, about an hour on 2 cores.
BY_NAME = ("suite",)


def _setup() -> None:
    r = subprocess.run(["bash", str(ROOT / "bench" / "setup.sh")], text=True)
    if r.returncode != 0:
        sys.exit(f"bench/setup.sh failed ({r.returncode})")


def _env_defaults() -> None:
    # Before anything imports Prefect: a private PREFECT_HOME, no telemetry, evidence in tmp.
    os.environ.update({
        "PREFECT_HOME": str(TMP / "prefect-client"),
        "PAPYRUS_EVIDENCE_ROOT": str(TMP / "evidence"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    })
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)


def _save_meta(meta: dict, done: list[str], timings: dict, t_all: float) -> None:
    meta.update({"finished": common.utc_now(), "load_end": common.loadavg(),
                 "seconds": round(time.monotonic() - t_all, 1), "timings": timings})
    runs = (common.load("meta") or {}).get("runs", {})
    for name in done:
        runs[name] = {k: meta[k] for k in ("started", "finished", "load_start",
                                            "load_at_measure_start", "load_end")}
        runs[name]["quiet_wait"] = meta.get("quiet_wait")
    meta["runs"] = runs
    common.save("meta", meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="all", choices=("all", *BENCHES, *BY_NAME, "report"))
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for developing the harness; report under bench/out/")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for the load average to drop before measuring")
    p.add_argument("--max-wait", type=float, default=900,
                   help="seconds to wait at most for a quiet machine (default 900)")
    p.add_argument("--load-threshold", type=float, default=2.5)
    p.add_argument("--no-demo", action="store_true", help="overhead: skip `papyrus-ops demo`")
    p.add_argument("--suite-variants", default="now,serial,before",
                   help="suite: which of now,serial,before,two to run (default all)")
    p.add_argument("--suite-runs", type=int, default=1,
                   help="suite: runs of each variant, one after the other (the goal: median)")
    p.add_argument("--no-variants", action="store_true",
                   help="service: skip the proposed-change variants")
    a = p.parse_args(argv)

    from bench import report

    if a.quick:
        common.RESULTS = OUT / "results-quick"
    if a.what == "report":
        path = report.write(quick=a.quick)
        log(f"wrote {path}")
        return 0

    _setup()
    shutil.rmtree(TMP, ignore_errors=True)
    TMP.mkdir(parents=True, exist_ok=True)
    _env_defaults()
    selected = BENCHES if a.what == "all" else (a.what,)
    meta = {"started": common.utc_now(), "load_start": common.loadavg(), "quick": a.quick,
            "selected": list(selected), "machine": common.machine(),
            "versions": common.versions()}
    if not a.quick and not a.no_wait:
        meta["quiet_wait"] = common.wait_for_quiet(a.load_threshold, 60, a.max_wait)
    meta["load_at_measure_start"] = common.loadavg()
    log(f"machine {meta['machine']}; load {meta['load_at_measure_start']}")
    t_all = time.monotonic()
    timings: dict = {}
    prefect = None
    sb = None
    try:
        if {"archive", "overhead", "startup"} & set(selected):
            t = time.monotonic()
            prefect = common.PrefectServer(TMP / "prefect-server").start()
            os.environ.update(prefect.env())
            log(f"prefect server at {prefect.url} ({time.monotonic() - t:.1f}s)")
        if {"verdict", "archive", "overhead", "bad_input", "startup",
                "blue_green"} & set(selected):
            t = time.monotonic()
            sb = common.start_sandbox(TMP / "sandbox")
            log(f"sandbox up at {sb.endpoint} ({time.monotonic() - t:.1f}s)")

        def timed(name, fn):
            t0, l0 = time.monotonic(), common.loadavg()
            log(f"== {name} (load {l0})")
            out = fn()
            timings[name] = {"seconds": round(time.monotonic() - t0, 1), "load_start": l0,
                             "load_end": common.loadavg(), "finished": common.utc_now()}
            common.save(f"{name}_run", timings[name])
            log(f"== {name} done in {timings[name]['seconds']}s (load {timings[name]['load_end']})")
            return out

        if "verdict" in selected:
            from bench import verdict

            kw = {"runs": 1, "Ts": (2.0,)} if a.quick else {"runs": 3, "Ts": (3.0, 6.0, 9.0)}
            timed("verdict", lambda: verdict.run(sb=sb, **kw))
        if "bad_input" in selected:
            from bench import bad_input

            timed("bad_input", lambda: bad_input.run(sb=sb, runs=1 if a.quick else 3))
        if "overhead" in selected:
            from bench import overhead

            def run_overhead():
                flows = overhead.run_flows(1 if a.quick else 3, sb=sb)
                return flows

            flows = timed("overhead_flows", run_overhead)
        if "archive" in selected:
            from bench import archive

            kw = ({"sizes": (2000, 5000), "runs": (1, 1), "rate_events": 300, "rate_runs": 1}
                  if a.quick else {"sizes": (10_000, 100_000), "runs": (3, 2),
                                   "rate_events": 3000, "rate_runs": 2})
            timed("archive", lambda: archive.run(prefect_env=prefect.env(), sb=sb, **kw))
        if "startup" in selected:
            from bench import startup

            kw = {"runs": 1, "cold_runs": 1, "before": False} if a.quick else {}
            timed("startup", lambda: startup.run(sb, prefect.url, **kw))
        if "blue_green" in selected:
            from bench import blue_green

            timed("blue_green", lambda: blue_green.run(sb=sb, runs=1 if a.quick else 3))
        if "suite" in selected:
            from bench import suite

            timed("suite", lambda: suite.run(tuple(a.suite_variants.split(",")),
                                                  runs=a.suite_runs))
        if sb is not None:
            sb.stop()
            sb = None
        if prefect is not None and "overhead" not in selected:
            prefect.stop()
        if "service" in selected:
            from bench import service

            kw = {"runs": 1, "seconds": 2} if a.quick else {"runs": 2, "seconds": 10}
            timed("service", lambda: service.run(variants=not a.no_variants, **kw))
        if "overhead" in selected:
            from bench import overhead

            def run_demo():
                demo = [] if a.no_demo else overhead.run_demo(1 if a.quick else 2)
                data = {"flows": flows, "demo": demo,
                        "goals": {"prefect_per_flow_s": overhead.FLOW_GOAL_S,
                                  "demo_warm_s": overhead.DEMO_GOAL_S}}
                common.save("overhead", data)
                return data

            timed("overhead_demo", run_demo)
    finally:
        if sb is not None:
            sb.stop()
        if prefect is not None:
            prefect.stop()
        # Also after a failure: the benchmarks that finished keep their machine record.
        _save_meta(meta, [n for n in selected if any(t.startswith(n) for t in timings)],
                   timings, t_all)
    if set(selected) - set(report.IN_PLACE):
        path = report.write(quick=a.quick)
    else:
        path = report.OUT / "benchmarks-quick.md" if a.quick else report.DOC
    if "startup" in selected:
        from bench import startup

        path = startup.update_doc(common.load("startup") or {}, path)
    if "blue_green" in selected:
        from bench import blue_green

        path = blue_green.update_doc(common.load("blue_green") or {}, path)
    if "suite" in selected:
        from bench import suite

        path = suite.update_doc(common.load("suite") or {}, path)
    log(f"all done in {meta['seconds']}s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
