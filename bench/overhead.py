"""4. Orchestration overhead: the deploy flow beside a plain boto3 script, and the warm demo.

A. On the sandbox (in this process, a Prefect API already up), alternately:
   * plain: describe the service and its task definition, pin `latest` in ECR, register a
     revision only if the image changed, update the service (force new deployment), poll
     describe_services every `deploy_poll_seconds` until our deployment is COMPLETED with every
     task running — what someone would script with boto3;
   * flow: `deploy(env="local", image="latest")` — the real flow (preflight gate, digest pin,
     task definition diff/register, update, true verdict, probes, CLI insert, evidence).
   Both deploy the same image, so each starts a new deployment whose task really boots.
   The flow run is instrumented in this process (nothing in the repo changes): the flow body
   and every task body are timed, and so is every task call, so
       Prefect's own time = (flow call - flow body) + sum over task calls (call - body)
   and the rest is our code's work (the part the plain script does not do is the gate, the
   probes and the evidence). Submitted (concurrent) preflight task runs count as our work.
B. `papyrus-ops demo` (the README's main job) twice, as `make demo` runs it (own sandbox in the
   background, its own temporary Prefect server); the second run is the warm one. Its step
   table is parsed to say where the time goes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pkgutil
import re
import shutil
import threading
import time
from pathlib import Path

from bench.common import (
    PY,
    TMP,
    clean_env,
    log,
    run_child,
    save,
    start_sandbox,
    stats,
    wait_stable,
)

FLOW_GOAL_S = 2.0
DEMO_GOAL_S = 45.0


# -- A. plain script ---------------------------------------------------------------------------
def plain_deploy(sb, image_tag: str = "latest", poll: float = 1.0, timeout: float = 120) -> dict:
    """The same boto3 calls, no Prefect, no gate, no evidence."""
    from ground import aws

    s = sb.settings
    t0 = time.monotonic()
    ecs, ecr = aws.client("ecs", s.region), aws.client("ecr", s.region)
    svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
    current = svc["taskDefinition"]
    td = ecs.describe_task_definition(taskDefinition=current)["taskDefinition"]
    img = ecr.describe_images(repositoryName=s.ecr_repository,
                              imageIds=[{"imageTag": image_tag}])["imageDetails"][0]
    containers = td["containerDefinitions"]
    image = next(c["image"] for c in containers if c["name"] == s.container)
    repo_uri = image.split("@")[0] if "@" in image else image.rsplit(":", 1)[0]
    pinned = f"{repo_uri}@{img['imageDigest']}"
    registered = False
    if any(c["name"] == s.container and c["image"] != pinned for c in containers):
        for c in containers:
            if c["name"] == s.container:
                c["image"] = pinned
        keys = ("family", "networkMode", "requiresCompatibilities", "cpu", "memory",
                "taskRoleArn", "executionRoleArn")
        current = ecs.register_task_definition(
            containerDefinitions=containers, **{k: td[k] for k in keys if td.get(k)}
        )["taskDefinition"]["taskDefinitionArn"]
        registered = True
    resp = ecs.update_service(cluster=s.cluster, service=s.service, taskDefinition=current,
                              forceNewDeployment=True)
    dep = next(d["id"] for d in resp["service"]["deployments"] if d["status"] == "PRIMARY")
    polls = 0
    while True:
        polls += 1
        svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
        ours = next((d for d in svc["deployments"] if d["id"] == dep), None)
        if ours and ours.get("rolloutState") == "COMPLETED" and \
                ours["runningCount"] == ours["desiredCount"]:
            ok = True
            break
        if ours and ours.get("rolloutState") == "FAILED" or time.monotonic() - t0 > timeout:
            ok = False
            break
        time.sleep(poll)
    return {"seconds": round(time.monotonic() - t0, 3), "ok": ok, "registered": registered,
            "polls": polls, "deployment_id": dep}


# -- A. instrumentation of the flow run (this process only) -------------------------------------
class Timings:
    def __init__(self):
        self.local = threading.local()
        self.calls: list[dict] = []
        self.flow_body = 0.0
        self.lock = threading.Lock()

    def reset(self):
        self.calls, self.flow_body = [], 0.0


def _task_objects():
    from prefect.tasks import Task

    seen = {}
    for pkg_name in ("tasks", "flows", "artifacts"):
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
            try:
                m = importlib.import_module(mod.name)
            except Exception:  # noqa: BLE001 - a module we cannot import has no task we run
                continue
            for value in vars(m).values():
                if isinstance(value, Task):
                    seen[id(value)] = value
    return list(seen.values())


@contextlib.contextmanager
def instrument(flow_obj):
    """Time the flow body, every task body and every direct task call."""
    from prefect.tasks import Task

    tm = Timings()
    originals = []

    def wrap_fn(task):
        fn = task.fn

        @functools.wraps(fn)
        def timed_fn(*a, **kw):
            stack = getattr(tm.local, "stack", None)
            rec = stack[-1] if stack and stack[-1]["task"] is task and not stack[-1]["in_fn"] \
                else None
            if rec is not None:
                rec["in_fn"] = True
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                if rec is not None:
                    rec["fn"] += time.perf_counter() - t
                    rec["in_fn"] = False

        originals.append((task, fn))
        task.fn = timed_fn

    for t in _task_objects():
        wrap_fn(t)
    orig_call = Task.__call__

    def timed_call(self, *a, **kw):
        stack = getattr(tm.local, "stack", None)
        if stack is None:
            stack = tm.local.stack = []
        rec = {"task": self, "name": self.name, "fn": 0.0, "in_fn": False}
        stack.append(rec)
        t = time.perf_counter()
        try:
            return orig_call(self, *a, **kw)
        finally:
            rec["call"] = time.perf_counter() - t
            stack.pop()
            with tm.lock:
                tm.calls.append(rec)

    Task.__call__ = timed_call
    flow_fn = flow_obj.fn

    @functools.wraps(flow_fn)
    def timed_flow(*a, **kw):
        t = time.perf_counter()
        try:
            return flow_fn(*a, **kw)
        finally:
            tm.flow_body += time.perf_counter() - t

    flow_obj.fn = timed_flow
    try:
        yield tm
    finally:
        Task.__call__ = orig_call
        flow_obj.fn = flow_fn
        for task, fn in originals:
            task.fn = fn


def flow_deploy(tm: Timings, heartbeat: bool = False) -> dict:
    """One deploy flow run as the CLI runs it (`runner.run_flow`: heartbeat off);
    `heartbeat=True` runs it as before that change, with Prefect's default heartbeat."""
    from flows.deploy import deploy
    from papyrus_ops.runner import run_flow

    tm.reset()
    t0 = time.perf_counter()
    if heartbeat:
        state = deploy(env="local", image="latest", return_state=True)
        result = state.result(raise_on_failure=False)
        result = result if isinstance(result, dict) else {"verdict": "failed"}
    else:
        result = run_flow(deploy, env="local", image="latest")
    wall = time.perf_counter() - t0
    task_overhead = sum(max(0.0, c["call"] - c["fn"]) for c in tm.calls)
    engine_flow = wall - tm.flow_body
    detail = (result.get("verdict_detail") or (result.get("data") or {}).get("verdict_detail")
              or {})
    by_task: dict[str, float] = {}
    for c in tm.calls:
        by_task[c["name"]] = by_task.get(c["name"], 0.0) + c["call"]
    return {"seconds": round(wall, 3), "ok": result.get("verdict") == "success",
            "flow_body_s": round(tm.flow_body, 3),
            "flow_engine_s": round(engine_flow, 3),
            "task_engine_s": round(task_overhead, 3),
            "prefect_s": round(engine_flow + task_overhead, 3),
            "our_code_s": round(wall - engine_flow - task_overhead, 3),
            "task_calls": len(tm.calls),
            "verdict_waited_s": detail.get("waited_seconds"),
            "task_call_s": {k: round(v, 3) for k, v in sorted(by_task.items(),
                                                                key=lambda kv: -kv[1])},
            "reason": str(result.get("reason") or result.get("error") or "")[:200]}


