"""6. Start-up a user feels: the Prefect tax of one CLI call, and a cold clone to a finished demo.

A. `papyrus-ops preflight --env local --json` on the bench's sandbox (a clean one: every check
   passes), as a person or CI runs it, each call a new process. The tax of a call is its wall
   time minus the flow's own time (the result's `seconds`: from the flow body's start to its
   result) — imports, the Prefect API, the flow engine, the exit. Five ways, interleaved, each
   call started on a quiet machine (`bench.common.settle`: under 15% busy over half a second,
   so a call does not share the cores with what the previous variant left running, such as
   a temporary server shutting down or a warm interpreter importing):
   * before: no PREFECT_API_URL and `PAPYRUS_PREFECT_SERVER=temporary`, no warm interpreter —
     Prefect's temporary server for every call (what every call paid at first); a first call
     beforehand creates its database, so the figures are of later calls;
   * after: `papyrus-ops` as it is, no PREFECT_API_URL — the checkout's resident server and
     its warm interpreter (`papyrus_ops.warm`: the call is a child forked from a process that
     imported the CLI once); the first call (which starts both) reported apart, then the later
     calls;
   * cold interpreter: the resident server as "after", `PAPYRUS_CLI_WARM=0` — every call
     imports Prefect, boto3 and the flows itself (what "after" measured before the warm
     interpreter);
   * reference: PREFECT_API_URL of a server already up (what `papyrus-ops prefect up` or
     Prefect Cloud gives), the warm interpreter on (its own, started by a first call);
   * before the cuts: the cold interpreter on the resident server, with the start-up cuts of
     issue #19's point 2 undone in that child only (`_BEFORE_CUTS`): no `.pyc` for the
     dependencies or the checkout when PYTHONDONTWRITEBYTECODE is set (as uv installed them
     before `make` asked for bytecode, so every call compiled them again), FastAPI imported to
     store the flow run's parameters, and the resident server's health check through an httpx
     client.
B. Cold start: `git clone` of this checkout's HEAD into a temporary folder, then `make demo`
   there (the venv, the install and the README's main job) with an empty package cache
   (`UV_CACHE_DIR` new, `PIP_NO_CACHE_DIR=1`), and `NO_UV=1 make demo` (pip) as the before
   variant. Both use this machine's package indexes as configured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import (
    PY,
    ROOT,
    TMP,
    clean_env,
    fresh_shell_env,
    log,
    run_child,
    save,
    settle,
    stats,
)

# The "before the cuts" child: the CLI with the old behaviour put back before it runs.
_BEFORE_CUTS = r"""
import os, sys
if os.environ.get("PYTHONDONTWRITEBYTECODE"):
    # No .pyc under the checkout (its .venv included), as before `make` compiled them: the
    # loader's cache path raises NotImplementedError, so it compiles the source (and, with
    # PYTHONDONTWRITEBYTECODE, writes nothing). The standard library keeps its own .pyc.
    import _frozen_importlib_external as _bx
    _root, _cache = sys.argv[1], _bx.cache_from_source
    def _no_pyc(path, *a, **k):
        if str(path).startswith(_root):
            raise NotImplementedError
        return _cache(path, *a, **k)
    _bx.cache_from_source = _no_pyc
