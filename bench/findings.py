"""The prose of docs/benchmarks.md: tools, and per goal what the profile showed and what would
close a gap. Numbers come from the result files where the run measures them; the profile
shares quoted are from py-spy runs on this machine (`bench/README.md` says how to repeat
them), and say so."""

from __future__ import annotations

from bench.common import stats
from bench.fmt import med, num, pct, st

TOOLS = """## Running it

`make bench` (the venv as `make test` builds it, then `.venv/bin/python -m bench`) runs all
five benchmarks in about 25 minutes on 2 cores and rewrites this file; `python -m bench
verdict|archive|service|overhead|bad_input` runs one, `python -m bench report` only rebuilds the file,
`--quick` runs tiny sizes into `bench/out/` for working on the harness. Before measuring it
waits (60 s steps, at most 15 minutes) for the 1-minute load average to drop below 2.5 and
records what it saw.

Tools besides the project's `.venv`: **wrk**, **jq**, **GNU time** (`/usr/bin/time`, peak RSS
of each child), **gzip** and **patch** — `bench/setup.sh` (called by `python -m bench`)
installs whichever is missing with `apt-get` (root); **pgbench** from the PostgreSQL 15
binaries the sandbox already needs (`/usr/lib/postgresql/15/bin`); **awscli v1** (`aws`, the
pyenv one here; `setup.sh` installs `awscli<2` into `bench/out/awscli` when there is none).
Profiles for the findings were taken with **py-spy** (`.venv/bin/pip install py-spy`; not
needed to run the bench). Scratch state (sandbox, PostgreSQL, copies of `service/`) lives
in `$TMPDIR/papyrus-bench/`, outside the repo.
"""


def render(v: dict | None, a: dict | None, s: dict | None, o: dict | None, meta: dict) -> str:
    out = ["## Findings and proposals", ""]
    out += _verdict(v)
    out += _archive(a)
    out += _service(s)
    out += _overhead(o)
    return "\n".join(out)


def _verdict(v):
    if not v:
        return []
    s, f = v["summary"]["success"], v["summary"]["failure"]
    ok = (s["ours_latency_s"]["n"] and s["ours_latency_s"]["max"] <= v["goals"]["success_s"]
          and f["ours_latency_s"]["n"] and f["ours_latency_s"]["max"] <= v["goals"]["failure_s"]
          and s["ours_right"] == s["runs"] and f["ours_right"] == f["runs"])
    lines = ["### 1. Verdict latency", ""]
    if ok:
        lines += [f"Both goals are met with room to spare: the success verdict lands "
                  f"{st(s['ours_latency_s'], 2, 's')} and the failure verdict (with exit code 3 "
                  f"and the stop reason) {st(f['ours_latency_s'], 2, 's')} after the state "
                  "change — bounded by the 1 s poll interval (`deploy.poll_seconds`) plus one "
                  "round of describe calls. The waiter is "
                  f"{num(med(s['waiter_latency_s']), 1)} s / {num(med(f['waiter_latency_s']), 1)} s "
                  "late and wrong on every rollback. Nothing to change; a shorter poll would buy "
                  "less than a second per deploy.", ""]
    else:
        lines += ["A verdict goal is missed on this run; the per-run table above shows which "
                  "run and its reason. The latency is one poll interval plus the describe "
                  "calls of one poll, so a miss means those calls were slow (moto shares the "
                  "cores with everything else).", ""]
    return lines


