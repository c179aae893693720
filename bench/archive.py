"""2. CloudTrail archive: events/s and peak RSS, ours beside `aws cloudtrail lookup-events | jq | gzip`.

The sandbox's LookupEvents store is filled with `generate_history(N)` spread over 89 days
(ending an hour ago), and every tool archives exactly that window:
* ours, core: `python -m bench.archive_child` — the flow's task bodies in a child process
  (its own peak RSS, by wait4), rate limit off on both sides (client --max-rps 1000);
* ours, flow: `papyrus-ops cloudtrail-archive --since … --until … --max-rps 1000` — the whole
  flow as a user runs it (Prefect flow run against the bench's Prefect API, evidence bundle,
  S3 upload, state), once per size;
* the manual way: `aws cloudtrail lookup-events --start-time … --end-time … --output json |
  jq -c '.Events[]' | gzip > x.gz`, each process's own peak RSS.
Then, with the sandbox enforcing 2 requests/s (`set_rate_limit(2)`), ours at its default
2 requests/s over a one-day window of 3000 events (60 full pages): events/s against the
100 events/s ceiling (2 x 50). And the manual pipeline under the same limit, once.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import (
    PY,
    TMP,
    aws_cli,
    clean_env,
    log,
    read_time_report,
    run_child,
    save,
    settle,
    start_sandbox,
    stats,
    timed,
    wait_rusage,
)

DAY = 86400
BEFORE_SLICE_HOURS = 24  # the flow's default before the change (now 168)


def _fmt(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def fill(sb, n: int, days: int, anchor: int) -> tuple[str, str]:
    """Replace the store's events with `n` over `days` days ending at `anchor`; returns the
    half-open window [since, until) that holds exactly them, whole 24 h slices."""
    from sandbox import cloudtrail
    from sandbox.seed import ACCOUNT_ID

    s = sb.settings
    names = sb.cloudtrail_names()
    store = sb.cloudtrail.get(ACCOUNT_ID, s.region)
    store.clear()
    store.add_events(cloudtrail.generate_history(n, days=days, now=anchor, names=names,
                                                 account_id=ACCOUNT_ID, region=s.region))
    return _fmt(anchor - days * DAY + 1), _fmt(anchor + 1)


def store_of(sb):
    from sandbox.seed import ACCOUNT_ID

    return sb.cloudtrail.get(ACCOUNT_ID, sb.settings.region)


def count_lines_gz(path: Path) -> int:
    n = 0
    with gzip.open(path, "rb") as f:
        for _ in f:
            n += 1
    return n


def ours_core(sb, since: str, until: str, max_rps: float | None, tag: str,
              before: bool = False) -> dict:
    work = TMP / f"archive-work-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [PY, "-m", "bench.archive_child", "--since", since, "--until", until,
           "--work", str(work)]
    if max_rps:
        cmd += ["--max-rps", str(max_rps)]
    if before:
        cmd += ["--before", "--slice-hours", str(BEFORE_SLICE_HOURS)]
    env = clean_env({**sb.env(), "PAPYRUS_EVIDENCE_ROOT": str(TMP / "evidence"),
                     "PAPYRUS_SANDBOX_DIR": str(sb.state_dir)})
    store = store_of(sb)
    calls0, throttled0 = store.calls, store.throttled
    r = run_child(cmd, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"archive child failed ({r.returncode}): {r.stderr[-2000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    lines = count_lines_gz(work / "events.jsonl.gz")
    shutil.rmtree(work, ignore_errors=True)
    calls = list(store.call_times)[-(store.calls - calls0):] if store.calls > calls0 else []
    out = {"tool": "ours-core" + (" (before)" if before else ""),
           "seconds": round(r.seconds, 3), "maxrss_mb": round(r.maxrss_mb, 1),
           "cpu_s": round(r.user_s + r.sys_s, 2), "events": info["events"], "lines": lines,
           "papyrus": info["papyrus"], "pages": info["pages"], "slices": info["slices"],
           "archive_s": info["archive_s"], "import_s": info["import_s"],
           "setup_s": info["setup_s"], "hwm_mb": info.get("hwm_mb"),
           "api_calls": store.calls - calls0, "throttled": store.throttled - throttled0}
    out["events_per_s_wall"] = round(out["events"] / r.seconds, 1)
    # From the first request to the last page written, plus the limiter slot the last request
    # occupies (N requests at R/s need N/R seconds): comparable with the 2 x 50 ceiling.
    slot = 1.0 / max_rps if max_rps else 1.0 / 2.0
    out["events_per_s_archive"] = round(out["events"] / (info["archive_s"] + slot), 1)
    if len(calls) >= 2:
        # Server side: from the first request to the last one plus one request interval.
        span = calls[-1] - calls[0]
        out["server_span_s"] = round(span, 3)
        out["calls_per_s_server"] = round((len(calls) - 1) / span, 3) if span > 0 else None
    return out


WARM_DIR = TMP / "archive-cli-warm"


def ours_flow(sb, since: str, until: str, prefect_env: dict, warm: bool = False) -> dict:
    """`papyrus-ops cloudtrail-archive` as a user runs it. warm=False: a cold interpreter
    (`PAPYRUS_CLI_WARM=0`), whose peak RSS is the whole flow's own; warm=True: through the
    bench's warm interpreter (a later call on a machine: Prefect already imported), whose peak
    RSS is the forked child's and not seen here — wall time only."""
    env = clean_env({**sb.env(), **prefect_env, "PAPYRUS_EVIDENCE_ROOT": str(TMP / "evidence"),
                     "PAPYRUS_SANDBOX_DIR": str(sb.state_dir),
                     "PAPYRUS_CLI_WARM": "1" if warm else "0",
                     "PAPYRUS_CLI_WARM_DIR": str(WARM_DIR)})
    cmd = [str(Path(PY).parent / "papyrus-ops"), "cloudtrail-archive", "--env", "local",
           "--since", since, "--until", until, "--max-rps", "1000", "--no-resume", "--json"]
    r = run_child(cmd, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"papyrus-ops cloudtrail-archive failed ({r.returncode}): "
                           f"{r.stderr[-2000:]}")
    res = json.loads(r.stdout[r.stdout.index("{"):])
    data = res["data"]
    out = {"tool": "ours-flow (papyrus-ops cloudtrail-archive)" + (" warm" if warm else ""),
           "seconds": round(r.seconds, 3), "flow_s": res.get("seconds"), "warm": warm}
    if warm:
        return {**out, "events": data["events"], "papyrus": data["papyrus_events"],
                "events_per_s_wall": round(data["events"] / r.seconds, 1)}
    return {**out, "maxrss_mb": round(r.maxrss_mb, 1), "cpu_s": round(r.user_s + r.sys_s, 2),
            "events": data["events"], "papyrus": data["papyrus_events"],
            "events_per_s_wall": round(data["events"] / r.seconds, 1),
            "upload_pending": (res.get("evidence") or {}).get("upload_pending")}