def run_flows(runs: int = 3, sb=None, heartbeat_runs: int = 2) -> dict:
    from flows.deploy import deploy
    from flows.schema_init import schema_init
    from papyrus_ops.runner import run_flow

    own = sb is None
    if own:
        sb = start_sandbox(TMP / "sandbox-overhead")
    os.environ.setdefault("PAPYRUS_EVIDENCE_ROOT", str(TMP / "evidence"))
    poll = float(sb.settings.deploy_poll_seconds)
    rows_plain, rows_flow = [], []
    try:
        res = run_flow(schema_init, env="local", apply=True)
        if res.get("verdict") != "success":
            raise RuntimeError(f"schema_init failed: {res}")
        with instrument(deploy) as tm:
            warm = flow_deploy(tm)  # first flow run in this process: imports, clients
            log(f"overhead: warm-up flow run {warm['seconds']}s ok={warm['ok']}")
            for i in range(runs):
                wait_stable(sb)
                rows_plain.append(plain_deploy(sb, poll=poll))
                wait_stable(sb)
                rows_flow.append(flow_deploy(tm))
                p, f = rows_plain[-1], rows_flow[-1]
                log(f"overhead run {i + 1}/{runs}: plain {p['seconds']}s ok={p['ok']}; flow "
                    f"{f['seconds']}s ok={f['ok']} (prefect {f['prefect_s']}s = flow engine "
                    f"{f['flow_engine_s']} + tasks {f['task_engine_s']} over "
                    f"{f['task_calls']} calls; our code {f['our_code_s']}s)")
            rows_hb = []
            for i in range(heartbeat_runs):
                wait_stable(sb)
                rows_hb.append(flow_deploy(tm, heartbeat=True))
                f = rows_hb[-1]
                log(f"overhead heartbeat-on run {i + 1}/{heartbeat_runs}: flow {f['seconds']}s "
                    f"ok={f['ok']} (prefect {f['prefect_s']}s = flow engine "
                    f"{f['flow_engine_s']} + tasks {f['task_engine_s']})")
    finally:
        if own:
            sb.stop()
    diffs = [f["seconds"] - p["seconds"] for f, p in zip(rows_flow, rows_plain, strict=True)]
    return {"plain": rows_plain, "flow": rows_flow, "warmup_flow": warm,
            "flow_heartbeat_on": rows_hb,
            "agg_heartbeat_on": {
                "flow_s": stats(r["seconds"] for r in rows_hb),
                "prefect_s": stats(r["prefect_s"] for r in rows_hb),
                "flow_engine_s": stats(r["flow_engine_s"] for r in rows_hb)},
            "agg": {"plain_s": stats(r["seconds"] for r in rows_plain),
                    "flow_s": stats(r["seconds"] for r in rows_flow),
                    "flow_minus_plain_s": stats(diffs),
                    "prefect_s": stats(r["prefect_s"] for r in rows_flow),
                    "flow_engine_s": stats(r["flow_engine_s"] for r in rows_flow),
                    "task_engine_s": stats(r["task_engine_s"] for r in rows_flow),
                    "our_code_s": stats(r["our_code_s"] for r in rows_flow),
                    "task_calls": stats(r["task_calls"] for r in rows_flow)}}