def _archive(a):
    if not a:
        return []
    sizes = a.get("sizes", {})
    keys = sorted(sizes, key=int)
    if not keys:
        return []
    hi = sizes[keys[-1]]
    lo = sizes[keys[0]]
    core, cli = hi["core_agg"], hi["cli_agg"]
    ratio_hi = med(core["seconds"]) / med(cli["seconds"])
    ratio_lo = med(lo["core_agg"]["seconds"]) / med(lo["cli_agg"]["seconds"])
    c0 = hi["core"][0]
    hw = c0.get("hwm_mb") or {}
    lines = ["### 2. CloudTrail archive", ""]
    lines += [f"**Memory.** Peak RSS does not grow with the events: "
              f"{num(med(lo['core_agg']['maxrss_mb']))} MB at {int(keys[0]):,} and "
              f"{num(med(core['maxrss_mb']))} MB at {int(keys[-1]):,}, against the CLI "
              f"pipeline's {num(med(cli['maxrss_mb']))} MB (aws keeps every page until it prints "
              "one JSON document at the end, and jq parses that whole document before writing "
              f"the first line). Where ours goes: {hw.get('after_import')} MB right after the "
              "imports (Prefect alone is ~65 MB of it: `python -c 'import prefect'` peaks at "
              "76 MB here, `import boto3` at 34 MB), then "
              f"{num((hw.get('after_setup') or 0) - (hw.get('after_import') or 0))} MB in the "
              "setup — mostly the EC2 client `resolve_papyrus_names` builds to turn two "
              "security group names into ids (botocore's EC2 model: +24 MB peak measured "
              "alone), and ~10 MB for the CloudTrail client — and about 1 MB while archiving. "
              "*Proposal* (`tasks/cloudtrail/names.py`, `resolve_papyrus_names`): do not build an "
              "EC2 client in the archive process — take the ids from configuration (the "
              "`[cloudtrail] extra_names` list already exists) or from the previous archive's "
              "state, and ask EC2 only when neither has them. Expected: −20 to −25 MB peak, "
              "i.e. ~100 MB.", ""]
    n_lo, n_hi = int(keys[0]), int(keys[-1])
    c_lo = lo["core"][0]
    met_all = ratio_hi <= 1 and ratio_lo <= 1
    warm_lo, warm_hi = lo.get("flow_warm_agg"), hi.get("flow_warm_agg")
    if warm_lo and warm_hi:  # the goal is the command a user runs (as in the Goals table)
        w_lo = med(warm_lo["seconds"]) / med(lo["cli_agg"]["seconds"])
        w_hi = med(warm_hi["seconds"]) / med(cli["seconds"])
        met_all = w_lo <= 1 and w_hi <= 1
        lines += [f"**Wall time.** `papyrus-ops cloudtrail-archive` (a later call) takes "
                  f"{num(w_lo, 2)}× the CLI pipeline's time at {n_lo:,} events and "
                  f"{num(w_hi, 2)}× at {n_hi:,} ({'met' if met_all else 'goal missed'}); the "
                  f"task bodies alone in a child process (core) {num(ratio_lo, 2)}× and "
                  f"{num(ratio_hi, 2)}× (CPU {num(med(core.get('cpu_s')))} s against "
                  f"{num(med(cli.get('cpu_s')))} s for aws + jq + gzip at {n_hi:,})."]
    else:
        lines += [f"**Wall time.** Ours takes {num(ratio_lo, 2)}× the CLI pipeline's time at "
                  f"{n_lo:,} events and {num(ratio_hi, 2)}× at {n_hi:,} "
                  f"({'met' if met_all else 'goal missed'}; CPU "
                  f"{num(med(core.get('cpu_s')))} s against {num(med(cli.get('cpu_s')))} s "
                  f"for aws + jq + gzip at {n_hi:,})."]
    bef, bef_lo = hi.get("before_agg"), lo.get("before_agg")
    if bef and bef_lo:
        b0 = hi["before"][0]
        lines[-1] += (
            f" Before the change it took {num(med(bef_lo['seconds']) / med(lo['cli_agg']['seconds']), 2)}× "
            f"and {num(med(bef['seconds']) / med(cli['seconds']), 2)}× (measured in the same "
            f"rounds: {st(bef_lo['seconds'], 1, 's')} and {st(bef['seconds'], 1, 's')}; "
            f"{b0['api_calls']} requests at {n_hi:,} events where now {c0['api_calls']}).")
    lines[-1] += (
        " What the profile showed before (py-spy on a 100k run): ~42% of the samples in the "
        "LookupEvents call and botocore's parsing, ~16% in gzip at level 6, ~14% in "
        "`event_line`, ~7% in the Papyrus filter — and no overlap: while a page was parsed, "
        "filtered and compressed, no request was in flight, and one-day slices ended in a "
        "partial page each (90 extra requests over 90 days). **What changed** "
        "(`tasks/cloudtrail/`, `flows/cloudtrail_archive.py`): (a) `prefetch_pages` — the "
        "next page is fetched by a thread while this one is written, at most two pages "
        "ahead; pages, errors and counters are handed to the writing thread in order, so "
        "the limiter, retries, the NextToken restart and checkpoints behave as before "
        "(tested); (b) work files at gzip level 1 (about a quarter bigger, written once); "
        "(c) one-week slices by default (resume goes by the cursor inside a slice, so "
        "nothing is lost by the longer unit). **Second round** (issue #19: 10k events no "
        "slower than the CLI pipeline; the process was CPU-bound, 7.0 s CPU of 7.8 s wall). "
        "A wrapper timing the child's answer against its exit, and py-spy on a 10k run, "
        "showed: no `.pyc` anywhere in the venv — uv, unlike pip, compiles nothing at "
        "install, and with `PYTHONDONTWRITEBYTECODE=1` (the images' environment, and this "
        "machine's) Python never writes them, so every process compiled Prefect, botocore and "
        "pydantic from source again (`python -c 'import prefect'`: 3.6 s of CPU, 1.8 s with "
        "bytecode, on the loaded machine; awscli, installed by pip, had its bytecode); "
        "0.8–1.4 s (on the loaded machine) after the answer was printed, all in "
        "CPython freeing modules — the teardown `papyrus-ops` already skips; botocore turning "
        "every EventTime into a datetime in dateutil's `tzlocal` (about half of its response "
        "parsing), which `epoch`/`fmt` then converted back through `tzlocal`'s pure-Python "
        "offsets; and the Papyrus prefilter scanning each line once per name (17 names). "
        "(d0) `make` installs with `uv pip install --compile-bytecode` (the venv is built "
        "once; the saving is in every process after, the tests' and the CLI's too — and in "
        "both variants of this table, since they share the venv); "
        "(d) the flow's CloudTrail clients leave timestamps as sent "
        "(`ground.aws.client(..., raw_timestamps=True)`, what awscli does; the lines are the "
        "same, tested); (e) the prefilter keeps only the names that hold no other name "
        "(`papyrus` stands for every `papyrus-…`: 3 scans per line, same answer, tested); "
        "(f) `event_line` builds and encodes the envelope once, and a page's lines reach "
        "each gzip file in one write (one zlib call per page; zlib releases the GIL while the "
        "prefetch thread parses the next page); (g) the child exits like "
        "`papyrus-ops` (`papyrus_ops/quick_exit.py`); (h) every botocore session of a "
        "process shares one data loader (`ground.aws.botocore_session`): each new session "
        "had read and decoded endpoints.json and its service's model again, for the EC2, "
        "CloudTrail and S3 clients alike. Not done: the EC2 client of "
        "`resolve_papyrus_names` is still built (0.3–0.5 s of CPU here, on top of the "
        "+24 MB above): the sandbox's security group ids are random, so no configuration can "
        "carry them, and ids remembered from an earlier run would miss a re-created group.")
    if warm_lo and warm_hi:
        flow_s = med(stats(r["flow_s"] for r in lo["flow_warm"]))
        lines[-1] += (
            " **Third round** (2026-12-03: the command a user runs, not the child). Since "
            "the warm interpreter (§6) a later `papyrus-ops cloudtrail-archive` imports "
            "nothing: at 10,000 events it took 2.46 s (2.38–2.62) (1.23× the pipeline; 0.83× "
            "at 100,000), of which the flow itself 2.11 s. A flow over an empty window still "
            "took 0.6 s, and "
            "py-spy on the warm interpreter's children showed where: (i) every client had "
            "assumed the flow-run role again — each ground.aws client has a botocore session of "
            "its own, botocore's assume-role cache is per session, and building the STS "
            "client for it deep-copies the session's event hooks — five AssumeRole calls per "
            "run (EC2, S3, KMS, CloudTrail in two regions); the clients of a process now "
            "share that cache (in memory, per source profile and files; "
            "`ground.aws.share_assumed_roles`, tested: four clients, one "
            "AssumeRole), as awscli shares it through `~/.aws/cli/cache`; (ii) each global "
            "source (IAM, STS in us-east-1) was read in the region's weekly slices: 26 of 39 "
            "slices held no event and each still cost a request and a task run (about 0.6 s "
            "here, 13 s at the API's 2 requests/s); a global pass is now one slice over the "
            "window (`checkpoint.plan_pass_slices`); (iii) `run_flow` copied Prefect's "
            "settings (a full re-validation, ~40 ms) even when nothing changed. The flow still "
            "reads three passes to the pipeline's one, and publishes and verifies the bundle; "
            "what remains per call is the warm child's own start (Prefect's settings and "
            "logging re-read for the call's folder, ~0.1 s), the flow run on the API, and "
            "about 15 task runs. **Fourth round** (2026-12-03, night): each Prefect client the "
            "call made (the flow run's engine, its events and logs, every artifact) built a TLS "
            "context from certifi's bundle, 20 ms of CPU each, though the API is plain http; "
            "they now share one (`ground.prefect_tls`, tested). py-spy on four later calls "
            "(200 Hz, the warm interpreter and its children) then gave 2.7 s of CPU per call "
            "under the profiler: 0.97 s in `lookup_pages` (botocore building, signing and "
            "parsing the requests, in the prefetch thread), 0.34 s decoding JSON, 0.17 s in "
            "gzip, the rest spread thin. botocore's parse of a 50-event page costs 0.60 ms "
            "against 0.26 ms for `json.loads` of it (the same dict, timestamps as sent): 0.07 s "
            "at 10,000 events, not worth a parser of our own. The pipeline runs aws, jq and "
            "gzip as three processes on the two cores; the flow is one process whose two "
            "threads share the GIL, so at 10,000 events its wall time is its CPU time."
            " **Fifth round** (2026-12-04; a later call took 1.98 s against the pipeline's "
            "1.65–1.72 s in a loop of interleaved calls on one sandbox). Timestamps inside the "
            "warm child and py-spy (250 Hz, `--idle`) showed: 0.09 s from the caller's `go` to "
            "the CLI, of it 55 ms loading Prefect's logging configuration (every setting "
            "rendered into its template) and 35 ms its settings; 70 modules the call imported "
            "that the warm interpreter had not (graphviz through `Flow.__call__`, anyio's "
            "asyncio backend at the first event, boto3's S3 transfer methods, rich's emoji "
            "table, the resident server's modules: ~0.07 s); two TLS contexts still built per "
            "call, because SSL_CERT_FILE sets Prefect's CA file (the shared one was made in "
            "each child) and the events client's version check builds its own; 28,000 "
            "copy-on-write page faults per call; the prefetch thread idle for 11 ms at each of "
            "the 14 slice boundaries (a slice's task run ending, the next starting, no request "
            "in flight); and, on the writing thread, `json.loads` of each event's CloudTrail "
            "document, 14.8 µs for ~1.4 KB — 0.15 s per 10,000 events, its largest cost. "
            "(j) The warm interpreter now imports those modules, builds the TLS context "
            "Prefect's client will use (`ground.prefect_tls.prime`, tested), freezes its heap "
            "(`gc.freeze`: 15,000 faults per call) and keeps the logging configuration it "
            "loaded, which a call reuses when its settings, file and PREFECT_LOGGING_* "
            "variables are the server's (tested: a folder's prefect.toml is still obeyed); "
            "(k) the version check shares the context; (l) one prefetch thread runs the whole "
            "run's slices in a row (`paging.Lookahead`): the next slice's first page is on its "
            "way while this one ends (tested: in order only, closed by a failure or an early "
            "stop, a retried slice fetches its own); (m) the document is parsed with orjson "
            "(Prefect's dependency), falling back to json for what only json takes (NaN, lone "
            "surrogates), so validity and strings are json's (tested); (n) progress is "
            "reported at most once a second (at 1,000 requests/s 20 pages were a tenth of "
            "one). In the same loop a later call then took 1.53–1.59 s against the "
            "pipeline's 1.63–1.66 s; in this run's rounds, at "
            f"{n_lo:,} events {st(warm_lo['seconds'], 2, 's')} ({num(w_lo, 2)}× the "
            f"pipeline; {num(w_hi, 2)}× at {n_hi:,}), of which the flow itself "
            f"{num(flow_s, 2)} s. What is left at {n_lo:,} events is the requests "
            "themselves: one stream of them, each waiting for the sandbox, their botocore "
            "work sharing the GIL with the writing thread.")
    if not met_all:
        lines[-1] += (
            f" In the child (core), what is left at {n_lo:,} events is start-up: it spends "
            f"{num(c_lo['import_s'])} s on Python and its imports (`import prefect` alone is "
            "1.8 s of CPU on the loaded machine, with bytecode; the archive's task modules are "
            "Prefect modules, and `from prefect import task` is all they take of it) and "
            f"{num(c_lo['setup_s'])} s of setup (clients, the EC2 lookup) before its first "
            "request, against ~0.5 s for `aws`; the loop itself "
            f"({num(c_lo['archive_s'])} s) is faster than the whole CLI pipeline. Closing "
            "that would mean a Prefect-free archive process, which nobody would run: the "
            "nightly job is a flow. Nor would fetching two slices at once: it would win here "
            "only because the sandbox answers at once and the bench turns the rate limit "
            "off, while LookupEvents allows 2 requests/s per region, which one stream of "
            "requests already fills (the rate-limited row below).")
    lines.append("")
    rl = a.get("rate_limited")
    if rl:
        rate = med(rl["agg"]["events_per_s_archive"])
        lines += [f"**At 2 requests/s** ours reaches {num(rate, 1)} events/s "
                  f"({pct(rate / rl['ceiling_events_per_s'], 1)} of the ceiling) with "
                  f"{sum(r['throttled'] for r in rl['runs'])} throttled requests: the "
                  "client-side limiter spaces requests exactly 0.5 s apart and every page is "
                  "full. With one-week slices a 90-day window costs at least 13 requests "
                  "(6.5 s at 2 requests/s) however few events there are; with the former "
                  "one-day slices it was 90 (45 s).", ""]
    return lines


