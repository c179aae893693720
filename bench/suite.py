"""8. The test suite as CI runs it: `make test` on a fresh clone of this checkout's HEAD.

Each variant clones HEAD into a temporary folder, builds the venv there (`make .venv/.installed`,
this machine's package cache warm, timed apart as "setup") and runs `make test` (ruff, then
pytest), exactly what `.ci/run` does. The pytest wall time is the one pytest prints itself
("N passed … in S s"); "whole" is the `make test` command. Variants, one after the other in one
run (each takes the machine alone; the load average is recorded around each; each with an
empty cache, so it builds its own migrated Prefect database as CI would):
* now: `make test` — four pytest-xdist workers on the 2 cores (much of the suite waits on
  rollouts, health checks and a browser), each a whole session with its own sandbox and
  Prefect server (tests/support/workers.py), the venv compiled to bytecode at install;
* before: 4 workers at the commit before 2026-12-04's cuts (`START_COMMIT`), in the same run;
* 2 workers: `make test TEST_WORKERS=2` — what `make test` ran before;
* one process: `make test TEST_WORKERS=0` — the same suite in a single pytest process;
* before: one process and no `.pyc` in the clone (its venv's and its packages' `__pycache__`
  removed after the install): the suite as it ran before issue #19's start-up cuts, when uv
  wrote no bytecode and PYTHONDONTWRITEBYTECODE (set in this machine's shells) kept Python from
  writing any, so every subprocess — each CLI call, Prefect server, flow run and service task —
  compiled Prefect, boto3, moto and Flask from source again.

`python -m bench suite [--suite-variants now,start,two,serial,before] [--suite-runs N]`; rewrites only
§8 of the report.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import ROOT, TMP, fresh_shell_env, load, loadavg, log, save, utc_now

# The last commit before 2026-12-04's cuts (seeded Prefect databases, shared admin clients and
# TLS contexts, `prefect down`'s workers together, the e2e archive's pace): `start` runs it.
START_COMMIT = "1542d07"
VARIANTS = {
    "now": {"name": "now: 4 workers, bytecode", "make": ["TEST_WORKERS=4"], "pyc": True},
    "start": {"name": f"before: 4 workers at {START_COMMIT}", "make": ["TEST_WORKERS=4"],
              "pyc": True, "commit": START_COMMIT},
    "two": {"name": "2 workers, bytecode", "make": ["TEST_WORKERS=2"], "pyc": True},
    "serial": {"name": "one process, bytecode", "make": ["TEST_WORKERS=0"], "pyc": True},
    "before": {"name": "before: one process, no bytecode", "make": ["TEST_WORKERS=0"],
               "pyc": False},
}
_SUMMARY = re.compile(r"=+ (?P<counts>.*?) in (?P<s>[\d.]+)s")
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def _drop_bytecode(clone: Path) -> int:
    gone = 0
    for cache in clone.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
        gone += 1
    return gone


def parse_summary(text: str) -> dict:
    """pytest's last summary line: its counts and the wall time it reports."""
    found = None
    for m in _SUMMARY.finditer(text):
        found = m
    if found is None:
        return {}
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
              for n, kind in _COUNT.findall(found["counts"])}
    return {"pytest_s": float(found["s"]), "counts": counts}


def run_variant(key: str, keep_log: Path) -> dict:
    v = VARIANTS[key]
    where = TMP / f"suite-{key}"
    shutil.rmtree(where, ignore_errors=True)
    env = fresh_shell_env()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True, env=env)
    if v.get("commit"):
        subprocess.run(["git", "checkout", "-q", v["commit"]], cwd=where, check=True, env=env)
    # As on a CI machine: no migrated Prefect database from an earlier run to copy
    # (papyrus_ops.prefect_local.seed); the suite builds its own once.
    env["PAPYRUS_CACHE_DIR"] = str(where / ".bench-cache")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, env=env,
                            capture_output=True, text=True).stdout.strip()
    t0 = time.monotonic()
    setup = subprocess.run(["make", ".venv/.installed"], cwd=where, env=env,
                           capture_output=True, text=True)
    setup_s = time.monotonic() - t0
    out = {"variant": key, "name": v["name"], "commit": commit, "setup_s": round(setup_s, 1),
           "load_start": loadavg(), "at": utc_now()}
    if setup.returncode != 0:
        out.update(ok=False, tail=(setup.stdout + setup.stderr)[-1500:])
        return out
    if not v["pyc"]:
        out["pycache_removed"] = _drop_bytecode(where)
    t1 = time.monotonic()
    test = subprocess.run(["make", "test", *v["make"]], cwd=where, env=env,
                          capture_output=True, text=True)
    out["whole_s"] = round(time.monotonic() - t1, 1)
    out["load_end"] = loadavg()
    text = test.stdout + test.stderr
    keep_log.write_text(text)
    out.update(parse_summary(text), rc=test.returncode, ok=test.returncode == 0,
               log=str(keep_log))
    if not out["ok"]:
        out["tail"] = text[-2000:]
    shutil.rmtree(where, ignore_errors=True)
    return out