import contextlib
from papyrus_ops import cli, runner
from papyrus_ops.prefect_local import resident
runner._plain_parameters = lambda flow_fn: contextlib.nullcontext()  # Prefect encodes (FastAPI)
def _healthy(api_url):
    import httpx
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
resident._healthy = _healthy
sys.argv = ["papyrus-ops", *sys.argv[2:]]
cli.main()
"""


def _preflight(env: dict, before_cuts: bool = False) -> dict:
    args = ["preflight", "--env", "local", "--json"]
    cmd = ([PY, "-c", _BEFORE_CUTS, str(ROOT), *args] if before_cuts
           else [str(Path(PY).parent / "papyrus-ops"), *args])
    r = run_child(cmd, env=env, timeout=600)
    try:
        res = json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        res = {}
    flow_s = res.get("seconds")
    return {"seconds": round(r.seconds, 3), "flow_s": flow_s,
            "tax_s": round(r.seconds - flow_s, 3) if flow_s is not None else None,
            "verdict": res.get("verdict"), "exit": r.returncode}


def cli_tax(sb, prefect_url: str, runs: int = 3) -> dict:
    base = {k: v for k, v in clean_env({**sb.env(), "PAPYRUS_SANDBOX_DIR": str(sb.state_dir),
                                       "PAPYRUS_EVIDENCE_ROOT": str(TMP / "evidence")}).items()
            if k not in ("PREFECT_API_URL", "PAPYRUS_PREFECT_SERVER")}
    resident_dir, warm_dir = TMP / "cli-server", TMP / "cli-warm"
    for folder in (resident_dir, warm_dir):
        shutil.rmtree(folder, ignore_errors=True)
    base["PAPYRUS_CLI_WARM_DIR"] = str(warm_dir)
    cold = {"PAPYRUS_CLI_WARM": "0"}
    envs = {
        "before": {**base, **cold, "PAPYRUS_PREFECT_SERVER": "temporary",
                   "PREFECT_HOME": str(TMP / "cli-temporary-home")},
        "after": {**base, "PAPYRUS_PREFECT_CLI_DIR": str(resident_dir)},
        "cold_interpreter": {**base, **cold, "PAPYRUS_PREFECT_CLI_DIR": str(resident_dir)},
        "reference": {**base, "PREFECT_API_URL": prefect_url},
        "before_cuts": {**base, **cold, "PAPYRUS_PREFECT_CLI_DIR": str(resident_dir)},
    }
    data: dict = {"command": "papyrus-ops preflight --env local --json", "runs": runs,
                  "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))}
    try:
        data["before_first"] = _preflight(envs["before"])
        data["after_first"] = _preflight(envs["after"])
        data["reference_first"] = _preflight(envs["reference"])  # starts its warm interpreter
        log(f"cli tax: first calls: temporary {data['before_first']}, resident "
            f"{data['after_first']}, reference {data['reference_first']}")
        rows: dict[str, list] = {k: [] for k in envs}
        for i in range(runs):
            for name, env in envs.items():
                waited = settle()
                rows[name].append(_preflight(env, before_cuts=name == "before_cuts"))
                rows[name][-1]["settled_s"] = waited
                log(f"cli tax {name} {i + 1}/{runs}: {rows[name][-1]}")
        data["rows"] = rows
        data["agg"] = {name: {k: stats(r[k] for r in rs) for k in ("seconds", "flow_s", "tax_s")}
                       for name, rs in rows.items()}
    finally:
        from papyrus_ops.prefect_local import resident
        from papyrus_ops.warm import server as warm_server

        warm_server.stop(warm_dir)
        resident.stop(resident_dir)
    return data


def _cold(tag: str, before: bool) -> dict:
    where = TMP / f"cold-{tag}"
    shutil.rmtree(where, ignore_errors=True)
    cache = TMP / f"uv-cache-{tag}"
    shutil.rmtree(cache, ignore_errors=True)
    env = fresh_shell_env({"UV_CACHE_DIR": str(cache), "PIP_NO_CACHE_DIR": "1",
                           **({"NO_UV": "1"} if before else {})})
    t0 = time.monotonic()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True, env=env)
    t_clone = time.monotonic() - t0
    t1 = time.monotonic()
    install = subprocess.run(["make", ".venv/.installed"], cwd=where, env=env,
                             capture_output=True, text=True)
    t_install = time.monotonic() - t1
    t2 = time.monotonic()
    demo = subprocess.run(["make", "demo"], cwd=where, env=env, capture_output=True, text=True)
    t_demo = time.monotonic() - t2
    ok = install.returncode == 0 and demo.returncode == 0
    out = {"variant": "before (pip)" if before else "after (uv)", "ok": ok,
           "clone_s": round(t_clone, 1), "install_s": round(t_install, 1),
           "demo_s": round(t_demo, 1), "total_s": round(time.monotonic() - t0, 1)}
    if not ok:
        out["tail"] = (install.stderr + demo.stdout + demo.stderr)[-1500:]
    shutil.rmtree(where, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return out


def cold_start(runs: int = 2, before: bool = True) -> dict:
    rows = []
    for i in range(runs):
        rows.append(_cold(f"after-{i}", before=False))
        log(f"cold start after {i + 1}/{runs}: {rows[-1]}")
    before_rows = []
    if before:
        before_rows.append(_cold("before", before=True))
        log(f"cold start before: {before_rows[-1]}")
    agg = {k: stats(r[k] for r in rows if r["ok"]) for k in
           ("clone_s", "install_s", "demo_s", "total_s")}
    return {"rows": rows, "before": before_rows, "agg": agg}


def run(sb, prefect_url: str, runs: int = 3, cold_runs: int = 2, before: bool = True) -> dict:
    from bench.common import loadavg, utc_now

    data = {"measured": {"at": utc_now(), "load": loadavg()},
            "cli_tax": cli_tax(sb, prefect_url, runs=runs),
            "cold_start": cold_start(cold_runs, before=before)}
    save("startup", data)
    return data


# -- docs/benchmarks.md: §6 and its goal rows, in place --------------------------------------------
TAX_GOAL_S, COLD_GOAL_S = 2.0, 90.0
SECTION = "## 6. Start-up: the CLI's Prefect tax and a cold clone to a finished demo"


def goal_rows(d: dict) -> list[list]:
    from bench.fmt import med, met, st

    rows = []
    agg = (d.get("cli_tax") or {}).get("agg") or {}
    if agg.get("after"):
        tax = agg["after"]["tax_s"]
        rows.append(["6", f"the CLI's Prefect tax on a later call ≤ {TAX_GOAL_S:.0f} s",
                     f"{st(tax, 2, 's')} (resident server, warm interpreter); before (a "
                     f"temporary server per call) {st(agg['before']['tax_s'], 1, 's')}"
                     + (f"; cold interpreter {st(agg['cold_interpreter']['tax_s'], 2, 's')}"
                        if agg.get("cold_interpreter") else "")
                     + f"; with an API already up {st(agg['reference']['tax_s'], 2, 's')}"
                     + (f"; before the start-up cuts {st(agg['before_cuts']['tax_s'], 2, 's')}"
                        if agg.get("before_cuts") else ""),
                     met(med(tax) is not None and tax["max"] <= TAX_GOAL_S)])
    cold = d.get("cold_start") or {}
    total = (cold.get("agg") or {}).get("total_s")
    if total and total.get("n"):
        before = cold.get("before") or []
        b = f"; before (pip) {before[0]['total_s']} s" if before and before[0]["ok"] else ""
        rows.append(["6", f"cold start: `git clone` to the end of `make demo` ≤ "
                     f"{COLD_GOAL_S:.0f} s", f"{st(total, 1, 's')}{b}",
                     met(total["max"] <= COLD_GOAL_S)])
    return rows


def section(d: dict) -> str:
    from bench.fmt import st, table

    tax = d.get("cli_tax") or {}
    agg = tax.get("agg") or {}
    lines = [SECTION, "", __doc__.split("\n\n", 1)[1].strip(), ""]
    if agg:
        names = {"before": "before: Prefect's temporary server per call",
                 "after": "after: the checkout's resident server and warm interpreter "
                          "(later calls)",
                 "cold_interpreter": "cold interpreter: resident server, PAPYRUS_CLI_WARM=0",
                 "reference": "reference: PREFECT_API_URL of a server already up (warm)",
                 "before_cuts": "before the cuts: resident server, cold interpreter, no .pyc, "
                                "FastAPI, httpx health check"}
        rows = [[names[k], st(agg[k]["seconds"], 2, "s"), st(agg[k]["flow_s"], 2, "s"),
                 st(agg[k]["tax_s"], 2, "s")] for k in names if k in agg]
        first = [["first call, temporary server (creates its database)",
                  tax["before_first"]["seconds"], tax["before_first"]["flow_s"],
                  tax["before_first"]["tax_s"]],
                 ["first call, resident server (starts it and the warm interpreter)",
                  tax["after_first"]["seconds"], tax["after_first"]["flow_s"],
                  tax["after_first"]["tax_s"]]]
        pyc = ("set, as in this machine's shells" if tax.get("dont_write_bytecode")
               else "not set (Python writes the .pyc itself, so the bytecode cut changes "
               "nothing here)")
        lines += [f"`{tax['command']}`, {tax['runs']} calls each, interleaved; "
                  f"PYTHONDONTWRITEBYTECODE {pyc}:", "",
                  table(["how", "wall", "flow's own time", "tax (wall − flow)"], rows + first),
                  ""]
    if d.get("measured"):
        lines += [f"Measured {d['measured']['at']}, load average {d['measured']['load']}.", ""]
    if agg:
        lines += ["Once no server has to start, what was left of a cold call's tax was "
                  "the same with any API: importing Prefect itself (its settings, client and "
                  "context modules build their pydantic models at import; `python -X "
                  "importtime`), boto3 and the flows, about 1.2 s of CPU here, then the flow "
                  "engine's calls around the body. The warm interpreter (`papyrus_ops.warm`) "
                  "takes the imports out of every call after the first: the call connects "
                  "to a process of this checkout that imported them once and forks a child "
                  "for it, which takes the call's stdin, stdout, stderr, folder, umask, "
                  "argv and environment, reloads Prefect's settings from them and runs the "
                  "CLI; signals are relayed and the exit status is the child's. It serves "
                  "only calls that would import the same code the same way (the socket's "
                  "name hashes the interpreter, the source files' mtimes and the "
                  "import-time environment) and stops after 10 idle minutes. What is left is "
                  "the client's own start-up, the fork, the settings reload and the flow "
                  "engine's API calls. Earlier cuts: the "
                  "venv and the checkout are compiled to bytecode at install (uv, unlike pip, "
                  "does not by default, and with PYTHONDONTWRITEBYTECODE no call ever wrote a "
                  "`.pyc`, so each compiled Prefect, boto3 and the flows again); a flow run's "
                  "plain parameters are stored without importing FastAPI (Prefect's "
                  "`serialize_parameters`); the resident server's health check uses the "
                  "standard library instead of an httpx client (an SSL context from certifi "
                  "for an http:// URL); every botocore session of a process shares one data "
                  "loader (`ground.aws.botocore_session`), so endpoints.json and the service "
                  "models are read and decoded once, not once per client. The exit no longer "
                  "adds CPython's teardown "
                  "(`papyrus_ops/quick_exit.py`).", ""]
    cold = d.get("cold_start") or {}
    if cold.get("rows"):
        rows = [[r["variant"], "yes" if r["ok"] else "NO", r["clone_s"], r["install_s"],
                 r["demo_s"], r["total_s"]] for r in cold["rows"] + cold.get("before", [])]
        lines += ["Cold start (seconds):", "",
                  table(["variant", "ok", "clone", "venv + install", "make demo (after the "
                         "install)", "total"], rows), ""]
    return "\n".join(lines) + "\n"


def update_doc(d: dict, doc: Path) -> Path:
    """Replace §6 and its goal rows in `doc`, leaving every other section as it is (their raw
    results may not be on this machine)."""
    from bench.in_place import update_in_place

    return update_in_place(doc, "6", SECTION, section(d), goal_rows(d))