def cli_pipeline(sb, since: str, until: str, tag: str, timeout: float = 1800) -> dict:
    """aws … | jq -c '.Events[]' | gzip > x.gz, each stage under GNU time (own peak RSS)."""
    import threading

    out_path = TMP / f"cli-{tag}.jsonl.gz"
    reports = {k: TMP / f"time-cli-{tag}-{k}.txt" for k in ("aws", "jq", "gzip")}
    # A HOME of this sandbox's own (as bench/verdict.py): awscli caches the flow-run profile's
    # assumed-role credentials in ~/.aws/cli/cache for an hour, and credentials from an earlier
    # sandbox (another moto, an earlier bench run) are refused by this one (403: the pipeline
    # archives 0 events).
    env = clean_env({**sb.env(), "HOME": str(sb.state_dir / "awscli-home")})
    t0 = time.monotonic()
    with open(out_path, "wb") as out_f:
        aws = subprocess.Popen(timed([aws_cli(), "cloudtrail", "lookup-events", "--start-time",
                                      since, "--end-time", until, "--output", "json"],
                                     reports["aws"]),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        jq = subprocess.Popen(timed(["jq", "-c", ".Events[]"], reports["jq"]), stdin=aws.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        gz = subprocess.Popen(timed(["gzip", "-6"], reports["gzip"]), stdin=jq.stdout,
                              stdout=out_f)
        aws.stdout.close()
        jq.stdout.close()
        procs = {"aws": aws, "jq": jq, "gzip": gz}
        errs: dict[str, bytes] = {}
        readers = [threading.Thread(target=lambda n=n, p=p: errs.__setitem__(n, p.stderr.read()),
                                    daemon=True) for n, p in (("aws", aws), ("jq", jq))]
        for t in readers:
            t.start()
        res, ends = {}, {}
        for name, p in procs.items():
            code, _ = wait_rusage(p, timeout)
            ends[name] = time.monotonic()
            try:
                rss, user, sys_ = read_time_report(reports[name])
            except (OSError, ValueError, IndexError):
                rss = user = sys_ = float("nan")
            res[name] = {"rc": code, "maxrss_mb": round(rss, 1), "cpu_s": round(user + sys_, 2)}
        for t in readers:
            t.join(5)
    seconds = max(ends.values()) - t0
    lines = count_lines_gz(out_path) if res["gzip"]["rc"] == 0 else 0
    out_path.unlink(missing_ok=True)
    ok = all(v["rc"] == 0 for v in res.values())
    return {"tool": "aws cli | jq | gzip", "seconds": round(seconds, 3), "ok": ok,
            "events": lines, "maxrss_mb": round(sum(v["maxrss_mb"] for v in res.values()), 1),
            "aws_maxrss_mb": res["aws"]["maxrss_mb"], "jq_maxrss_mb": res["jq"]["maxrss_mb"],
            "gzip_maxrss_mb": res["gzip"]["maxrss_mb"],
            "cpu_s": round(sum(v["cpu_s"] for v in res.values()), 2),
            "events_per_s_wall": round(lines / seconds, 1) if seconds else None,
            "aws_rc": res["aws"]["rc"],
            "aws_stderr": errs.get("aws", b"").decode(errors="replace").strip()[-400:]}


def _agg(rows: list[dict]) -> dict:
    keys = ("seconds", "maxrss_mb", "events_per_s_wall", "events_per_s_archive", "cpu_s",
            "aws_maxrss_mb", "jq_maxrss_mb", "gzip_maxrss_mb")
    return {k: stats(r.get(k) for r in rows) for k in keys if any(k in r for r in rows)}


def run(sizes=(10_000, 100_000), runs=(3, 2), rate_events=3000, rate_runs=2,
        prefect_env: dict | None = None, flow_once: bool = True, cli_rate_limited: bool = True,
        before: bool = True, sb=None) -> dict:
    own = sb is None
    if own:
        sb = start_sandbox(TMP / "sandbox-archive")
    anchor = int(time.time()) - 3600
    data: dict = {"sizes": {}, "anchor": _fmt(anchor)}
    shutil.rmtree(WARM_DIR, ignore_errors=True)
    try:
        store = store_of(sb)
        store.set_rate_limit(None)
        for n, k in zip(sizes, runs, strict=True):
            t = time.monotonic()
            since, until = fill(sb, n, 89, anchor)
            log(f"archive: {n} events loaded in {time.monotonic() - t:.1f}s; window {since} .. "
                f"{until}")
            rows_core, rows_cli, rows_before, rows_warm = [], [], [], []
            first_warm = None
            if prefect_env:
                # The first call on the machine starts the warm interpreter (and runs cold):
                # reported apart, as in §6.
                first_warm = ours_flow(sb, since, until, prefect_env, warm=True)
                log(f"archive {n}: flow, first warm call {first_warm['seconds']}s")
                settle()
            for i in range(k):  # interleaved, so load drift hits every tool alike
                rows_core.append(ours_core(sb, since, until, 1000, f"{n}-{i}"))
                log(f"archive {n}: ours-core {rows_core[-1]['seconds']}s "
                    f"{rows_core[-1]['maxrss_mb']} MB ({rows_core[-1]['events']} events)")
                rows_cli.append(cli_pipeline(sb, since, until, f"{n}-{i}"))
                if rows_cli[-1]["events"] != n:  # a refused call is not a fast pipeline
                    raise RuntimeError(f"the CLI pipeline archived {rows_cli[-1]['events']} of "
                                       f"{n} events: {rows_cli[-1]['aws_stderr']}")
                log(f"archive {n}: cli {rows_cli[-1]['seconds']}s {rows_cli[-1]['maxrss_mb']} MB "
                    f"(aws {rows_cli[-1]['aws_maxrss_mb']}, jq {rows_cli[-1]['jq_maxrss_mb']}; "
                    f"{rows_cli[-1]['events']} events)")
                if prefect_env:
                    rows_warm.append(ours_flow(sb, since, until, prefect_env, warm=True))
                    log(f"archive {n}: flow, warm {rows_warm[-1]['seconds']}s "
                        f"(flow {rows_warm[-1]['flow_s']}s)")
                if before:
                    rows_before.append(ours_core(sb, since, until, 1000, f"{n}-b{i}",
                                                 before=True))
                    log(f"archive {n}: ours-core (before) {rows_before[-1]['seconds']}s "
                        f"{rows_before[-1]['maxrss_mb']} MB ({rows_before[-1]['events']} events)")
            entry = {"window": [since, until], "core": rows_core, "cli": rows_cli,
                     "core_agg": _agg(rows_core), "cli_agg": _agg(rows_cli)}
            if rows_before:
                entry["before"] = rows_before
                entry["before_agg"] = _agg(rows_before)
            if rows_warm:
                entry["flow_warm"] = rows_warm
                entry["flow_warm_agg"] = _agg(rows_warm)
                entry["flow_warm_first"] = first_warm
            if prefect_env and flow_once:
                entry["flow"] = [ours_flow(sb, since, until, prefect_env)]
                entry["flow_agg"] = _agg(entry["flow"])
                log(f"archive {n}: flow {entry['flow'][0]['seconds']}s "
                    f"{entry['flow'][0]['maxrss_mb']} MB")
            data["sizes"][str(n)] = entry
        # Rate limited: the API's 2 requests/s, enforced by the sandbox.
        since, until = fill(sb, rate_events, 1, anchor)
        store.set_rate_limit(2)
        rate_rows = []
        for i in range(rate_runs):
            time.sleep(1.0)  # let the server's bucket refill
            rate_rows.append(ours_core(sb, since, until, None, f"rate-{i}"))
            r = rate_rows[-1]
            log(f"archive rate-limited: {r['events']} events in {r['archive_s']}s "
                f"({r['events_per_s_archive']} ev/s), {r['api_calls']} calls, "
                f"{r['throttled']} throttled")
        data["rate_limited"] = {"events": rate_events, "window": [since, until],
                                "runs": rate_rows, "agg": _agg(rate_rows),
                                "ceiling_events_per_s": 100.0}
        if cli_rate_limited:
            time.sleep(1.0)
            throttled0 = store.throttled
            cli = cli_pipeline(sb, since, until, "rate", timeout=150)
            cli["throttled"] = store.throttled - throttled0
            data["rate_limited"]["cli"] = cli
            log(f"archive rate-limited cli: ok={cli['ok']} {cli['events']} events in "
                f"{cli['seconds']}s, {cli['throttled']} throttled")
        store.set_rate_limit(None)
    finally:
        from papyrus_ops.warm import server as warm_server

        warm_server.stop(WARM_DIR)
        if own:
            sb.stop()
    save("archive", data)
    return data