def _service(s):
    if not s:
        return []
    r8 = s["results"].get("8", {}).get("summary")
    lines = ["### 3. Service vs database", ""]
    if r8:
        share = med(r8["dbcheck_share_of_pgbench"])
        v = s.get("variants") or {}
        base = med(v.get("baseline", {}).get("results", {}).get("8", {}).get("share_of_pgbench"))
        before = v.get("before-db-pool-change", {}).get("results", {}).get("8", {})
        hz = med(r8["healthz"]["rps"])
        lines += [f"**/dbcheck** serves {pct(share, 1)} of pgbench's inserts at 8 "
                  f"connections (goal 20%: {'met' if share >= 0.2 else 'missed'})."]
        if before:
            lines[-1] += (f" In the variant rounds, today's service made "
                          f"{pct(base, 1)} and the service as it was before the change "
                          f"{pct(med(before.get('share_of_pgbench')), 1)} "
                          f"({st(before.get('rps'), 0, 'req/s')}).")
        lines[-1] += (
            " What the profile showed before (py-spy on one gunicorn worker under `wrk -c8`): "
            "about a quarter of the busy samples in `Pool._create_connection` → "
            "`psycopg2.connect` (TCP + TLS + SCRAM) — the pool had `pool_size=2, "
            "max_overflow=2` under 4 request threads, so the 3rd and 4th concurrent requests "
            "opened and closed a connection each — and five round trips per request "
            "(pre-ping, BEGIN, INSERT, the `pg_stat_ssl` SELECT, COMMIT) to pgbench's one. "
            "**What changed** (`service/papyrus/db.py`): the pool holds `PAPYRUS_THREADS` "
            "connections; the INSERT is one autocommit statement on the pooled psycopg2 "
            "connection; the SSL status is read once per connection (a `connect` event; the "
            "response still reports that session's `pg_stat_ssl`); and the per-request "
            "pre-ping is replaced by a ping only for a connection idle ≥ 1 s plus a "
            "zero-cost check that the idle socket is not readable (a server that shut down "
            "has written its `terminating connection` or closed it) — a database restart "
            "while idle still costs no request, and a connection lost mid-use drops the "
            "whole pool (both tested in `service/tests/test_papyrus_outage.py`).")
        mi = s.get("micro") or {}
        if mi:
            lines[-1] += (" In-process, one connection, no gunicorn (ms per call): "
                          + "; ".join(f"{k} {v}" for k, v in mi.items()) + ".")
        lines.append("")
        if share < 0.2:
            lines += [
                f"What is left is CPU per request on two cores shared with wrk and PostgreSQL: "
                "under `wrk -c8` the machine runs at ~0% idle (vmstat), the gunicorn workers "
                "taking most of it — HTTP parsing, the gthread worker's poller and thread "
                "hand-offs, Flask's request/response objects, the JSON body, the access log "
                "line, then the TLS-wrapped INSERT. pgbench's C client does none of that. "
                f"/healthz, which does all of it but the INSERT, reaches {num(hz, 0)} req/s at "
                "8 connections here, so 20% of pgbench would need /dbcheck at "
                f"{pct(0.2 * med(r8['pgbench']['tps']) / hz) if hz else '–'} of /healthz's own "
                "throughput. Tried and not kept: other worker × thread layouts (2×4, 3×3, "
                "4×2, 4×4, 6×2, 8×1) — none better than the default beyond the noise of a "
                "shared machine. Closing the rest would mean leaving Flask/gunicorn on this "
                "path, which a probe endpoint does not justify.", ""]
    hv = [med(s["results"][str(c)]["summary"]["healthz_vs_hello"]) for c in s["conns"]]
    if all(x is not None and x >= 0.9 for x in hv):
        lines += ["**/healthz** keeps at least 90% of the bare hello-world at every client "
                  f"count ({', '.join(pct(x) for x in hv)}; above 100% is the shared machine's "
                  "noise between back-to-back 10 s cells): the app factory's extras (the DB "
                  "extension, blueprints, the JSON error handler) cost nothing measurable, and "
                  "/healthz never touches the database.", ""]
    else:
        lines += ["**/healthz** falls below 90% of the hello-world at some client count "
                  f"({', '.join(pct(x) for x in hv)}). Both run the same gunicorn config and "
                  "return the same JSON; the per-round ratios above swing both ways, which is "
                  "the shared machine's noise rather than the app (the handler does no I/O).",
                  ""]
    return lines


