"""docs/benchmarks.md from bench/out/results/*.json (or bench/out/benchmarks-quick.md).

Every figure in the file comes from the result files; the prose around a figure that misses
its goal states what the profile of that run showed and what would close the gap (see the
"Findings" section; the profiles were taken with py-spy on this machine, see bench/README).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench import common, findings
from bench.common import OUT, ROOT
from bench.fmt import med, met, num, pct, st, table
from bench.in_place import keep_sections

DOC = ROOT / "docs" / "benchmarks.md"
SECTIONS = (("1", "verdict"), ("2", "archive"), ("3", "service"), ("4", "overhead"),
            ("5", "bad_input"), ("6", "startup"), ("7", "blue_green"), ("8", "suite"))
# The benchmarks that rewrite their own section in place (bench.in_place.update_in_place).
IN_PLACE = ("startup", "blue_green", "suite")


# -- sections ---------------------------------------------------------------------------------
def section_machine(meta: dict, runs: dict) -> str:
    m, v = meta.get("machine", {}), meta.get("versions", {})
    lines = ["## Machine and load", ""]
    lines.append(table(["", ""], [
        ["CPU", f"{m.get('nproc')} × {m.get('cpu_model')}"],
        ["memory", f"{m.get('mem_total_gib')} GiB"],
        ["kernel", m.get("kernel")],
        ["run", f"{meta.get('started')} → {meta.get('finished')} "
                f"({num((meta.get('seconds') or 0) / 60, 1)} min for "
                f"`{' '.join(meta.get('selected', []))}`)"],
    ]))
    lines += ["", "Load average (1, 5, 15 min) — the machine is shared with other engineers' test "
              "runs, so every figure below was taken under the load shown:", ""]
    rows = [["whole run: start", meta.get("load_start")]]
    qw = meta.get("quiet_wait")
    if qw:
        rows.append([f"after waiting {num(qw['waited_seconds'], 0)} s for 1-min load ≤ "
                     f"{qw['threshold']}", meta.get("load_at_measure_start")])
    rows.append(["whole run: end", meta.get("load_end")])
    for name, t in (meta.get("timings") or {}).items():
        rows.append([f"{name}: start → end ({num(t['seconds'], 0)} s)",
                     f"{t['load_start']} → {t['load_end']}"])
    lines.append(table(["when", "load average"], [[r[0], str(r[1])] for r in rows]))
    if qw and not qw.get("quiet"):
        lines += ["", f"The 1-min load did not drop below {qw['threshold']} within "
                  f"{num(qw['waited_seconds'] / 60, 0)} minutes of waiting; the run went ahead "
                  "under that load. Absolute figures (req/s, events/s, seconds) are therefore "
                  "pessimistic; the side-by-side ratios, measured back to back, are the "
                  "meaningful part."]
    other = {k: r for k, r in runs.items() if k not in meta.get("selected", [])}
    if other:
        lines += ["", "Results of benchmarks not in this run come from earlier runs: " + ", ".join(
            f"`{k}` ({r.get('started')}, load {r.get('load_at_measure_start')})"
            for k, r in sorted(other.items()))]
    lines += ["", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    return "\n".join(lines)


def goals_verdict(d: dict) -> list[list]:
    if not d:
        return []
    s, f = d["summary"]["success"], d["summary"]["failure"]
    g = d["goals"]
    ok_s = s["ours_latency_s"]["n"] and s["ours_latency_s"]["max"] <= g["success_s"] \
        and s["ours_right"] == s["runs"]
    ok_f = f["ours_latency_s"]["n"] and f["ours_latency_s"]["max"] <= g["failure_s"] \
        and f["ours_right"] == f["runs"]
    return [
        ["1", f"success verdict ≤ {num(g['success_s'], 0)} s after COMPLETED (every run)",
         f"{st(s['ours_latency_s'], 2, 's')}, {s['ours_right']}/{s['runs']} right; waiter "
         f"{st(s['waiter_latency_s'], 1, 's')}", met(bool(ok_s))],
        ["1", f"failure verdict naming the exit code ≤ {num(g['failure_s'], 0)} s after FAILED",
         f"{st(f['ours_latency_s'], 2, 's')}, {f['ours_right']}/{f['runs']} right (exit code "
         f"named); waiter {st(f['waiter_latency_s'], 1, 's')}, {f['waiter_right']}/{f['runs']} "
         "right", met(bool(ok_f))],
    ]


def _archive_numbers(d: dict) -> dict:
    sizes = d.get("sizes", {})
    keys = sorted(sizes, key=int)
    lo, hi = (sizes[keys[0]], sizes[keys[-1]]) if keys else ({}, {})
    out = {"lo": keys[0] if keys else None, "hi": keys[-1] if keys else None}
    if keys:
        out["core_rss_lo"] = med(lo["core_agg"]["maxrss_mb"])
        out["core_rss_hi"] = med(hi["core_agg"]["maxrss_mb"])
        out["cli_rss_hi"] = med(hi["cli_agg"]["maxrss_mb"])
        out["core_s_hi"] = med(hi["core_agg"]["seconds"])
        out["cli_s_hi"] = med(hi["cli_agg"]["seconds"])
        out["core_s_lo"] = med(lo["core_agg"]["seconds"])
        out["cli_s_lo"] = med(lo["cli_agg"]["seconds"])
        if "flow" in lo and "flow" in hi:
            out["flow_rss_lo"] = lo["flow"][0]["maxrss_mb"]
            out["flow_rss_hi"] = hi["flow"][0]["maxrss_mb"]
            out["flow_s_hi"] = hi["flow"][0]["seconds"]
        if "flow_warm_agg" in hi and "flow_warm_agg" in lo:
            out["warm_s_hi"] = med(hi["flow_warm_agg"]["seconds"])
            out["warm_s_lo"] = med(lo["flow_warm_agg"]["seconds"])
        if "before_agg" in hi and "before_agg" in lo:
            out["before_s_hi"] = med(hi["before_agg"]["seconds"])
            out["before_s_lo"] = med(lo["before_agg"]["seconds"])
    return out


def goals_archive(d: dict) -> list[list]:
    if not d:
        return []
    n = _archive_numbers(d)
    rows = []
    if n.get("hi"):
        flat = n["core_rss_hi"] / n["core_rss_lo"]
        txt = f"core {num(n['core_rss_lo'])} → {num(n['core_rss_hi'])} MB ({num(flat, 2)}×)"
        ok = flat <= 1.2
        if "flow_rss_hi" in n:
            fflat = n["flow_rss_hi"] / n["flow_rss_lo"]
            txt += (f"; whole flow {num(n['flow_rss_lo'])} → {num(n['flow_rss_hi'])} MB "
                    f"({num(fflat, 2)}×)")
            ok = ok and fflat <= 1.2
        rows.append(["2", f"peak RSS flat from {int(n['lo']) // 1000}k to {int(n['hi']) // 1000}k "
                     "events (≤ 1.2×)", txt, met(ok)])
        q = n["core_rss_hi"] / n["cli_rss_hi"]
        txt = (f"core {num(n['core_rss_hi'])} MB = {pct(q)} of the CLI pipeline's "
               f"{num(n['cli_rss_hi'])} MB")
        ok = q <= 0.25
        if "flow_rss_hi" in n:
            fq = n["flow_rss_hi"] / n["cli_rss_hi"]
            txt += f"; whole flow {num(n['flow_rss_hi'])} MB = {pct(fq)}"
        rows.append(["2", f"peak RSS ≤ ¼ of the CLI pipeline's at {int(n['hi']) // 1000}k", txt,
                     met(ok)])
        r_hi = n["core_s_hi"] / n["cli_s_hi"]
        r_lo = n["core_s_lo"] / n["cli_s_lo"]
        txt = (f"core {int(n['lo']) // 1000}k: {num(n['core_s_lo'])} s vs "
               f"{num(n['cli_s_lo'])} s ({num(r_lo, 2)}×); {int(n['hi']) // 1000}k: "
               f"{num(n['core_s_hi'])} s vs {num(n['cli_s_hi'])} s ({num(r_hi, 2)}×)")
        if "warm_s_hi" in n:
            # The goal is the command a user runs (a later call: Prefect already imported),
            # which does more than the pipeline: us-east-1's global passes, evidence, upload.
            r_lo, r_hi = n["warm_s_lo"] / n["cli_s_lo"], n["warm_s_hi"] / n["cli_s_hi"]
            txt = (f"`papyrus-ops cloudtrail-archive`, later call: {int(n['lo']) // 1000}k "
                   f"{num(n['warm_s_lo'])} s ({num(r_lo, 2)}×), {int(n['hi']) // 1000}k "
                   f"{num(n['warm_s_hi'])} s ({num(r_hi, 2)}×); " + txt)
        if "before_s_hi" in n:
            txt += (f"; before the change (same run) {num(n['before_s_lo'])} s "
                    f"({num(n['before_s_lo'] / n['cli_s_lo'], 2)}×) and "
                    f"{num(n['before_s_hi'])} s ({num(n['before_s_hi'] / n['cli_s_hi'], 2)}×)")
        rows.append(["2", "wall time no worse than the CLI pipeline (rate limit off)", txt,
                     met(r_hi <= 1.0 and r_lo <= 1.0)])
    rl = d.get("rate_limited")
    if rl:
        rate = med(rl["agg"]["events_per_s_archive"])
        rows.append(["2", "at 2 requests/s: ≥ 95% of the 100 events/s ceiling",
                     f"{st(rl['agg']['events_per_s_archive'], 1, 'events/s')} = "
                     f"{pct(rate / rl['ceiling_events_per_s'])}", met(rate >= 95)])
    return rows


def goals_service(d: dict) -> list[list]:
    if not d:
        return []
    rows = []
    r8 = d["results"].get("8")
    if r8:
        share = med(r8["summary"]["dbcheck_share_of_pgbench"])
        txt = (f"{st(r8['summary']['dbcheck']['rps'], 0, 'req/s')} vs pgbench "
               f"{st(r8['summary']['pgbench']['tps'], 0, 'tps')}: {pct(share, 1)}")
        before = _variant_share(d, "before-db-pool-change")
        if before is not None:
            txt += f"; before the change {pct(before, 1)} (same-run pgbench)"
        rows.append(["3", "/dbcheck ≥ 20% of pgbench's tps at 8 clients", txt,
                     met(share >= 0.20)])
    parts, ok = [], True
    for c in d["conns"]:
        s = d["results"][str(c)]["summary"]
        r = med(s["healthz_vs_hello"])
        ok = ok and r >= 0.90
        parts.append(f"{c}: {pct(r)}")
    rows.append(["3", "/healthz ≥ 90% of a bare Flask hello-world (req/s)",
                 "connections " + ", ".join(parts), met(ok)])
    return rows


def _variant_share(d: dict, name: str):
    info = (d.get("variants") or {}).get(name)
    return med(info["results"].get("8", {}).get("share_of_pgbench")) if info else None


def goals_overhead(d: dict) -> list[list]:
    if not d:
        return []
    rows = []
    fl = d.get("flows", {})
    if fl.get("flow"):
        p = fl["agg"]["prefect_s"]
        txt = (f"{st(p, 2, 's')} per deploy flow run (flow engine "
               f"{st(fl['agg']['flow_engine_s'], 2)} + {num(med(fl['agg']['task_calls']), 0)} "
               f"task runs {st(fl['agg']['task_engine_s'], 2)}); flow − plain script "
               f"{st(fl['agg']['flow_minus_plain_s'], 1, 's')}")
        rows.append(["4", "Prefect adds ≤ 2 s per flow run", txt, met(p["max"] <= 2.0)])
    demo = d.get("demo") or []
    if demo:
        warm = demo[-1]
        txt = f"{num(warm['wall_s'])} s (run {warm['run']} of {len(demo)}; command wall time)"
        rows.append(["4", "warm main job (`make demo`) ≤ 45 s", txt,
                     met(warm["wall_s"] <= 45 and warm.get("ok"))])
    return rows


def goals_bad_input(d: dict) -> list[list]:
    if not d:
        return []
    sm, goal = d["summary"], d["goal_s"]
    cur = sm.get("current/missing-tag", {}).get("seconds_to_error")
    typo = sm.get("current/typo", {}).get("seconds_to_error")
    old = sm.get("before/missing-tag", {}).get("seconds_to_error")
    if not cur or not cur.get("n"):
        return []
    ok = (cur["max"] <= goal and (not typo or not typo.get("n") or typo["max"] <= goal)
          and not sm["current/missing-tag"]["mutating_runs"])
    return [["5", f"bad image (`--image papyrus:no-such-tag`) answered ≤ {num(goal, 0)} s, one "
             "line, nothing changed",
             f"{st(cur, 2, 's')}; typo {st(typo, 2, 's')}; before {st(old, 1, 's')}",
             met(ok)]]


def section_verdict(d: dict) -> str:
    if not d:
        return "## 1. Verdict latency\n\nNot run yet (`python -m bench verdict`).\n"
    s = d["summary"]
    lines = ["## 1. Verdict latency: `wait_for_verdict` vs `aws ecs wait services-stable`", "",
             "On the sandbox's local ECS runtime. Success: `runtime.timing.start_delay = T` "
             "(T cycles through " + ", ".join(f"{t:g}" for t in d["Ts"]) + " s), so the "
             "deployment COMPLETES T s plus the service's boot after the update. Failure: the "
             "DB secret's `dbname` drifted, so every task of the new revision exits 3 at boot "
             "(gunicorn's startup check), and `failure_threshold = 1` makes the circuit breaker "
             "FAIL the deployment at the first crash (start delay T as well) and roll back. "
             "The state change t0 is the deployment's `updatedAt` when a 20 Hz "
             "`describe_services` poller first sees COMPLETED/FAILED. Ours: the "
             "`wait_for_verdict` task body with the production client (adaptive retries) and "
             f"the environment's poll interval ({num(d['poll_seconds'], 1)} s); its "
             "`decided_at` − t0. Waiter: awscli v1 `aws ecs wait services-stable` started at "
             "the same moment (15 s delay, 40 attempts); its exit − t0, exit 0 read as "
             "\"success\".", ""]
    rows = []
    for kind in ("success", "failure"):
        k = s[kind]
        ratio = (med(k["waiter_latency_s"]) / med(k["ours_latency_s"])
                 if med(k["ours_latency_s"]) else None)
        rows.append([kind, st(k["state_change_after_update_s"], 1, "s"),
                     st(k["ours_latency_s"], 2, "s"), f"{k['ours_right']}/{k['runs']}",
                     st(k["waiter_latency_s"], 1, "s"), f"{k['waiter_right']}/{k['runs']}",
                     f"{num(ratio, 0)}×" if ratio else "–"])
    lines.append(table(["deployment", "t0 after update", "ours: latency", "ours right",
                        "waiter: latency", "waiter right", "waiter/ours"], rows))
    lines += ["", "Every run:", ""]
    rr = []
    for r in d["runs"]:
        rr.append([r["kind"], f"{r['T']:g}", num(r["state_change_after_update_s"], 2),
                   num(r["ours_latency_s"], 2), "yes" if r["ours_right"] else "NO",
                   num(r["waiter_latency_s"], 1), r["waiter_says"],
                   "yes" if r["waiter_right"] else "NO",
                   (r["ours_reason"] or "")[:120].replace("|", "/")])
    lines.append(table(["kind", "T s", "t0 s", "ours s", "ours right", "waiter s",
                        "waiter says", "waiter right", "our reason"], rr))
    f = s["failure"]
    lines += ["", "Reading: our verdict comes one poll interval (at most) after the state "
              "change, plus one `describe_services` and, for a failure, the stopped task's "
              "`describe_tasks` (which is how the exit code gets into the reason). The waiter "
              "polls every 15 s, so it answers 0–15 s late, and it cannot tell a rollback from "
              f"a success: on the {f['runs']} circuit-breaker failures it exited 0 (\"stable\") "
              f"{f['runs'] - f['waiter_right']} times — the old revision was stable again — which "
              "is the seed incident's trap. Without rollback it would wait out its 10 minutes.",
              ""]
    return "\n".join(lines)


def section_archive(d: dict) -> str:
    if not d:
        return "## 2. CloudTrail archive\n\nNot run yet (`python -m bench archive`).\n"
    lines = ["## 2. CloudTrail archive: ours vs `aws cloudtrail lookup-events | jq | gzip`", "",
             "The sandbox's LookupEvents store holds N events from `generate_history(N)` over "
             "89 days (10% Papyrus-related); every tool archives exactly that window. "
             "*ours (core)*: `python -m bench.archive_child`, the flow's own task bodies "
             "(`resolve_papyrus_names`, `prepare_archive`, `archive_slice` per one-week slice) in a "
             "child process, client limiter at 1000 requests/s. *ours (flow)*: `papyrus-ops "
             "cloudtrail-archive --since … --until … --max-rps 1000 --no-resume` — the whole "
             "flow as a user runs it (Prefect flow run on the bench's Prefect API, both gzip "
             "files, evidence bundle with manifest, S3 upload, state), once in a cold interpreter "
             "(`PAPYRUS_CLI_WARM=0`: its peak RSS is its own) and in every round as a later "
             "call (through the warm interpreter, the way a user's second call runs). "
             "*CLI*: `aws cloudtrail "
             "lookup-events --start-time … --end-time … --output json | jq -c '.Events[]' | "
             "gzip > x.gz`. Peak RSS is each process's own (GNU time `%M`), the CLI's is the "
             "sum of aws + jq + gzip; events/s is events ÷ wall time of the whole command. "
             "Sandbox rate limit off; every output was counted (events column).", ""]
    for n, e in sorted(d["sizes"].items(), key=lambda kv: int(kv[0])):
        lines += [f"### {int(n):,} events", ""]
        rows = []

        def row(label, agg, runs, extra=""):
            rows.append([label, len(runs), st(agg["seconds"], 1, "s"),
                         st(agg["events_per_s_wall"], 0), st(agg.get("maxrss_mb"), 0, "MB") + extra,
                         st(agg.get("cpu_s"), 1, "s"),
                         ", ".join(sorted({str(r["events"]) for r in runs}))])
        row("ours (core)", e["core_agg"], e["core"])
        if e.get("flow"):
            row("ours (flow, `papyrus-ops cloudtrail-archive`, cold interpreter)",
                e["flow_agg"], e["flow"])
        if e.get("flow_warm"):  # no peak RSS or CPU: the forked child's, not seen here
            row("ours (flow, `papyrus-ops cloudtrail-archive`, later call) ²",
                e["flow_warm_agg"], e["flow_warm"], " ²")
        if e.get("before"):
            row("ours (core) before the change ¹", e["before_agg"], e["before"])
        ca = e["cli_agg"]
        row("aws cli \\| jq \\| gzip", ca, e["cli"],
            f" (aws {st(ca['aws_maxrss_mb'], 0)}, jq {st(ca['jq_maxrss_mb'], 0)}, "
            f"gzip {st(ca['gzip_maxrss_mb'], 1)})")
        lines.append(table(["tool", "runs", "wall", "events/s", "peak RSS", "CPU (user+sys)",
                            "events"], rows))
        core = e["core"][0]
        hw = core.get("hwm_mb") or {}
        if e.get("flow_warm"):
            fw = e["flow_warm_first"] or {}
            lines += ["", f"² Through the warm interpreter (`papyrus_ops.warm`), as every call "
                      "after a machine's first runs: the call is a child forked from a process "
                      "that imported Prefect and the flows once, so its peak RSS is not the "
                      "caller's to measure (the cold row has it). The flow's own time (its "
                      f"result's `seconds`): "
                      f"{st(common.stats(r['flow_s'] for r in e['flow_warm']), 2, 's')}"
                      f". The first call (it starts the warm interpreter, and runs cold): "
                      f"{num(fw.get('seconds'), 1)} s, not counted. It reads three passes "
                      "(the region, then us-east-1 for IAM and STS) where the pipeline reads "
                      "one, and publishes the bundle."]
        lines += ["", f"ours (core), one run: {core['api_calls']} LookupEvents calls "
                  f"({core['slices']} slices), Python start-up + imports {num(core['import_s'])} s, "
                  f"setup {num(core['setup_s'])} s, archiving {num(core['archive_s'])} s; peak RSS "
                  f"{hw.get('after_import')} MB after imports, {hw.get('after_setup')} MB after "
                  f"setup, {hw.get('end')} MB at the end.", ""]
    rl = d.get("rate_limited")
    if rl:
        lines += ["### At the API's rate: the sandbox enforcing 2 requests/s", "",
                  f"{rl['events']:,} events in one day (one 24 h slice, 60 full pages); ours "
                  "at its default client rate (2 requests/s); the sandbox's token bucket "
                  "(`set_rate_limit(2)`) throttles anything faster. Events/s counts from the "
                  "first request to the last page written plus the 0.5 s slot the last request "
                  "occupies (N requests need N slots; start-up excluded); the ceiling is "
                  "2 × 50 = 100 events/s.", ""]
        rows = []
        for r in rl["runs"]:
            rows.append(["ours (core)", r["events"], num(r["archive_s"], 1),
                         num(r["events_per_s_archive"], 1),
                         pct(r["events_per_s_archive"] / rl["ceiling_events_per_s"], 1),
                         r["api_calls"], r["throttled"], num(r["seconds"], 1)])
        cli = rl.get("cli")
        if cli:
            rows.append(["aws cli \\| jq \\| gzip", cli["events"], "–",
                         num(cli["events_per_s_wall"], 1), "–", "–", cli.get("throttled"),
                         num(cli["seconds"], 1) + ("" if cli["ok"] else " (failed)")])
        lines.append(table(["tool", "events", "archiving s", "events/s", "of ceiling",
                            "API calls", "throttled", "wall s"], rows))
        if cli:
            lines += ["", "The CLI has no client-side limiter: it fires requests as fast as it "
                      f"can and leans on botocore's retries; {cli.get('throttled')} of its "
                      "requests were throttled" + (", and it still finished." if cli["ok"] else
                                                   ", and it gave up (exit "
                                                   f"{cli['aws_rc']}).")]
        lines.append("")
    if any(e.get("before") for e in d["sizes"].values()):
        lines.append("¹ The archive as it was before the benchmark-driven changes (see "
                     "Findings), restored in the child process only (`bench/archive_child.py "
                     "--before --slice-hours 24`): no prefetch thread, gzip level 6, one-day "
                     "slices, botocore's datetimes for EventTime, the prefilter scanning for "
                     "every name, CPython's teardown at exit. Interleaved with the other tools "
                     "in every round.")
        lines.append("")
    lines.append("1M events was not run: at the rates above it would take ~10× the 100k "
                 "time per tool (well over the bench's 20 minutes on 2 shared cores); the "
                 "memory figures are flat, so nothing suggests a different picture.")
    lines.append("")
    return "\n".join(lines)


def section_service(d: dict) -> str:
    if not d:
        return "## 3. Service vs database\n\nNot run yet (`python -m bench service`).\n"
    lines = ["## 3. Service vs database: wrk on /healthz and /dbcheck, pgbench, bare Flask", "",
             "PostgreSQL 15 from the sandbox's helper (SSL on, SCRAM over TCP only with SSL, "
             "like RDS with `rds.force_ssl=1`; fsync off as in the sandbox), schema from "
             "`service/papyrus/sql/init.sql` applied as the app role. Papyrus under gunicorn "
             "exactly as the Dockerfile runs it (`gunicorn --config python:papyrus.gunicorn_conf "
             "papyrus.wsgi:app`, PAPYRUS_WORKERS 2, PAPYRUS_THREADS 4, gthread, access log on, "
             "PAPYRUS_DB_STARTUP_CHECK=1, PGSSLMODE=require). The hello-world "
             "(`bench/hello_app.py`, same JSON, no extensions) under the same gunicorn config. "
             f"wrk on loopback, {d['seconds']} s per cell, `-t1` for 1 connection and `-t2` "
             "otherwise, a Lua script adding `Authorization: Bearer …` for /dbcheck. pgbench "
             "`-n -T 10 -c C -j min(C,2)` over SSL (PGSSLMODE=require) with the same single-row "
             "INSERT (`INSERT INTO skus(sku,name,source) VALUES ('SKU-BENCH-' || :client_id || "
             "'-' || random(), 'b', 'app')`). wrk, gunicorn and PostgreSQL share the 2 cores. "
             f"The four are interleaved per client count, {d['runs']} rounds; ratios are per "
             "round (back to back), then the median.", ""]
    rows = []
    for c in d["conns"]:
        s = d["results"][str(c)]["summary"]
        for name, label in (("healthz", "/healthz"), ("hello", "hello-world"),
                            ("dbcheck", "/dbcheck")):
            rows.append([c, label, st(s[name]["rps"], 0), st(s[name]["p50_ms"], 2),
                         st(s[name]["p99_ms"], 1), ""])
        rows.append([c, "pgbench INSERT", st(s["pgbench"]["tps"], 0),
                     f"avg {st(s['pgbench']['latency_avg_ms'], 2)}", "", ""])
        rows[-4][5] = f"{pct(med(s['healthz_vs_hello']))} of hello-world"
        rows[-2][5] = f"{pct(med(s['dbcheck_share_of_pgbench']), 1)} of pgbench"
    lines.append(table(["conns", "endpoint", "req/s (tps)", "p50 ms", "p99 ms", "ratio"], rows))
    errs = {c: d["results"][str(c)]["summary"]["dbcheck_errors"] for c in d["conns"]}
    lines += ["", f"Errors (non-2xx, socket) on /dbcheck per client count: {errs}; rows "
              f"inserted by /dbcheck during the run: {d.get('rows_inserted_by_dbcheck')}.", ""]
    v = d.get("variants")
    if v:
        pg = v.get("_pgbench", {})
        lines += ["### /dbcheck before and after the change (copies of service/, outside the "
                  "repo)", "", "`baseline` is a copy of today's `service/`; every other variant "
                  "is a copy with one patch from `bench/patches/` applied, run like the "
                  "original; all variants and pgbench interleaved per round at 8 connections. "
                  "pgbench in these rounds: "
                  + ", ".join(f"{c} clients {st(x['tps'], 0, 'tps')}" for c, x in pg.items())
                  + ".", ""]
        rows = []
        for name, info in v.items():
            if name.startswith("_"):
                continue
            for c, r in info["results"].items():
                rows.append([name, c, st(r["rps"], 0), st(r["p50_ms"], 2), st(r["p99_ms"], 1),
                             pct(med(r["share_of_pgbench"]), 1), r["errors"]])
        lines.append(table(["variant", "conns", "req/s", "p50 ms", "p99 ms", "of pgbench",
                            "errors"], rows))
        lines.append("")
        for name, info in v.items():
            if not name.startswith("_") and info.get("description"):
                lines.append(f"* `{name}`: {info['description']}")
        lines.append("")
    return "\n".join(lines)


def section_overhead(d: dict) -> str:
    if not d:
        return "## 4. Orchestration overhead\n\nNot run yet (`python -m bench overhead`).\n"
    lines = ["## 4. Orchestration overhead", ""]
    fl = d.get("flows", {})
    if fl.get("flow"):
        a = fl["agg"]
        lines += ["### The deploy flow vs a plain boto3 script", "",
                  "Same sandbox, same image (`latest`), alternately. *Plain*: describe the "
                  "service and its task definition, pin `latest` in ECR, register only if the "
                  "image changed (it never does here, nor in the flow), update the service with "
                  "a forced new deployment, poll `describe_services` every second until our "
                  "deployment is COMPLETED and running — no gate, no probes, no evidence. "
                  "*Flow*: `deploy(env=\"local\", image=\"latest\")` in-process against a "
                  "running Prefect API. Both start a deployment whose task really boots. "
                  "Prefect's own time is measured, not guessed: in the bench process the flow "
                  "body, every task body and every task call are timed, and Prefect = (flow "
                  "call − flow body) + Σ (task call − task body); the preflight checks, which "
                  "run as concurrently submitted task runs, count as our code.", ""]
        rows = [["plain script", len(fl["plain"]), st(a["plain_s"], 2, "s"), "–", "–"],
                ["deploy flow", len(fl["flow"]), st(a["flow_s"], 2, "s"),
                 st(a["prefect_s"], 2, "s"), st(a["our_code_s"], 2, "s")]]
        hb = fl.get("agg_heartbeat_on")
        if hb and hb["flow_s"]["n"]:
            rows.append(["deploy flow, heartbeat on (before the change) ²", hb["flow_s"]["n"],
                         st(hb["flow_s"], 2, "s"), st(hb["prefect_s"], 2, "s"), "–"])
        lines.append(table(["", "runs", "wall", "of which Prefect", "of which our code"], rows))
        lines += ["", f"Flow − plain: {st(a['flow_minus_plain_s'], 2, 's')} per run, of which "
                  f"Prefect {st(a['prefect_s'], 2, 's')} (flow engine "
                  f"{st(a['flow_engine_s'], 2, 's')}, {num(med(a['task_calls']), 0)} task runs "
                  f"{st(a['task_engine_s'], 2, 's')} together); the rest is the work the plain "
                  "script skips: the preflight gate, the task definition render/diff, the "
                  "/healthz + /dbcheck + CLI-insert probes, the evidence bundle and its S3 "
                  "upload. The first flow run in a fresh process took "
                  f"{num(fl['warmup_flow']['seconds'], 1)} s (imports, clients; not counted).",
                  ""]
        last = fl["flow"][-1]
        lines += ["Task calls of one flow run (wall, including Prefect's share): " + ", ".join(
            f"{k} {num(v, 2)} s" for k, v in list(last["task_call_s"].items())[:10]) + ".", ""]
    demo = d.get("demo") or []
    if demo:
        lines += ["### The main job: `make demo` (`papyrus-ops demo`)", "",
                  "As the README runs it: its own sandbox in the background, its own temporary "
                  "Prefect server (no PREFECT_API_URL: the demo spawns `prefect server start` "
                  "before the sandbox comes up), a private PREFECT_HOME shared by the runs so "
                  "run 2 is warm. Wall time is the command's; the steps are the demo's own "
                  "step table.", ""]
        runs = list(demo)
        names = [s["step"] for s in runs[-1]["steps"]]
        rows = [["sandbox up (since start)"] + [num(r["sandbox_up_s"], 1) for r in runs],
                ["Prefect API answering (since start, in parallel)"]
                + [num(r.get("api_up_s"), 1) for r in runs]]
        for i, name in enumerate(names):
            def cell(r, i=i):
                return num(r["steps"][i]["seconds"], 1) if i < len(r["steps"]) else "–"
            rows.append([name] + [cell(r) for r in runs])
        rows.append(["rest (start-up imports, routes, sandbox down, exit)"]
                    + [num(r["other_s"], 1) for r in runs])
        rows.append(["**total (command wall time)**"] + [f"**{num(r['wall_s'], 1)}**"
                                                          for r in runs])
        lines.append(table(["step"] + [f"run {r['run']}" for r in runs], rows))
        lines.append("")
    return "\n".join(lines)


def section_bad_input(d: dict) -> str:
    if not d:
        return "## 5. Bad input answered first\n\nNot run yet (`python -m bench bad_input`).\n"
    sm = d["summary"]
    lines = ["## 5. Bad input answered first", "",
             f"`papyrus-ops deploy --image <bad> --env local` on the sandbox, run as `python -m "
             f"papyrus_ops.cli` with the venv's interpreter: *current* is commit "
             f"`{d['commit']}` (a worktree of HEAD), "
             f"*before* is commit `{d['before_commit']}` from a git worktree (cwd and PYTHONPATH "
             "= that tree), where the whole preflight gate ran first and `pin_image` retried "
             "ECR's deterministic \"not found\" 3 times. One sandbox for both, the sandbox's "
             "variables in the environment and no PREFECT_API_URL (as a CI step: a flow run "
             "starts Prefect's temporary server). One warm-up run per cell first (not counted), "
             f"then {d['runs_per_cell']} rounds, variants alternating order per round. *to error "
             "line*: from the start to the arrival of the `papyrus-ops: error:` line on stderr "
             "(else the last stderr line); *mutating calls*: non-read calls the sandbox's fault "
             "layer served during the run (`Faults.served`); *ECS changed*: task-definition "
             "revisions or the service's deployments differ before/after.", ""]
    rows = []
    for key, image in d["inputs"].items():
        for name in ("current", "before"):
            c = sm.get(f"{name}/{key}")
            if not c:
                continue
            rows.append([f"`{image}`", name, c["runs"], st(c["seconds_to_error"], 2, "s"),
                         st(c["seconds_to_exit"], 2, "s"),
                         ", ".join(str(x) for x in c["exit_codes"]),
                         st(c["stderr_lines"], 0), f"{c['traceback_runs']}/{c['runs']}",
                         (", ".join(c["mutating_calls"]) or "none")
                         + f" ({c['mutating_runs']}/{c['runs']} runs)",
                         f"{c['ecs_changed_runs']}/{c['runs']}",
                         st(c["aws_calls"], 0), st(c["ecr_describe_images"], 0)])
        r = sm.get(f"ratio/{key}")
        if r is not None:
            rows.append([f"`{image}`", "**after/before**", "", f"**{num(r, 3)}×**"]
                        + [""] * 8)
    lines.append(table(["input", "variant", "runs", "to error line", "to exit", "exit code",
                        "stderr lines", "Traceback", "mutating calls", "ECS changed",
                        "AWS calls", "of which ECR DescribeImages"], rows))
    lines += ["", f"Target: the current code answers ≤ {num(d['goal_s'], 0)} s. Machine load "
              f"(`uptime`) at the start: `{d['uptime_start']}`; at the end: "
              f"`{d['uptime_end']}` (2 cores shared with other engineers' test runs).", ""]
    lines.append("Error lines (last run of each cell):")
    lines.append("")
    for k, c in sm.items():
        if k.startswith("ratio/"):
            continue
        lines.append(f"* {k}: `{c['error_line'].replace('`', chr(39))}`")
    cur, old = sm.get("current/missing-tag"), sm.get("before/missing-tag")
    if cur and old:
        lines += ["", f"Reading: the missing tag is now answered by one `DescribeImages` "
                  f"({num(med(cur['aws_calls']), 0)} AWS calls, read-only) before any flow or "
                  f"Prefect import — {st(cur['seconds_to_error'], 2, 's')} against "
                  f"{st(old['seconds_to_error'], 1, 's')} before, when the same line came after "
                  f"Prefect's temporary server started, the preflight gate ran "
                  f"({num(med(old['aws_calls']), 0)} read calls across EC2, RDS, Secrets "
                  f"Manager, S3, ECS, ECR) and `pin_image` asked ECR "
                  f"{num(med(old['ecr_describe_images']), 0)} times, with "
                  f"{num(med(old['stderr_lines']), 0)} stderr lines (Prefect's task/flow logs, "
                  f"with tracebacks) and ~2 s more to stop the temporary server after "
                  f"the error line. Neither variant served a mutating call. The typo was already "
                  f"refused before any flow at `{d['before_commit']}`; today it is "
                  f"{st(sm['current/typo']['seconds_to_error'], 2, 's')} vs "
                  f"{st(sm['before/typo']['seconds_to_error'], 2, 's')} — the CLI now imports "
                  "boto3 at start-up for every command (`-X importtime` at 1160c6b: "
                  "`papyrus_ops.commands.render` → `ground.aws` → `boto3`, ~0.24 s cumulative), "
                  "well inside the target but a cost every command pays."]
    warm = d.get("warmup") or {}
    if warm:
        lines += ["", "Warm-up runs (first in the run, not counted): " + "; ".join(
            f"{k} {num(w['seconds_to_error'], 2)} s (exit {w['exit_code']})"
            for k, w in warm.items()) + "."]
    lines.append("")
    return "\n".join(lines)


def write(quick: bool = False) -> Path:
    meta = common.load("meta") or {}
    v, a, s, o = (common.load(n) for n in ("verdict", "archive", "service", "overhead"))
    b = common.load("bad_input")

    parts = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`.venv/bin/python -m bench`) on "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; raw data in "
        "`bench/out/results/*.json` (git-ignored). Each figure is a median with (min–max) "
        "over the runs shown. Rerun one part with `python -m bench "
        "verdict|archive|service|overhead|bad_input` (the report is rebuilt from the latest result of "
        "each).",
        "",
        findings.TOOLS,
        section_machine(meta, meta.get("runs", {})),
        "## Goals",
        "",
        table(["§", "goal", "measured", ""],
              goals_verdict(v) + goals_archive(a) + goals_service(s) + goals_overhead(o)
              + goals_bad_input(b)),
        "",
        section_verdict(v),
        section_archive(a),
        section_service(s),
        section_overhead(o),
        section_bad_input(b),
        findings.render(v, a, s, o, meta),
    ]
    text = "\n".join(parts).rstrip() + "\n"
    if not quick and DOC.exists():
        # What this machine has no raw results for, and the sections their own benchmarks
        # rewrite in place, stay as the report has them (run alone, `archive` used to leave
        # every other section "not run yet" and drop §6–§8).
        keep = [num for num, name in SECTIONS if name in IN_PLACE or not common.load(name)]
        text = keep_sections(DOC.read_text(), text, keep)
        kept = [num for num, name in SECTIONS if name not in IN_PLACE and num in keep]
        if kept:
            note = (f"§{', §'.join(kept)}: as the report had them, from earlier runs whose raw "
                    "results are not on this machine (they are git-ignored).")
            text = text.replace("\n## Goals\n", f"\n{note}\n\n## Goals\n", 1)
    path = OUT / "benchmarks-quick.md" if quick else DOC
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