# -- B. the demo -----------------------------------------------------------------------------------
STEP_RE = re.compile(r"^(?P<name>.{40}) (?P<verdict>\S+)\s+(?P<secs>[\d.]+)s  (?P<detail>.*)$")


def parse_demo(out: str) -> dict:
    steps, up, api, total, ok = [], None, None, None, None
    in_table = False
    for line in out.splitlines():
        m = re.match(r"sandbox up at \S+ \(([\d.]+)s\)", line)
        if m:
            up = float(m.group(1))
        m = re.match(r"prefect API at \S+ \(([\d.]+)s\)", line)
        if m:
            api = float(m.group(1))
        if line.startswith("step ") and "verdict" in line:
            in_table = True
            continue
        m = re.match(r"demo (succeeded|FAILED) in ([\d.]+)s", line)
        if m:
            ok, total, in_table = m.group(1) == "succeeded", float(m.group(2)), False
            continue
        if in_table:
            m = STEP_RE.match(line)
            if m:
                steps.append({"step": m.group("name").strip(), "verdict": m.group("verdict"),
                              "seconds": float(m.group("secs")),
                              "detail": m.group("detail")[:90]})
    return {"sandbox_up_s": up, "api_up_s": api, "steps": steps, "total_s": total, "ok": ok}


def run_demo(times: int = 2, prefect_env: dict | None = None, tag: str = "") -> list[dict]:
    """`papyrus-ops demo` `times` times in a row with one PREFECT_HOME (so the later runs are
    warm); no PREFECT_API_URL unless `prefect_env` is given."""
    home = TMP / f"demo-prefect-home{tag}"
    shutil.rmtree(home, ignore_errors=True)
    state = TMP / f"demo-sandbox{tag}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "AWS_", "PAPYRUS_"))}
    env = clean_env({"PREFECT_HOME": str(home), "PAPYRUS_SANDBOX_DIR": str(state),
                     "PAPYRUS_EVIDENCE_ROOT": str(TMP / f"demo-evidence{tag}"),
                     **(prefect_env or {})}, base=env)
    rows = []
    for i in range(times):
        out_path = TMP / f"demo{tag}-{i}.out"
        r = run_child([str(Path(PY).parent / "papyrus-ops"), "demo"], env=env, timeout=480,
                      stdout_path=out_path)
        text = out_path.read_text(errors="replace")
        parsed = parse_demo(text)
        parsed.update({"wall_s": round(r.seconds, 2), "rc": r.returncode,
                       "maxrss_mb": round(r.maxrss_mb, 1), "run": i + 1,
                       "stderr_tail": r.stderr[-600:] if r.returncode else ""})
        steps_sum = sum(s["seconds"] for s in parsed["steps"])
        ready = max(parsed["sandbox_up_s"] or 0, parsed["api_up_s"] or 0)
        parsed["other_s"] = round(r.seconds - steps_sum - ready, 2)
        rows.append(parsed)
        log(f"demo{tag} run {i + 1}: rc={r.returncode} wall {r.seconds:.1f}s (reported "
            f"{parsed['total_s']}s; sandbox up {parsed['sandbox_up_s']}s; steps "
            + ", ".join(f"{s['step']} {s['seconds']}" for s in parsed["steps"]) + ")")
    return rows


def run(runs: int = 3, demo: bool = True, prefect_env: dict | None = None, sb=None) -> dict:
    data = {"flows": run_flows(runs, sb=sb)}
    if demo:
        data["demo"] = run_demo(2)
    data["goals"] = {"prefect_per_flow_s": FLOW_GOAL_S, "demo_warm_s": DEMO_GOAL_S}
    save("overhead", data)
    return data