def _overhead(o):
    if not o:
        return []
    lines = ["### 4. Orchestration overhead", ""]
    fl = o.get("flows", {})
    if fl.get("flow"):
        p = fl["agg"]["prefect_s"]
        hb = fl.get("agg_heartbeat_on") or {}
        lines += [f"**Per flow run** Prefect costs {st(p, 2, 's')} on the deploy flow "
                  f"(goal ≤ 2 s: {'met' if p['max'] <= 2 else 'missed'}), flow engine and "
                  f"{num(med(fl['agg']['task_calls']), 0)} task runs together."]
        if hb.get("flow_s", {}).get("n"):
            lines[-1] += (f" Before the change it was {st(hb['prefect_s'], 2, 's')} (²: the "
                          "same flow called with Prefect's default settings, in the same "
                          "rounds).")
        lines[-1] += (" Most of the difference was the flow-run heartbeat: Prefect 3.9.1 "
                      "starts a heartbeat thread that sleeps in 1 s steps and joins it at "
                      "the end of every run, so each run waited out up to a second. **What "
                      "changed** (`papyrus_ops/commands/deploy.py`, `runner.run_flow`, used by "
                      "the CLI and the demo): flows run in the foreground have the heartbeat "
                      "off — the process that would be declared dead is the one waiting for "
                      "the answer; runs started by a worker keep Prefect's default.")
        lines.append("")
    demo = o.get("demo") or []
    if demo:
        warm = demo[-1]
        lines += [f"**The warm main job** takes {num(warm['wall_s'])} s (goal 45 s: "
                  f"{'met' if warm['wall_s'] <= 45 and warm.get('ok') else 'missed'}); "
                  "96.4 s in the previous full run (2026-11-28 22:23 UTC, before these "
                  f"changes). Where it goes now (run {warm['run']}): sandbox up after "
                  f"{num(warm['sandbox_up_s'])} s and the Prefect API answering after "
                  f"{num(warm.get('api_up_s'))} s (in parallel), "
                  + ", ".join(f"{x['step']} {num(x['seconds'])} s" for x in warm["steps"])
                  + f", the rest {num(warm['other_s'])} s (Python start-up, the three route "
                  "calls, sandbox down, the server's stop at exit). **What changed**: "
                  "(1) `papyrus_ops/commands/demo.py` spawns a temporary `prefect server "
                  "start` before the sandbox comes up, instead of the first flow run "
                  "starting Prefect's own temporary server serially (its imports and "
                  "migrations took 10–17 s here; the preflight step was 15.7 s, now it is "
                  "the checks alone); (2) the demo's CloudTrail step runs at 20 requests/s "
                  "on the sandbox, which enforces no AWS limit (46.2 s at 2 requests/s over "
                  "90 one-day slices before; the nightly deployment keeps 2/s), and one-week "
                  "slices; (3) the heartbeat change above, up to 1 s on each of the seven "
                  "flow runs; (4) the sandbox skips moto's default AMI catalogue (~1 s of "
                  "its start).", ""]
        if warm["wall_s"] > 45:
            lines += ["What is left is mostly fixed work: the sandbox start (moto's imports "
                      "and first EC2 call, initdb and a PostgreSQL with SSL, the seeded "
                      "service's first task booting gunicorn), the deploy waiting for a real "
                      "task to boot and pass its probes, and start-up imports — each of which "
                      "grows with the load average of a shared 2-core machine.", ""]
    return lines