def run(variants: tuple[str, ...] = tuple(VARIANTS), runs: int = 1) -> dict:
    logs = TMP / "suite-logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    for key in variants:
        for i in range(runs):
            log(f"suite {key} {i + 1}/{runs}: cloning and running make test (load {loadavg()})")
            rows.append(run_variant(key, logs / f"{key}-{i + 1}.log"))
            r = rows[-1]
            log(f"suite {key}: ok={r['ok']} pytest {r.get('pytest_s')} s, whole "
                f"{r.get('whole_s')} s, counts {r.get('counts')}, load {r.get('load_end')}")
    # A variant not run this time keeps its latest row (each row says when and on which commit).
    earlier = [r for r in (load("suite") or {}).get("rows", []) if r["variant"] not in variants]
    rows = sorted(rows + earlier, key=lambda r: list(VARIANTS).index(r["variant"]))
    data = {"measured": {"at": utc_now(), "load": loadavg(),
                         "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))},
            "rows": rows}
    save("suite", data)
    return data


# -- docs/benchmarks.md: §8 and its goal row, in place ------------------------------------------
SUITE_GOAL_S = 360.0
SECTION = "## 8. The suite: `make test` on a fresh clone"


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def goal_rows(d: dict) -> list[list]:
    rows = d.get("rows") or []
    now = [r for r in rows if r["variant"] == "now" and r.get("pytest_s")]
    if not now:
        return []
    others = "; ".join(f"{r['name']} {_mmss(r.get('pytest_s'))}" for r in rows
                       if r["variant"] != "now" and r.get("pytest_s"))
    times = sorted(r["pytest_s"] for r in now)
    median = statistics.median(times)
    spread = f" ({_mmss(times[0])}–{_mmss(times[-1])}, {len(times)} runs)" if len(times) > 1 else ""
    return [["8", f"pytest wall ≤ {_mmss(SUITE_GOAL_S)} on 2 cores (fresh clone; median)",
             f"{_mmss(median)}{spread} ({now[0]['name']})" + (f"; {others}" if others else ""),
             "**met**" if median <= SUITE_GOAL_S and all(r["ok"] for r in now) else "**missed**"]]


# Measured apart (2026-12-02, fresh clones, idle but for the sampler): every process's CPU time
# sampled from /proc every 0.2 s during `make test`, and pytest's --durations=0.
WHERE_IT_GOES = """\
Where the time goes (fresh clones at a670c75 and ebbf442, idle, `--durations=0`, every
process's CPU time sampled from /proc; the sampler's own load included):
* **Two workers** (14:29 of pytest, 894 s of CPU for `make test`): the cores were busy about
  half the time (894 s of CPU in 2 × 869 s). The tests wait — ECS rollouts and deregistration
  delays, health checks, circuit breakers, a browser rendering the Prefect UI — so **four
  workers** (11:40, 1,043 s of CPU, every worker busy to the end: 2,670 s of test time over
  4 × 700 s) fill the cores. Each extra worker adds a session: a sandbox, a PostgreSQL and a
  Prefect server. With `stress-ng --cpu 2` beside it, four workers took 15:58 at 3a1ab82,
  green (two workers, last session: 20:02).
* **The CPU, by process** (four workers): pytest workers (the tests, the in-process sandbox —
  moto, the ECS runtime, the ALB — and the flows they run) 405 s; the Prefect servers (one per
  worker, the e2e stack's) 364 s — their SQLite queries, the task-run recorder, the API's
  request handling, all driven by the flow runs the tests make, not idle (an idle server
  costs 1.8% of a core); the CLI subprocesses 161 s (116 calls, about 1.4 s each, mostly
  imports); service tasks (gunicorn, 203 of them) 94 s; Chromium 86 s; flow runs in the e2e
  pools' processes and other Python 150 s.
* So 6:00 on 2 cores needs the CPU below ~650 s as well as full cores: a third less work for
  the same coverage. What would take it there, not done: flow runs and CLI calls that do not
  import Prefect afresh (a pre-imported interpreter that forks per call: about 1 s of CPU per
  call: done since, `papyrus_ops.warm`, and the tests' CLI calls go through it), the Prefect
  servers on the session's PostgreSQL instead of SQLite (their largest share), one browser
  for the UI tests instead of one per test.
* 2026-12-03: the same suite (with the warm interpreter's 7 tests) took 11:42 (966 s of CPU)
  on a fresh clone at 1f7a409 in the morning, and 12:32–13:59 in three runs at 902769e in the
  afternoon; a fresh clone of 0ca0b48 (the rows' code without the warm server's wait for its
  first call) took 14:50 (1,230 s of CPU) right after them, so the spread is the machine's,
  not the change's. tests/e2e run alone and serially takes 5:58 (idle); in the suite it takes
  about twice that, sharing the cores. Splitting it into three units, each starting its own
  stack, made the suite slower (15:10, load 7, each stack's start 90–119 s): the bound is
  the CPU, not the longest unit.
* 2026-12-03, evening (8:05, 7:59–9:14, at 607df22): mostly the machine, not the code. Back to
  back on fresh clones, idle: bbaa2b4 (the afternoon runs' code) 8:42 of pytest, 727 s of CPU for
  `make test`; 607df22 8:20, 693 s — what this session changed is about 4%, within the spread.
  That change: one AssumeRole per process instead of one per client
  (`ground.aws.share_assumed_roles`; each had deep-copied the session's event hooks for its
  STS client, and the sandbox authorises each call as AWS would). The same code took 10:09
  (887 s) at 88a6eea an hour earlier, and 12:39 beside `stress-ng --cpu 2`, green.
* 2026-12-03, night (the rows above, 7:51 at 91091f6): py-spy on the four workers through a
  whole run (25 Hz) and the /proc sampler. The largest leaves in the test processes were
  `ssl.create_default_context` — Prefect builds a TLS context from certifi's bundle for every
  client (each flow run's engine, each poll of a test helper): 58 s of samples, 20 ms of CPU
  per client, though every API here is plain http — then botocore decoding endpoints.json
  and service models again for the sessions moto and the tests make (35 s), and moto listing
  its own package folder on every request to match the Host header (25 s). Now: one verified
  context per CA file (`ground.prefect_tls`, installed by the flows package; 0.6 ms per
  client), one data loader for every botocore session of a sandbox process
  (`ground.aws.share_data_loaders`), the Host's backend looked up once (`sandbox.server.
  _Dispatcher`); each tested against what it replaces. Back to back in the checkout, the
  sampler running: the workers' CPU 298 s → 237 s, pytest 8:40 → 8:10. By process after
  it: Prefect servers 226 s (a quarter of their busy samples in the task-run recorder, which
  writes each task-run event in a transaction of its own: its batch size defaults to 1;
  batches of 50 flushed every 0.5 s made the servers' CPU 692 s and pytest 11:39 — reverted),
  Chromium 70 s, service tasks 59 s, warm CLI children 45 s, the e2e pool's flow-run
  processes 39 s, CLI processes 27 s — and the VM's own kdamond and process_api threads
  178 s, 17% of the run's CPU, which no change here controls. The goal stays missed: the
  cores are busy through the run, so 6:00 needs about a third less work again. Beside
  `stress-ng --cpu 2` a fresh clone of 15584b9 took 11:20, green (12:39 at 607df22).
* 2026-12-04 (a fresh VM: the kdamond threads of the night before took 6 s, not 178 s). At
  1542d07, in a fresh clone with the /proc sampler and a per-test timeline: pytest 7:09 and
  6:56, about 700 s of CPU with the cores 84–87% busy; the four workers ended within 10 s of
  each other (tests/e2e 325 s and tests/reliability 336 s the longest units). py-spy (25 Hz) on
  the workers and the Prefect servers, then five cuts, each measured in the next run:
  (1) a Prefect server on a new SQLite file runs Prefect's migrations before it answers —
  8.8 s of CPU, 3.4 s on a migrated copy — and ten of them start in a run: a template is now
  built once per Prefect version (`prefect server database upgrade`, under a lock, so the
  four workers build it once) and copied (`papyrus_ops.prefect_local.seed`): the harness's
  start 11.1 s → 5.8 s; the CLI's resident, temporary and sqlite-stack servers copy it when
  it exists and never build it (a first call stays what Prefect makes it); (2) `Sandbox.
  client` built a boto3 client per call and the tests' helpers poll through it (27 s of the
  workers' samples): one per service and admin key now; (3) `httpx.get` parses certifi's
  bundle into a new TLS context per call, http:// or not: the servers' health polls
  (`_wait_http`, now the standard library) and the deploy probes (one context per process and
  trust setting, tested against an https service); (4) `prefect down` stopped the stack's two
  workers one after the other, each waiting out the 20 s grace (a worker's first SIGTERM
  waits for the runs it watches, which `down` ends anyway): 41 s of the e2e suite's last
  test, now 5 s for both at once; (5) the e2e ECS-pool archive paced LookupEvents at 2/s
  over the session's 3,000 events (30 of its 41 s; at 20/s now, as the demo runs — the
  pacing is tests/cloudtrail's subject). Then the tests' logs in Prefect's own 2 s batches
  instead of 0.3 s (23 s of CPU: each batch a request and a transaction) and the objects
  collection imported frozen out of the garbage collector (each worker's 26 full collections
  took 3–5.6 s, the two at its session's end 1.7 s each). Runs in the checkout as they went
  in: 6:40 (671 s of CPU), 6:18 (644 s), 6:00 (632 s), 6:03 (609 s); tests/e2e 255 s. The
  bench at c9ff7ee: 6:00, 6:28 and 6:05, the 6:28 red — the sandbox daemon rewrote its state
  files every second by truncating them, and a `sandbox up` that read a half-written
  sandbox.json took the sandbox for stopped and started a second one, which `down` then left
  running (`ground.envfile.write_atomically` since, tested with a torn writer); 1542d07 in
  the same bench session 6:28. The rows above (2354e93): 5:59, 5:53, 6:13. Beside `stress-ng
  --cpu 2`, fresh clones: 8:39 at 2354e93 with one UI test red (it clicked the first link
  named after its run, the stale "Next Run" card of a run already completed: now it opens
  the run by the id the API gives), 8:49 at 80693f7, green; idle right after, 80693f7: 6:21
  (so the median holds with about a second to spare, not more). Tried and not kept: five
  workers (7:19: tests/e2e became the longest unit, 420 s), three (slower than four), the
  services an idle server runs switched off (1.70% → 1.67% of a core: not where it goes).
  Left, by process in the last run: test workers 163 s, Prefect servers 143 s (in their
  SQLite thread, which py-spy cannot attribute to a request, and the task-run recorder), CLI
  processes and warm children 65 s, service tasks 35 s, Chromium ~30 s; collection takes the
  first 12 s of every run (four workers importing and rewriting the same 110 test files).
* Found on the way: every new botocore session read and decoded endpoints.json and its
  service's model again (`ground.aws.botocore_session` now shares one loader per process);
  two tests that failed only on a slow machine (a minute boundary crossed between two clock
  reads; a stopped task's target already draining when the verdict looked), first seen with
  four workers."""


def section(d: dict) -> str:
    from bench.fmt import table

    lines = [SECTION, "", __doc__.split("\n\n", 1)[1].split("\n`python -m bench")[0].strip(), ""]
    rows = [[r["name"], r.get("commit", ""), r.get("at", ""), "yes" if r.get("ok") else "NO",
             r["setup_s"],
             _mmss(r.get("pytest_s")), _mmss(r.get("whole_s")),
             ", ".join(f"{n} {k}" for k, n in (r.get("counts") or {}).items()),
             f"{r['load_start']} → {r.get('load_end')}"] for r in d.get("rows") or []]
    if rows:
        lines += [table(["variant", "commit", "started", "green", "setup s", "pytest", "make test",
                         "tests", "load average (1, 5, 15 min) start → end"], rows), ""]
    if d.get("measured"):
        pyc = "set" if d["measured"].get("dont_write_bytecode") else "not set"
        lines += [f"Measured, finished {d['measured']['at']}; PYTHONDONTWRITEBYTECODE {pyc} in "
                  "the shell that ran it.", ""]
    lines += [WHERE_IT_GOES, ""]
    return "\n".join(lines) + "\n"


def update_doc(d: dict, doc: Path) -> Path:
    from bench.in_place import update_in_place

    return update_in_place(doc, "8", SECTION, section(d), goal_rows(d))
